"""Ramp fitting with the LIKELY algorithm of stcal 1.20 / jwst 3.0, one (y, x) tile at a time.

The likelihood fit of Brandt (2024, PASP 136, 045004 "paper 1" and 045005 "paper 2") fits a
rate to the differences of consecutive resultants with their full covariance matrix (read
noise and photon noise of a ramp make it tridiagonal), and detects jumps on the way by asking
how much the chi-square improves when one difference, or two adjacent ones, are left out.

:func:`fit_ramps_likely` gives the numbers of ``stcal.ramp_fitting.ramp_fit.ramp_fit(...,
algorithm="LIKELY")`` as jwst's ``RampFitStep`` calls it: the rate product (``slope, err, dq,
var_poisson, var_rnoise`` on ``(y, x)``) and the rateints product (``*_ints`` on
``(integration, y, x)``) as a :class:`jwdask.kernels.ramp_fit.RampFitResult`. An output pixel
depends on its own ramp, so tiles are fitted independently (see ``row_width`` for the one,
last-bit, exception that stcal's row-wise processing brings).

The arithmetic follows stcal's order of operations in float64, so results agree to the last
bits, which matters: the jump search compares chi-square values for equality and an exactly
degenerate omission gives 0 / 0 (NaN) that stops the search. The covariance normalisation uses
numpy's ``power`` (vectorised, :func:`covariance_scale`) as stcal does, and sums follow numpy's
reduction order (:func:`_sum`).

Per pixel and integration (paper 1 §4, paper 2 §3):

1. Resultant differences ``d_k = (r_{k+1} - r_k) / Δt_k`` [DN/s], with ``Δt_k`` the spacing of
   the mean read times of the resultants (:func:`read_pattern`, :class:`Covariance`). A
   difference is used only when both of its groups have no DQ flag at all.
2. Jump search: the covariance is built from the median of all differences (clipped at 0); the
   difference (or adjacent pair, for multi-read resultants) whose omission lowers chi-square
   most is dropped when the improvement beats 20.25 (one) or 23.8 (two), and the search repeats
   while something is dropped and more than three differences are left. Dropped differences
   flag JUMP_DET on their later group.
3. Final fit with the covariance of the jump-search rate (clipped at 0) plus the average dark
   current: rate ``B / C``, rateints error ``sqrt(scale / C)``, Poisson and read-noise variances
   from the weights ``dC / C``.

Integrations are combined as stcal does: weights ``1 / (v_p s + v_r)`` with the Poisson variance
rescaled by ``s = median rate / integration rate``, iterated twice from the NaN-median rate.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numba
import numpy as np

from jwdask import dqflags
from jwdask.kernels.ramp_fit import RampFitResult, _native, group_dnu_bounds
from jwdask.kernels.ramp_ols_c import heap_sort

__all__ = [
    "LIKELY_MIN_NGROUPS",
    "Covariance",
    "combine_integrations",
    "fit_ramps_likely",
    "read_pattern",
]

LIKELY_MIN_NGROUPS = 4
"""Fewest groups the LIKELY fit accepts (jwst falls back to OLS_C below this)."""

THRESHOLD_ONE_OMIT = 20.25
"""Chi-square improvement [-] above which one resultant difference is dropped as a jump."""

THRESHOLD_TWO_OMIT = 23.8
"""Chi-square improvement [-] above which two adjacent differences are dropped as a jump."""

RESCALE_EVERY = 10
"""The covariance determinant recursion is renormalised every this many differences."""

INSERTION_SORT_MAX = 32
"""Medians of up to this many differences sort by insertion, longer ones by heap sort."""

DNU = dqflags.DO_NOT_USE
SAT = dqflags.SATURATED
JUMP = dqflags.JUMP_DET

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_jit_leaf = numba.njit(cache=True, nogil=True, error_model="numpy", _nrt=False)
"""For the per-pixel helpers, which never allocate: without numba's runtime, passing arrays
costs no reference counting."""

# Rows of the per-tile float work array (each holds up to ndiffs + 1 values).
(W_APH, W_ARN, W_BPH, W_BRN, W_ALPHA, W_BETA, W_DM, W_TH, W_PH, W_PHI, W_PHID, W_THE, W_THED, W_DC, W_DB,
 W_CD, W_COFF, W_R1, W_C1, W_R2, W_C2, W_DIFF, W_SORT, W_STACK) = range(24)
N_STACK = 4
W_T0 = W_STACK + N_STACK
N_TERMS = 7
N_WORK = W_T0 + N_TERMS
"""Rows ``W_T0 ..`` hold the terms of the sums of a fit (see :func:`_sum`), rows ``W_STACK ..
W_STACK + N_STACK - 1`` the stack of :func:`_pairwise`."""
PAIRWISE_BLOCK = 128
"""numpy's pairwise summation splits sums longer than this in halves."""

# Rows of the covariance constants array (see Covariance.table).
C_DT, C_ARN, C_BRN, C_APH, C_BPH, C_ONE_OK, C_TWO_OK = range(7)


# ---------------------------------------------------------------------------------------------
# Read pattern and covariance of the resultant differences (paper 1, eqs. 4, 11, 28, 29)
# ---------------------------------------------------------------------------------------------


