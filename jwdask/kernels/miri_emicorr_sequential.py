"""emicorr kernels (MIRI), "sequential" algorithm of jwst 3.0 (spec §6.3).

For one EMI frequency (period ``P`` pixel-clock ticks):

1. :func:`cleaned_frames` (per integration, **whole frame**): subtract a straight-line fit to
   groups 1 .. NGROUPS-2 and a self-superbias (median, or minimum for <= 2 groups, of those
   groups), average the four amplifiers (columns ``4k .. 4k+3``), replace the bad reference
   column blocks ``k = 1, 2`` by the mean of blocks 0 and 3, and subtract each frame's median;
2. :func:`phase_amplitudes` (one task over the first ``nints_to_phase`` integrations): fold
   the cleaned samples by their EMI phase into ``nbins`` bins and take sigma-clipped means;
3. :func:`lookup_table`: resample the binned wave to ``P`` samples, or (with a reference
   waveform) find the reference's best circular shift by correlation, optionally scale it to
   the binned wave, and use that;
4. :func:`subtract_table` (per (y, x) tile): subtract ``table[int(phase * P)]`` from every
   sample of all four amplifiers.

Sample read times follow jwst: rows ``rowclocks`` apart, column block ``k`` at
``k * nsamples``, frames ``ny * rowclocks + (1024 - ny) * 7`` apart, integrations
``frameclocks`` further apart for FASTR1/SLOWR1, and **[quirk]** in windows whose last column
block is 258 (full frame) that block is ``2**32 + 3`` ticks later.

REQUIRED_TILE: step 1 needs the whole (group, y, x) cube of one integration; step 2 the
cleaned cubes of the phased integrations (8 bytes x NGROUPS x ny x nx/4 each) in one task;
step 4 any (y, x) tile with all integrations and groups and window-relative indices.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from astropy.stats import sigma_clipped_stats

__all__ = ["REQUIRED_TILE", "SUBARRAY_CLOCKS", "SequentialResult", "cleaned_frames", "fold", "late_block",
           "lookup_table", "nints_to_phase", "phase_amplitudes", "sample_phase", "subtract_table"]

REQUIRED_TILE = ("cleaning: one integration's whole (group, y, x) cube; folding: the cleaned "
                 "cubes of the phased integrations; subtraction: any (y, x) tile")

SUBARRAY_CLOCKS: dict[str, tuple[int, int]] = {
    "SLITLESSPRISM": (28, 15904), "MASKLYOT": (90, 32400), "SUB64": (28, 8512), "SUB128": (44, 11904),
    "MASK1140": (82, 23968), "MASK1550": (82, 23968), "MASK1065": (82, 23968),
    "FULL_FAST": (271, 277504), "FULL_SLOW": (2333, 2388992), "BRIGHTSKY": (162, 86528),
    "SUB256": (96, 29952),
}
"""``(rowclocks, frameclocks)`` per MIRI readout (jwst 3.0's table for on-the-fly corrections)."""

_FULL_LAST_BLOCK = 258
_LATE_TICKS = 3 + 2 ** 32


class SequentialResult(NamedTuple):
    """Output of :func:`subtract_table`."""

    sci: np.ndarray
    """Corrected ramps, float32 ``(integration, group, y, x)`` [DN]."""


def nints_to_phase(requested: int | None, use_n_cycles: int | None, *, nints: int, ngroups: int,
                   period: float, frameclocks: int) -> int:
    """Integrations folded into the phase amplitudes, as jwst chooses them.

    Examples
    --------
    >>> nints_to_phase(None, 3, nints=10, ngroups=5, period=256.0, frameclocks=8512)
    1
    >>> nints_to_phase(20, 3, nints=10, ngroups=5, period=256.0, frameclocks=8512)
    10
    """
    if requested is None and use_n_cycles is None:
        return nints
    if requested is None:
        return int(np.ceil((use_n_cycles * period) / (frameclocks * ngroups)))
    if use_n_cycles == 3 and requested > nints:
        return nints
    return requested


def _sloper(data: np.ndarray) -> np.ndarray:
    """Per-pixel least-squares slope per group of a ``(group, y, x)`` stack (float64)."""
    n = data.shape[0]
    times = np.arange(n) * 1.0
    sxy = np.zeros(data.shape[1:])
    sx = np.zeros(data.shape[1:])
    sy = np.zeros(data.shape[1:])
    sxx = np.zeros(data.shape[1:])
    for k in range(n):
        sxy = sxy + times[k] * data[k]
        sx = sx + times[k]
        sy = sy + data[k]
        sxx = sxx + times[k] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return (n * sxy - sx * sy) / (n * sxx - sx * sx)


def cleaned_frames(sci: np.ndarray) -> np.ndarray:
    """Source- and bias-free, amplifier-averaged frames of one integration.

    Parameters
    ----------
    sci : ndarray
        float32 ``(group, y, x)`` [DN], the whole window, ``x`` divisible by 4.

    Returns
    -------
    ndarray
        float64 ``(group, y, x / 4)`` [DN], each frame with its median removed.
    """
    ngroups, _, nx = sci.shape
    middle = sci[1:ngroups - 1]
    slope = _sloper(middle)
    data = np.empty(sci.shape, np.float32)
    for g in range(ngroups):
        data[g] = sci[g] - slope * g
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        stack = data[1:ngroups - 1]
        bias = np.nanmin(stack, axis=0) if stack.shape[0] <= 2 else np.nanmedian(stack, axis=0)
    out = np.empty((ngroups, sci.shape[1], nx // 4))
    for g in range(ngroups):
        frame = data[g] - bias
        dd = (frame[:, 0:nx:4] + frame[:, 1:nx:4] + frame[:, 2:nx:4] + frame[:, 3:nx:4]) / 4.0
        dd[:, 1] = (dd[:, 0] + dd[:, 3]) / 2
        dd[:, 2] = (dd[:, 0] + dd[:, 3]) / 2
        out[g] = dd - np.median(dd)
    return out


def sample_phase(integration: np.ndarray | int, group: np.ndarray | int, rows: np.ndarray, cols: np.ndarray, *,
                 ny: int, ngroups: int, nsamples: int, rowclocks: int, frameclocks: int,
                 late_block: int | None, period: float) -> np.ndarray:
    """Phase [0-1) of samples at (integration, group, window row, window column).

    ``frameclocks`` is the gap between integrations (0 unless READPATT ends in R1);
    ``late_block`` is the column block read late (:func:`late_block`), or None.
    """
    frame = ny * rowclocks + int((1024 - ny) * 7)
    block = np.asarray(cols, np.int64) // 4
    ticks = (np.asarray(integration, np.int64) * (ngroups * frame + frameclocks)
             + np.asarray(group, np.int64) * frame + np.asarray(rows, np.int64) * rowclocks + block * nsamples)
    if late_block is not None:
        ticks = ticks + np.where(block == late_block, _LATE_TICKS, 0)
    turns = ticks.astype(np.float64) / period
    return turns - np.floor(turns)


def late_block(xstart: int, xsize: int, nx: int) -> int | None:
    """The window's last column block (``nx / 4 - 1``) when jwst delays it, i.e. when
    ``SUBSIZE1 / 4 + SUBSTRT1 - 1 == 258`` (the full frame); else None.

    Examples
    --------
    >>> late_block(1, 1032, 1032), late_block(1, 72, 72)
    (257, None)
    """
    if int(xsize / 4 + xstart - 1) == _FULL_LAST_BLOCK:
        return int(nx / 4) - 1
    return None


def fold(cleaned: list[np.ndarray], *, nbins: int, ngroups: int, nsamples: int, rowclocks: int,
         frameclocks: int, late_block: int | None, period: float) -> np.ndarray:
    """:func:`phase_amplitudes` of the cleaned cubes of integrations ``0 .. len(cleaned) - 1``."""
    stack = np.stack(cleaned)
    n, _, ny, nx4 = stack.shape
    phases = sample_phase(np.arange(n)[:, None, None, None], np.arange(ngroups)[None, :, None, None],
                          np.arange(ny)[None, None, :, None], (4 * np.arange(nx4))[None, None, None, :],
                          ny=ny, ngroups=ngroups, nsamples=nsamples, rowclocks=rowclocks,
                          frameclocks=frameclocks, late_block=late_block, period=period)
    return phase_amplitudes(stack, phases, nbins)


def phase_amplitudes(cleaned: np.ndarray, phases: np.ndarray, nbins: int) -> np.ndarray:
    """Sigma-clipped mean of the cleaned samples in each of ``nbins`` phase bins, minus the
    median over bins (float64 ``(nbins,)``, [DN])."""
    pa = np.arange(nbins, dtype=float)
    for nb in range(nbins):
        inside = (phases > nb / nbins) & (phases <= (nb + 1) / nbins)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pa[nb] = sigma_clipped_stats(cleaned[inside])[0]
    return pa - np.median(pa)


def _rebin(values: np.ndarray, size: float) -> np.ndarray:
    """Nearest-lower-sample resampling of a 1-D array to ``size`` samples (IDL ``congrid``)."""
    old = values.shape[0]
    index = np.mgrid[slice(0, old, float(old) / size)].astype("i")
    return values[index]


def lookup_table(pa: np.ndarray, period: float, refwave: np.ndarray | None = None, *,
                 scale_reference: bool = True) -> np.ndarray:
    """The noise per phase sample, ``~period`` long [DN]: the binned wave itself, or the
    reference waveform shifted to it (and scaled with ``scale_reference``)."""
    table = _rebin(pa, period)
    if refwave is None:
        return table
    refwave = np.asarray(refwave)
    binned = _rebin(pa, refwave.size)
    cc = np.zeros(refwave.size)
    for shift in range(refwave.size):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cc[shift] = np.corrcoef(np.roll(refwave, shift), binned)[0, 1]
    shifted = _rebin(np.roll(refwave, np.argmax(cc)), period)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        slope, _ = np.polyfit(shifted, table, 1)
    return shifted * slope if scale_reference else shifted


def subtract_table(sci: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, table: np.ndarray, ny: int,
                   nsamples: int, rowclocks: int, frameclocks: int, late_block: int | None,
                   period: float) -> SequentialResult:
    """Subtract ``table[int(phase * period)]`` from every sample of a tile (non-finite -> 0).

    Parameters
    ----------
    sci : ndarray
        float32 ``(integration, group, y, x)`` [DN].
    rows, cols : ndarray
        int ``(y, x)``: window-relative row and column.
    table : ndarray
        From :func:`lookup_table`.
    ny, nsamples, rowclocks, frameclocks, late_block, period
        Timing, as for :func:`sample_phase`.
    """
    nints, ngroups = sci.shape[:2]
    out = np.empty(sci.shape, np.float32)
    for i in range(nints):
        for g in range(ngroups):
            phase = sample_phase(i, g, rows, cols, ny=ny, ngroups=ngroups, nsamples=nsamples,
                                 rowclocks=rowclocks, frameclocks=frameclocks, late_block=late_block,
                                 period=period)
            noise = table[(phase * period).astype(int)]
            noise[~np.isfinite(noise)] = 0.0
            out[i, g] = (sci[i, g] - noise).astype(np.float32)
    return SequentialResult(sci=out)
