"""Compiled core of the OLS_C ramp fit: one pass over the pixels of a tile.

This module holds the per-pixel arithmetic of stcal 1.20's ``src/slope_fitter.c`` (spec
§6.15.2-§6.15.8) as numba functions; :mod:`jwdask.kernels.ramp_fit` validates the inputs,
does the step-level preprocessing and calls :func:`fit_tile`.

Everything is computed in float64 from the float32 inputs, with the operations in stcal's
order, and rounded to float32 only when stored, so the outputs are those of stcal. The
optimal-weighting power is evaluated in float32 (``powf`` in stcal); the weights of a segment
depend only on its length and power and are computed once per tile.

Two paths give identical numbers: :func:`fit_pixel` handles any ramp, one pixel at a time;
:func:`fit_batch` handles "clean" pixels (no group flags, finite data, usable gain), which
are most of an exposure, in batches whose loops run over pixels and vectorize.

All functions are compiled with ``nogil=True`` (Dask threads run tiles concurrently),
``cache=True`` and ``error_model="numpy"`` (division by zero gives inf/NaN as in C). All but
:func:`fit_tile`, which allocates the work arrays once per tile, are compiled without numba's
runtime (``_nrt=False``): with it, every call increments and decrements an atomic reference
count per array argument, which cost more than the arithmetic of a pixel. Work and output
arrays are stacked into a few arrays to keep argument lists short; the constants below name
their rows.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from jwdask import dqflags

DNU = dqflags.DO_NOT_USE
SAT = dqflags.SATURATED
JUMP = dqflags.JUMP_DET
PERS = dqflags.PERSISTENCE
CHARGELOSS = dqflags.CHARGELOSS
NO_GAIN = dqflags.NO_GAIN_VALUE
INVALID = DNU | SAT
NOT_PERS = ~PERS

LARGE_VARIANCE_THRESHOLD = 1.0e6
"""Variances at or above this [(DN/s)^2] are replaced by 0 (stcal ``LARGE_VARIANCE_THRESHOLD``)."""

POWERS = np.array([0.0, 0.4, 1.0, 3.0, 6.0, 10.0], dtype=np.float32)
"""Exponents of the optimal weighting, indexed by :func:`power_index`."""

SMALL_SORT = 24
"""Differences up to this count are sorted with a branch-free network, longer ones by heap sort."""

BATCH = 128
"""Pixels are taken in runs of this many along x (see :func:`fit_tile`)."""

MAX_BATCH_GROUPS = 40
"""Longer ramps are fitted pixel by pixel (the batch sort network grows as groups squared)."""

# Rows of the float outputs ``rate_f`` (y, x) and ``ints_f`` (integration, y, x) stacks.
OUT_SLOPE, OUT_ERR, OUT_VARP, OUT_VARR = range(4)
N_OUT = 4

# Rows of the per-integration integer work array of :func:`fit_pixel`.
I_DQ, I_NSAT, I_NINV, I_IS0, I_ISZ, I_CL = range(6)
N_IINT = 6

# Rows of the per-pixel work array of :func:`fit_batch`.
(B_GAIN, B_RN, B_DARK, B_MEDIAN, B_ACCP, B_ACCR, B_ACCNUM, B_INVRN2, B_SUMW, B_SUMX, B_SUMXX, B_SUMY,
 B_SUMXY, B_SLOPE, B_ERR, B_VARP, B_VARR) = range(17)
N_BF = 17
B_PDQ, B_PIDX, B_CLEAN = range(3)
N_BI = 3

_jit = numba.njit(cache=True, nogil=True, error_model="numpy", _nrt=False)
_jit_alloc = numba.njit(cache=True, nogil=True, error_model="numpy")


# ---------------------------------------------------------------------------------------------
# Shared arithmetic
# ---------------------------------------------------------------------------------------------


@_jit
def power_index(snr: float) -> int:
    """Index into ``POWERS`` for a segment signal-to-noise ratio (NaN selects the largest)."""
    if snr < 5.0:
        return 0
    if snr < 10.0:
        return 1
    if snr < 20.0:
        return 2
    if snr < 50.0:
        return 3
    if snr < 100.0:
        return 4
    return 5


@_jit
def fill_weights(table: np.ndarray, ready: np.ndarray, pidx: int, length: int) -> None:
    """Make ``table[pidx, length, :length]`` the float32 weights ``|(j - mid) / mid| ** POWERS[pidx]``
    of a segment of ``length`` groups (once; ``ready`` remembers which rows are filled)."""
    if not ready[pidx, length]:
        mid = (length - 1) / 2.0
        invmid = 1.0 / mid
        power = POWERS[pidx]
        for j in range(length):
            table[pidx, length, j] = np.float32(abs((j - mid) * invmid)) ** power
        ready[pidx, length] = True


@_jit
def segment_snr(delta: float, gain: float, rn: float) -> float:
    """Signal-to-noise ratio of a segment rising by ``delta`` [DN] (0 when not positive)."""
    den = rn * rn + delta * gain
    if den <= 0.0 or gain == 0.0:
        return 0.0
    snr = delta * gain / np.sqrt(den)
    return 0.0 if snr < 0.0 else snr


@_jit
def poisson_variance(median: float, dark: float, pden: float) -> float:
    """Poisson variance [(DN/s)^2] of a segment: (median rate if > 0, plus dark) / ``pden``."""
    return (median + dark) / pden if median > 0.0 else dark / pden


@_jit
def rnoise_numerator(rn: float, timing: float) -> float:
    """``12 (rn / timing)^2`` [e-^2/s^2], the numerator of a segment's read-noise variance."""
    rnum = rn / timing
    return 12.0 * rnum * rnum