def read_pattern(ngroups: int, nframes: int, groupgap: int, frame_time: float) -> list[np.ndarray]:
    """Times [s] of the frames averaged into each group of an evenly sampled MULTIACCUM ramp.

    Group ``k`` averages frames ``1..nframes`` after ``k (nframes + groupgap)`` frames, each
    ``frame_time`` long (stcal's pattern when the exposure has no explicit read times).

    Examples
    --------
    >>> [t.tolist() for t in read_pattern(3, 2, 1, 10.0)]
    [[10.0, 20.0], [40.0, 50.0], [70.0, 80.0]]
    """
    frames = np.arange(1, nframes + 1)
    return [(frames + k * (nframes + groupgap)) * frame_time for k in range(ngroups)]


class Covariance(NamedTuple):
    """Covariance of the resultant differences, per unit read-noise variance and count rate.

    With ``σ`` the read noise of one read [DN] and ``c`` the count rate over gain, the
    covariance matrix of the differences ``d_k`` has diagonal ``σ² alpha_rn + c alpha_ph`` and
    first off-diagonal ``σ² beta_rn + c beta_ph``.
    """

    delta_t: np.ndarray
    """(ndiffs,) [s]: spacing of the mean read times of consecutive resultants."""
    alpha_rn: np.ndarray
    """(ndiffs,) [s^-2]: ``(1/N_k + 1/N_{k+1}) / Δt_k²``."""
    beta_rn: np.ndarray
    """(ndiffs - 1,) [s^-2]: ``-1 / (N_{k+1} Δt_k Δt_{k+1})``."""
    alpha_ph: np.ndarray
    """(ndiffs,) [s^-1]: ``(τ_k + τ_{k+1} - 2 t̄_k) / Δt_k²``."""
    beta_ph: np.ndarray
    """(ndiffs - 1,) [s^-1]: ``(t̄_{k+1} - τ_{k+1}) / (Δt_k Δt_{k+1})``."""
    nreads: np.ndarray
    """(nresultants,) int: reads averaged into each resultant."""

    @classmethod
    def from_read_times(cls, read_times: Sequence[Sequence[float] | float]) -> Covariance:
        """The covariance for resultants averaging the reads at ``read_times`` [s]."""
        mean_t, tau, nreads = [], [], []
        for times in read_times:
            if np.ndim(times) == 0:
                mean_t.append(float(times))
                tau.append(float(times))
                nreads.append(1)
                continue
            arr = np.asarray(times, dtype=np.float64)
            n = arr.size
            mean_t.append(np.mean(arr))
            tau.append(np.sum((2 * n + 1 - 2 * np.arange(1, n + 1)) * arr) / n**2)
            nreads.append(n)
        mean = np.array(mean_t, dtype=np.float64)
        tau_arr = np.array(tau, dtype=np.float64)
        n_arr = np.array(nreads)
        dt = mean[1:] - mean[:-1]
        if not np.all(dt > 0):
            msg = f"resultant mean times must increase, got spacings {dt.tolist()} s"
            raise ValueError(msg)
        return cls(
            delta_t=dt,
            alpha_rn=(1 / n_arr[:-1] + 1 / n_arr[1:]) / dt**2,
            beta_rn=-1 / (n_arr[1:-1] * dt[1:] * dt[:-1]),
            alpha_ph=(tau_arr[:-1] + tau_arr[1:] - 2 * mean[:-1]) / dt**2,
            beta_ph=(mean[1:-1] - tau_arr[1:-1]) / (dt[1:] * dt[:-1]),
            nreads=n_arr,
        )

    def table(self) -> np.ndarray:
        """(7, ndiffs) float64 rows for the compiled kernel (``C_*`` indices; beta rows and
        the two-omission row padded with 0 at the end)."""
        nd = self.delta_t.size
        out = np.zeros((7, nd), dtype=np.float64)
        out[C_DT] = self.delta_t
        out[C_ARN] = self.alpha_rn
        out[C_APH] = self.alpha_ph
        out[C_BRN, :nd - 1] = self.beta_rn
        out[C_BPH, :nd - 1] = self.beta_ph
        one_ok = self.nreads[1:] * self.nreads[:-1] >= 1
        one_ok[0] = one_ok[-1] = True
        out[C_ONE_OK] = one_ok
        out[C_TWO_OK, :nd - 1] = self.nreads[1:-1] > 1
        return out


# ---------------------------------------------------------------------------------------------
# Compiled per-pixel arithmetic
# ---------------------------------------------------------------------------------------------


@_jit_leaf
def _nan_max(w: np.ndarray, row: int, ok_row: int, cov: np.ndarray, n: int) -> float:
    """``max_k w[row, k] * cov[ok_row, k]`` over ``k < n``, NaN if any product is NaN."""
    best = w[row, 0] * cov[ok_row, 0]
    for k in range(1, n):
        value = w[row, k] * cov[ok_row, k]
        if math.isnan(value) or math.isnan(best):
            best = math.nan
        elif value > best:
            best = value
    return best


@_jit_leaf
def _median(w: np.ndarray, nd: int) -> float:
    """Median of the differences ``w[W_DIFF, :nd]`` (NaN if any is NaN)."""
    buf = w[W_SORT]
    for k in range(nd):
        value = w[W_DIFF, k]
        if math.isnan(value):
            return math.nan
        buf[k] = value
    if nd > INSERTION_SORT_MAX:
        heap_sort(buf, nd)
    else:
        for k in range(1, nd):
            value = buf[k]
            j = k - 1
            while j >= 0 and buf[j] > value:
                buf[j + 1] = buf[j]
                j -= 1
            buf[j + 1] = value
    half = nd // 2
    if nd % 2:
        return buf[half]
    return (buf[half - 1] + buf[half]) / 2.0


