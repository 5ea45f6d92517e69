"""MIRI shower flagging (jump ``find_showers``; spec §6.12.10; jwst 3.0 + stcal 1.20).

stcal's ``find_faint_extended`` works in electrons (``E = SCI * gain``, float32):

1. gate: skipped (GROUPDQ unchanged) when ``NINTS * (NGROUPS - 1)`` minus the number of
   (integration, group) planes that are DO_NOT_USE in every pixel is below 10;
2. ``E`` is NaN where GROUPDQ equals exactly 1, 2, 3, 4 or 5 (DO_NOT_USE, SATURATED,
   JUMP_DET and their pairs with DO_NOT_USE); pixels whose PIXELDQ equals exactly
   REFERENCE_PIXEL get DO_NOT_USE in every group of a working copy of GROUPDQ;
3. per pixel, group differences ``d``; ``ratio = |d - median(d)| / sqrt(|median| + rn^2 /
   NFRAMES)`` (median over all integrations and groups), or, with NINTS >=
   ``minimum_sigclip_groups``, ``|d - median| / std`` from astropy's ``sigma_clipped_stats``
   (sigma 5) across integrations; NaN where the working GROUPDQ of the group or PIXELDQ has
   JUMP_DET, SATURATED or DO_NOT_USE;
4. for each plane after the integration's first group that is not DO_NOT_USE everywhere: the
   ratio is convolved with an astropy ``Ring2DKernel(extend_inner_radius,
   extend_outer_radius)`` (NaN-aware, normalised by the kernel weight on valid pixels, the
   outside of the frame counting as valid zeros; scipy ``oaconvolve``), thresholded at
   ``extend_snr_threshold``; 8-connected regions with a hole-filled area >= ``extend_min_area``
   are showers;
5. every shower ellipse (grown by ``extend_ellipse_expand_ratio``, capped at
   ``2 * max_extended_radius``) gets JUMP_DET in its group and the next ``groups_masked``
   groups, except on pixels SATURATED in that group or an earlier one of the run;
6. per integration and pixel, if the mean group difference with the new flags differs from
   the one with the input flags by more than ``max_shower_amplitude * TGROUP`` [e-/group] or
   is not finite, the pixel's input GROUPDQ of that integration is restored.

Tiled design (tiled results equal the whole frame): steps 2-3 and 6 are per pixel and run
per (y, x) tile (:func:`shower_ratios`, :func:`apply_showers`), the latter rasterising the
shower events with :func:`jwdask.kernels.large_events.apply_events`, exactly per pixel. Step
4 needs the whole plane (regions can span the frame and stcal's FFT convolution depends on
the whole plane), so :func:`shower_events` runs once per (integration, group) plane on the
full-frame ratio assembled from the tiles, bit-identical to what stcal convolves. The gate
and the first usable group come from whole-frame DO_NOT_USE plane tables (:func:`dnu_planes`,
a lazy reduction over the tiles).

Step 3 (median path) is compiled and fused per pixel with NumPy's float32 operations (the
median of an even count is ``float32(low + high) / 2``), so ratios are bit-identical to
stcal's; the sigma-clipping path calls astropy as stcal does.
"""

from __future__ import annotations

import warnings
from typing import Any

import numba
import numpy as np
from astropy.convolution import Ring2DKernel

from jwdask import dqflags
from jwdask.kernels.large_events import (
    apply_events,
    exact_shape,
    find_regions,
    jump_ellipse_event,
)

__all__ = ["MIN_DIFFS_FOR_SHOWER", "STCAL_MAX_SHOWER_AMPLITUDE", "apply_showers", "dnu_planes",
           "first_good_group", "gate_open", "shower_events", "shower_ratios"]

DNU = dqflags.DO_NOT_USE
SAT = dqflags.SATURATED
JUMP = dqflags.JUMP_DET
REF = dqflags.REFERENCE_PIXEL
FLAGGED = DNU | SAT | JUMP

MIN_DIFFS_FOR_SHOWER = 10
"""Usable differences (whole exposure) below which stcal does not look for showers."""

STCAL_MAX_SHOWER_AMPLITUDE = 6.0
"""[DN/s] the shower amplitude limit that runs in jwst 3.0: JumpStep declares
``max_shower_amplitude = 4`` but never passes it to stcal, whose default is 6 [quirk]."""


def dnu_planes(groupdq: Any, pixeldq: Any) -> tuple[Any, Any]:
    """The whole frame's DO_NOT_USE planes, bool ``(integration, group)`` each: those of the
    input GROUPDQ (the gate) and those of the working GROUPDQ in which reference pixels are
    DO_NOT_USE (first usable group). Works on NumPy and Dask arrays (a lazy reduction)."""
    dnu = (groupdq & DNU) != 0
    ref = pixeldq == REF
    return dnu.all(axis=(2, 3)), (dnu | ref[None, None]).all(axis=(2, 3))