@_jit
def rnoise_short(rnum: float, gain: float) -> float:
    """Read-noise variance [(DN/s)^2] of a one- or two-group segment (``rnum`` for its timing)."""
    return rnum / (6.0 * gain * gain)


@_jit
def rnoise_long(rnum: float, gain: float, length: int) -> float:
    """Read-noise variance [(DN/s)^2] of a segment of three or more groups (0 for bad gain)."""
    if gain <= 0.0 or math.isnan(gain):
        return 0.0
    seglen = float(length)
    rden = seglen * seglen * seglen - seglen
    return rnum / (rden * gain * gain)


@_jit
def find_segments(q: np.ndarray, row: int, seg: np.ndarray) -> int:
    """Split the ramp ``q[row]`` (group flags) into fit segments.

    Stores starts in ``seg[0]`` and lengths in ``seg[1]`` and returns how many there are. A
    segment is a run of groups whose flags (PERSISTENCE ignored) are 0; it starts one group
    earlier when that group carries exactly JUMP_DET. If any segment has two or more groups,
    the one-group segments are dropped; otherwise only the first one-group segment is kept.
    """
    ngroups = q.shape[1]
    nseg = 0
    longest = 0
    start = 0
    in_seg = False
    for idx in range(ngroups + 1):
        good = idx < ngroups and (q[row, idx] & NOT_PERS) == 0
        if good:
            if not in_seg:
                start = idx - 1 if idx > 0 and (q[row, idx - 1] & NOT_PERS) == JUMP else idx
                in_seg = True
        elif in_seg:
            length = idx - start
            if length > 1 or longest <= 1:
                seg[0, nseg] = start
                seg[1, nseg] = length
                nseg += 1
                longest = max(longest, length)
            in_seg = False
    if nseg < 2:
        return nseg
    if longest < 2:
        return 1
    kept = 0
    for s in range(nseg):
        if seg[1, s] > 1:
            seg[0, kept] = seg[0, s]
            seg[1, kept] = seg[1, s]
            kept += 1
    return kept


@_jit
def fit_segment(data: np.ndarray, i: int, start: int, length: int, timing: float, group_time: float,
                median: float, gain: float, rn: float, rnum: float, invrn2: float, dark: float,
                table: np.ndarray, ready: np.ndarray) -> tuple[float, float, float]:
    """Slope [DN/s], Poisson and read-noise variances [(DN/s)^2] of one segment of integration ``i``.

    ``timing`` [s] is the time of a one-group segment (group, frame or one-group time);
    ``rnum`` is :func:`rnoise_numerator` for the group time and ``invrn2`` is ``1 / rn^2``.
    """
    if length == 1:
        slope = data[i, start] / timing
        pden = timing * gain
        var_r = rnoise_short(rnoise_numerator(rn, timing), gain)
    elif length == 2:
        slope = (data[i, start + 1] - data[i, start]) / group_time
        pden = group_time * gain
        var_r = rnoise_short(rnum, gain)
    else:
        pidx = power_index(segment_snr(data[i, start + length - 1] - data[i, start], gain, rn))
        fill_weights(table, ready, pidx, length)
        sumw = sumx = sumxx = sumy = sumxy = 0.0
        for j in range(length):
            weight = np.float64(table[pidx, length, j]) * invrn2
            xval = float(j + start)
            y = data[i, start + j]
            if math.isnan(y):
                y = 0.0
            xwt = xval * weight
            sumw += weight
            sumx += xwt
            sumxx += xval * xwt
            sumy += y * weight
            sumxy += y * xwt
        invden = 1.0 / (sumw * sumxx - sumx * sumx)
        slope = (sumw * sumxy - sumx * sumy) * invden / group_time
        pden = group_time * gain * (length - 1.0)
        var_r = rnoise_long(rnum, gain, length)
    return slope, poisson_variance(median, dark, pden), var_r