@_jit_leaf
def _sum(w: np.ndarray, row: int, n: int, pairwise: bool) -> float:
    """Sum of ``w[row, :n]`` in the order numpy uses for an axis-0 reduction of stcal's
    ``(ndiffs, npix)`` arrays: element by element when ``npix > 1``, and numpy's pairwise
    summation (eight interleaved partial sums) when ``npix == 1``. The order changes the last
    bits, which decide whether an exactly degenerate omission is 0 / 0."""
    if not pairwise:
        total = w[row, 0]
        for k in range(1, n):
            total += w[row, k]
        return total
    if n <= PAIRWISE_BLOCK:
        return _pairwise_block(w, row, 0, n)
    return _pairwise(w, row, n)


@_jit_leaf
def _pairwise(w: np.ndarray, row: int, n: int) -> float:
    """numpy's ``pairwise_sum`` of ``w[row, :n]``: blocks of up to :data:`PAIRWISE_BLOCK`
    summed by :func:`_pairwise_block`, longer runs split in halves (a multiple of 8 on the
    left) whose sums are added. The recursion runs on a stack kept in rows ``W_STACK ..`` of
    ``w`` (numba cannot cache recursive functions)."""
    starts, counts, stage, left = W_STACK, W_STACK + 1, W_STACK + 2, W_STACK + 3
    top = 0
    w[starts, 0], w[counts, 0], w[stage, 0] = 0.0, n, 0.0
    result = 0.0
    returning = False
    while True:
        if returning:
            if top < 0:
                return result
            if w[stage, top] == 1.0:  # left half done: keep it, sum the right half
                w[left, top] = result
                w[stage, top] = 2.0
                half = _pairwise_split(int(w[counts, top]))
                top += 1
                w[starts, top] = w[starts, top - 1] + half
                w[counts, top] = w[counts, top - 1] - half
                w[stage, top] = 0.0
                returning = False
            else:
                result = w[left, top] + result
                top -= 1
            continue
        count = int(w[counts, top])
        if count <= PAIRWISE_BLOCK:
            result = _pairwise_block(w, row, int(w[starts, top]), count)
            top -= 1
            returning = True
            continue
        w[stage, top] = 1.0
        top += 1
        w[starts, top], w[counts, top], w[stage, top] = w[starts, top - 1], _pairwise_split(count), 0.0


@_jit_leaf
def _pairwise_split(n: int) -> int:
    """Length of the left half when numpy's pairwise summation splits ``n`` values."""
    half = n // 2
    return half - half % 8


@_jit_leaf
def _pairwise_block(w: np.ndarray, row: int, start: int, n: int) -> float:
    """numpy's pairwise sum of at most :data:`PAIRWISE_BLOCK` values: in order below 8, else
    eight interleaved partial sums combined as a tree, then the remainder in order."""
    if n < 8:
        total = 0.0
        for k in range(start, start + n):
            total += w[row, k]
        return total
    r0, r1, r2, r3 = w[row, start], w[row, start + 1], w[row, start + 2], w[row, start + 3]
    r4, r5, r6, r7 = w[row, start + 4], w[row, start + 5], w[row, start + 6], w[row, start + 7]
    full = n - n % 8
    for k in range(start + 8, start + full, 8):
        r0 += w[row, k]
        r1 += w[row, k + 1]
        r2 += w[row, k + 2]
        r3 += w[row, k + 3]
        r4 += w[row, k + 4]
        r5 += w[row, k + 5]
        r6 += w[row, k + 6]
        r7 += w[row, k + 7]
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for k in range(start + full, start + n):
        total += w[row, k]
    return total


