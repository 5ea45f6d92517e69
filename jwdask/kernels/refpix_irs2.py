"""NIRSpec IRS2 reference correction (jwst 3.0 ``irs2_subtract_reference``), one integration.

An IRS2 frame is read by 4 amplifiers plus a reference output: in detector orientation each
of the 2048 rows holds 5 sectors of 640 samples (the reference output first, then outputs
1..4, reading directions alternating). Within an amplifier sector, after ``scipix_n // 2``
normal pixels, blocks of ``refpix_r`` interleaved reference samples alternate with
``scipix_n`` normal pixels; 3200 raw columns carry 2048 normal ones. The correction:

1. (DMS orientation, :func:`flag_bad_reference_rows`, :func:`replace_bad_reference_rows`)
   pairs of interleaved reference samples whose mean absolute difference, mean or standard
   deviation is an outlier (sigma-clipped statistics per amplifier and integration) are
   flagged; flagged samples take the mean of the same sample one block earlier and later
   (else one of them, else a good neighbour of the same block two samples away, else 0).
2. (detector orientation) the reference file's ``DQ`` table masks more interleaved columns,
   replaced the same way, one table row after the other (:func:`mask_interleaved_columns`).
3. (:func:`subtract_irs2`) the per-pixel mean over the ramp is removed; every sector becomes
   a time series of ``2048 x 712`` samples (readout order, with zero gaps for the jump and
   new-row overheads); a straight line in time fitted to the top and bottom 4 rows is removed
   from each sector and group; the reference output's gaps are filled (cosine-weighted
   interpolation, then 3 passes of a Fourier low-pass); per amplifier, the interleaved
   reference samples (spread over the gaps) and the reference output are Fourier transformed,
   combined as ``beta * refpix + alpha * refout`` with the reference file's coefficients, and
   transformed back; that estimate is subtracted from the normal pixels; the ramp mean is
   added back. Unless ``preserve_refpix``, the interleaved columns and the reference output
   are dropped, leaving 2048 x 2048.

Every FFT spans a whole sector of a whole frame, so a task holds one whole integration
(``(group, 3200, 2048)`` float32 and about 3 times that in work arrays).
Precision follows jwst: float32 samples, complex64 FFTs, float64 ramp means, so results are
bit-identical on the same numpy/scipy.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np
from astropy.stats import sigma_clipped_stats
from scipy.ndimage import convolve1d
from scipy.stats import sigmaclip

from jwdask import dqflags
from jwdask.refs.irs2 import Irs2DqTable, Irs2Reference

log = logging.getLogger(__name__)

SECTORS = 5
"""Reference output plus 4 amplifiers."""
ROWS = 2048
"""Detector rows (DMS columns) of an IRS2 frame."""
NORMAL = 512
"""Normal pixels per amplifier and row."""
PAD = 8
"""New-row overhead [samples] appended to every row of the time series."""
FILTER_PASSES = 3
"""Fourier low-pass passes that fill the reference output's gaps."""
EDGE_ROWS = np.array([0, 1, 2, 3, ROWS - 4, ROWS - 3, ROWS - 2, ROWS - 1], dtype=np.intp)
"""Detector rows (reference rows) whose samples fit the per-sector time slope."""


class Irs2Layout(NamedTuple):
    """Where the samples of one sector go (``scipix_n``/``refpix_r`` = NRS_NORM/NRS_REF)."""

    scipix_n: int
    refpix_r: int
    width: int
    """Raw columns in detector orientation (3200)."""
    row: int
    """Samples per row of a sector's time series (712 for 16/4)."""
    normal: np.ndarray
    """bool ``(width,)``: detector columns of normal pixels (jwst ``irs2_mask``)."""
    hnorm: np.ndarray
    """Sector column of each normal pixel."""
    href: np.ndarray
    """Sector column of each interleaved reference sample."""
    hnorm1: np.ndarray
    """Time-series position of each normal pixel."""
    href1: np.ndarray
    """Time-series position of each interleaved reference sample."""
    unpad: np.ndarray
    """Time-series positions of every sector column, in column order."""
    spread_to: np.ndarray
    """Time-series positions that receive interleaved reference samples (gaps included)."""
    spread_from: np.ndarray
    """Time-series positions of the reference samples copied to ``spread_to``."""