@_jit
def heap_sort(values: np.ndarray, count: int) -> None:
    """Sort ``values[:count]`` in place (ascending, no NaN), without allocating."""
    for start in range(count // 2 - 1, -1, -1):
        sift_down(values, start, count)
    for end in range(count - 1, 0, -1):
        values[0], values[end] = values[end], values[0]
        sift_down(values, 0, end)


@_jit
def sift_down(values: np.ndarray, root: int, end: int) -> None:
    """Restore the max-heap property of ``values[root:end]`` below ``root``."""
    while True:
        child = 2 * root + 1
        if child >= end:
            return
        if child + 1 < end and values[child] < values[child + 1]:
            child += 1
        if values[root] >= values[child]:
            return
        values[root], values[child] = values[child], values[root]
        root = child


@_jit
def nan_median(values: np.ndarray, count: int) -> float:
    """Median of ``values[:count]`` (sorted in place; mean of the middle two for an even count);
    NaN when ``count`` is 0."""
    if count == 0:
        return math.nan
    if count == 1:
        return values[0]
    if count == 2:
        return (values[0] + values[1]) / 2.0
    if count <= SMALL_SORT:
        # Odd-even transposition sort: branch-free compare-exchanges, fast for short ramps.
        for r in range(count):
            for a in range(r & 1, count - 1, 2):
                lo = values[a]
                hi = values[a + 1]
                swap = hi < lo
                values[a] = hi if swap else lo
                values[a + 1] = lo if swap else hi
    else:
        heap_sort(values, count)
    half = count >> 1
    if count & 1:
        return values[half]
    return (values[half] + values[half - 1]) / 2.0


@_jit
def median_rate(data: np.ndarray, q: np.ndarray, iint: np.ndarray, group_time: float, frame_time: float,
                one_group_time: float, work: np.ndarray) -> float:
    """The pixel's median rate [DN/s]: mean over integrations of the median first difference.

    ``data`` and ``q`` hold the pixel's ramps and group flags (rows 0..nints-1 of ``q``);
    ``iint`` marks integrations timed as "only group 0" or ZEROFRAME.
    """
    nints, ngroups = data.shape
    acc = 0.0
    if ngroups == 1:
        for i in range(nints):
            acc += data[i, 0] / one_group_time
        return acc / nints
    for i in range(nints):
        if iint[I_IS0, i]:
            rate = data[i, 0] / one_group_time
        elif iint[I_ISZ, i]:
            rate = data[i, 0] / frame_time
        else:
            count = 0
            u0 = math.nan if q[i, 0] & DNU else data[i, 0] / group_time
            prev = u0
            for k in range(1, ngroups):
                cur = math.nan if q[i, k] & DNU else data[i, k] / group_time
                if not q[i, k] & JUMP:
                    diff = cur - prev
                    if not math.isnan(diff):
                        work[count] = diff
                        count += 1
                prev = cur
            if count == 0 and not math.isnan(u0):
                rate = u0
            else:
                rate = nan_median(work, count)
        if math.isnan(rate):
            rate = 0.0
        acc += rate
    return acc / nints


# ---------------------------------------------------------------------------------------------
# Any pixel
# ---------------------------------------------------------------------------------------------


@_jit
def fit_pixel(sci, groupdq, zeroframe, y, x, g, rn, dc, pdq, first, dnu_before, dnu_after,
              clear_first_jump, suppress, use_zeroframe, frame_time, group_time, one_group_time, table, ready,
              data, q, work, seg, fint, iint, rate_f, rate_dq, ints_f, ints_dq):
    """Fit the ramps of pixel (y, x), whatever their flags (spec §6.15.2-§6.15.8); store the outputs.

    ``g`` [e-/DN], ``rn`` [e-, one group read], ``dc`` [DN/s] and ``pdq`` (with the bad-gain
    flags) are the pixel's values; the other inputs are those of :func:`fit_tile`. Work
    arrays: ``data`` (integration, group); ``q`` (2 * integration + 1, group) holds the
    working group flags, the flags before suppression (for CHARGELOSS) and one scratch row;
    ``work`` (group,); ``seg`` (2, group + 1); ``fint`` (4, integration) the per-integration
    outputs in ``OUT_*`` order; ``iint`` (6, integration) the ``I_*`` counts and switches.
    """
    nints, ngroups = data.shape
    orig = nints
    cl_row = 2 * nints
    rate_dq_px = pdq
    any_cl = False

    # Group flags, one-good-group suppression, counts, ZEROFRAME (6.15.1 step 5, 6.15.2).
    for i in range(nints):
        for r in range(N_OUT):
            fint[r, i] = 0.0
        iint[I_DQ, i] = pdq
        iint[I_IS0, i] = 0
        iint[I_ISZ, i] = 0
        n_unflagged = 0
        n_good = 0
        n_inv = 0
        n_sat = 0
        flags = 0
        for k in range(ngroups):
            kk = first + k
            v = np.int64(groupdq[i, kk, y, x])
            if kk < dnu_before or kk > dnu_after:
                v |= DNU
            q[orig + i, k] = v
            if (v & NOT_PERS) == 0:
                n_unflagged += 1
            if k == 0 and clear_first_jump:
                v &= ~JUMP
            q[i, k] = v
            flags |= v
            if v == 0:
                n_good += 1
            if v & INVALID:
                n_inv += 1
            if v & SAT:
                n_sat += 1
                data[i, k] = math.nan
            else:
                data[i, k] = sci[i, kk, y, x]
        if suppress and n_unflagged == 1:
            for k in range(ngroups):
                q[i, k] |= DNU
            flags |= DNU
            n_good = 0
            n_inv = ngroups
        if not suppress:
            if n_good == 1 and q[i, 0] == 0:
                iint[I_IS0, i] = 1
            elif n_good == 0 and use_zeroframe:
                z = np.float64(zeroframe[i, y, x])
                if z != 0.0:
                    data[i, 0] = z
                    q[i, 0] = 0
                    n_inv -= 1
                    if n_sat == ngroups:
                        n_sat -= 1
                    iint[I_ISZ, i] = 1
        if flags & JUMP:
            iint[I_DQ, i] |= JUMP
            rate_dq_px |= JUMP
        if flags & PERS:
            iint[I_DQ, i] |= PERS
            rate_dq_px |= PERS
        iint[I_CL, i] = 1 if flags & CHARGELOSS else 0
        any_cl = any_cl or (flags & CHARGELOSS) != 0
        iint[I_NSAT, i] = n_sat
        iint[I_NINV, i] = n_inv

    median = median_rate(data, q, iint, group_time, frame_time, one_group_time, work)
    rnum = rnoise_numerator(rn, group_time)
    invrn2 = 1.0 / (rn * rn)

    # Segments, per-integration fit and combination (6.15.3, 6.15.5-6.15.7).
    acc_p = 0.0
    acc_r = 0.0
    acc_num = 0.0
    n_dnu = 0
    n_satint = 0
    partial_sat = False
    for i in range(nints):
        if q[i, 0] & SAT:
            iint[I_DQ, i] |= DNU | SAT
            fint[OUT_SLOPE, i] = math.nan
            nseg = 0
        else:
            nseg = find_segments(q, i, seg)
        if iint[I_NINV, i] == ngroups:
            iint[I_DQ, i] |= DNU
            if iint[I_NSAT, i] == ngroups:
                iint[I_DQ, i] |= SAT
        elif nseg > 0:
            timing = one_group_time if iint[I_IS0, i] else (frame_time if iint[I_ISZ, i] else group_time)
            inv_r = 0.0
            inv_p = 0.0
            inv_e = 0.0
            num = 0.0
            for s in range(nseg):
                seg_slope, seg_p, seg_r = fit_segment(data, i, seg[0, s], seg[1, s], timing, group_time, median,
                                                      g, rn, rnum, invrn2, dc, table, ready)
                inv_r += 1.0 / seg_r
                if seg_p > 0.0:
                    inv_p += 1.0 / seg_p
                inv_e += 1.0 / (seg_p + seg_r)
                num += seg_slope / seg_r
            var_pi = 1.0 / inv_p if inv_p > 0.0 else 0.0
            var_ri = 1.0 / inv_r
            fint[OUT_VARP, i] = 0.0 if var_pi >= LARGE_VARIANCE_THRESHOLD else var_pi
            fint[OUT_VARR, i] = 0.0 if var_ri >= LARGE_VARIANCE_THRESHOLD else var_ri
            if iint[I_DQ, i] & INVALID:
                fint[OUT_SLOPE, i] = math.nan
                fint[OUT_VARP, i] = 0.0
                fint[OUT_VARR, i] = 0.0
                fint[OUT_ERR, i] = 0.0
            else:
                var_e = 1.0 / inv_e
                fint[OUT_SLOPE, i] = num * fint[OUT_VARR, i]
                fint[OUT_ERR, i] = 0.0 if var_e > LARGE_VARIANCE_THRESHOLD else np.sqrt(var_e)
            if inv_p > 0.0:
                acc_p += inv_p
            acc_r += inv_r
            acc_num += num
        if iint[I_DQ, i] & DNU:
            n_dnu += 1
            fint[OUT_SLOPE, i] = math.nan
        if iint[I_DQ, i] & SAT:
            n_satint += 1
            fint[OUT_SLOPE, i] = math.nan
        if iint[I_NSAT, i] > 0:
            iint[I_DQ, i] |= SAT
            partial_sat = True

    if n_dnu == nints:
        rate_dq_px |= DNU
    if n_satint == nints:
        rate_dq_px |= SAT
    rate_p = 1.0 / acc_p if acc_p > 0.0 else acc_p
    if rate_p >= LARGE_VARIANCE_THRESHOLD or rate_p < 0.0:
        rate_p = 0.0
    rate_r = 1.0 / acc_r if acc_r > 0.0 else acc_r
    if rate_r >= LARGE_VARIANCE_THRESHOLD:
        rate_r = 0.0
    rate_err = np.sqrt(rate_p + rate_r)
    rate_slope = acc_num
    if rate_dq_px & INVALID:
        rate_slope = math.nan
        rate_p = 0.0
        rate_r = 0.0
        rate_err = 0.0
    if partial_sat:
        rate_dq_px |= SAT
    if not math.isnan(rate_slope):
        rate_slope = rate_slope * rate_r

    # CHARGELOSS read-noise recomputation (6.15.8).
    if any_cl:
        evar_r = 0.0
        for i in range(nints):
            if not iint[I_CL, i]:
                if fint[OUT_VARR, i] > 0.0:
                    evar_r += 1.0 / fint[OUT_VARR, i]
                continue
            for k in range(ngroups):
                v = q[orig + i, k]
                q[cl_row, k] = v ^ (DNU | CHARGELOSS) if v & CHARGELOSS else v
            nseg = find_segments(q, cl_row, seg)
            timing = one_group_time if iint[I_IS0, i] else (frame_time if iint[I_ISZ, i] else group_time)
            inv_r = 0.0
            for s in range(nseg):
                if seg[1, s] == 1:
                    seg_r = rnoise_short(rnoise_numerator(rn, timing), g)
                elif seg[1, s] == 2:
                    seg_r = rnoise_short(rnum, g)
                else:
                    seg_r = rnoise_long(rnum, g, seg[1, s])
                if seg_r > 0.0:
                    inv_r += 1.0 / seg_r
            var_ri = 1.0 / inv_r
            fint[OUT_VARR, i] = 0.0 if var_ri >= LARGE_VARIANCE_THRESHOLD else var_ri
            evar_r += inv_r
        if evar_r > 0.0:
            rate_r = 1.0 / evar_r
        if rate_r >= LARGE_VARIANCE_THRESHOLD:
            rate_r = 0.0

    rate_f[OUT_SLOPE, y, x] = rate_slope
    rate_f[OUT_ERR, y, x] = rate_err
    rate_f[OUT_VARP, y, x] = rate_p
    rate_f[OUT_VARR, y, x] = rate_r
    rate_dq[y, x] = rate_dq_px
    for i in range(nints):
        for r in range(N_OUT):
            ints_f[r, i, y, x] = fint[r, i]
        ints_dq[i, y, x] = iint[I_DQ, i]


# ---------------------------------------------------------------------------------------------
# Clean pixels, in batches
# ---------------------------------------------------------------------------------------------


@_jit
def fit_batch(nb, group_time, table, staged, u, bf, bi, y, x0, rate_f, rate_dq, ints_f, ints_dq):
    """Fit pixels (y, x0) .. (y, x0 + nb - 1) as clean pixels and store their outputs.

    A clean pixel has no flag in any fitted group, finite data, a usable gain, no DO_NOT_USE
    or SATURATED pixel flag and at least 3 groups, so each integration is one segment of all
    groups. The arithmetic is that of :func:`fit_pixel` in the same order (the results are
    identical), arranged as loops over the pixels of the run so that they vectorize. Outputs
    of pixels that are not clean are meaningless and must be overwritten by the caller.
    ``staged`` (integration, group, BATCH) holds the data [DN]; ``u`` (group, BATCH) is work
    space; ``bf`` (N_BF, BATCH) and ``bi`` (N_BI, BATCH) hold the ``B_*`` per-pixel values.
    """
    nints, ngroups = staged.shape[0], staged.shape[1]
    ndiff = ngroups - 1
    half = ndiff >> 1
    last = ngroups - 1
    pden_factor = ngroups - 1.0

    # Median rate: median of the first differences, averaged over integrations (6.15.4).
    for b in range(nb):
        bf[B_MEDIAN, b] = 0.0
    for i in range(nints):
        for k in range(ngroups):
            for b in range(nb):
                u[k, b] = staged[i, k, b] / group_time
        for k in range(ndiff):
            for b in range(nb):
                u[k, b] = u[k + 1, b] - u[k, b]
        for r in range(ndiff):
            for a in range(r & 1, ndiff - 1, 2):
                for b in range(nb):
                    lo = u[a, b]
                    hi = u[a + 1, b]
                    swap = hi < lo
                    u[a, b] = hi if swap else lo
                    u[a + 1, b] = lo if swap else hi
        for b in range(nb):
            m = u[half, b] if ndiff & 1 else (u[half, b] + u[half - 1, b]) / 2.0
            bf[B_MEDIAN, b] += 0.0 if math.isnan(m) else m
    for b in range(nb):
        bf[B_MEDIAN, b] = bf[B_MEDIAN, b] / nints
        bf[B_ACCP, b] = 0.0
        bf[B_ACCR, b] = 0.0
        bf[B_ACCNUM, b] = 0.0

    # One weighted least-squares segment per integration (6.15.5) and the combination (6.15.6).
    for i in range(nints):
        for b in range(nb):
            bi[B_PIDX, b] = power_index(segment_snr(staged[i, last, b] - staged[i, 0, b], bf[B_GAIN, b],
                                                    bf[B_RN, b]))
        for j in range(ngroups):
            for b in range(nb):
                u[j, b] = table[bi[B_PIDX, b], ngroups, j]
        for b in range(nb):
            bf[B_INVRN2, b] = 1.0 / (bf[B_RN, b] * bf[B_RN, b])
            bf[B_SUMW, b] = 0.0
            bf[B_SUMX, b] = 0.0
            bf[B_SUMXX, b] = 0.0
            bf[B_SUMY, b] = 0.0
            bf[B_SUMXY, b] = 0.0
        for j in range(ngroups):
            xval = float(j)
            for b in range(nb):
                weight = u[j, b] * bf[B_INVRN2, b]
                yv = staged[i, j, b]
                xwt = xval * weight
                bf[B_SUMW, b] += weight
                bf[B_SUMX, b] += xwt
                bf[B_SUMXX, b] += xval * xwt
                bf[B_SUMY, b] += yv * weight
                bf[B_SUMXY, b] += yv * xwt
        for b in range(nb):
            gain = bf[B_GAIN, b]
            rn = bf[B_RN, b]
            sumw = bf[B_SUMW, b]
            sumx = bf[B_SUMX, b]
            invden = 1.0 / (sumw * bf[B_SUMXX, b] - sumx * sumx)
            seg_slope = (sumw * bf[B_SUMXY, b] - sumx * bf[B_SUMY, b]) * invden / group_time
            seg_p = poisson_variance(bf[B_MEDIAN, b], bf[B_DARK, b], group_time * gain * pden_factor)
            seg_r = rnoise_long(rnoise_numerator(rn, group_time), gain, ngroups)
            inv_r = 0.0 + 1.0 / seg_r
            inv_p = 0.0 + 1.0 / seg_p if seg_p > 0.0 else 0.0
            inv_e = 0.0 + 1.0 / (seg_p + seg_r)
            num = 0.0 + seg_slope / seg_r
            var_pi = 1.0 / inv_p if inv_p > 0.0 else 0.0
            var_ri = 1.0 / inv_r
            var_ri = 0.0 if var_ri >= LARGE_VARIANCE_THRESHOLD else var_ri
            var_e = 1.0 / inv_e
            bf[B_SLOPE, b] = num * var_ri
            bf[B_ERR, b] = 0.0 if var_e > LARGE_VARIANCE_THRESHOLD else np.sqrt(var_e)
            bf[B_VARP, b] = 0.0 if var_pi >= LARGE_VARIANCE_THRESHOLD else var_pi
            bf[B_VARR, b] = var_ri
            bf[B_ACCP, b] += inv_p if inv_p > 0.0 else 0.0
            bf[B_ACCR, b] += inv_r
            bf[B_ACCNUM, b] += num
        for b in range(nb):
            ints_f[OUT_SLOPE, i, y, x0 + b] = bf[B_SLOPE, b]
            ints_f[OUT_ERR, i, y, x0 + b] = bf[B_ERR, b]
            ints_f[OUT_VARP, i, y, x0 + b] = bf[B_VARP, b]
            ints_f[OUT_VARR, i, y, x0 + b] = bf[B_VARR, b]
            ints_dq[i, y, x0 + b] = bi[B_PDQ, b]

    for b in range(nb):
        acc_p = bf[B_ACCP, b]
        acc_r = bf[B_ACCR, b]
        rate_p = 1.0 / acc_p if acc_p > 0.0 else acc_p
        rate_p = 0.0 if rate_p >= LARGE_VARIANCE_THRESHOLD or rate_p < 0.0 else rate_p
        rate_r = 1.0 / acc_r if acc_r > 0.0 else acc_r
        rate_r = 0.0 if rate_r >= LARGE_VARIANCE_THRESHOLD else rate_r
        rate_slope = bf[B_ACCNUM, b]
        bf[B_SLOPE, b] = rate_slope if math.isnan(rate_slope) else rate_slope * rate_r
        bf[B_ERR, b] = np.sqrt(rate_p + rate_r)
        bf[B_VARP, b] = rate_p
        bf[B_VARR, b] = rate_r
    for b in range(nb):
        rate_f[OUT_SLOPE, y, x0 + b] = bf[B_SLOPE, b]
        rate_f[OUT_ERR, y, x0 + b] = bf[B_ERR, b]
        rate_f[OUT_VARP, y, x0 + b] = bf[B_VARP, b]
        rate_f[OUT_VARR, y, x0 + b] = bf[B_VARR, b]
        rate_dq[y, x0 + b] = bi[B_PDQ, b]


# ---------------------------------------------------------------------------------------------
# A tile
# ---------------------------------------------------------------------------------------------


@_jit_alloc
def fit_tile(sci, groupdq, pixeldq, readnoise, gain, dark, zeroframe, first, stop, dnu_before,
             dnu_after, clear_first_jump, suppress, use_zeroframe, frame_time, group_time, one_group_time,
             nframes, batched, rate_f, rate_dq, ints_f, ints_dq):
    """Fit every pixel of a tile and write the outputs in place.

    The inputs are prepared by :func:`jwdask.kernels.ramp_fit.fit_ramps`: groups ``first <= k
    < stop`` are fitted; groups ``k < dnu_before`` or ``k > dnu_after`` are DO_NOT_USE
    (firstgroup/lastgroup); ``clear_first_jump`` removes JUMP_DET from group ``first`` (MIRI
    leading-group trim); ``suppress`` is the effective one-good-group suppression; ``dark`` is
    a (y, x) array or empty, ``zeroframe`` an (integration, y, x) array or empty; the times [s]
    are float64 copies of the float32-rounded exposure times. Outputs: ``rate_f`` (4, y, x)
    and ``ints_f`` (4, integration, y, x) float32 in ``OUT_*`` order, ``rate_dq`` (y, x) and
    ``ints_dq`` (integration, y, x) uint32.

    Pixels are taken in runs of up to ``BATCH`` along x. With ``batched`` (and 3 to
    ``MAX_BATCH_GROUPS`` groups, no firstgroup/lastgroup cut inside the fitted groups), a run
    is first fitted as if all its pixels were clean (:func:`fit_batch`), then the pixels that
    are not clean are refitted by :func:`fit_pixel`; otherwise every pixel goes through
    :func:`fit_pixel`. Both give the same numbers for a clean pixel.
    """
    nints = sci.shape[0]
    ny, nx = sci.shape[2], sci.shape[3]
    ngroups = stop - first
    has_dark = dark.size > 0
    rn_scale = math.sqrt(2.0 * nframes)
    table = np.empty((POWERS.size, ngroups + 1, max(ngroups, 1)), dtype=np.float32)
    ready = np.zeros((POWERS.size, ngroups + 1), dtype=np.bool_)
    data = np.empty((nints, ngroups))
    q = np.empty((2 * nints + 1, ngroups), dtype=np.int64)
    work = np.empty(max(ngroups, 1))
    seg = np.empty((2, ngroups + 1), dtype=np.int64)
    fint = np.empty((N_OUT, nints))
    iint = np.empty((N_IINT, nints), dtype=np.int64)
    batched = batched and 3 <= ngroups <= MAX_BATCH_GROUPS and dnu_before <= first and dnu_after >= stop - 1
    staged = np.empty((nints, ngroups if batched else 0, BATCH))
    u = np.empty((ngroups if batched else 0, BATCH))
    bf = np.empty((N_BF, BATCH))
    bi = np.empty((N_BI, BATCH), dtype=np.int64)
    if batched:
        for pidx in range(POWERS.size):
            fill_weights(table, ready, pidx, ngroups)
    for y in range(ny):
        for x0 in range(0, nx, BATCH):
            nb = min(BATCH, nx - x0)
            for b in range(nb):
                g = np.float64(gain[y, x0 + b])
                bad_gain = g <= 0.0 or math.isnan(g)
                pdq = np.int64(pixeldq[y, x0 + b]) | (DNU | NO_GAIN if bad_gain else 0)
                bf[B_GAIN, b] = g
                bf[B_RN, b] = np.float32(np.float64(readnoise[y, x0 + b]) * (g / rn_scale))
                bf[B_DARK, b] = dark[y, x0 + b] if has_dark else 0.0
                bi[B_PDQ, b] = pdq
                bi[B_CLEAN, b] = batched and (pdq & INVALID) == 0
            n_clean = 0
            if batched:
                for i in range(nints):
                    for k in range(ngroups):
                        jump_mask = ~JUMP if k == 0 and clear_first_jump else -1
                        for b in range(nb):
                            value = sci[i, first + k, y, x0 + b]
                            staged[i, k, b] = value
                            if (groupdq[i, first + k, y, x0 + b] & jump_mask) != 0 or not math.isfinite(value):
                                bi[B_CLEAN, b] = 0
                for b in range(nb):
                    n_clean += bi[B_CLEAN, b]
            if n_clean > 0:
                fit_batch(nb, group_time, table, staged, u, bf, bi, y, x0, rate_f, rate_dq, ints_f, ints_dq)
            for b in range(nb):
                if not bi[B_CLEAN, b]:
                    fit_pixel(sci, groupdq, zeroframe, y, x0 + b, bf[B_GAIN, b], bf[B_RN, b], bf[B_DARK, b],
                              bi[B_PDQ, b], first, dnu_before, dnu_after, clear_first_jump, suppress,
                              use_zeroframe, frame_time, group_time, one_group_time, table, ready, data, q, work,
                              seg, fint, iint, rate_f, rate_dq, ints_f, ints_dq)


# ---------------------------------------------------------------------------------------------
# Exposure-level summary
# ---------------------------------------------------------------------------------------------


@_jit
def group_flags_tile(groupdq, dnu_before, dnu_after, suppress, all_dnu, all_sat):
    """AND into ``all_dnu``/``all_sat`` (group,) whether each group is DO_NOT_USE / SATURATED
    in every pixel and integration of the tile, after firstgroup/lastgroup flagging and
    one-good-group suppression."""
    nints, ngroups, ny, nx = groupdq.shape
    for i in range(nints):
        for y in range(ny):
            for x in range(nx):
                n_unflagged = 0
                for k in range(ngroups):
                    outside = k < dnu_before or k > dnu_after
                    if not outside and (groupdq[i, k, y, x] & NOT_PERS) == 0:
                        n_unflagged += 1
                suppressed = suppress and n_unflagged == 1
                for k in range(ngroups):
                    v = groupdq[i, k, y, x]
                    dnu = suppressed or (v & DNU) != 0 or k < dnu_before or k > dnu_after
                    if not dnu:
                        all_dnu[k] = False
                    if (v & SAT) == 0:
                        all_sat[k] = False
