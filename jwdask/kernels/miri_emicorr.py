"""emicorr kernels (MIRI): remove electromagnetic-interference waveforms, "joint" algorithm
of jwst 3.0 (spec §6.3).

Every pixel sample has a read time on the 10 us pixel clock: rows are ``rowclocks`` apart,
the four amplifiers read columns ``4k .. 4k+3`` together at ``k * nsamples``, groups are
``ny * rowclocks + (1024 - ny) * 7`` apart, and integrations add ``frameclocks`` (FASTR1 /
SLOWR1 only). For one EMI frequency with period ``P`` pixel times each sample has the phase
``t / P mod 1``. The joint fit:

1. :func:`pixel_scatter`: per pixel and integration, the standard deviation of its groups;
   pixels below twice the **exposure-wide median** scatter and with ``pixeldq == 0`` are used;
2. :func:`accumulate`: the used pixels' group values are summed per integration, per phase
   bin of their first sample (one bin per reference-waveform sample; column blocks ``k = 1``
   and ``2`` are skipped, a bad reference column in jwst) and per group, with pixel counts;
3. :func:`fit_waveform`: the reference waveform (cubic spline over phase) is tried at 500
   phase offsets; at each, straight lines are fitted to the binned ramps together with the
   waveform amplitude, the chi-squared minimum is refined with a parabola, and the amplitude
   at the best phase is taken (one phase/amplitude for the exposure, or per integration);
4. :func:`subtract_waveform`: amplitude x waveform at each sample's phase is subtracted.

Steps 1 and 4 run per (y, x) tile; step 2 gives per-tile partial sums that are added
(float64; the summation order differs from jwst, so results agree to rounding, ~1e-12
relative); step 3 is one small task. Frequencies are corrected one after the other, each on
the output of the previous one.

REQUIRED_TILE: any (y, x) tile with all integrations and groups, plus the window-relative row
and column index of each pixel; the median of step 1 needs every pixel's scatter
(4 bytes x NINTS x ny x nx) in one task, and the fit needs the summed ``(NINTS, nphases,
NGROUPS)`` arrays.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
from scipy.interpolate import interp1d

__all__ = ["EmiResult", "EmiSums", "EmiTiming", "REQUIRED_TILE", "accumulate", "fit_waveform",
           "pixel_phase", "pixel_scatter", "subtract_waveform", "timing", "waveform"]

log = logging.getLogger(__name__)

REQUIRED_TILE = ("any (y, x) tile with all integrations and groups; a global median of "
                 "per-pixel scatter and a global sum of binned ramps between the passes")
PIXEL_CLOCK = 10.0e-6
"""Seconds per pixel-clock tick."""
NPHASES_OPT = 500
"""Trial phase offsets of the joint fit."""


class EmiTiming(NamedTuple):
    """Phase geometry of one frequency for one exposure."""

    period: float
    """Waveform period [pixel-clock ticks]."""
    dphase: float
    """Phase step between groups [cycles, 0-1]."""
    dphase_frame: float
    """Phase step between integrations [cycles]."""


class EmiSums(NamedTuple):
    """Binned ramps of the well-behaved pixels (output of :func:`accumulate`)."""

    y: np.ndarray
    """float64 ``(integration, phase bin, group)``: sums of the group values [DN]."""
    n: np.ndarray
    """float64 ``(integration, phase bin)``: number of pixels summed."""


class EmiResult(NamedTuple):
    """Output of :func:`subtract_waveform`."""

    sci: np.ndarray
    """Corrected ramps, float32 ``(integration, group, y, x)`` [DN]."""


def timing(frequency: float, *, ny: int, ngroups: int, rowclocks: int, frameclocks: int) -> EmiTiming:
    """Phase steps between groups and integrations.

    Parameters
    ----------
    frequency : float
        EMI frequency [Hz].
    ny : int
        Rows of the readout window.
    ngroups : int
        Groups per integration.
    rowclocks : int
        Pixel-clock ticks per row.
    frameclocks : int
        Extra ticks between integrations (the reset frame; 0 unless READPATT ends in R1).

    Examples
    --------
    >>> t = timing(390.625, ny=1024, ngroups=5, rowclocks=271, frameclocks=0)
    >>> round(t.period, 3), round(t.dphase, 6)
    (256.0, 0.0)
    """
    period = (1.0 / frequency) / PIXEL_CLOCK
    frametime = ny * rowclocks + (1024.0 - ny) * (4 + 3.0)
    dphase = (frametime / period) % 1
    return EmiTiming(period=period, dphase=dphase, dphase_frame=dphase * ngroups + frameclocks / period)


def pixel_phase(rows: np.ndarray, cols: np.ndarray, *, nsamples: int, rowclocks: int,
                period: float) -> np.ndarray:
    """Phase [0-1) of the first sample of pixels at window-relative ``rows``, ``cols``."""
    ticks = (np.asarray(rows, np.int64) * rowclocks + (np.asarray(cols, np.int64) // 4) * nsamples)
    return (ticks.astype(np.float64) / period) % 1


def waveform(refwave: np.ndarray) -> tuple[interp1d, np.ndarray]:
    """The periodic cubic spline of a reference waveform and its sample phases.

    Returns
    -------
    spline : callable
        Waveform [DN per unit amplitude] as a function of phase in [0, 1).
    phases : ndarray
        Phase of each waveform sample (bin centres), ``(len(refwave),)``.
    """
    refwave = np.asarray(refwave)
    if refwave.ndim != 1 or refwave.size < 4:
        msg = f"the reference waveform must be 1-D with at least 4 samples, got shape {refwave.shape}"
        raise ValueError(msg)
    extended = np.concatenate([refwave[-1:], refwave, refwave[:1]])
    phases = (np.arange(refwave.size + 2) - 0.5) / refwave.size
    return interp1d(phases, extended, kind="cubic"), phases[1:-1]


def pixel_scatter(sci: np.ndarray) -> np.ndarray:
    """float32 ``(integration, y, x)``: standard deviation of each pixel's groups [DN]."""
    return np.std(sci, axis=1)