@_jit_leaf
def _fit(w: np.ndarray, use: np.ndarray, cov: np.ndarray, nd: int, guess: float, scale: float, gain: float,
         rn2: float, detect: bool, pairwise: bool) -> tuple[float, float, float, float, float]:
    """Fit the differences ``w[W_DIFF, :nd]`` where ``use`` is 1, with the covariance of a count
    rate ``guess`` [DN/s] divided by ``scale`` (:func:`covariance_scale` of that covariance).

    Returns ``(rate, chisq, uncert, var_poisson, var_rnoise)``. With ``detect``, also
    fills rows ``W_R1, W_C1`` (rate and chi-square leaving out difference ``k``) and ``W_R2,
    W_C2`` (leaving out differences ``k, k + 1``), with omitted differences falling back to
    the fit with fewer omissions (paper 2, §3.1-3.2). ``pairwise`` selects the summation order
    (see :func:`_sum`).
    """
    cg = guess / gain
    for k in range(nd):
        w[W_APH, k] = cg * cov[C_APH, k]
        w[W_ARN, k] = rn2 * cov[C_ARN, k]
        w[W_ALPHA, k] = w[W_APH, k] + w[W_ARN, k]
    for k in range(nd - 1):
        w[W_BPH, k] = cg * cov[C_BPH, k]
        w[W_BRN, k] = rn2 * cov[C_BRN, k]
        w[W_BETA, k] = w[W_BPH, k] + w[W_BRN, k]

    th = w[W_TH]
    alpha = w[W_ALPHA]
    beta = w[W_BETA]
    dm = w[W_DM]
    for k in range(nd):
        alpha[k] = alpha[k] / scale
        dm[k] = w[W_DIFF, k] * use[k]
    for k in range(nd - 1):
        beta[k] = beta[k] / scale * use[k + 1] * use[k]

    # Determinant recursions from the top-left (theta) and bottom-right (phi), paper 1 eqs. 38-43.
    th[0] = 1.0
    th[1] = alpha[0]
    for i in range(2, nd + 1):
        th[i] = alpha[i - 1] * th[i - 1] - beta[i - 2] ** 2 * th[i - 2]
    ph = w[W_PH]
    ph[nd] = 1.0
    ph[nd - 1] = alpha[nd - 1]
    for i in range(nd - 2, -1, -1):
        ph[i] = alpha[i] * ph[i + 1] - beta[i] ** 2 * ph[i + 2]

    # Partial sums of the inverse covariance (eqs. 46-48 and paper 2 eq. 4); sign (-1)^(k+1).
    big_phi = w[W_PHI]
    big_phid = w[W_PHID]
    big_phi[nd - 1] = 0.0
    big_phid[nd - 1] = 0.0
    for i in range(nd - 2, -1, -1):
        s = 1.0 if (i + 1) % 2 else -1.0
        big_phi[i] = big_phi[i + 1] * beta[i] + s * beta[i] * ph[i + 2]
        big_phid[i] = (big_phid[i + 1] + s * dm[i + 1] * ph[i + 2]) * beta[i]
    big_th = w[W_THE]
    big_thd = w[W_THED]
    big_th[0] = -th[0]
    big_thd[0] = 0.0
    big_thd[1] = -dm[0] * th[0]
    for i in range(1, nd):
        s = 1.0 if i % 2 else -1.0
        big_th[i] = big_th[i - 1] * beta[i - 1] + s * th[i]
        big_thd[i + 1] = beta[i - 1] * big_thd[i] + s * dm[i] * th[i]

    # C' and B' (eqs. 71, 75) and the sums A, B, C (eqs. 61-63).
    thn = th[nd]
    dc = w[W_DC]
    db = w[W_DB]
    t_a1, t_a2, t_b, t_vp, t_vr, t_xp, t_xr = range(W_T0, W_T0 + N_TERMS)
    for k in range(nd):
        s = 1.0 if k % 2 else -1.0
        dc[k] = s / thn * (ph[k + 1] * big_th[k] + th[k] * big_phi[k]) * use[k]
        db[k] = s / thn * (ph[k + 1] * big_thd[k + 1] + th[k] * big_phid[k])
        beta_ext = 1.0 if k == 0 else beta[k - 1]
        w[t_a1, k] = dm[k] * s / thn * beta_ext * ph[k + 1] * big_thd[k]
        w[t_a2, k] = dm[k] ** 2 * th[k] * ph[k + 1] / thn
        w[t_b, k] = dm[k] * dc[k]
    big_c = _sum(w, W_DC, nd, pairwise)
    big_b = _sum(w, t_b, nd, pairwise)
    big_a = 2.0 * _sum(w, t_a1, nd, pairwise) + _sum(w, t_a2, nd, pairwise)

    rate = big_b * (1.0 / big_c)
    chisq = (big_a - big_b ** 2 / big_c) / scale
    uncert = math.sqrt(scale / big_c)
    for k in range(nd):
        wk = dc[k] / big_c
        w[t_vp, k] = wk ** 2 * w[W_APH, k]
        w[t_vr, k] = wk ** 2 * w[W_ARN, k]
    for k in range(nd - 1):
        wk = dc[k + 1] / big_c * (dc[k] / big_c)
        w[t_xp, k] = wk * w[W_BPH, k]
        w[t_xr, k] = wk * w[W_BRN, k]
    var_p = _sum(w, t_vp, nd, pairwise)
    var_r = _sum(w, t_vr, nd, pairwise)
    cross_p = _sum(w, t_xp, nd - 1, pairwise)
    cross_r = _sum(w, t_xr, nd - 1, pairwise)
    var_p += 2.0 * cross_p
    var_r += 2.0 * cross_r
    if detect:
        _omissions(w, use, nd, big_a, big_b, big_c, scale, rate, chisq)
    return rate, chisq, uncert, var_p, var_r