def gate_open(planes: np.ndarray) -> bool:
    """stcal's gate from the input GROUPDQ's DO_NOT_USE planes (first of :func:`dnu_planes`)."""
    nints, ngroups = planes.shape
    return nints * (ngroups - 1) - int(np.sum(planes)) >= MIN_DIFFS_FOR_SHOWER


def first_good_group(planes: np.ndarray, integration: int) -> int:
    """First group of ``integration`` that is not DO_NOT_USE everywhere in the working GROUPDQ
    (second of :func:`dnu_planes`); 0 if there is none."""
    good = np.flatnonzero(~np.asarray(planes)[integration])
    return int(good[0]) if good.size else 0


def shower_ratios(sci: np.ndarray, groupdq: np.ndarray, pixeldq: np.ndarray, readnoise: np.ndarray,
                  gain: np.ndarray, *, nframes: int, minimum_sigclip_groups: int = 100) -> np.ndarray:
    """Masked difference ratios of a tile (steps 2-3), float32 ``(integration, group, y, x)``
    like stcal's: group g holds the ratio of the difference ``E[g] - E[g-1]``; group 0 is NaN.

    ``sci`` [DN], ``readnoise`` [DN] and ``gain`` [e-/DN] are converted to electrons in
    float32 as stcal does; NaN marks masked differences.
    """
    gain = np.asarray(gain, np.float32)
    gdq = np.asarray(groupdq, np.uint8)
    pdq = np.asarray(pixeldq, np.uint32)
    if gdq.shape[0] < minimum_sigclip_groups:
        out = np.empty(gdq.shape, np.float32)
        _median_ratios(np.asarray(sci, np.float32), gdq, pdq, np.asarray(readnoise, np.float32), gain,
                       int(nframes), out)
        return out
    from astropy.stats import sigma_clipped_stats

    data = np.asarray(sci, np.float32) * gain
    data[(gdq >= 1) & (gdq <= JUMP | DNU)] = np.nan  # GROUPDQ exactly 1, 2, 3, 4 or 5
    diffs = np.diff(data, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, median, stddev = sigma_clipped_stats(diffs, sigma=5, axis=0)
        ratio = np.abs(diffs - median[np.newaxis]) / stddev[np.newaxis]
    work = gdq | np.where(pdq == REF, DNU, 0).astype(np.uint8)
    masked = ((work[:, 1:] | pdq[np.newaxis, np.newaxis]) & FLAGGED) != 0
    ratio[masked] = np.nan
    out = np.full(gdq.shape, np.nan, ratio.dtype)
    out[:, 1:] = ratio
    return out


_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _median_of(buf, m):
    """``np.nanmedian`` of the float32 values ``buf[:m]`` (sorted in place; NaN if none)."""
    for i in range(1, m):
        v = buf[i]
        j = i - 1
        while j >= 0 and buf[j] > v:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = v
    if m == 0:
        return np.float32(np.nan)
    h = m // 2
    if m % 2:
        return buf[h]
    return np.float32(buf[h - 1] + buf[h]) / np.float32(2)


@_jit
def _median_ratios(sci, gdq, pdq, readnoise, gain, nframes, out):
    """The NumPy float32 arithmetic of stcal's ratio, fused per pixel (see
    :func:`shower_ratios`); ``out`` is float32 like ``sci`` and is filled entirely."""
    nints, ngroups, ny, nx = sci.shape
    ndiff = ngroups - 1
    e = np.empty(ngroups, np.float32)
    d = np.empty(nints * ndiff, np.float32)
    buf = np.empty(nints * ndiff, np.float32)
    nan32 = np.float32(np.nan)
    for y in range(ny):
        for x in range(nx):
            g32 = gain[y, x]
            m = 0
            for i in range(nints):
                for g in range(ngroups):
                    q = gdq[i, g, y, x]
                    e[g] = nan32 if (q >= 1 and q <= 5) else sci[i, g, y, x] * g32
                for k in range(ndiff):
                    v = e[k + 1] - e[k]
                    d[i * ndiff + k] = v
                    if not np.isnan(v):
                        buf[m] = v
                        m += 1
            med = _median_of(buf, m)
            rn = readnoise[y, x] * g32
            sigma = np.sqrt(np.float32(abs(med) + np.float32(rn * rn) / np.float32(nframes)))
            ref = pdq[y, x] == REF
            pix = pdq[y, x] & FLAGGED
            for i in range(nints):
                out[i, 0, y, x] = nan32
                for k in range(ndiff):
                    q = gdq[i, k + 1, y, x]
                    if ref or (q | pix) & FLAGGED:
                        out[i, k + 1, y, x] = nan32
                    else:
                        out[i, k + 1, y, x] = np.float32(abs(d[i * ndiff + k] - med)) / sigma


def _smooth(ratio: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """NaN-aware normalised convolution of a whole plane, as stcal computes it."""
    # imported here: scipy.signal costs a second at import and only showers need it
    from scipy import signal

    array = np.array(ratio, copy=True)
    good = np.isfinite(array)
    array[~good] = 0
    smoothed = signal.oaconvolve(array, kernel, mode="same")
    n = kernel.shape[0] // 2
    padded = np.ones((good.shape[0] + kernel.shape[0] - 1, good.shape[1] + kernel.shape[1] - 1))
    padded[n:-n, n:-n] = good
    norm = signal.oaconvolve(padded, kernel, mode="valid")
    good &= norm > 1e-3 * np.mean(kernel)
    with np.errstate(divide="ignore", invalid="ignore"):
        smoothed /= norm
    smoothed[~good] = np.nan
    return smoothed


def shower_events(ratio: np.ndarray, *, integration: int, group: int, ngroups: int,
                  extend_snr_threshold: float = 1.2, extend_min_area: float = 90,
                  extend_inner_radius: float = 1.0, extend_outer_radius: float = 2.6,
                  extend_ellipse_expand_ratio: float = 1.1, groups_masked: int = 0,
                  max_extended_radius: int = 200) -> np.ndarray:
    """Shower events of one whole (integration, group) plane (steps 4-5).

    Parameters
    ----------
    ratio : ndarray
        float32 ``(y, x)``: group ``group`` of :func:`shower_ratios` for the whole frame.
    integration, group, ngroups : int
        Plane position and NGROUPS (the flagged run stops at the last group).
    extend_snr_threshold : float
        [sigma] threshold of the smoothed ratio.
    extend_min_area : float
        [px] minimum hole-filled area of a shower.
    extend_inner_radius, extend_outer_radius : float
        [px] radii of the ring kernel.
    extend_ellipse_expand_ratio : float
        Growth factor of the shower ellipse.
    groups_masked : int
        Later groups also flagged (``int(time_masked_after_shower // TGROUP)``).
    max_extended_radius : int
        [px] caps the grown ellipse at full axes of ``2 * max_extended_radius``.

    Returns
    -------
    ndarray
        float64 event table (:data:`jwdask.kernels.large_events.EVENT_COLUMNS`).
    """
    ratio = np.asarray(ratio)
    kernel = Ring2DKernel(extend_inner_radius, extend_outer_radius).array
    emission = _smooth(ratio, kernel) > extend_snr_threshold
    regions = find_regions(emission, extend_min_area)
    rows = []
    stop = min(group + groups_masked + 1, ngroups)
    for j in range(regions.index.size):
        h, w, alpha = exact_shape(regions, j)
        ev = jump_ellipse_event(integration, group, stop, float(regions.col[j]), float(regions.row[j]),
                                h, w, alpha, extend_ellipse_expand_ratio, 2 * max_extended_radius,
                                ratio.shape)
        if ev is not None:
            rows.append(ev)
    return np.asarray(rows, np.float64).reshape(-1, 14)


def apply_showers(sci: np.ndarray, groupdq: np.ndarray, pixeldq: np.ndarray, gain: np.ndarray,
                  events: np.ndarray, *, group_time: float,
                  max_shower_amplitude: float = STCAL_MAX_SHOWER_AMPLITUDE,
                  origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Flag the shower ``events`` in a GROUPDQ tile whose first pixel is ``origin`` (row,
    column) and undo them where they change the mean group difference by more than
    ``max_shower_amplitude`` [DN/s] ``* group_time`` [s] (compared in e-/group, as stcal
    does) or make it non-finite (step 6).

    Returns
    -------
    ndarray
        uint8 ``(integration, group, y, x)``.
    """
    ingdq = np.asarray(groupdq, np.uint8)
    out = apply_events(ingdq, events, origin)
    if out.shape[1] < 2:
        return out
    data = np.asarray(sci, np.float32) * np.asarray(gain, np.float32)
    limit = max_shower_amplitude * group_time
    ref = np.asarray(pixeldq) == REF
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for i in range(out.shape[0]):
            change = np.abs(_mean_difference(data[i], ingdq[i]) - _mean_difference(data[i], out[i]))
            restore = ~np.isfinite(change) | (change > limit) | ref
            out[i][:, restore] = ingdq[i][:, restore]
    return out


def _mean_difference(data: np.ndarray, gdq: np.ndarray) -> np.ndarray:
    """``np.nanmean(np.diff(data), axis=0)`` [e-/group] of one integration with groups flagged
    DO_NOT_USE, SATURATED or JUMP_DET as NaN: the same float32 sum and division, without
    NumPy's warnings (not thread-safe to silence under Dask threads)."""
    values = data.copy()
    values[(gdq & FLAGGED) != 0] = np.nan
    diff = np.diff(values, axis=0)
    bad = np.isnan(diff)
    diff[bad] = 0
    return np.true_divide(np.sum(diff, axis=0), np.sum(~bad, axis=0, dtype=np.intp), dtype=diff.dtype)