def accumulate(sci: np.ndarray, pixeldq: np.ndarray, rows: np.ndarray, cols: np.ndarray, *,
               scatter_median: float, nphases: int, nsamples: int, rowclocks: int,
               period: float) -> EmiSums:
    """Partial sums of the binned ramps over one tile.

    Parameters
    ----------
    sci : ndarray
        float32 ``(integration, group, y, x)`` [DN].
    pixeldq : ndarray
        uint32 ``(y, x)``; only pixels with 0 are used.
    rows, cols : ndarray
        int ``(y, x)``: each pixel's window-relative row and column.
    scatter_median : float
        float32 median of :func:`pixel_scatter` over the whole exposure.
    nphases : int
        Number of phase bins (reference-waveform samples).
    nsamples, rowclocks : int
        Samples per pixel and ticks per row.
    period : float
        Waveform period [ticks].

    Returns
    -------
    EmiSums
        This tile's share; add the shares of all tiles.
    """
    nints, ngroups = sci.shape[:2]
    limit = np.float32(2) * np.float32(scatter_median)
    used = (pixel_scatter(sci) < limit) & (pixeldq == 0)
    block = np.asarray(cols) // 4
    keep = (block != 1) & (block != 2)
    bins = (pixel_phase(rows, cols, nsamples=nsamples, rowclocks=rowclocks, period=period) * nphases).astype(np.int64)
    bins = bins[keep]
    y = np.zeros((nints, nphases, ngroups))
    n = np.zeros((nints, nphases))
    for i in range(nints):
        weight = used[i][keep]
        n[i] = np.bincount(bins, weights=weight.astype(np.float64), minlength=nphases)
        for g in range(ngroups):
            values = (sci[i, g] * used[i])[keep].astype(np.float64)
            y[i, :, g] = np.bincount(bins, weights=values, minlength=nphases)
    return EmiSums(y=y, n=n)


def _best_phase(phases: np.ndarray, chisq: np.ndarray) -> float:
    """Vertex of the parabola through the lowest chi-squared and its two neighbours (periodic)."""
    chisq = np.asarray(chisq, dtype=np.float64)
    if not np.isfinite(chisq).any():
        log.warning("emicorr: chi-squared is NaN at every phase")
        return float(phases[0])
    best = int(np.nanargmin(chisq))
    before, after = best - 1, best + 1 if best + 1 < len(chisq) else 0
    around = np.array([chisq[before], chisq[best], chisq[after]])
    if not np.isfinite(around).all():
        return float(phases[best])
    if np.nanstd(around) == 0:
        return float(phases[best])
    a, b, _ = np.polyfit([phases[before], phases[best], phases[after]], around, 2)
    return float(-b / (2 * a))