@_jit_leaf
def _omissions(w: np.ndarray, use: np.ndarray, nd: int, big_a: float, big_b: float, big_c: float,
               scale: float, rate: float, chisq: float) -> None:
    """Best rate and chi-square leaving out one difference, or two adjacent ones (paper 2)."""
    th = w[W_TH]
    ph = w[W_PH]
    beta = w[W_BETA]
    dc = w[W_DC]
    db = w[W_DB]
    cd = w[W_CD]
    coff = w[W_COFF]
    thn = th[nd]
    for k in range(nd):
        cd[k] = th[k] * ph[k + 1] / thn * use[k]
    for k in range(nd - 1):
        coff[k] = -beta[k] * th[k] * ph[k + 2] / thn
    for k in range(nd):
        a = (cd[k] * big_b - db[k] * dc[k]) / (big_c * cd[k] - dc[k] ** 2)
        b = (db[k] - a * dc[k]) / cd[k]
        w[W_R1, k] = a
        w[W_C1, k] = (big_a + a ** 2 * big_c - 2 * a * big_b + b ** 2 * cd[k] - 2 * b * db[k]
                      + 2 * a * b * dc[k]) / scale
    for k in range(nd - 1):
        cpj = dc[k] ** 2 - big_c * cd[k]
        cjck = dc[k] * dc[k + 1] - big_c * coff[k]
        bcpj = big_b * dc[k] - db[k] * big_c
        c = bcpj / cpj - (big_b * dc[k + 1] - db[k + 1] * big_c) / cjck
        c /= cjck / cpj - (dc[k + 1] ** 2 - big_c * cd[k + 1]) / cjck
        b = (bcpj - c * cjck) / cpj
        a = (big_b - b * dc[k] - c * dc[k + 1]) / big_c
        w[W_R2, k] = a
        x = big_a + a ** 2 * big_c + b ** 2 * cd[k] + c ** 2 * cd[k + 1]
        x -= 2 * a * big_b + 2 * b * db[k] + 2 * c * db[k + 1]
        x += 2 * a * b * dc[k] + 2 * a * c * dc[k + 1] + 2 * b * c * coff[k]
        w[W_C2, k] = x / scale
    # An omission that touches an unused difference is the fit with one omission fewer.
    for k in range(nd):
        if use[k] == 0:
            w[W_R1, k] = rate * 1.0
            w[W_C1, k] = chisq * 1.0
    for k in range(nd - 1):
        if use[k + 1] == 0:
            w[W_R2, k] = w[W_R1, k]
            w[W_C2, k] = w[W_C1, k]
    for k in range(nd - 1):
        if use[k] == 0:
            w[W_R2, k] = w[W_R1, k + 1]
            w[W_C2, k] = w[W_C1, k + 1]


@_jit_leaf
def _jump_step(w: np.ndarray, use: np.ndarray, cov: np.ndarray, nd: int, guess: float, scale: float,
               gain: float, rn2: float, thr_one: float, thr_two: float, pairwise: bool) -> tuple[bool, float, float]:
    """One pass of the jump search (paper 2, §3.3): fit, then drop from ``use`` the difference
    (or adjacent pair) whose omission improves chi-square most, if above its threshold.

    Returns ``(dropped, rate of the fit, rate with the omission)``.
    """
    fit_rate, chisq, _, _, _ = _fit(w, use, cov, nd, guess, scale, gain, rn2, True, pairwise)
    for k in range(nd):  # from here on, W_C1 and W_C2 hold chi-square improvements
        w[W_C1, k] = chisq - w[W_C1, k]
    for k in range(nd - 1):
        w[W_C2, k] = chisq - w[W_C2, k]
    best_one = _nan_max(w, W_C1, C_ONE_OK, cov, nd)
    best_two = _nan_max(w, W_C2, C_TWO_OK, cov, nd - 1)
    one_better = best_one - thr_one > best_two - thr_two
    best = best_one * (1.0 if best_one > thr_one else 0.0) * (1.0 if one_better else 0.0)
    best += best_two * (1.0 if best_two > thr_two else 0.0) * (0.0 if one_better else 1.0)
    if best == 0.0:
        best = math.nan
    row, rate_row, count = (W_C1, W_R1, nd) if one_better else (W_C2, W_R2, nd - 1)
    dropped = False
    for k in range(count):
        if w[row, k] == best:
            dropped = True
    new_rate = 0.0
    if dropped:
        for k in range(count):
            hit = w[row, k] == best
            new_rate += w[rate_row, k] * (1.0 if hit else 0.0)
            if hit:
                use[k] = 0
                if not one_better:
                    use[k + 1] = 0
    return dropped, fit_rate, new_rate


@_jit
def prepare_tile(sci: np.ndarray, groupdq: np.ndarray, zeroframe: np.ndarray, use_zeroframe: bool, nframes: int,
                 lo: int, hi: int, cov: np.ndarray, diff: np.ndarray, use: np.ndarray, rdq: np.ndarray,
                 guess: np.ndarray) -> None:
    """Resultant differences [DN/s] ``diff[i, y, x, k]``, their usability ``use``, resultant flags
    ``rdq[i, y, x, r]`` and the clipped median difference ``guess[i, y, x]`` of a tile.

    With ``use_zeroframe``, the ZEROFRAME is resultant 0 (with the flags of group 0) and group 0
    becomes the mean of its other reads; groups ``k < lo`` or ``k > hi`` are DO_NOT_USE.
    """
    nints, ngroups, ny, nx = sci.shape
    nres = rdq.shape[3]
    nd = nres - 1
    off = nres - ngroups
    w = np.zeros((N_WORK, nres + 1), dtype=np.float64)
    res = np.empty(nres, dtype=np.float32)
    nf32 = np.float32(nframes)
    nf1 = np.float32(nframes - 1)
    for i in range(nints):
        for y in range(ny):
            for x in range(nx):
                if use_zeroframe:
                    z = zeroframe[i, y, x]
                    res[0] = z
                    res[1] = (sci[i, 0, y, x] * nf32 - z) / nf1
                else:
                    res[0] = sci[i, 0, y, x]
                for k in range(1, ngroups):
                    res[k + off] = sci[i, k, y, x]
                q = rdq[i, y, x]
                for k in range(ngroups):
                    flag = np.uint32(groupdq[i, k, y, x])
                    if k < lo or k > hi:
                        flag |= DNU
                    q[k + off] = flag
                if use_zeroframe:
                    q[0] = q[1]
                for k in range(nd):
                    value = np.float64(np.float32(res[k + 1] - res[k])) / cov[C_DT, k]
                    w[W_DIFF, k] = value
                    diff[i, y, x, k] = value
                    use[i, y, x, k] = 1 if q[k] == 0 and q[k + 1] == 0 else 0
                med = _median(w, nd)
                guess[i, y, x] = med * (1.0 if med > 0 else 0.0)


