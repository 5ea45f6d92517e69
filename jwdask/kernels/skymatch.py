"""Numeric parts of skymatch (image3.md §4): sky statistics of one exposure in pixel regions,
and the least-squares solution of the pairwise sky differences.

The statistic is ``stsci.imagestats.ImageStats`` (the library stcal's ``SkyStats`` calls):
clipped mean/std over ``nclip + 1`` passes, then ``mean``, ``median``, ``mode`` or ``midpt``.
A region is a list of pixel polygons (vertex arrays, 0-based pixel coordinates) rasterised
with ``gwcs.region.Polygon.scan``, the same scan-line fill jwst uses; a region of ``None``
means the whole exposure.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.nddata.bitmask import bitfield_to_boolean_mask

from jwdask import dqflags

log = logging.getLogger(__name__)

SKYSTATS = ("mode", "median", "mean", "midpt")


@dataclass(frozen=True)
class SkyStatParams:
    """Parameters of the sky statistic (jwst SkyMatchStep names; values in SCI units)."""

    skystat: str = "mode"
    lower: float | None = None
    upper: float | None = None
    nclip: int = 5
    lsigma: float = 4.0
    usigma: float = 4.0
    binwidth: float = 0.1


def sky_statistic(values: np.ndarray, params: SkyStatParams) -> tuple[Any, Any]:
    """``(sky, npix)`` of a 1-D array of good pixel values [SCI units]; ``(None, 0)`` when
    the statistic cannot be computed (no values in range) or is not finite.

    The values keep the numpy scalar types ImageStats returns (``float32`` for some
    statistics), because jwst's later sky arithmetic inherits them.
    """
    from stsci.imagestats import ImageStats

    if values.size < 1:
        return None, 0
    try:
        stats = ImageStats(values, fields=f"npix,{params.skystat}", lower=params.lower, upper=params.upper,
                           nclip=params.nclip, lsig=params.lsigma, usig=params.usigma,
                           binwidth=params.binwidth)
    except ValueError:
        return None, 0
    value = getattr(stats, params.skystat)
    if value is None or not np.isfinite(value):
        return None, 0
    return value, stats.npix


def good_mask(sci: np.ndarray, dq: np.ndarray, dqbits: int | None) -> np.ndarray:
    """Pixels usable for the sky: finite SCI and no DQ bit outside ``dqbits`` (None: any DQ)."""
    finite = np.isfinite(sci)
    if dqbits is None:
        return finite
    return bitfield_to_boolean_mask(dq, dqbits, good_mask_value=True, dtype=bool,
                                    flag_name_map=dqflags.PIXEL) & finite


def region_mask(shape: tuple[int, int], polygons: Sequence[np.ndarray]) -> np.ndarray:
    """Boolean mask of the pixels inside any of ``polygons`` (``(N, 2)`` pixel x, y vertices)."""
    from gwcs import region

    mask = np.zeros(shape, dtype=bool)
    for vertices in polygons:
        if len(vertices) < 4:
            continue
        mask = region.Polygon(True, [tuple(v) for v in vertices]).scan(mask)
    return mask


def exposure_sky(sci: np.ndarray, dq: np.ndarray, regions: Sequence[Sequence[np.ndarray] | None],
                 params: SkyStatParams, dqbits: int | None,
                 offsets: Sequence[Any] = ()) -> list[tuple[Any, Any]]:
    """Sky ``(value, npix)`` of one exposure in each region (None = whole exposure).

    ``sci`` [MJy/sr] float32 (y, x) is first reduced by each of ``offsets`` in turn with numpy's
    promotion rules and a cast back to float32 (as jwst's in-place ``image -= sky``);
    ``dq`` uint32; ``dqbits`` the good bits.
    """
    data = np.asarray(sci, dtype=np.float32)
    for offset in offsets:
        data = (data - offset).astype(np.float32)
    good = good_mask(data, np.asarray(dq), dqbits)
    out = []
    for polygons in regions:
        if polygons is None:
            values = data[good]
        else:
            mask = region_mask(data.shape, polygons) & good
            values = data[mask]
        out.append(sky_statistic(values, params))
    return out


def solve_sky_deltas(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Sky offsets of N images from pairwise overlap skies (image3.md §4.4 ``match``).

    ``a[j, i]`` is the sky of image i in its overlap with j, ``w[j, i]`` its pixel count
    (0 = no valid overlap). Each pair with both counts > 0 gives the equation
    ``W (d_i - d_j) = W (a[j, i] - a[i, j])`` with ``W`` the mean count; the system is solved
    with a pseudo-inverse (``rcond=1e-12``). Images in no equation get NaN.
    """
    n = a.shape[0]
    wm = 0.5 * (w + w.T)
    rows = []
    rhs = []
    used = np.zeros(n, dtype=bool)
    for i in range(n):
        for j in range(i + 1, n):
            if w[i, j] > 0 and w[j, i] > 0:
                row = np.zeros(n)
                row[i], row[j] = wm[i, j], -wm[i, j]
                rows.append(row)
                rhs.append(wm[i, j] * (a[j, i] - a[i, j]))
                used[i] = used[j] = True
    k = np.array(rows, dtype=float).reshape(len(rows), n)
    f = np.array(rhs, dtype=float)
    try:
        rank = np.linalg.matrix_rank(k, 1.0e-12)
    except np.linalg.LinAlgError:
        log.warning("skymatch: unable to compute sky: no valid data in common image areas")
        return np.full(n, np.nan)
    if rank < n - 1:
        log.warning("skymatch: %d unknown sky values but only %d independent equations; sky is "
                    "matched only within separate subsets of the images", n, rank)
    deltas = np.linalg.pinv(k, rcond=1.0e-12) @ f if len(rows) else np.zeros(n)
    deltas[~used] = np.nan
    return deltas