class _Fitter:
    """Sums over the binned ramps and over the waveform at every trial phase."""

    def __init__(self, sums: EmiSums, spline: interp1d, template: np.ndarray, trials: np.ndarray,
                 dphase_frame: float) -> None:
        self.y, self.n = sums.y, sums.n
        self.nints, _, self.ngroups = self.y.shape
        t = np.arange(self.ngroups)
        self.s_tt, self.s_t = np.sum(t ** 2), np.sum(t)
        self.delta = self.ngroups * self.s_tt - self.s_t ** 2
        self.s_y = np.sum(self.y, axis=2)
        self.s_ty = np.sum(self.y * t, axis=2)
        self.trials = trials
        self.dphase_frame = dphase_frame
        self.z, self.s_z, self.s_tz, self.s_zz = [], [], [], []
        for offset in trials:
            z = spline((template.T + offset) % 1).T
            self.z.append(z)
            self.s_tz.append(np.sum(t * z, axis=1))
            self.s_z.append(np.sum(z, axis=1))
            self.s_zz.append(np.sum(z ** 2, axis=1))

    def chisq_amplitudes(self, ints: list[int] | np.ndarray | None = None,
                         phases: list[float] | np.ndarray | None = None) -> tuple[list[float], list[float]]:
        """Best chi-squared and amplitude at each phase, over the integrations ``ints``."""
        ints = np.arange(self.nints) if ints is None else ints
        phases = self.trials if phases is None else phases
        chisq, amplitudes = [], []
        for phase in phases:
            a = 0
            b = 0
            for i in ints:
                k = np.argmin(np.abs((self.trials - phase - self.dphase_frame * i) % 1))
                s_z, s_tz = self.s_z[k], self.s_tz[k]
                a += np.sum(self.n[i] / self.delta * (-self.s_tt * s_z ** 2 + 2 * self.s_t * s_z * s_tz
                                                      - self.ngroups * s_tz ** 2 + self.s_zz[k] * self.delta))
                b += (2 / self.delta) * np.sum(self.s_tt * s_z * self.s_y[i] - self.s_t * s_tz * self.s_y[i]
                                               - self.s_t * s_z * self.s_ty[i] + self.ngroups * s_tz * self.s_ty[i])
                b -= 2 * np.sum(np.sum(self.z[k] * self.y[i], axis=1))
            if np.isclose(a, 0, atol=1e-8) or not np.isfinite(a) or not np.isfinite(b):
                chisq.append(np.nan)
                amplitudes.append(0.0)
            else:
                c = -b / (2 * a)
                chisq.append(a * c ** 2 + b * c)
                amplitudes.append(c)
        return chisq, amplitudes


def fit_waveform(sums: EmiSums, refwave: np.ndarray, *, dphase: float, dphase_frame: float,
                 fit_ints_separately: bool = False, nphases_opt: int = NPHASES_OPT) -> tuple[np.ndarray, np.ndarray]:
    """Best amplitude and phase of the reference waveform.

    Parameters
    ----------
    sums : EmiSums
        Binned ramps of the whole exposure.
    refwave : ndarray
        Reference waveform (one period).
    dphase, dphase_frame : float
        Phase steps between groups and integrations (:func:`timing`).
    fit_ints_separately : bool
        Fit each integration on its own (else one phase and amplitude for all).
    nphases_opt : int
        Trial phase offsets.

    Returns
    -------
    amplitudes, phases : ndarray
        float64 ``(integration,)``: amplitude [DN per waveform unit] and phase offset [cycles]
        of the waveform in each integration.
    """
    spline, sample_phases = waveform(refwave)
    nints, nphases, ngroups = sums.y.shape
    if nphases != sample_phases.size:
        msg = f"binned ramps have {nphases} phase bins but the waveform has {sample_phases.size} samples"
        raise ValueError(msg)
    template = (sample_phases[:, np.newaxis] + np.arange(ngroups) * dphase) % 1
    trials = np.arange(nphases_opt) * 1.0 / nphases_opt
    fitter = _Fitter(sums, spline, template, trials, dphase_frame)
    if fit_ints_separately:
        amplitudes, phases = [], []
        for i in range(nints):
            chisq, _ = fitter.chisq_amplitudes(ints=[i])
            best = _best_phase(trials, chisq)
            phases.append(best + i * dphase_frame)
            amplitudes += fitter.chisq_amplitudes(phases=[best], ints=[i])[1]
        return np.array(amplitudes, np.float64), np.array(phases, np.float64)
    chisq, _ = fitter.chisq_amplitudes()
    best = _best_phase(trials, chisq)
    _, amplitude = fitter.chisq_amplitudes(phases=[best])
    phases = (best + np.arange(nints) * dphase_frame) % 1
    return np.array(amplitude * nints, np.float64), phases


def subtract_waveform(sci: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, refwave: np.ndarray,
                      amplitudes: np.ndarray, phases: np.ndarray, nsamples: int, rowclocks: int,
                      period: float, dphase: float) -> EmiResult:
    """Subtract the phased, scaled waveform from every sample of a tile.

    Parameters
    ----------
    sci : ndarray
        float32 ``(integration, group, y, x)`` [DN].
    rows, cols : ndarray
        int ``(y, x)``: window-relative row and column of each pixel.
    refwave : ndarray
        Reference waveform.
    amplitudes, phases : ndarray
        Per integration, from :func:`fit_waveform`.
    nsamples, rowclocks : int
        Samples per pixel and ticks per row.
    period, dphase : float
        From :func:`timing`.

    Returns
    -------
    EmiResult
        The corrected tile (float32; the subtraction is done in float64 as in jwst).
    """
    spline, _ = waveform(refwave)
    phase = pixel_phase(rows, cols, nsamples=nsamples, rowclocks=rowclocks, period=period)
    out = np.empty(sci.shape, np.float32)
    for i in range(sci.shape[0]):
        for g in range(sci.shape[1]):
            emi = spline((phase + dphase * g + phases[i]) % 1)
            out[i, g] = (sci[i, g] - amplitudes[i] * emi).astype(np.float32)
    return EmiResult(sci=out)
