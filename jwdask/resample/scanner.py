"""Which input pixels drizzle visits when an input is clipped by the mosaic edge.

Before drizzling, the ``drizzle`` C code maps the four corners of the input's pixel range to
the output, clips that quadrilateral to the output image, maps the clipped polygon back
(golden-section search on the pixel map) and only visits, row by row, the input pixels
inside it. On the whole mosaic (jwst) this matters where an input's outline crosses the
mosaic edge (the default grid puts extreme corners up to half a pixel outside); a tile task
drizzles onto an unclipped local array, so the same selection is reproduced here, on the
exposure's whole pixel map, and applied as zero weights. The arithmetic follows the C code
(``cdrizzlemap.c``: ``interpolate_point``, ``clip_polygon_to_window``, ``invert_pixmap``,
``init_scanner``, ``get_scanline_limits``) operation by operation, in double precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

VERTEX_ATOL = 1.0e-12
APPROX_ZERO = 1.0e3 * 2.2250738585072014e-308
MAX_INV_ERR = 0.03
MAX_VERTICES = 8
GOLDEN = 0.6180339887498948482

Vertex = tuple[float, float]


def _area(a: Vertex, b: Vertex) -> float:
    return a[0] * b[1] - a[1] * b[0]


def _c_round(x: float) -> int:
    return math.floor(x + 0.5) if x >= 0 else math.ceil(x - 0.5)


def _div(a: float, b: float) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(a) / np.float64(b))


def interpolate_point(pixmap: np.ndarray, xin: float, yin: float) -> Vertex | None:
    """Bilinear interpolation (extrapolation at the edges) of the pixel map; None if NaN."""
    ny, nx = pixmap.shape[:2]
    i0 = min(max(int(xin), 0), nx - 2)
    j0 = min(max(int(yin), 0), ny - 2)
    x, y = xin - i0, yin - j0
    x1, y1 = 1.0 - x, 1.0 - y
    f00, g00 = pixmap[j0, i0]
    f10, g10 = pixmap[j0, i0 + 1]
    f01, g01 = pixmap[j0 + 1, i0]
    f11, g11 = pixmap[j0 + 1, i0 + 1]
    xout = float(f00) * x1 * y1 + float(f10) * x * y1 + float(f01) * x1 * y + float(f11) * x * y
    yout = float(g00) * x1 * y1 + float(g10) * x * y1 + float(g01) * x1 * y + float(g11) * x * y
    if math.isnan(xout) or math.isnan(yout):
        return None
    return xout, yout


def shrink_range(pixmap: np.ndarray, xmin: int, xmax: int, ymin: int, ymax: int) -> tuple[int, int, int, int] | None:
    """The tightest box with a finite pixel-map value on each edge (None: fewer than two)."""
    finite = ~(np.isnan(pixmap[ymin:ymax + 1, xmin:xmax + 1, 0]) | np.isnan(pixmap[ymin:ymax + 1, xmin:xmax + 1, 1]))
    rows = np.nonzero(finite.any(axis=1))[0]
    if rows.size == 0:
        return None
    first = [int(np.argmax(r)) for r in finite[rows]]
    last = [finite.shape[1] - 1 - int(np.argmax(r[::-1])) for r in finite[rows]]
    imin, jmin = xmin + min(first), ymin + int(rows[0])
    imax = max(imin, xmin + max(last))
    jmax = max(jmin, ymin + int(rows[-1]))
    if imin >= imax or jmin >= jmax:
        return None
    return imin, imax, jmin, jmax


def _orient_ccw(poly: list[Vertex]) -> list[Vertex]:
    if len(poly) < 3:
        return poly
    cx = sum(v[0] for v in poly) / len(poly)
    cy = sum(v[1] for v in poly) / len(poly)
    v1 = (poly[0][0] - cx, poly[0][1] - cy)
    v2 = (poly[1][0] - cx, poly[1][1] - cy)
    if _area(v1, v2) >= 0.0:
        return poly
    return poly[::-1]


def _append(poly: list[Vertex], v: Vertex) -> None:
    def same(a: Vertex, b: Vertex) -> bool:
        return abs(a[0] - b[0]) < VERTEX_ATOL and abs(a[1] - b[1]) < VERTEX_ATOL

    if poly and (same(poly[-1], v) or same(poly[0], v)):
        return
    if len(poly) < MAX_VERTICES:
        poly.append(v)


def _simplify(poly: list[Vertex]) -> list[Vertex]:
    n = len(poly)
    if n < 3:
        return poly
    out = []
    for k in range(n):
        prev, cur, nxt = poly[k - 1], poly[k], poly[(k + 1) % n]
        dp = (nxt[0] - prev[0], nxt[1] - prev[1])
        dq = (cur[0] - prev[0], cur[1] - prev[1])
        if abs(_area(dp, dq)) > APPROX_ZERO and math.sqrt(dp[0] * dp[0] + dp[1] * dp[1]) > VERTEX_ATOL:
            out.append(cur)
    return out


def clip_polygon(poly: list[Vertex], window: list[Vertex]) -> list[Vertex] | None:
    """Sutherland-Hodgman clipping of ``poly`` by the convex ``window`` (None if degenerate)."""
    if len(poly) < 3 or len(window) < 3:
        return None
    poly, window = _orient_ccw(list(poly)), _orient_ccw(list(window))
    current = list(poly)
    wv_ = window[-1]
    for wv in window:
        dw = (wv[0] - wv_[0], wv[1] - wv_[1])
        source, current = current, []
        if source:
            pv_ = source[-1]
            for pv in source:
                dp = (pv[0] - pv_[0], pv[1] - pv_[1])
                inside1 = (_area(pv_, wv_) - _area(wv, wv_) - _area(pv_, wv)) > 0.0
                inside2 = (_area(pv, wv_) - _area(wv, wv_) - _area(pv, wv)) > 0.0
                if inside1 != inside2:
                    d = _area(dp, dw)
                    app_, aww_ = _area(pv, pv_), _area(wv, wv_)
                    _append(current, (_div(app_ * dw[0] - aww_ * dp[0], d), _div(app_ * dw[1] - aww_ * dp[1], d)))
                    if inside2:
                        _append(current, pv)
                elif inside1:
                    _append(current, pv)
                pv_ = pv
        wv_ = wv
    return _simplify(_orient_ccw(current))


def invert_point(pixmap: np.ndarray, box: tuple[int, int, int, int], xout: float, yout: float) -> Vertex | None:
    """Input position of output point (golden-section search on the interpolated pixel map)."""
    xmin, xmax, ymin, ymax = box[0] - 0.5, box[1] + 0.5, box[2] - 0.5, box[3] + 0.5
    dx, dy = xmax - xmin, ymax - ymin
    niter = 0
    while (dx > MAX_INV_ERR or dy > MAX_INV_ERR) and niter < 50:
        niter += 1
        x1, x2 = xmax - GOLDEN * dx, xmin + GOLDEN * dx
        y1, y2 = ymax - GOLDEN * dy, ymin + GOLDEN * dy
        dist = []
        for px, py in ((x1, y1), (x1, y2), (x2, y1), (x2, y2)):
            p = interpolate_point(pixmap, px, py)
            if p is None:
                return None
            ddx, ddy = p[0] - xout, p[1] - yout
            dist.append(ddx * ddx + ddy * ddy)
        d11, d12, d21, d22 = dist
        if d11 < d12 and d11 < d21 and d11 < d22:
            xmax, ymax = x2, y2
        elif d12 < d11 and d12 < d21 and d12 < d22:
            xmax, ymin = x2, y1
        elif d21 < d11 and d21 < d12 and d21 < d22:
            xmin, ymax = x1, y2
        else:
            xmin, ymin = x1, y1
        dx, dy = xmax - xmin, ymax - ymin
    if niter == 50:
        return None
    return 0.5 * (xmin + xmax), 0.5 * (ymin + ymax)


@dataclass
class _Edge:
    v1: Vertex
    v2: Vertex
    m: float
    c: float


def _edge(v1: Vertex, v2: Vertex, position: int) -> _Edge:
    m = _div(v2[0] - v1[0], v2[1] - v1[1])
    b = _div(v1[0] * v2[1] - v1[1] * v2[0], v2[1] - v1[1])
    return _Edge(v1, v2, m, b - math.copysign(0.5 + 0.5 * abs(m), float(position)))


def scan_rows(poly: list[Vertex], box: tuple[int, int, int, int]) -> np.ndarray:
    """Per input row, the inclusive ``(x1, x2)`` visited (``x1 > x2``: row skipped).

    Returns an ``(ymax + 1, 2)`` int array for rows ``0..ymax`` of the range ``box``.
    """
    ymin_b, ymax_b = box[2], box[3]
    out = np.tile(np.array([1, 0], dtype=np.int64), (ymax_b + 1, 1))
    n = len(poly)
    if n < 3:
        return out
    min_y, min_left = poly[0][1], 0
    for k in range(1, n):
        if poly[k][1] < min_y:
            min_left, min_y = k, poly[k][1]
    i1, i2 = (min_left - 1) % n, (min_left + 1) % n
    min_right = i1 if poly[i1][1] < poly[i2][1] else i2
    if poly[min_right][1] <= min_y * (1.0 + math.copysign(VERTEX_ATOL, min_y)):
        if poly[min_left][0] > poly[min_right][0]:
            min_left, min_right = min_right, min_left
    else:
        min_right = min_left
    max_y, max_right = poly[0][1], 0
    for k in range(1, n):
        if poly[k][1] > max_y:
            max_right, max_y = k, poly[k][1]
    i1, i2 = (max_right - 1) % n, (max_right + 1) % n
    max_left = i1 if poly[i1][1] > poly[i2][1] else i2
    if poly[max_left][1] >= max_y * (1.0 - math.copysign(VERTEX_ATOL, max_y)):
        if poly[max_left][0] > poly[max_right][0]:
            max_left, max_right = max_right, max_left
    else:
        max_left = max_right
    if max_left > min_left:
        min_left += n
    left = [_edge(poly[(min_left - k) % n], poly[((min_left - k) % n - 1) % n], -1) for k in range(min_left - max_left)]
    if max_right < min_right:
        max_right += n
    right = [_edge(poly[(min_right + k) % n], poly[((min_right + k) % n + 1) % n], 1)
             for k in range(max_right - min_right)]
    if not left or not right:
        return out
    ymin = max(0, int(min_y + 0.5 + 2.0 * MAX_INV_ERR))
    ymax = min(ymax_b, int(max_y + 2.0 * MAX_INV_ERR))
    li = ri = 0
    for y in range(ymin, ymax + 1):
        if ymax_b >= ymin_b and (y < 0 or y > ymax_b):
            continue
        pyb, pyt = y - 0.5, y + 0.5
        if pyt <= min_y or pyb >= max_y + 1:
            continue
        status, li, ri, limits = _row_limits(left, right, li, ri, y, pyb, pyt, box)
        if status == 1:
            break
        if status == 0:
            out[y] = limits
    return out


def _row_limits(left: list[_Edge], right: list[_Edge], li: int, ri: int, y: int, pyb: float, pyt: float,
                box: tuple[int, int, int, int]) -> tuple[int, int, int, tuple[int, int]]:
    while pyb > left[li].v2[1]:
        if li == len(left) - 1:
            return 1, li, ri, (1, 0)
        li += 1
    while pyb > right[ri].v2[1]:
        if ri == len(right) - 1:
            return 1, li, ri, (1, 0)
        ri += 1
    xlb = left[li].m * y + left[li].c - MAX_INV_ERR
    xrb = right[ri].m * y + right[ri].c + MAX_INV_ERR
    while pyt > left[li].v2[1] + 0.5 + MAX_INV_ERR:
        if li == len(left) - 1:
            return 1, li, ri, (1, 0)
        li += 1
    while pyt > right[ri].v2[1] + 0.5 + MAX_INV_ERR:
        if ri == len(right) - 1:
            return 1, li, ri, (1, 0)
        ri += 1
    xlt = left[li].m * y + left[li].c - MAX_INV_ERR
    xrt = right[ri].m * y + right[ri].c + MAX_INV_ERR
    xmin, xmax = box[0], box[1]
    if xmax >= xmin:
        xlb, xlt = max(xlb, xmin), max(xlt, xmin)
        xrb, xrt = min(xrb, xmax), min(xrt, xmax)
    if xlt >= xrt:
        if xlb >= xrb:
            return 3, li, ri, (1, 0)
        return 0, li, ri, (_c_round(xlb), _c_round(xrb))
    if xlb >= xrb:
        return 0, li, ri, (_c_round(xlt), _c_round(xrt))
    return 0, li, ri, (_c_round(max(xlb, xlt)), _c_round(min(xrb, xrt)))


def corners(box: tuple[int, int, int, int]) -> list[Vertex]:
    """The input range's outline (pixel edges), in drizzle's order."""
    xmin, xmax, ymin, ymax = box
    return [(xmin - 0.5, ymin - 0.5), (xmax + 0.5, ymin - 0.5), (xmax + 0.5, ymax + 0.5), (xmin - 0.5, ymax + 0.5)]


def output_window(shape: tuple[int, int]) -> list[Vertex]:
    """The output image's outline."""
    ny, nx = shape
    return [(-0.5, -0.5), (nx - 0.5, -0.5), (nx - 0.5, ny - 0.5), (-0.5, ny - 0.5)]