def normal_columns(width: int, scipix_n: int, refpix_r: int) -> np.ndarray:
    """bool ``(width,)``: True at raw detector columns holding normal pixels.

    The reference output (first fifth) and every block of ``refpix_r`` interleaved samples
    (from ``scipix_n // 2`` in each sector, every ``scipix_n + refpix_r``) are False. Each
    sector holds a whole number of periods plus ``scipix_n // 2`` normal pixels at both ends,
    so the blocks sit at the same columns in both reading directions.
    """
    sector = width // SECTORS
    mask = np.ones(width, dtype=bool)
    mask[:sector] = False
    for start in range(sector + scipix_n // 2, width, scipix_n + refpix_r):
        mask[start:start + refpix_r] = False
    return mask


def irs2_layout(scipix_n: int = 16, refpix_r: int = 4, width: int = 3200, height: int = ROWS) -> Irs2Layout:
    """The :class:`Irs2Layout` of a readout.

    Raises
    ------
    ValueError
        If ``refpix_r`` is odd or not positive, ``scipix_n`` not a positive even divisor of 512,
        or the frame is not ``height`` 2048 by ``width`` 5 x 640.
    """
    if refpix_r <= 0 or refpix_r % 2 or scipix_n <= 0 or scipix_n % 2 or NORMAL % scipix_n:
        msg = f"NRS_NORM={scipix_n} / NRS_REF={refpix_r}: need an even NRS_REF and an even NRS_NORM dividing 512"
        raise ValueError(msg)
    if height != ROWS or width != SECTORS * (NORMAL + NORMAL // scipix_n * refpix_r):
        msg = (f"IRS2 frame of {height} x {width} detector pixels, expected {ROWS} x "
               f"{SECTORS * (NORMAL + NORMAL // scipix_n * refpix_r)} for NRS_NORM={scipix_n}, NRS_REF={refpix_r}")
        raise ValueError(msg)
    row = (scipix_n + refpix_r + 2) * NORMAL // scipix_n + PAD
    ind_n = np.arange(NORMAL, dtype=np.intp)
    ind_ref = np.arange(NORMAL // scipix_n * refpix_r, dtype=np.intp)
    block_n = (ind_n + scipix_n // 2) // scipix_n
    block_r = ind_ref // refpix_r
    hnorm = ind_n + refpix_r * block_n
    href = ind_ref + scipix_n * block_r + scipix_n // 2
    hnorm1 = ind_n + (refpix_r + 2) * block_n
    href1 = ind_ref + (scipix_n + 2) * block_r + scipix_n // 2 + 1
    spread_to, spread_from = _spread(scipix_n, refpix_r)
    return Irs2Layout(scipix_n=scipix_n, refpix_r=refpix_r, width=width, row=row,
                      normal=normal_columns(width, scipix_n, refpix_r), hnorm=hnorm, href=href,
                      hnorm1=hnorm1, href1=href1, unpad=np.sort(np.concatenate([hnorm1, href1])),
                      spread_to=spread_to, spread_from=spread_from)


def _spread(scipix_n: int, refpix_r: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of each block's reference samples widened by half a block on both sides
    (over the jump gaps and the nearest normal pixels), and which reference sample of the
    block (same parity, alternating) fills each."""
    blocks = NORMAL // scipix_n
    stride = scipix_n + refpix_r + 2
    first_ref = scipix_n // 2 + 1
    half = refpix_r // 2
    lo, hi = first_ref - half, first_ref + refpix_r + half
    cols = np.arange(lo, hi)
    pairs = np.arange(refpix_r).reshape(2, half).T
    order = np.concatenate([pairs, pairs], axis=1).ravel() + first_ref
    base = (np.arange(blocks) * stride)[:, None]
    spread_to = (base + cols[None, :]).ravel().astype(np.intp)
    source = (base + order[None, :]).ravel().astype(np.intp)
    if refpix_r % 4 == 2:
        source = source.reshape(-1, 2)[:, ::-1].ravel()
    return spread_to, source


def interleaved_positions(size: int, scipix_n: int, refpix_r: int, amplifiers: range | None = None) -> np.ndarray:
    """bool ``(size,)``: the interleaved reference samples of every sector (the reference
    output included), at ``scipix_n // 2 + k * (scipix_n + refpix_r)`` from each sector start."""
    sector = size // SECTORS
    out = np.zeros(size, dtype=bool)
    for amp in amplifiers if amplifiers is not None else range(SECTORS):
        for start in range(amp * sector + scipix_n // 2, (amp + 1) * sector, scipix_n + refpix_r):
            out[start:start + refpix_r] = True
    return out


def flag_bad_reference_rows(sci: np.ndarray, known_bad: np.ndarray, *, scipix_n: int, refpix_r: int,
                            n_sigma: float) -> np.ndarray:
    """Interleaved reference rows (DMS) that behave as outliers in one integration.

    Parameters
    ----------
    sci : ndarray
        float32 ``(group, 3200, 2048)`` [DN], DMS orientation.
    known_bad : ndarray
        bool ``(3200,)``: rows already marked BAD_REF_PIXEL (excluded from the statistics).
    scipix_n, refpix_r : int
        NRS_NORM and NRS_REF.
    n_sigma : float
        Clipping and flagging threshold [standard deviations] (``ovr_corr_mitigation_ftr``).

    Returns
    -------
    ndarray
        bool ``(3200,)``: ``known_bad`` plus both rows of every outlying pair.
    """
    size = sci.shape[-2]
    sector = size // SECTORS
    period = scipix_n + refpix_r
    bad = known_bad.copy()
    for amp in range(SECTORS):
        firsts, diffs, means, stds = [], [], [], []
        for start in range(amp * sector + scipix_n // 2, (amp + 1) * sector, period):
            for first in range(start, start + refpix_r, 2):
                if known_bad[first:first + 2].any():
                    continue
                pair = sci[:, first:first + 2, :]
                firsts.append(first)
                diffs.append(np.mean(np.abs(sci[:, first + 1, :] - sci[:, first, :])))
                means.append(np.mean(pair))
                stds.append(np.std(pair))
        first_rows = np.array(firsts, dtype=np.intp)
        outlier = np.zeros(first_rows.size, dtype=bool)
        for values in (np.array(diffs), np.array(means), np.array(stds)):
            mean, _, std = sigma_clipped_stats(values, sigma=n_sigma)
            outlier |= (values - mean) > (n_sigma * std)
        bad[first_rows[outlier]] = True
        bad[first_rows[outlier] + 1] = True
    return bad


def _replace(data: np.ndarray, index: int, bad: np.ndarray, interleaved: np.ndarray, low: int, high: int,
             period: int) -> None:
    """Replace ``data[..., index, :]`` (rows are axis -2 of ``data``) in place: mean of the good
    samples one period before and after, else the one good, else a good interleaved sample
    two away (before, then after), else 0."""
    neighbour = None
    if index - 2 >= low and interleaved[index - 2] and not bad[index - 2]:
        neighbour = index - 2
    elif index + 2 < high and interleaved[index + 2] and not bad[index + 2]:
        neighbour = index + 2
    before = data[..., index - period, :] if index - period >= low and not bad[index - period] else None
    after = data[..., index + period, :] if index + period < high and not bad[index + period] else None
    if before is not None and after is not None:
        data[..., index, :] = (before + after) * np.float32(0.5)
    elif before is not None or after is not None:
        data[..., index, :] = before if before is not None else after
    elif neighbour is not None:
        data[..., index, :] = data[..., neighbour, :]
    else:
        data[..., index, :] = 0.0


def replace_bad_reference_rows(sci: np.ndarray, bad: np.ndarray, *, scipix_n: int, refpix_r: int) -> None:
    """Replace, in place, every ``bad`` row of float32 DMS ``sci`` (``(..., 3200, 2048)``) by
    its amplifier's good reference samples (see :func:`_replace`)."""
    size = sci.shape[-2]
    sector = size // SECTORS
    interleaved = interleaved_positions(size, scipix_n, refpix_r)
    for amp in range(SECTORS):
        low, high = amp * sector, (amp + 1) * sector
        for index in np.flatnonzero(bad[low:high]) + low:
            _replace(sci, int(index), bad, interleaved, low, high, scipix_n + refpix_r)


def _set_bits(mask: int) -> list[int]:
    return [bit for bit in range(32) if (int(mask) >> bit) & 1]


def mask_interleaved_columns(det: np.ndarray, dq: Irs2DqTable, bad_columns: np.ndarray, layout: Irs2Layout) -> None:
    """Mark and replace, in place, the interleaved columns that the reference ``DQ`` table
    names bad (rows in file order; a column already bad is left as is).

    Parameters
    ----------
    det : ndarray
        float32 ``(group, 2048, 3200)`` [DN], detector orientation (columns on axis -1).
    dq : Irs2DqTable
        The reference's bad interleaved columns: ``ODD_EVEN`` picks the first or second pair of
        a block, counted in each amplifier's reading direction.
    bad_columns : ndarray
        bool ``(3200,)`` bad detector columns; updated.
    layout : Irs2Layout
        The readout.
    """
    sector = layout.width // SECTORS
    period = layout.scipix_n + layout.refpix_r
    interleaved = ~layout.normal
    interleaved[:sector] = interleaved[2 * sector:3 * sector]
    columns_last = np.moveaxis(det, -1, -2)
    for output, odd_even, mask in zip(dq.output, dq.odd_even, dq.mask, strict=True):
        offset = int(output) * sector
        pair = 3 - int(odd_even) if int(output) % 2 == 0 else int(odd_even)
        fresh = []
        for block in _set_bits(mask):
            first = offset + layout.scipix_n // 2 + block * period + 2 * (pair - 1)
            for column in (first, first + 1):
                if not bad_columns[column]:
                    fresh.append(column)
                    bad_columns[column] = True
        for column in fresh:
            _replace(columns_last, column, bad_columns, interleaved, offset, offset + sector, period)


def _remove_slopes(series: np.ndarray) -> None:
    """Subtract, in place, from every sector and group of ``series`` (``(5, group, 2048,
    row)`` float32) the straight line in time fitted to the non-zero samples of the edge
    rows; zero samples (gaps) stay 0."""
    rows, row = series.shape[-2:]
    time = np.arange(rows * row, dtype=np.float32).reshape(rows, row)
    time -= time.mean(dtype=np.float64)
    edge_time = time[EDGE_ROWS, :]
    for sector in series:
        for plane in sector:
            edge = plane[EDGE_ROWS, :]
            used = edge != 0.0
            intercept, slope = _line(edge_time[used], edge[used])
            plane -= (intercept + time * slope) * (plane != 0.0).astype(np.int8)


def _line(x: np.ndarray, y: np.ndarray) -> tuple[np.float32 | float, np.float32 | float]:
    """Least-squares ``(intercept, slope)`` of float32 ``y(x)`` in float32 (0, 0 if empty)."""
    if x.size < 1:
        return 0.0, 0.0
    n = float(x.size)
    mean_x, mean_y = x.mean(), y.mean()
    slope = ((x * y).sum() - n * mean_x * mean_y) / ((x**2).sum() - n * mean_x**2)
    return np.float32(mean_y - slope * mean_x), np.float32(slope)


def _fill_gaps_cosine(series: np.ndarray) -> None:
    """Fill the zero samples of every group of ``series`` (``(group, 2048, row)``, the
    reference output) in place with the sine-weighted (31-sample, periodic) average of the
    non-zero ones."""
    weights = np.sin(np.arange(1, 32, dtype=np.float32) / 32.0 * np.pi)
    for plane in series:
        flat = plane.reshape(-1)
        used = (flat != 0.0).astype(np.float32)
        total = convolve1d(flat, weights, mode="wrap")
        norm = convolve1d(used, weights, mode="wrap")
        empty = norm == 0.0
        average = np.where(empty, 0.0, total) / np.where(empty, 1.0, norm)
        flat += average * (1.0 - used)


def _lowpass(length: int, row: int, scipix_n: int, refpix_r: int) -> np.ndarray:
    """float64 Fourier filter of a sector series (``length`` samples): 1 up to a cutoff,
    a half-cosine roll-off, 0 above (mirrored for negative frequencies)."""
    roll = 110000 // (scipix_n + refpix_r + 2)
    flat = row // (scipix_n + refpix_r + 2) * ROWS // 2 - roll // 2
    taper = (np.cos(np.arange(roll, dtype=np.float64) * np.pi / float(roll)) + 1.0) / 2.0
    half = np.concatenate((np.ones(flat), taper, np.zeros(length // 2 - 2 * flat - 2 * roll), taper[::-1],
                           np.ones(flat)))
    return np.concatenate((half, np.roll(half, -1)[::-1]))


def _fill_gaps_fourier(series: np.ndarray, keep: np.ndarray, lowpass: np.ndarray) -> None:
    """Replace, in place, every sample of ``series`` (``(group, 2048, row)``) outside the
    time positions ``keep`` by :data:`FILTER_PASSES` passes of the Fourier ``lowpass``."""
    kept = np.zeros(series.shape[-1], dtype=bool)
    kept[keep] = True
    kept = np.broadcast_to(kept, series.shape[-2:]).ravel()
    for plane in series:
        original = plane.ravel().copy()
        flat = original.copy()
        for _ in range(FILTER_PASSES):
            spectrum = np.fft.fft(flat)
            spectrum *= lowpass
            flat[:] = np.fft.ifft(spectrum).real
            flat[kept] = original[kept]
        plane[...] = flat.reshape(plane.shape)


def subtract_irs2(det: np.ndarray, reference: Irs2Reference, layout: Irs2Layout, *,
                  preserve_refpix: bool = False) -> np.ndarray:
    """Subtract the reference-output and interleaved-reference estimate from one integration.

    Parameters
    ----------
    det : ndarray
        float32 ``(group, 2048, 3200)`` [DN], detector orientation (not modified).
    reference : Irs2Reference
        ``alpha``/``beta`` coefficients, complex64 ``(4, 2048 * row)``.
    layout : Irs2Layout
        The readout.
    preserve_refpix : bool
        Keep the interleaved reference samples and the reference output (3200 columns).

    Returns
    -------
    ndarray
        float32 ``(group, 2048, 2048)`` [DN] normal pixels (``(group, 2048, 3200)`` with
        ``preserve_refpix``).
    """
    ngroups, rows, width = det.shape
    sector = width // SECTORS
    samples = rows * layout.row
    if reference.alpha.shape != (4, samples) or reference.beta.shape != (4, samples):
        msg = f"IRS2 coefficients {reference.alpha.shape} / {reference.beta.shape}, expected (4, {samples})"
        raise ValueError(msg)
    ramp_mean = det.sum(axis=0, dtype=np.float64) / float(ngroups)
    series = np.zeros((SECTORS, ngroups, rows, layout.row), dtype=np.float32)
    for group in range(ngroups):
        centred = (det[group] - ramp_mean).astype(np.float32)
        sectors = np.ascontiguousarray(centred.reshape(rows, SECTORS, sector).transpose(1, 0, 2))
        for reversed_sector in (0, 2, 4):
            sectors[reversed_sector] = sectors[reversed_sector, :, ::-1]
        target = series[:, group]
        target[..., layout.hnorm1] = sectors[..., layout.hnorm]
        target[..., layout.href1] = sectors[..., layout.href]
    _remove_slopes(series)
    _fill_gaps_cosine(series[0])
    _fill_gaps_fourier(series[0], layout.hnorm1, _lowpass(samples, layout.row, layout.scipix_n, layout.refpix_r))
    normalization = float(samples)
    refout = np.fft.fft(series[0].reshape(ngroups, samples), axis=1) / normalization
    kept = layout.unpad if preserve_refpix else layout.hnorm1
    for amp in range(1, SECTORS):
        refpix = np.zeros((ngroups, rows, layout.row), dtype=np.float32)
        refpix[..., layout.spread_to] = series[amp][..., layout.spread_from]
        spectrum = np.fft.fft(refpix.reshape(ngroups, samples).astype(np.complex64), axis=1) / normalization
        spectrum *= reference.beta[amp - 1]
        spectrum += reference.alpha[amp - 1] * refout
        estimate = (np.fft.ifft(spectrum, axis=1) * normalization).reshape(ngroups, rows, layout.row).real
        series[amp][..., kept] -= estimate[..., kept]
    out_sectors = series[..., kept]
    for reversed_sector in (0, 2, 4) if preserve_refpix else (2, 4):
        out_sectors[reversed_sector] = out_sectors[reversed_sector, ..., ::-1]
    frame = out_sectors.transpose(1, 2, 0, 3)
    if not preserve_refpix:
        out = frame[:, :, 1:, :].reshape(ngroups, rows, rows)
        out += ramp_mean[..., layout.normal]
        return out
    out = frame.reshape(ngroups, rows, width)
    out[..., layout.normal] += ramp_mean[..., layout.normal]
    out[..., :sector] += ramp_mean[..., :sector]
    return out


class MeanSubtraction(NamedTuple):
    """Settings of the traditional reference-mean subtraction done before the IRS2 correction
    (jwst ``irs2_mean_subtraction``)."""

    pixeldq: np.ndarray
    """uint32 ``(3200, 2048)`` DMS pixel DQ after the flagging: DO_NOT_USE pixels are skipped."""
    fastaxis: int
    slowaxis: int
    odd_even_columns: bool
    """Separate means for odd and even columns (interleaved pixels pair by pair)."""
    siglimit: float
    """Clipping limit [standard deviations] of the means."""


def odd_columns(layout: Irs2Layout) -> np.ndarray:
    """bool ``(3200,)``: detector columns of odd parity. Normal and edge columns alternate
    from column 0; in each block of 4 interleaved samples the first pair is odd and the
    second even; the reference output follows the pattern of output 1."""
    sector = layout.width // SECTORS
    interleaved = ~layout.normal
    interleaved[:sector] = interleaved[sector:2 * sector]
    phase = np.arange(layout.width) % 4
    odd = np.arange(layout.width) % 2 == 0
    odd[interleaved & (phase >= 2)] = False
    odd[interleaved & (phase < 2)] = True
    return odd


def _science_to_detector(plane: np.ndarray, fastaxis: int, slowaxis: int) -> np.ndarray:
    if abs(fastaxis) == 1:
        return plane[..., ::int(np.sign(slowaxis)), ::int(np.sign(fastaxis))]
    return np.swapaxes(plane[..., ::int(np.sign(fastaxis)), ::int(np.sign(slowaxis))], -2, -1)


def _detector_to_science(plane: np.ndarray, fastaxis: int, slowaxis: int) -> np.ndarray:
    if abs(fastaxis) == 1:
        return plane[..., ::int(np.sign(slowaxis)), ::int(np.sign(fastaxis))]
    return np.swapaxes(plane, -2, -1)[..., ::int(np.sign(fastaxis)), ::int(np.sign(slowaxis))]


def _clipped_mean(values: np.ndarray, dq: np.ndarray, siglimit: float) -> np.float32 | np.float64 | None:
    """Mean of the ``values`` whose ``dq`` lacks DO_NOT_USE after iterative ``siglimit``
    clipping (scipy ``sigmaclip``); None when none is usable; float64 plain mean when they
    are all equal."""
    good = values[(dq & dqflags.DO_NOT_USE) == 0]
    if good.size == 0:
        return None
    if np.std(good, dtype=np.float64) == 0.0:
        return good.mean(dtype=np.float64)
    return sigmaclip(good, siglimit, siglimit)[0].mean()


def _average(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return b if a is None else a
    return 0.5 * (a + b)


def subtract_reference_means(sci: np.ndarray, settings: MeanSubtraction, layout: Irs2Layout) -> None:
    """Subtract, in place, from every plane of float32 DMS ``sci`` (``(..., 3200, 2048)``)
    each sector's clipped mean of its top and bottom 4 reference rows (detector orientation;
    odd and even columns apart with ``odd_even_columns``), in float32 as jwst does."""
    sector = layout.width // SECTORS
    dq = _science_to_detector(settings.pixeldq, settings.fastaxis, settings.slowaxis)
    odd = odd_columns(layout)
    edges = (slice(ROWS - 4, ROWS), slice(0, 4))
    for index in np.ndindex(sci.shape[:-2]):
        plane = np.array(_science_to_detector(sci[index], settings.fastaxis, settings.slowaxis))
        for amp in range(SECTORS):
            cols = slice(amp * sector, (amp + 1) * sector)
            if settings.odd_even_columns:
                parity = odd[cols]
                groups = (parity, ~parity)
            else:
                groups = (np.ones(sector, dtype=bool),)
            signals = [_average(*(_clipped_mean(plane[rows, cols][:, which], dq[rows, cols][:, which],
                                                settings.siglimit) for rows in edges)) for which in groups]
            if any(signal is None for signal in signals):
                continue
            block = plane[:, cols]
            for which, signal in zip(groups, signals, strict=True):
                block[:, which] = block[:, which] - signal
        sci[index] = _detector_to_science(plane, settings.fastaxis, settings.slowaxis)


def to_detector(dms: np.ndarray, detector: str) -> np.ndarray:
    """A view of DMS ``(..., 3200, 2048)`` in detector orientation ``(..., 2048, 3200)``."""
    det = np.swapaxes(dms, -2, -1)
    return det[..., ::-1, ::-1] if detector == "NRS2" else det


def to_dms(det: np.ndarray, detector: str) -> np.ndarray:
    """Inverse of :func:`to_detector`."""
    if detector == "NRS2":
        det = det[..., ::-1, ::-1]
    return np.swapaxes(det, -2, -1)


def detector_rows(normal: np.ndarray, detector: str) -> np.ndarray:
    """bool DMS rows matching detector columns ``normal`` (reversed for NRS2)."""
    return normal[::-1] if detector == "NRS2" else normal


def correct_irs2(sci: np.ndarray, bad_rows: np.ndarray, reference: Irs2Reference | None, *, detector: str,
                 scipix_n: int = 16, refpix_r: int = 4, preserve_refpix: bool = False,
                 means: MeanSubtraction | None = None) -> np.ndarray:
    """IRS2 reference correction of one integration (steps 1-3 of the module notes, after
    the flagging; with ``means``, :func:`subtract_reference_means` first).

    Parameters
    ----------
    sci : ndarray
        float32 ``(group, 3200, 2048)`` [DN], DMS orientation (not modified).
    bad_rows : ndarray
        bool ``(3200,)``: DMS rows marked BAD_REF_PIXEL (:func:`flag_bad_reference_rows` over
        every integration, plus the pixel DQ).
    reference : Irs2Reference or None
        The ``refpix`` reference; None only replaces the bad rows (jwst's N/A reference).
    detector : {"NRS1", "NRS2"}
        Decides the detector orientation.
    scipix_n, refpix_r : int
        NRS_NORM and NRS_REF.
    preserve_refpix : bool
        Keep the interleaved reference samples and the reference output.
    means : MeanSubtraction, optional
        Subtract the top/bottom reference means of every sector before replacing bad rows.

    Returns
    -------
    ndarray
        float32 ``(group, 2048, 2048)`` [DN] (``(group, 3200, 2048)`` with
        ``preserve_refpix`` or without ``reference``), DMS orientation.
    """
    if detector not in ("NRS1", "NRS2"):
        msg = f"IRS2 readouts exist for NIRSpec NRS1/NRS2, got detector {detector!r}"
        raise ValueError(msg)
    layout = irs2_layout(scipix_n, refpix_r, width=sci.shape[-2], height=sci.shape[-1])
    work = np.array(sci, dtype=np.float32, copy=True)
    if means is not None:
        subtract_reference_means(work, means, layout)
    replace_bad_reference_rows(work, bad_rows, scipix_n=scipix_n, refpix_r=refpix_r)
    if reference is None:
        return work
    det = to_detector(work, detector)
    if reference.dq is not None:
        bad_columns = detector_rows(bad_rows, detector).copy()
        mask_interleaved_columns(det, reference.dq, bad_columns, layout)
    corrected = subtract_irs2(det, reference, layout, preserve_refpix=preserve_refpix)
    return np.ascontiguousarray(to_dms(corrected, detector))
