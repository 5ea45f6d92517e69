"""Numeric parts of imaging outlier detection (image3.md §5) on plain ndarrays.

* The weight threshold ``maskpt * mean(sigma_clip(W[finite & W != 0], sigma=3, maxiters=5))``
  of a whole drizzled image, computed from tiles: each clipping pass needs the median, mean
  and standard deviation of the values inside the current bounds. Mean and variance are
  merged from per-tile moments; the median is found exactly with a two-level radix
  histogram of the float32 bit patterns (high 16 bits, then the low 16 bits of the one or
  two bins holding the middle ranks), so no task ever sees more than a tile.
* The nan-median of the masked drizzled images of one output tile.
* The blot of a median patch onto exposure pixels (``drizzle``'s bilinear ``tblot``).
* The flagging rules ``flag_resampled_crs`` (with the blot derivative term) and ``flag_crs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

SIGMA = 3.0
"""Clipping limit [sigma] of the weight threshold (jwst ``compute_weight_threshold``)."""
MAXITERS = 5
"""Clipping iterations of the weight threshold."""
NBINS = 1 << 16


@dataclass(frozen=True)
class Moments:
    """Count, mean, sum of squared deviations and high-16-bit key histogram of some values."""

    n: int
    mean: float
    m2: float
    hist: np.ndarray


@dataclass(frozen=True)
class ClipState:
    """The sigma-clipping state of one weight image.

    ``lo``/``hi`` are the cumulative float32 bounds of the kept values, ``moments`` their
    statistics, ``iteration`` the passes done and ``done`` whether clipping has stopped.
    """

    lo: np.float32
    hi: np.float32
    moments: Moments
    iteration: int = 0
    done: bool = False


def _keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving uint32 keys of float32 values."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    sign = (bits & np.uint32(0x80000000)) != 0
    return np.where(sign, ~bits, bits | np.uint32(0x80000000))


def _from_key(key: int) -> np.float32:
    key = np.uint32(key)
    bits = key & np.uint32(0x7FFFFFFF) if key & np.uint32(0x80000000) else ~key
    return np.array([bits], dtype=np.uint32).view(np.float32)[0]


def _selected(weight: np.ndarray, lo: np.float32, hi: np.float32) -> np.ndarray:
    w = np.asarray(weight, dtype=np.float32).ravel()
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(w) & (w != 0) & (w >= lo) & (w <= hi)
    return w[keep]


def tile_moments(weight: np.ndarray, lo: np.float32, hi: np.float32) -> Moments:
    """Moments of the finite, non-zero weights of a tile inside ``[lo, hi]``."""
    values = _selected(weight, lo, hi)
    hist = np.bincount((_keys(values) >> np.uint32(16)).astype(np.intp), minlength=NBINS).astype(np.int64)
    if values.size == 0:
        return Moments(0, 0.0, 0.0, hist)
    v = values.astype(np.float64)
    mean = float(v.mean())
    return Moments(int(v.size), mean, float(np.sum((v - mean) ** 2)), hist)


def merge_moments(*parts: Moments) -> Moments:
    """Moments of the union of disjoint value sets (Chan et al. pairwise update)."""
    n, mean, m2 = 0, 0.0, 0.0
    hist = np.zeros(NBINS, dtype=np.int64)
    for part in parts:
        hist += part.hist
        if part.n == 0:
            continue
        total = n + part.n
        delta = part.mean - mean
        mean += delta * part.n / total
        m2 += part.m2 + delta * delta * n * part.n / total
        n = total
    return Moments(n, mean, m2, hist)


def start_clip(moments: Moments) -> ClipState:
    """Clipping state before the first pass (all finite non-zero weights kept)."""
    return ClipState(np.float32(-np.inf), np.float32(np.inf), moments, done=moments.n == 0)


def _middle_ranks(n: int) -> tuple[int, ...]:
    return ((n - 1) // 2,) if n % 2 else (n // 2 - 1, n // 2)


def median_bins(state: ClipState) -> tuple[int, ...]:
    """High-16-bit key bins holding the middle rank(s) of the kept values (none when done)."""
    if state.done or state.iteration >= MAXITERS:
        return ()
    cumulative = np.cumsum(state.moments.hist)
    return tuple(sorted({int(np.searchsorted(cumulative, r, side="right")) for r in _middle_ranks(state.moments.n)}))


def tile_low_hist(weight: np.ndarray, lo: np.float32, hi: np.float32, bins: tuple[int, ...]) -> np.ndarray:
    """Low-16-bit key histograms ``(len(bins), 65536)`` of a tile's kept weights in ``bins``."""
    out = np.zeros((len(bins), NBINS), dtype=np.int64)
    if not bins:
        return out
    keys = _keys(_selected(weight, lo, hi))
    high = keys >> np.uint32(16)
    for k, b in enumerate(bins):
        low = (keys[high == b] & np.uint32(0xFFFF)).astype(np.intp)
        out[k] = np.bincount(low, minlength=NBINS)
    return out