def visited_rows(pixmap: np.ndarray, box: tuple[int, int, int, int], out_shape: tuple[int, int]) -> np.ndarray | None:
    """Per-row inclusive ``(x1, x2)`` of the input pixels drizzle visits on the whole mosaic.

    ``pixmap`` is the input's whole pixel map, ``box`` its inclusive range. Returns an
    ``(ny, 2)`` array (rows not visited have ``x1 > x2``), or None when every pixel of the
    range is visited.
    """
    ny = pixmap.shape[0]
    shrunk = shrink_range(pixmap, *box)
    if shrunk is None:
        return np.tile(np.array([1, 0], dtype=np.int64), (ny, 1))
    outline = corners(shrunk)
    mapped = [interpolate_point(pixmap, x, y) for x, y in outline]
    if any(p is None for p in mapped):
        polygon = outline
    else:
        window = output_window(out_shape)
        clipped = clip_polygon(mapped, window)
        if clipped is None or len(clipped) < 3:
            polygon = outline
        else:
            back = [invert_point(pixmap, shrunk, x, y) for x, y in clipped]
            polygon = outline if any(v is None for v in back) else _orient_ccw(back)
    rows = scan_rows(polygon, shrunk)
    full = np.tile(np.array([1, 0], dtype=np.int64), (ny, 1))
    full[: rows.shape[0]] = rows
    return full


def needs_scan(corner_points: list[Vertex | None], out_shape: tuple[int, int], margin: float = 0.0) -> bool:
    """True unless all mapped corners lie inside the output by ``margin`` [pixels] (then
    drizzle clips nothing and visits the whole range)."""
    ny, nx = out_shape
    lo = -0.5 + margin
    return not all(p is not None and lo < p[0] < nx - 0.5 - margin and lo < p[1] < ny - 0.5 - margin
                   for p in corner_points)