@_jit
def jumps_tile(diff: np.ndarray, use: np.ndarray, rdq: np.ndarray, guess: np.ndarray, scale: np.ndarray,
               rn2: np.ndarray, gain: np.ndarray, dark: np.ndarray, cov: np.ndarray, thr_one: float,
               thr_two: float, row_width: int, final_guess: np.ndarray) -> None:
    """Run the jump search of every ramp of a tile: update ``use``, set JUMP_DET in ``rdq`` and
    store the count rate of the final fit's covariance in ``final_guess`` [DN/s].

    A ramp is searched again while a pass drops something and more than three differences are
    left, at most ``ndiffs`` passes. stcal runs each pass on the still-searched pixels of a
    detector row at once, and sums in a different order when only one is left (see
    :func:`_sum`); passes are therefore made row by row here, with ``row_width`` the width of
    the detector row (only the first pass sees the whole row).
    """
    nints, ny, nx, nd = diff.shape
    w = np.zeros((N_WORK, nd + 2), dtype=np.float64)
    before = np.empty((nx, nd), dtype=np.uint8)
    active = np.empty(nx, dtype=np.bool_)
    rate = np.empty(nx, dtype=np.float64)
    for i in range(nints):
        for y in range(ny):
            for x in range(nx):
                active[x] = True
                for k in range(nd):
                    before[x, k] = use[i, y, x, k]
            searched = row_width
            for j in range(nd):
                pairwise = searched == 1
                searched = 0
                for x in range(nx):
                    if not active[x]:
                        continue
                    u = use[i, y, x]
                    for k in range(nd):
                        w[W_DIFF, k] = diff[i, y, x, k]
                    dropped, fit_rate, new_rate = _jump_step(w, u, cov, nd, guess[i, y, x], scale[i, y, x],
                                                             np.float64(gain[y, x]), rn2[y, x], thr_one, thr_two,
                                                             pairwise)
                    if j == 0:
                        rate[x] = fit_rate * 1.0
                    if not dropped:
                        active[x] = False
                        continue
                    rate[x] = rate[x] * 0.0 + new_rate
                    left = 0
                    for k in range(nd):
                        left += u[k]
                    active[x] = left > 3
                    searched += active[x]
                if searched == 0:
                    break
            for x in range(nx):
                for k in range(nd):
                    if before[x, k] != use[i, y, x, k]:
                        rdq[i, y, x, k + 1] |= JUMP
                r = rate[x]
                final_guess[i, y, x] = r * (1.0 if r > 0 else 0.0) + np.float64(dark[y, x])


@_jit
def final_tile(diff: np.ndarray, use: np.ndarray, rdq: np.ndarray, guess: np.ndarray, scale: np.ndarray,
               rn2: np.ndarray, gain: np.ndarray, pixeldq: np.ndarray, cov: np.ndarray, row_width: int,
               out_f: np.ndarray, out_dq: np.ndarray) -> None:
    """Final fit of every ramp of a tile: ``out_f[(rate, err, var_p, var_r), i, y, x]`` (float32)
    and the integration DQ ``out_dq[i, y, x]`` (pixel DQ, SATURATED or JUMP_DET if any group has
    it, DO_NOT_USE if every group is SATURATED or DO_NOT_USE)."""
    nints, ny, nx, nd = diff.shape
    nres = rdq.shape[3]
    w = np.zeros((N_WORK, nd + 2), dtype=np.float64)
    for i in range(nints):
        for y in range(ny):
            for x in range(nx):
                for k in range(nd):
                    w[W_DIFF, k] = diff[i, y, x, k]
                rate, _, uncert, var_p, var_r = _fit(w, use[i, y, x], cov, nd, guess[i, y, x], scale[i, y, x],
                                                     np.float64(gain[y, x]), rn2[y, x], False, row_width == 1)
                out_f[0, i, y, x] = rate
                out_f[1, i, y, x] = uncert
                out_f[2, i, y, x] = var_p
                out_f[3, i, y, x] = var_r
                dq = pixeldq[y, x]
                all_bad = True
                for k in range(nres):
                    q = rdq[i, y, x, k]
                    if not q & (SAT | DNU):
                        all_bad = False
                    dq |= q & (SAT | JUMP)
                if all_bad:
                    dq |= DNU
                out_dq[i, y, x] = dq


