"""Snowball flagging (jump ``expand_large_events``; spec §6.12.9; jwst 3.0 + stcal 1.20).

stcal's ``flag_large_events`` walks the groups of each integration in order. In group g:

1. connected regions (8-connectivity, area with holes filled) of JUMP_DET pixels with area >=
   ``min_jump_area``, of pixels newly SATURATED in g and newly SATURATED in g+1 (area >=
   ``min_sat_area``), each described by the ellipse of equal second moments as stcal takes
   it from scikit-image (centroid, full axes ``axis_length - 1``, orientation);
2. a jump region is a snowball if its centroid is within ``edge_size`` of the detector edge
   or a new-saturation centroid (g or g+1) lies inside its ellipse (``sat_required_snowball``;
   without it every jump region is one);
3. saturated cores whose minor axis exceeds ``min_sat_radius_extend`` are grown by
   ``2 * sat_expand`` pixels on both axes and *set* to exactly SATURATED in groups g..end;
   the core itself (not grown) is remembered;
4. snowball ellipses are grown (both axes by ``(expand_factor - 1) * minor``, capped at
   ``2 * max_extended_radius``) and JUMP_DET is added in group g except on SATURATED pixels;

and after all integrations the remembered cores get JUMP_DET in groups
1 .. min(snowball_time_masked_next_int // TGROUP, NGROUPS) - 1 of the next integration
(``mask_snowball_core_next_int``).

Because step 3 changes the saturation (and clears JUMP_DET) of later groups, the regions of
group g depend on the cores extended in earlier groups. With ``E`` the union of the grown
cores of groups < g, the masks of group g are exactly ``jump[g] & ~E``, ``sat[g] & ~sat[g-1]
& ~E`` and ``sat[g+1] & ~sat[g] & ~E`` of the *input* SAT/JUMP bits. So the work splits in two:

* :func:`snowball_events` (one call per integration, on the whole frame's SAT/JUMP bits):
  the region analysis, tracking ``E``, producing a table of ellipse "events";
* :func:`apply_events` (one call per (y, x) tile): rasterises the events that touch the tile
  in the order stcal draws them. Each pixel's decision depends only on its global position
  and the event (integer centre, integer radii, angle), so tiles reproduce the whole frame
  exactly; no halo is needed.

Exactness against stcal: region areas and centroids are computed exactly (integer sums). The
ellipse shape (axes, orientation) of a region that is drawn or whose shape decides
containment is taken from :func:`skimage.measure.regionprops` on the region's own bounding
box, i.e. the very computation stcal does; other regions are screened with float64 moments
and a safety margin. The pixel test is scikit-image's ``draw.ellipse`` formula with the same
operations, so the flags are bit-identical.

The event table is float64 ``(n, len(EVENT_COLUMNS))``; :mod:`jwdask.kernels.showers` uses
the same table for MIRI showers.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numba
import numpy as np
import skimage.measure

from jwdask import dqflags

__all__ = ["EVENT_COLUMNS", "KIND_JUMP", "KIND_PERSIST", "KIND_SAT", "Regions", "apply_events",
           "exact_shape", "find_regions", "jump_ellipse_event", "point_inside", "snowball_events"]

SAT = dqflags.SATURATED
JUMP = dqflags.JUMP_DET

EVENT_COLUMNS = ("integration", "group_start", "group_stop", "kind", "row", "col", "row_radius",
                 "col_radius", "cos", "sin", "row_min", "row_max", "col_min", "col_max")
"""Columns of an event row: groups ``group_start <= g < group_stop`` of ``integration``;
the ellipse centre (integer pixel), integer radii along the rotated row/column axes, the
cosine and sine of the rotation, and the inclusive pixel box scikit-image evaluates."""

KIND_SAT, KIND_JUMP, KIND_PERSIST = 0, 1, 2
"""Event kinds: set GROUPDQ to exactly SATURATED; add JUMP_DET except on pixels SATURATED in
any group from ``group_start`` to the current one; add JUMP_DET unconditionally."""

_NCOL = len(EVENT_COLUMNS)
_jit = numba.njit(cache=True, nogil=True)


# ---------------------------------------------------------------------------------------------
# Regions
# ---------------------------------------------------------------------------------------------


class Regions(NamedTuple):
    """Connected regions of a mask that passed the area cut, as stcal sees them."""

    labels: np.ndarray
    """int32 label image (0 = background), scipy numbering."""
    index: np.ndarray
    """Labels of the kept regions."""
    row: np.ndarray
    """float64 centroid row of each kept region (exact: sum / count)."""
    col: np.ndarray
    """float64 centroid column."""
    box: np.ndarray
    """int64 ``(n, 4)``: row_min, row_max + 1, col_min, col_max + 1."""
    radius: np.ndarray
    """float64 approximate semi-major axis ``max(|w|, |h|) / 2`` [px] (screening only)."""
    minor: np.ndarray
    """float64 approximate stcal minor axis ``axis_minor_length - 1`` (screening only)."""


@_jit
def _find(parent, k):
    while parent[k] != k:
        parent[k] = parent[parent[k]]
        k = parent[k]
    return k


@_jit
def _label8(mask):
    """8-connected labels of ``mask`` (int32, 0 = background, 1..n in raster order of the
    regions' first pixels) and n; two passes with union-find."""
    ny, nx = mask.shape
    labels = np.zeros((ny, nx), np.int32)
    parent = np.zeros(ny * ((nx + 1) // 2) + 2, np.int32)
    n = 0
    for r in range(ny):
        for c in range(nx):
            if not mask[r, c]:
                continue
            best = 0
            for dr, dc in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
                rr = r + dr
                cc = c + dc
                if rr < 0 or cc < 0 or cc >= nx:
                    continue
                k = labels[rr, cc]
                if k == 0:
                    continue
                k = _find(parent, k)
                if best == 0:
                    best = k
                elif k != best:
                    lo = min(k, best)
                    parent[max(k, best)] = lo
                    best = lo
            if best == 0:
                n += 1
                parent[n] = n
                best = n
            labels[r, c] = best
    final = np.zeros(n + 1, np.int32)
    m = 0
    for k in range(1, n + 1):
        root = _find(parent, k)
        if root == k:
            m += 1
            final[k] = m
        else:
            final[k] = final[root]
    for r in range(ny):
        for c in range(nx):
            if labels[r, c]:
                labels[r, c] = final[labels[r, c]]
    return labels, m


@_jit
def _label_stats(labels, n):
    """Per label: pixel count, inclusive bounding box, exact centroid and the float64 central
    second moments (sums over the region of drow^2, dcol^2 and drow * dcol)."""
    count = np.zeros(n + 1, np.int64)
    box = np.empty((n + 1, 4), np.int64)
    box[:, 0] = labels.shape[0]
    box[:, 1] = -1
    box[:, 2] = labels.shape[1]
    box[:, 3] = -1
    for r in range(labels.shape[0]):
        for c in range(labels.shape[1]):
            k = labels[r, c]
            if k == 0:
                continue
            count[k] += 1
            box[k, 0] = min(box[k, 0], r)
            box[k, 1] = max(box[k, 1], r)
            box[k, 2] = min(box[k, 2], c)
            box[k, 3] = max(box[k, 3], c)
    sr = np.zeros(n + 1, np.int64)
    sc = np.zeros(n + 1, np.int64)
    srr = np.zeros(n + 1, np.int64)
    scc = np.zeros(n + 1, np.int64)
    src = np.zeros(n + 1, np.int64)
    for r in range(labels.shape[0]):
        for c in range(labels.shape[1]):
            k = labels[r, c]
            if k == 0:
                continue
            lr = r - box[k, 0]
            lc = c - box[k, 2]
            sr[k] += lr
            sc[k] += lc
            srr[k] += lr * lr
            scc[k] += lc * lc
            src[k] += lr * lc
    crow = np.zeros(n + 1)
    ccol = np.zeros(n + 1)
    mrr = np.zeros(n + 1)
    mcc = np.zeros(n + 1)
    mrc = np.zeros(n + 1)
    for k in range(1, n + 1):
        crow[k] = (sr[k] + box[k, 0] * count[k]) / count[k]
        ccol[k] = (sc[k] + box[k, 2] * count[k]) / count[k]
        mrr[k] = srr[k] - sr[k] * (sr[k] / count[k])
        mcc[k] = scc[k] - sc[k] * (sc[k] / count[k])
        mrc[k] = src[k] - sr[k] * (sc[k] / count[k])
    return count, box, crow, ccol, mrr, mcc, mrc


@_jit
def _filled_area(labels, k, r0, r1, c0, c1, seen, stack):
    """Area of region ``k`` with holes filled (``binary_fill_holes`` with an 8-connected
    background inside the region's bounding box ``[r0, r1] x [c0, c1]``)."""
    h = r1 - r0 + 1
    w = c1 - c0 + 1
    top = 0
    for r in range(h):
        for c in range(w):
            seen[r, c] = False
    for r in range(h):
        for c in range(w):
            if (r == 0 or r == h - 1 or c == 0 or c == w - 1) and labels[r0 + r, c0 + c] != k:
                seen[r, c] = True
                stack[top, 0] = r
                stack[top, 1] = c
                top += 1
    reached = top
    while top > 0:
        top -= 1
        r = stack[top, 0]
        c = stack[top, 1]
        for dr in range(-1, 2):
            for dc in range(-1, 2):
                rr = r + dr
                cc = c + dc
                if rr < 0 or rr >= h or cc < 0 or cc >= w or seen[rr, cc]:
                    continue
                if labels[r0 + rr, c0 + cc] == k:
                    continue
                seen[rr, cc] = True
                stack[top, 0] = rr
                stack[top, 1] = cc
                top += 1
                reached += 1
    return h * w - reached


@_jit
def _keep(count, box, labels, min_area):
    n = count.shape[0] - 1
    keep = np.zeros(n + 1, np.bool_)
    hmax = 1
    wmax = 1
    for k in range(1, n + 1):
        hmax = max(hmax, box[k, 1] - box[k, 0] + 1)
        wmax = max(wmax, box[k, 3] - box[k, 2] + 1)
    seen = np.empty((0, 0), np.bool_)
    stack = np.empty((0, 2), np.int64)
    for k in range(1, n + 1):
        if count[k] >= min_area:
            keep[k] = True
            continue
        h = box[k, 1] - box[k, 0] + 1
        w = box[k, 3] - box[k, 2] + 1
        if h < 3 or w < 3 or h * w < min_area:
            continue
        if seen.shape[0] == 0:
            seen = np.empty((hmax, wmax), np.bool_)
            stack = np.empty((hmax * wmax, 2), np.int64)
        keep[k] = _filled_area(labels, k, box[k, 0], box[k, 1], box[k, 2], box[k, 3], seen,
                               stack) >= min_area
    return keep


def find_regions(mask: np.ndarray, min_area: float) -> Regions:
    """8-connected regions of ``mask`` whose hole-filled area [px] is at least ``min_area``.

    Examples
    --------
    >>> m = np.zeros((6, 6), bool); m[1:4, 1:4] = True; m[2, 2] = False; m[5, 5] = True
    >>> reg = find_regions(m, 9)
    >>> reg.index.size, float(reg.row[0]), float(reg.col[0])
    (1, 2.0, 2.0)
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        labels = np.zeros(mask.shape, np.int32)
        empty = np.zeros(0)
        return Regions(labels, np.zeros(0, np.int64), empty, empty, np.zeros((0, 4), np.int64),
                       empty, empty)
    labels, n = _label8(mask)
    count, box, crow, ccol, mrr, mcc, mrc = _label_stats(labels, n)
    index = np.flatnonzero(_keep(count, box, labels, float(min_area)))
    cnt = count[index].astype(float)
    a = mcc[index] / cnt
    c = mrr[index] / cnt
    b = -mrc[index] / cnt
    root = np.sqrt(((a - c) / 2) ** 2 + b * b)
    l1 = np.clip((a + c) / 2 + root, 0, None)
    l2 = np.clip((a + c) / 2 - root, 0, None)
    major = 4 * np.sqrt(l1) - 1
    minor = 4 * np.sqrt(l2) - 1
    bx = box[index].copy()
    bx[:, 1] += 1
    bx[:, 3] += 1
    return Regions(labels, index, crow[index], ccol[index], bx,
                   np.maximum(np.abs(major), np.abs(minor)) / 2, minor)


def exact_shape(regions: Regions, j: int) -> tuple[float, float, np.float64]:
    """stcal's ``(minor - 1, major - 1, degrees(orientation))`` of kept region ``j``,
    computed by scikit-image on the region's bounding box exactly as stcal does (the result
    depends only on that boolean image, so it is memoised on it)."""
    r0, r1, c0, c1 = (int(v) for v in regions.box[j])
    crop = regions.labels[r0:r1, c0:c1] == regions.index[j]
    return _shape_of_image(crop.shape, np.packbits(crop).tobytes())


@functools.lru_cache(maxsize=4096)
def _shape_of_image(shape: tuple[int, int], packed: bytes) -> tuple[float, float, np.float64]:
    bits = np.unpackbits(np.frombuffer(packed, np.uint8), count=shape[0] * shape[1])
    (prop,) = skimage.measure.regionprops(bits.reshape(shape))
    return prop.axis_minor_length - 1, prop.axis_major_length - 1, np.degrees(prop.orientation)


def point_inside(px: float, py: float, cx: float, cy: float, h: float, w: float,
                 alpha: np.float64) -> bool:
    """stcal's test of point (column px, row py) against the ellipse centred on (cx, cy)
    with full axes ``h`` and ``w`` and angle ``alpha`` [deg], in the same float operations."""
    angle = np.radians(180 - alpha)
    cos_a = np.cos(angle)
    sin_a = np.sin(angle)
    xc = px - cx
    yc = py - cy
    xct = xc * cos_a - yc * sin_a
    yct = xc * sin_a + yc * cos_a
    if w >= h:
        semi_major, semi_minor = np.float64(w * 0.5), np.float64(h * 0.5)
    else:
        semi_major, semi_minor = np.float64(h * 0.5), np.float64(w * 0.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        rad = (xct**2 / semi_major**2) + (yct**2 / semi_minor**2)
    return bool(rad <= 1)


# ---------------------------------------------------------------------------------------------
# Ellipse events
# ---------------------------------------------------------------------------------------------


def _event(integration: int, g0: int, g1: int, kind: int, cen_col: float, cen_row: float,
           axis1: float, axis2: float, alpha: np.float64, shape: tuple[int, int]) -> list | None:
    """The pixels stcal's ``ellipse_subim`` sets for full axes ``axis1`` (columns before
    rotation) and ``axis2`` (rows), as an event row; None when it sets none."""
    nrows, ncols = shape
    ccen, rcen = round(cen_col), round(cen_row)
    crad, rrad = round(axis1 / 2), round(axis2 / 2)
    half = max(crad, rrad) + 2
    col0, col1 = max(ccen - half, 0), min(ccen + half + 1, ncols)
    row0, row1 = max(rcen - half, 0), min(rcen + half + 1, nrows)
    if rrad == 0 or crad == 0 or row1 <= row0 or col1 <= col0:
        return None
    rot = np.radians(alpha) % np.pi
    cos_a, sin_a = np.cos(rot), np.sin(rot)
    rl, cl = rcen - row0, ccen - col0
    r_rot = abs(rrad * cos_a) + crad * sin_a
    c_rot = rrad * sin_a + abs(crad * cos_a)
    rmin = max(int(np.ceil(rl - r_rot)), 0)
    rmax = min(int(np.floor(rl + r_rot)), row1 - row0 - 1)
    cmin = max(int(np.ceil(cl - c_rot)), 0)
    cmax = min(int(np.floor(cl + c_rot)), col1 - col0 - 1)
    if rmax < rmin or cmax < cmin:
        return None
    return [integration, g0, g1, kind, rcen, ccen, rrad, crad, float(cos_a), float(sin_a),
            row0 + rmin, row0 + rmax, col0 + cmin, col0 + cmax]


def jump_ellipse_event(integration: int, g0: int, g1: int, cen_col: float, cen_row: float,
                       h: float, w: float, alpha: np.float64, expansion: float,
                       max_width: float, shape: tuple[int, int]) -> list | None:
    """stcal's ``extend_ellipses`` geometry (``compute_axes`` with ``expand_by_ratio``) as a
    KIND_JUMP event for groups ``g0 <= g < g1``; ``max_width`` [px] caps the full axes."""
    if w < h:
        axis1 = h + (expansion - 1.0) * w
        axis2 = w * expansion
    else:
        axis1 = h * expansion
        axis2 = w + (expansion - 1.0) * h
    axis1 = min(axis1, max_width)
    axis2 = min(axis2, max_width)
    half1, half2 = round(axis1 / 2), round(axis2 / 2)
    return _event(integration, g0, g1, KIND_JUMP, cen_col, cen_row, half1 * 2, half2 * 2, alpha,
                  shape)


def _as_table(rows: list[list]) -> np.ndarray:
    if not rows:
        return np.zeros((0, _NCOL))
    return np.asarray(rows, dtype=np.float64)


@_jit
def _inside(ev, r, c):
    dr = np.float64(r - np.int64(ev[4]))
    dc = np.float64(c - np.int64(ev[5]))
    cos_a = ev[8]
    sin_a = ev[9]
    a = (dr * cos_a + dc * sin_a) / ev[6]
    b = (dr * sin_a - dc * cos_a) / ev[7]
    return a * a + b * b < 1.0


@_jit
def _raster_or(mask, ev):
    for r in range(np.int64(ev[10]), np.int64(ev[11]) + 1):
        for c in range(np.int64(ev[12]), np.int64(ev[13]) + 1):
            if _inside(ev, r, c):
                mask[r, c] = True


@_jit
def _apply(gdq, events, y0, x0):
    nints, ngroups, ny, nx = gdq.shape
    inside = np.zeros((ny, nx), np.bool_)
    for e in range(events.shape[0]):
        ev = events[e]
        i = np.int64(ev[0])
        g0 = np.int64(ev[1])
        g1 = min(np.int64(ev[2]), ngroups)
        kind = np.int64(ev[3])
        rlo = max(np.int64(ev[10]) - y0, 0)
        rhi = min(np.int64(ev[11]) - y0, ny - 1)
        clo = max(np.int64(ev[12]) - x0, 0)
        chi = min(np.int64(ev[13]) - x0, nx - 1)
        if i < 0 or i >= nints or rhi < rlo or chi < clo or g0 >= g1:
            continue
        for r in range(rlo, rhi + 1):
            for c in range(clo, chi + 1):
                inside[r, c] = _inside(ev, r + y0, c + x0)
        for r in range(rlo, rhi + 1):
            for c in range(clo, chi + 1):
                if not inside[r, c]:
                    continue
                if kind == 0:
                    for g in range(g0, g1):
                        gdq[i, g, r, c] = SAT
                elif kind == 1:
                    for g in range(g0, g1):
                        if gdq[i, g, r, c] & SAT:
                            break
                        gdq[i, g, r, c] |= JUMP
                else:
                    for g in range(g0, g1):
                        gdq[i, g, r, c] |= JUMP


def apply_events(groupdq: np.ndarray, events: np.ndarray, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Rasterise ``events`` (rows of :data:`EVENT_COLUMNS`, in order) into a copy of a
    GROUPDQ tile whose first pixel is ``origin = (row, column)`` of the frame.

    Returns
    -------
    ndarray
        uint8 ``(integration, group, y, x)``.

    Examples
    --------
    >>> ev = jump_ellipse_event(0, 1, 2, 3.0, 3.0, 2.0, 2.0, np.float64(0.0), 1.0, 400, (7, 7))
    >>> apply_events(np.zeros((1, 3, 7, 7), np.uint8), np.array([ev]))[0, 1].astype(bool).sum()
    np.int64(1)
    """
    out = np.array(groupdq, dtype=np.uint8, copy=True)
    events = np.asarray(events, dtype=np.float64).reshape(-1, _NCOL)
    if events.shape[0]:
        _apply(out, np.ascontiguousarray(events), int(origin[0]), int(origin[1]))
    return out


# ---------------------------------------------------------------------------------------------
# Snowballs of one integration
# ---------------------------------------------------------------------------------------------


@_jit
def _pairs(jrow, jcol, jrad, prow, pcol, order):
    """(jump region, point) pairs whose distance is within the region's screening radius + 1."""
    out = []
    sorted_rows = prow[order]
    for j in range(jrow.shape[0]):
        reach = jrad[j] + 1.0
        lo = np.searchsorted(sorted_rows, jrow[j] - reach)
        hi = np.searchsorted(sorted_rows, jrow[j] + reach, side="right")
        for q in range(lo, hi):
            p = order[q]
            dr = prow[p] - jrow[j]
            dc = pcol[p] - jcol[j]
            if dr * dr + dc * dc <= reach * reach:
                out.append((j, p))
    return out


def snowball_events(
    bits: np.ndarray,
    *,
    integration: int = 0,
    group_time: float,
    min_jump_area: float = 5.0,
    min_sat_area: float = 1.0,
    expand_factor: float = 2.0,
    sat_required_snowball: bool = True,
    min_sat_radius_extend: float = 2.5,
    sat_expand: int = 2,
    edge_size: int = 25,
    max_extended_radius: int = 200,
    mask_snowball_core_next_int: bool = True,
    snowball_time_masked_next_int: float = 4000,
) -> np.ndarray:
    """Snowball events of one integration, from the whole frame's SAT/JUMP flags.

    Parameters
    ----------
    bits : ndarray
        uint8 ``(group, y, x)``: GROUPDQ of the integration after two-point detection (only
        the SATURATED and JUMP_DET bits are read).
    integration : int
        Index written into the events; the core masking events are for ``integration + 1``.
    group_time : float
        TGROUP [s] (converts ``snowball_time_masked_next_int``).
    min_jump_area, min_sat_area : float
        Minimum hole-filled areas [px] of jump regions and new-saturation regions.
    expand_factor : float
        Snowball growth factor (both axes grow by ``(factor - 1) * minor axis``).
    sat_required_snowball : bool
        Require a new-saturation centroid inside the jump ellipse (else every jump region
        is a snowball and cores are neither extended nor masked).
    min_sat_radius_extend : float
        [px] a saturated core is extended when its full minor axis exceeds this.
    sat_expand : int
        [px] radius growth of extended cores (jwst passes ``2 * sat_expand`` to the axes).
    edge_size : int
        [px] jump regions whose centroid is closer to the edge need no saturated core (stcal
        compares both coordinates with ``nrows - edge_size``).
    max_extended_radius : int
        [px] caps grown ellipses at full axes of ``2 * max_extended_radius``.
    mask_snowball_core_next_int : bool
        Flag the cores in the next integration.
    snowball_time_masked_next_int : float
        [s] how long into the next integration (``int(time // group_time)`` groups).

    Returns
    -------
    ndarray
        float64 event table (:data:`EVENT_COLUMNS`) in stcal's drawing order.
    """
    bits = np.asarray(bits)
    if bits.ndim != 3:
        msg = f"snowball_events: bits must be (group, y, x), got shape {bits.shape}"
        raise ValueError(msg)
    ngroups, nrows, ncols = bits.shape
    shape = (nrows, ncols)
    sat = (bits & SAT) != 0
    jump = (bits & JUMP) != 0
    grown = np.zeros(shape, bool)
    max_width = 2 * max_extended_radius
    low, high = edge_size, max(0, nrows - edge_size)
    persist_groups = int(snowball_time_masked_next_int // group_time)
    last = min(persist_groups, ngroups)
    rows: list[list] = []
    persist: list[list] = []
    ahead: Regions | None = None
    for g in range(1, ngroups):
        jumps = find_regions(jump[g] & ~grown, min_jump_area)
        if jumps.index.size == 0 and not sat_required_snowball:
            continue
        shapes: dict[int, tuple[float, float, np.float64]] = {}

        def shape_of(j: int, regions: Regions = jumps, cache: dict = shapes):
            if j not in cache:
                cache[j] = exact_shape(regions, j)
            return cache[j]

        if sat_required_snowball:
            # The next group's new saturation, found now, is this group's in the next one
            # unless cores get extended in between.
            new_sat = ahead if ahead is not None else find_regions(sat[g] & ~sat[g - 1] & ~grown,
                                                                  min_sat_area)
            ahead = None
            points_row, points_col = [new_sat.row], [new_sat.col]
            if g < ngroups - 1:
                ahead = find_regions(sat[g + 1] & ~sat[g] & ~grown, min_sat_area)
                points_row.append(ahead.row)
                points_col.append(ahead.col)
            prow = np.concatenate(points_row)
            pcol = np.concatenate(points_col)
            snow = ((jumps.col < low) | (jumps.row < low) | (jumps.col > high) | (jumps.row > high))
            if prow.size and jumps.index.size:
                order = np.argsort(prow, kind="stable")
                for j, p in _pairs(jumps.row, jumps.col, jumps.radius, prow, pcol, order):
                    if snow[j]:
                        continue
                    h, w, alpha = shape_of(j)
                    if point_inside(float(pcol[p]), float(prow[p]), float(jumps.col[j]),
                                    float(jumps.row[j]), h, w, alpha):
                        snow[j] = True
            for s in np.flatnonzero(new_sat.minor > min_sat_radius_extend - 1e-6):
                h, w, alpha = exact_shape(new_sat, s)
                if not min(w, h) > min_sat_radius_extend:
                    continue
                cen = (float(new_sat.col[s]), float(new_sat.row[s]))
                ax1 = min(h + 2 * sat_expand, max_width)
                ax2 = min(w + 2 * sat_expand, max_width)
                ev = _event(integration, g, ngroups, KIND_SAT, *cen, ax1, ax2, alpha, shape)
                if ev is not None:
                    rows.append(ev)
                    _raster_or(grown, np.asarray(ev, np.float64))
                    ahead = None
                core = _event(integration + 1, 1, last, KIND_PERSIST, *cen, h, w, alpha, shape)
                if core is not None:
                    persist.append(core)
        else:
            snow = np.ones(jumps.index.size, bool)
        for j in np.flatnonzero(snow):
            h, w, alpha = shape_of(j)
            ev = jump_ellipse_event(integration, g, g + 1, float(jumps.col[j]), float(jumps.row[j]),
                                    h, w, alpha, expand_factor, max_width, shape)
            if ev is not None:
                rows.append(ev)
    if sat_required_snowball and mask_snowball_core_next_int and persist_groups >= 1 and last > 1:
        rows.extend(persist)
    return _as_table(rows)