def clip_bounds(state: ClipState, bins: tuple[int, ...], low: np.ndarray) -> ClipState:
    """One clipping pass: median (exact, float32 as numpy) and std (ddof 0) of the kept
    values give ``median -/+ 3 std``; the kept interval becomes its intersection with it."""
    if not bins:
        return replace(state, done=True)
    m = state.moments
    cumulative = np.cumsum(m.hist)
    values = []
    for r in _middle_ranks(m.n):
        b = int(np.searchsorted(cumulative, r, side="right"))
        before = int(cumulative[b - 1]) if b > 0 else 0
        lowcum = np.cumsum(low[bins.index(b)])
        key = (b << 16) | int(np.searchsorted(lowcum, r - before, side="right"))
        values.append(_from_key(key))
    centre = values[0] if len(values) == 1 else (values[0] + values[1]) / np.float32(2)
    std = np.float32(math.sqrt(m.m2 / m.n))
    lo = centre - std * np.float32(SIGMA)
    hi = centre + std * np.float32(SIGMA)
    return replace(state, lo=max(state.lo, lo), hi=min(state.hi, hi), iteration=state.iteration + 1)


def advance_clip(previous: Moments, state: ClipState, moments: Moments | None) -> ClipState:
    """Take the moments of the values kept by the new bounds; stop when none were clipped."""
    if state.done or moments is None:
        return replace(state, done=True)
    return replace(state, moments=moments, done=moments.n == previous.n)


def weight_threshold(state: ClipState, maskpt: float) -> float:
    """``maskpt`` times the mean of the clipped weights (NaN when there are none)."""
    if state.moments.n == 0:
        return float("nan")
    return float(np.float64(state.moments.mean) * maskpt)


def masked_median(sci: np.ndarray, wht: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Nan-median over axis 0 of ``sci`` (stack, y, x) after masking weights below each
    image's threshold (float64 comparison, as jwst); float32 out, NaN where nothing is left."""
    stack = np.array(sci, dtype=np.float32, copy=True)
    low = np.asarray(wht) < np.asarray(thresholds, dtype=np.float64)[:, None, None]
    stack[low] = np.nan
    out = np.full(stack.shape[1:], np.nan, dtype=np.float32)
    some = ~np.all(np.isnan(stack), axis=0)
    out[some] = np.nanmedian(stack[:, some], axis=0)
    return out


def blot(median: np.ndarray, pixmap: np.ndarray) -> np.ndarray:
    """Bilinear blot of a median patch at ``pixmap`` (``(ny, nx, 2)`` patch pixel x, y; NaN
    where undefined) with ``drizzle.resample.blot_image``; NaN where off the patch."""
    from drizzle.resample import blot_image

    pixmap = np.where(np.isfinite(pixmap), pixmap, -1.0)
    out = np.full(pixmap.shape[:2], np.nan, dtype=np.float32)
    blot_image(np.ascontiguousarray(median, dtype=np.float32), np.ascontiguousarray(pixmap), out_img=out,
               fillval=np.nan, iscale=1.0, interp="linear")
    return out


def abs_deriv(image: np.ndarray) -> np.ndarray:
    """Largest absolute difference of each pixel with its finite 4-neighbours (0 if none;
    NaN where the pixel is NaN)."""
    out = np.zeros_like(image)
    out[np.isnan(image)] = np.nan
    with np.errstate(invalid="ignore"):
        dy = np.abs(np.diff(image, axis=0))
        np.putmask(out[1:], np.isfinite(dy), dy)
        upper = out[:-1]
        np.putmask(upper, dy > upper, dy)
        dx = np.abs(np.diff(image, axis=1))
        right = out[:, 1:]
        np.putmask(right, dx > right, dx)
        left = out[:, :-1]
        np.putmask(left, dx > left, dx)
    return out


def flag_resampled(sci: np.ndarray, err: np.ndarray, blotted: np.ndarray, snr1: float, snr2: float,
                   scale1: float, scale2: float, backg: float) -> np.ndarray:
    """Outlier mask: ``|S - B - bg| > scale * |dB| + snr * ERR`` for (snr1, scale1), dilated
    3x3, AND the same test with (snr2, scale2). SCI, ERR, blot in the same units."""
    err = np.nan_to_num(err)
    deriv = abs_deriv(blotted)
    with np.errstate(invalid="ignore"):
        diff = np.abs(sci - blotted - backg)
        mask1 = np.greater(diff, scale1 * deriv + snr1 * err)
        mask2 = np.greater(diff, scale2 * deriv + snr2 * err)
    grown = ndimage.convolve(mask1, np.ones((3, 3), dtype=int), mode="nearest")
    return grown & mask2


def flag_direct(sci: np.ndarray, err: np.ndarray, median: np.ndarray, snr: float) -> np.ndarray:
    """Outlier mask without resampling: ``|S - median| > snr * ERR``."""
    with np.errstate(invalid="ignore"):
        return np.greater(np.abs(sci - median), snr * np.nan_to_num(err))