def covariance_scale(guess: np.ndarray, gain: np.ndarray, rn2: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Factor [-] that brings the covariance of each ramp to unit determinant.

    The determinant recursion ``theta_i = alpha_{i-1} theta_{i-1} - beta_{i-2}^2 theta_{i-2}`` of
    the (unmasked) covariance for count rate ``guess`` [DN/s] is renormalised every
    :data:`RESCALE_EVERY` steps and at the end; the product of the factors is the scale.
    Vectorised with numpy, whose ``power`` the official code uses, so the factors are
    bit-identical to stcal's; ``guess`` is ``(integration, y, x)``, ``gain`` and ``rn2`` (read
    noise squared [DN^2]) ``(y, x)``.
    """
    nd = cov.shape[1]
    with np.errstate(all="ignore"):
        cg = guess / gain
        alpha = [cg * cov[C_APH, k] + rn2 * cov[C_ARN, k] for k in range(nd)]
        beta = [cg * cov[C_BPH, k] + rn2 * cov[C_BRN, k] for k in range(nd - 1)]
        scale = np.ones(guess.shape, dtype=np.float64)
        older = scale
        old = alpha[0]
        for i in range(2, nd + 1):
            new = alpha[i - 1] / scale * old - beta[i - 2] ** 2 / scale**2 * older
            if i % RESCALE_EVERY == 0 or i == nd:
                f = new ** (1 / i)
                scale = scale * f
                tmp = new / f
                old = old / tmp
                older = older / (tmp / f)
                new = np.ones(guess.shape, dtype=np.float64)
            older, old = old, new
    return scale


# ---------------------------------------------------------------------------------------------
# Tile entry point and integration combination
# ---------------------------------------------------------------------------------------------


def fit_ramps_likely(
    sci: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    readnoise: np.ndarray,
    gain: np.ndarray,
    *,
    frame_time: float,
    nframes: int,
    groupgap: int,
    read_times: Sequence[Sequence[float]] | None = None,
    zeroframe: np.ndarray | None = None,
    average_dark_current: np.ndarray | None = None,
    firstgroup: int | None = None,
    lastgroup: int | None = None,
    row_width: int | None = None,
) -> RampFitResult:
    """Fit the ramps of a tile with stcal's LIKELY algorithm (jwst 3.0 RampFitStep).

    Parameters
    ----------
    sci : ndarray of float32, shape (integration, group, y, x)
        Ramps [DN]; at least :data:`LIKELY_MIN_NGROUPS` groups.
    groupdq : ndarray of uint8, shape (integration, group, y, x)
        Group data quality. A difference is used only if both its groups have no flag at all.
    pixeldq : ndarray of uint32, shape (y, x)
        Pixel data quality; copied into every output DQ.
    readnoise : ndarray of float32, shape (y, x)
        READNOISE reference [DN] (CDS noise); the noise of one read is ``readnoise / sqrt(2)``.
    gain : ndarray of float32, shape (y, x)
        GAIN reference [e-/DN]. Not checked: as in stcal, a bad gain gives NaN or inf outputs.
    frame_time : float
        TFRAME [s].
    nframes, groupgap : int
        NFRAMES and GROUPGAP, which give the read times of an evenly sampled ramp.
    read_times : sequence of sequences of float, optional
        Explicit read times [s] of the frames of each group (``meta.exposure.read_times``);
        replaces the pattern from ``frame_time, nframes, groupgap``.
    zeroframe : ndarray of float32, shape (integration, y, x), optional
        ZEROFRAME [DN]. When the first group averages two or more reads, the zero frame
        becomes a resultant of its own and the first group the mean of its other reads;
        otherwise it is ignored, as by stcal.
    average_dark_current : ndarray of float32, shape (y, x), optional
        Added [DN/s] to the count rate that sets the photon noise of the final fit.
    firstgroup, lastgroup : int, optional
        0-based: groups before ``firstgroup`` and after ``lastgroup`` count as DO_NOT_USE
        (see :func:`jwdask.kernels.ramp_fit.group_dnu_bounds`).
    row_width : int, optional
        Width [pixels] of the detector rows the tile is cut from (default: the tile's width).
        stcal searches jumps a detector row at a time and sums in another order when a single
        pixel of the row is still searched; that order decides, in the last bits, whether an
        exactly degenerate omission (e.g. the middle pair of a symmetric segment) is 0 / 0. The
        kernel follows it within the tile's part of the row, so a tile narrower than the row
        can differ from stcal in such rare ramps; a tile holding whole rows reproduces it.

    Returns
    -------
    RampFitResult
        As :func:`jwdask.kernels.ramp_fit.fit_ramps`, with stcal's LIKELY conventions: the
        rateints ``err`` is the fit uncertainty ``sqrt(scale / C)``; a ramp without a usable
        difference, or with a NaN anywhere, gets NaN rate, error and variances (no other
        flag than its DQ); DQ gains JUMP_DET where the fit found a jump.

    Examples
    --------
    A 20 DN/s ramp with an unflagged 5000 DN jump before group 6: the jump is found, flagged
    and left out of the rate.

    >>> t = np.arange(10)
    >>> ramp = (100 + 200.0 * t + 5000.0 * (t >= 6)).astype(np.float32).reshape(1, 10, 1, 1)
    >>> one = np.ones((1, 1), np.float32)
    >>> r = fit_ramps_likely(ramp, np.zeros(ramp.shape, np.uint8), np.zeros((1, 1), np.uint32),
    ...                      10 * one, 2 * one, frame_time=10.0, nframes=1, groupgap=0)
    >>> round(float(r.slope[0, 0]), 4), int(r.dq[0, 0]) == dqflags.JUMP_DET
    (20.0, True)
    """
    sci = _native(sci, np.float32, "sci", ndim=4)
    nints, ngroups, ny, nx = sci.shape
    if ngroups < LIKELY_MIN_NGROUPS:
        msg = f"the LIKELY ramp fit needs at least {LIKELY_MIN_NGROUPS} groups, got {ngroups}"
        raise ValueError(msg)
    if nints < 1:
        msg = f"sci needs at least one integration, got shape {sci.shape}"
        raise ValueError(msg)
    groupdq = _native(groupdq, np.uint8, "groupdq", shape=sci.shape)
    pixeldq = _native(pixeldq, np.uint32, "pixeldq", shape=(ny, nx))
    readnoise = _native(readnoise, np.float32, "readnoise", shape=(ny, nx))
    gain = _native(gain, np.float32, "gain", shape=(ny, nx))
    dark = (np.zeros((ny, nx), np.float32) if average_dark_current is None else
            _native(average_dark_current, np.float32, "average_dark_current", shape=(ny, nx)))
    if read_times is None:
        for name, value, low in (("nframes", nframes, 1), ("groupgap", groupgap, 0)):
            if int(value) != value or value < low:
                msg = f"{name} must be an integer >= {low}, got {value!r}"
                raise ValueError(msg)
        if not float(frame_time) > 0:
            msg = f"frame_time must be > 0 s, got {frame_time!r}"
            raise ValueError(msg)
        pattern = read_pattern(ngroups, int(nframes), int(groupgap), float(frame_time))
    else:
        pattern = [np.atleast_1d(np.asarray(t, dtype=np.float64)) for t in read_times]
        if len(pattern) != ngroups:
            msg = f"read_times lists {len(pattern)} groups, the ramps have {ngroups}"
            raise ValueError(msg)
    use_zeroframe = zeroframe is not None and pattern[0].size >= 2
    if use_zeroframe:
        zf = _native(zeroframe, np.float32, "zeroframe", shape=(nints, ny, nx))
        pattern = [pattern[0][:1], pattern[0][1:], *pattern[1:]]
    else:
        zf = np.empty((0, 0, 0), np.float32)
    cov = Covariance.from_read_times(pattern).table()
    lo, hi = group_dnu_bounds(firstgroup, lastgroup, ngroups)

    rn2 = (readnoise.astype(np.float64) / np.sqrt(2.0)) ** 2
    nres = len(pattern)
    diff = np.empty((nints, ny, nx, nres - 1), dtype=np.float64)
    use = np.empty((nints, ny, nx, nres - 1), dtype=np.uint8)
    rdq = np.empty((nints, ny, nx, nres), dtype=np.uint32)
    guess = np.empty((nints, ny, nx), dtype=np.float64)
    prepare_tile(sci, groupdq, zf, use_zeroframe, int(nframes), lo, hi, cov, diff, use, rdq, guess)
    final_guess = np.empty_like(guess)
    width = nx if row_width is None else int(row_width)
    jumps_tile(diff, use, rdq, guess, covariance_scale(guess, gain, rn2, cov), rn2, gain, dark, cov,
               THRESHOLD_ONE_OMIT, THRESHOLD_TWO_OMIT, width, final_guess)
    out_f = np.empty((4, nints, ny, nx), dtype=np.float32)
    dq_ints = np.empty((nints, ny, nx), dtype=np.uint32)
    final_tile(diff, use, rdq, final_guess, covariance_scale(final_guess, gain, rn2, cov), rn2, gain, pixeldq,
               cov, width, out_f, dq_ints)
    slope_i, err_i, var_p_i, var_r_i = out_f
    slope, err, dq, var_p, var_r = combine_integrations(slope_i, err_i, dq_ints, var_p_i, var_r_i)
    return RampFitResult(slope, err, dq, var_p, var_r, slope_i, err_i, dq_ints, var_p_i, var_r_i)


def combine_integrations(slope: np.ndarray, err: np.ndarray, dq: np.ndarray, var_poisson: np.ndarray,
                         var_rnoise: np.ndarray) -> tuple[np.ndarray, ...]:
    """The rate arrays from the per-integration ones (all ``(integration, y, x)``, float32).

    One integration is taken as is. Otherwise, starting from the NaN-median rate ``m``, two
    passes weight each integration by ``1 / (v_p s + v_r)`` with ``s = m / rate_i`` (0 when
    not finite or negative); variances combine with the squared normalised weights and
    ``err = sqrt(v_p + v_r)``. DQ is the OR of the integrations without DO_NOT_USE, which is
    set only when every integration has it. Arithmetic in float32, as stcal.

    Returns
    -------
    tuple of ndarray
        ``(slope, err, dq, var_poisson, var_rnoise)`` on (y, x).
    """
    if slope.shape[0] == 1:
        return slope[0], err[0], dq[0], var_poisson[0], var_rnoise[0]
    flags = np.bitwise_or.reduce(dq, axis=0) & np.uint32(~DNU & 0xFFFFFFFF)
    flags[np.all(dq & DNU, axis=0)] |= np.uint32(DNU)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        rate = np.nanmedian(slope, axis=0)
        for _ in range(2):
            ratio = rate / slope
            ratio[~np.isfinite(ratio) | (ratio < 0)] = 0
            var_p_scaled = var_poisson * ratio
            weight = np.float32(1) / (var_p_scaled + var_rnoise)
            weight /= _nan_sum(weight)
            rate = _nan_sum(slope * weight)
        weight2 = weight * weight
        var_p = _nan_sum(var_p_scaled * weight2)
        var_r = _nan_sum(var_rnoise * weight2)
        total_err = np.sqrt(var_p + var_r)
    return rate, total_err, flags, var_p, var_r


def _nan_sum(values: np.ndarray) -> np.ndarray:
    """Sum over integrations ignoring NaN; NaN where every integration is NaN."""
    nan = np.isnan(values)
    total = np.where(nan, np.float32(0), values).sum(axis=0, dtype=values.dtype)
    total[nan.all(axis=0)] = np.nan
    return total
