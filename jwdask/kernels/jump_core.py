"""Compiled core of the two-point jump detector (spec §6.12.2-§6.12.8; stcal 1.20).

:mod:`jwdask.kernels.jump` validates the inputs, takes the exposure-wide decisions (gate,
detector choice) and calls the passes below on a (y, x) block:

1. :func:`detect` runs the chosen detector (single pass, iterative, or sigma clipping across
   integrations) on every pixel and records, for the neighbour flagging, the differences
   that are jumps with a ratio inside the neighbour window ("seeds");
2. :func:`reset_planes` (sigma clipping only) clears the jumps of fully flagged planes;
3. :func:`finish` adds JUMP_DET around the seeds (4-connected cross) and after jumps, then
   removes JUMP_DET from groups that are also DO_NOT_USE or SATURATED.

Pixels are taken in runs along x ("batches") of one row. For a batch the group differences
are laid out as ``(difference, pixel)``; for pixels whose differences are all usable, the
single-pass and iterative detectors sort them with an odd-even transposition network that
runs across the pixels of the batch (SIMD), the others are sorted one by one.

Arithmetic follows stcal's NumPy precisions exactly, so that decisions on a threshold are
the same: electrons ``E = SCI * gain`` and differences ``E[k+1] - E[k]`` are float32; the
median, sigma and ratios are float64; the iterative detector stores ``|d| - median`` as
float32 and, after its first round, the median too. Medians of an even count are
``(low + high) / 2``. The sigma clipping reproduces astropy's compiled ``sigma_clip``
(Wirth selection for the median, mean and population standard deviation summed in the
order the selection leaves the values in, at most five rounds).

Compiled with ``nogil=True`` (Dask threads run tiles concurrently), ``cache=True``,
``error_model="numpy"`` (0/0 gives NaN as in NumPy) and without the numba runtime: every
buffer is allocated by the Python callers here.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from jwdask import dqflags

DNU = dqflags.DO_NOT_USE
SAT = dqflags.SATURATED
JUMP = dqflags.JUMP_DET
BAD = DNU | SAT
JUMP_DNU = JUMP | DNU
NOT_JUMP = 0xFF ^ JUMP

MODE_NONE, MODE_SINGLE, MODE_ITERATIVE, MODE_CLIP_INTS, MODE_CLIP_ALL = range(5)
"""Detector of :func:`detect` (MODE_NONE: the gate failed, nothing is detected)."""

SIGCLIP_MAXITERS = 5
"""astropy ``sigma_clip`` default number of rounds."""

MAX_NETWORK = 32
"""Pixels with more differences than this are sorted one by one (the network is O(n^2))."""

BATCH_VALUES = 1 << 15
"""Differences held per batch (``batch width * differences per pixel``), ~256 KiB."""

_jit = numba.njit(cache=True, nogil=True, error_model="numpy", _nrt=False)


# ---------------------------------------------------------------------------------------------
# One pixel's values
# ---------------------------------------------------------------------------------------------


@_jit
def _sift_down(a, root, end):
    while True:
        child = 2 * root + 1
        if child >= end:
            return
        if child + 1 < end and a[child] < a[child + 1]:
            child += 1
        if not a[root] < a[child]:
            return
        t = a[root]
        a[root] = a[child]
        a[child] = t
        root = child


@_jit
def _sort(a, n):
    """Sort the non-NaN values ``a[:n]`` in place: insertion sort for the usual few tens of
    values, heapsort for the long ramps of many integrations."""
    if n > 48:
        for start in range(n // 2 - 1, -1, -1):
            _sift_down(a, start, n)
        for end in range(n - 1, 0, -1):
            t = a[0]
            a[0] = a[end]
            a[end] = t
            _sift_down(a, 0, end)
        return
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@_jit
def _median_sorted(s, lo, hi):
    """NumPy's median of the sorted values ``s[lo:hi]`` (NaN when empty)."""
    m = hi - lo
    if m <= 0:
        return np.nan
    h = lo + m // 2
    if m % 2 == 1:
        return s[h]
    return (s[h - 1] + s[h]) / 2.0


@_jit
def _median(d, s):
    """NaN-median of ``d`` (``np.nanmedian``), using ``s`` as scratch."""
    n = 0
    for j in range(d.shape[0]):
        if not math.isnan(d[j]):
            s[n] = d[j]
            n += 1
    _sort(s, n)
    return _median_sorted(s, 0, n)


@_jit
def _rnterm(readnoise, gain, y, x, nframes):
    """``float32(RN * gain)**2 / NFRAMES`` [e-^2]: the read-noise variance of a difference."""
    rn = readnoise[y, x] * gain[y, x]
    return np.float64(rn * rn) / nframes


@_jit
def _sigma(med, rnterm):
    """``sqrt(|median| + rn^2 / NFRAMES)`` [e-], NaN where it is 0 (stcal resets those)."""
    s = math.sqrt(abs(med) + rnterm)
    if s == 0.0:
        return np.nan
    return s


@_jit
def _iter_ratio(a, med, sig):
    """Ratio of the iterative detector: ``|float32(|d| - median)| / sigma``."""
    return abs(np.float64(np.float32(a - med))) / sig


@_jit
def _kth_smallest(a, n, k):
    """Wirth's selection of the k-th smallest of ``a[:n]``, permuting ``a`` in place.

    The permutation is part of the result: astropy sums the mean and the variance in the
    order the selection leaves the values in.
    """
    lo = 0
    hi = n - 1
    while lo < hi:
        x = a[k]
        i = lo
        j = hi
        while True:
            while a[i] < x:
                i += 1
            while x < a[j]:
                j -= 1
            if i <= j:
                t = a[i]
                a[i] = a[j]
                a[j] = t
                i += 1
                j -= 1
            if i > j:
                break
        if j < k:
            lo = i
        if k < i:
            hi = j
    return a[k]


@_jit
def _clip_bounds(a, n, nsigma):
    """astropy's compiled sigma-clip bounds of the finite values ``a[:n]`` (median centre,
    population std, at most :data:`SIGCLIP_MAXITERS` rounds); ``a`` is scrambled."""
    lower = np.nan
    upper = np.nan
    iteration = 0
    while n > 0:
        if n % 2 == 0:
            med = 0.5 * (_kth_smallest(a, n, n // 2) + _kth_smallest(a, n, n // 2 - 1))
        else:
            med = _kth_smallest(a, n, (n - 1) // 2)
        mean = 0.0
        for i in range(n):
            mean += a[i]
        mean /= n
        var = 0.0
        for i in range(n):
            var += (a[i] - mean) * (a[i] - mean)
        std = math.sqrt(var / n)
        lower = med - nsigma * std
        upper = med + nsigma * std
        kept = 0
        for i in range(n):
            if a[i] >= lower and a[i] <= upper:
                a[kept] = a[i]
                kept += 1
        if kept == n or kept == 0:
            break
        n = kept
        iteration += 1
        if iteration >= SIGCLIP_MAXITERS:
            break
    return lower, upper


# ---------------------------------------------------------------------------------------------
# Detectors on one pixel: ``d[i * ndiff + k]`` holds its differences [e-], NaN = unusable.
# Each returns whether it added a flag.
# ---------------------------------------------------------------------------------------------


@_jit
def _single_pass(d, ndiff, med, sig, thr, out, y, x):
    """Flag every finite difference whose ``|d - median| / sigma`` exceeds ``thr``."""
    hit = False
    for j in range(d.shape[0]):
        v = d[j]
        if math.isfinite(v) and abs(v - med) / sig > thr:
            out[j // ndiff, j % ndiff + 1, y, x] |= JUMP
            hit = True
    return hit


@_jit
def _iterative(d, ndiff, sorted_abs, n, rnterm, thr, thr3, thr4, work, out, y, x):
    """Largest-outlier-first detection on the sorted ``|d|`` values ``sorted_abs[:n]``.

    Each round takes the median (dropping the values tied with the maximum when four or more
    remain; the minimum when two remain), and flags every remaining difference whose ratio
    equals the largest one if that exceeds the threshold for the number of remaining values.
    The ratio ``|float32(a - median)|`` is smallest near the median and grows towards both
    ends of the sorted values, so the largest ratio and its ties sit at the two ends.
    Flagged differences are set to NaN in ``work``, a copy of ``d`` made at the first flag.
    """
    lo = 0
    hi = n
    first = True
    while hi - lo >= 2:
        m = hi - lo
        if m >= 4:
            top = hi
            vmax = sorted_abs[hi - 1]
            while top > lo and sorted_abs[top - 1] == vmax:
                top -= 1
            med = _median_sorted(sorted_abs, lo, top)
            limit = thr
        elif m == 3:
            med = sorted_abs[lo + 1]
            limit = thr4
        else:
            med = sorted_abs[lo]
            limit = thr3
        if not first:
            med = np.float64(np.float32(med))
        sig = _sigma(med, rnterm)
        r_lo = _iter_ratio(sorted_abs[lo], med, sig)
        r_hi = _iter_ratio(sorted_abs[hi - 1], med, sig)
        rmax = r_hi if (r_hi >= r_lo or math.isnan(r_lo)) else r_lo
        if not rmax > limit:
            break
        if first:
            for j in range(d.shape[0]):
                work[j] = d[j]
        for j in range(work.shape[0]):
            v = work[j]
            if not math.isnan(v) and _iter_ratio(abs(v), med, sig) == rmax:
                work[j] = np.nan
                out[j // ndiff, j % ndiff + 1, y, x] |= JUMP
        while lo < hi and _iter_ratio(sorted_abs[lo], med, sig) == rmax:
            lo += 1
        while hi > lo and _iter_ratio(sorted_abs[hi - 1], med, sig) == rmax:
            hi -= 1
        first = False
    return not first


@_jit
def _clip_ints(d, nints, ndiff, nsigma, buf, out, y, x):
    """Sigma clipping of each difference index across the integrations (``only_use_ints``)."""
    hit = False
    for k in range(ndiff):
        n = 0
        for i in range(nints):
            v = d[i * ndiff + k]
            if math.isfinite(v):
                buf[n] = v
                n += 1
        if n == 0:
            continue
        lower, upper = _clip_bounds(buf, n, nsigma)
        for i in range(nints):
            v = d[i * ndiff + k]
            if math.isfinite(v) and (v < lower or v > upper):
                out[i, k + 1, y, x] |= JUMP
                hit = True
    return hit


@_jit
def _clip_all(d, ndiff, nsigma, buf, out, y, x):
    """Sigma clipping of all the differences of the pixel together."""
    n = 0
    for j in range(d.shape[0]):
        v = d[j]
        if math.isfinite(v):
            buf[n] = v
            n += 1
    if n == 0:
        return False
    lower, upper = _clip_bounds(buf, n, nsigma)
    hit = False
    for j in range(d.shape[0]):
        v = d[j]
        if math.isfinite(v) and (v < lower or v > upper):
            out[j // ndiff, j % ndiff + 1, y, x] |= JUMP
            hit = True
    return hit


# ---------------------------------------------------------------------------------------------
# Batches of pixels along a row
# ---------------------------------------------------------------------------------------------


@_jit
def _load_batch(sci, gdq, gain, y, x0, w, erow, dbuf, nvalid, jumped):
    """``dbuf[i*ndiff+k, p] = float32(E[i,k+1] - E[i,k])`` at pixel ``x0 + p`` with
    ``E = float32(SCI * gain)`` [e-], NaN where either group is DO_NOT_USE or SATURATED;
    ``nvalid[p]`` counts its non-NaN differences, ``jumped[p]`` is True if a group >= 1
    already has JUMP_DET."""
    nints, ngroups = sci.shape[0], sci.shape[1]
    ndiff = ngroups - 1
    nan32 = np.float32(np.nan)
    for p in range(w):
        nvalid[p] = 0
        jumped[p] = False
    for i in range(nints):
        for p in range(w):
            q = gdq[i, 0, y, x0 + p]
            erow[p] = nan32 if q & BAD else sci[i, 0, y, x0 + p] * gain[y, x0 + p]
        for k in range(ndiff):
            row = i * ndiff + k
            for p in range(w):
                q = gdq[i, k + 1, y, x0 + p]
                e = nan32 if q & BAD else sci[i, k + 1, y, x0 + p] * gain[y, x0 + p]
                v = np.float64(e - erow[p])
                dbuf[row, p] = v
                nvalid[p] += 0 if math.isnan(v) else 1
                jumped[p] |= (q & JUMP) != 0
                erow[p] = e


@_jit
def _network_sort(buf, n, w):
    """Sort each column ``buf[:n, p]``, p < w (no NaN), with an odd-even transposition
    network: n rounds of compare-exchanges of neighbouring rows, vectorised across p."""
    for r in range(n):
        for j in range(r & 1, n - 1, 2):
            for p in range(w):
                a = buf[j, p]
                b = buf[j + 1, p]
                buf[j, p] = b if b < a else a
                buf[j + 1, p] = a if b < a else b


@_jit
def _detect_batch(sci, gdq, gain, readnoise, nframes, mode, thr, thr3, thr4, nb_min, nb_max,
                  want_seeds, out, seeds, seed_any, y, x0, w, erow, dbuf, sbuf, nvalid, jumped,
                  s, work):
    """Detect jumps in the pixels ``x0 .. x0 + w - 1`` of row ``y`` (see :func:`detect`)."""
    nints, ngroups = sci.shape[0], sci.shape[1]
    ndiff = ngroups - 1
    total = nints * ndiff
    _load_batch(sci, gdq, gain, y, x0, w, erow, dbuf, nvalid, jumped)
    network = total <= MAX_NETWORK and (mode == MODE_SINGLE or mode == MODE_ITERATIVE)
    if network:
        for j in range(total):
            for p in range(w):
                v = dbuf[j, p]
                sbuf[j, p] = abs(v) if mode == MODE_ITERATIVE else v
        _network_sort(sbuf, total, w)
    for p in range(w):
        x = x0 + p
        d = dbuf[:total, p]
        n = nvalid[p]
        rnterm = _rnterm(readnoise, gain, y, x, nframes)
        med = np.nan
        known = False
        hit = False
        if mode == MODE_SINGLE:
            if network and n == total:
                med = _median_sorted(sbuf[:total, p], 0, n)
            else:
                med = _median(d, s)
            known = True
            hit = _single_pass(d, ndiff, med, _sigma(med, rnterm), thr, out, y, x)
        elif mode == MODE_ITERATIVE and n >= 2:
            if network and n == total:
                hit = _iterative(d, ndiff, sbuf[:total, p], n, rnterm, thr, thr3, thr4, work,
                                 out, y, x)
            else:
                m = 0
                for j in range(total):
                    if not math.isnan(d[j]):
                        s[m] = abs(d[j])
                        m += 1
                _sort(s, m)
                hit = _iterative(d, ndiff, s, m, rnterm, thr, thr3, thr4, work, out, y, x)
        elif mode == MODE_CLIP_INTS:
            hit = _clip_ints(d, nints, ndiff, thr, work, out, y, x)
        elif mode == MODE_CLIP_ALL:
            hit = _clip_all(d, ndiff, thr, work, out, y, x)
        if want_seeds and (hit or jumped[p]):
            if not known:
                med = _median(d, s)
            sig = _sigma(med, rnterm)
            for j in range(total):
                i = j // ndiff
                k = j % ndiff
                if out[i, k + 1, y, x] & JUMP:
                    r = abs(d[j] - med) / sig
                    if r < nb_max and r > nb_min:
                        seeds[i, k, y, x] = 1
                        seed_any[y, x] = True


@_jit
def _detect(sci, gdq, gain, readnoise, nframes, mode, thr, thr3, thr4, nb_min, nb_max, want_seeds,
            out, seeds, seed_any, erow, dbuf, sbuf, nvalid, jumped, s, work):
    """All rows of the block, in batches of ``erow.shape[0]`` pixels."""
    ny, nx = sci.shape[2], sci.shape[3]
    width = erow.shape[0]
    for y in range(ny):
        for x0 in range(0, nx, width):
            w = min(width, nx - x0)
            _detect_batch(sci, gdq, gain, readnoise, nframes, mode, thr, thr3, thr4, nb_min,
                          nb_max, want_seeds, out, seeds, seed_any, y, x0, w, erow, dbuf, sbuf,
                          nvalid, jumped, s, work)


def detect(sci, gdq, gain, readnoise, nframes, mode, thresholds, nb_min, nb_max, want_seeds,
           out, seeds, seed_any):
    """Run the detector ``mode`` on every pixel of the block.

    Parameters
    ----------
    sci : ndarray
        float32 ``(integration, group, y, x)`` [DN].
    gdq : ndarray
        uint8, same shape: the input GROUPDQ (read only).
    gain, readnoise : ndarray
        float32 ``(y, x)`` [e-/DN] and [DN] (CDS read noise).
    nframes : int
        NFRAMES.
    mode : int
        One of the ``MODE_*`` constants (not MODE_NONE).
    thresholds : tuple of float
        Rejection thresholds [sigma]: normal, 3-group (2 differences left) and 4-group (3
        left); the normal one is also the sigma-clip ``sigma``.
    nb_min, nb_max : float
        Neighbour-flagging ratio window [sigma] (exclusive).
    want_seeds : bool
        Record neighbour seeds.
    out : ndarray
        uint8 like ``gdq``, a copy of it: JUMP_DET is added here.
    seeds : ndarray
        uint8 ``(integration, group - 1, y, x)`` zeros: set to 1 where difference k is a
        seed (JUMP_DET on group k+1 after detection, ratio inside the window).
    seed_any : ndarray
        bool ``(y, x)`` zeros: set where the pixel has a seed.
    """
    nints, ngroups, _, nx = sci.shape
    total = nints * (ngroups - 1)
    width = max(1, min(nx, BATCH_VALUES // total))
    _detect(sci, gdq, gain, readnoise, float(nframes), mode, *thresholds, nb_min, nb_max,
            want_seeds, out, seeds, seed_any, np.empty(width, np.float32),
            np.empty((total, width)), np.empty((min(total, MAX_NETWORK), width)),
            np.empty(width, np.int64), np.empty(width, np.bool_), np.empty(total), np.empty(total))


# ---------------------------------------------------------------------------------------------
# Whole-block passes
# ---------------------------------------------------------------------------------------------


@_jit
def reset_planes(out, seeds, planes):
    """Clear groups whose DQ is exactly JUMP_DET in the ``(integration, group)`` planes where
    ``planes`` is True (stcal's sigma-clip clean-up), with their neighbour seeds."""
    nints, ngroups, ny, nx = out.shape
    for i in range(nints):
        for g in range(ngroups):
            if not planes[i, g]:
                continue
            for y in range(ny):
                for x in range(nx):
                    if out[i, g, y, x] == JUMP:
                        out[i, g, y, x] = 0
                        if g > 0:
                            seeds[i, g - 1, y, x] = 0


@_jit
def planes_with(dq, mask, y0, y1, x0, x1, planes):
    """Set ``planes[i, g]`` (bool ``(integration, group)``) to whether every pixel of
    ``dq[i, g, y0:y1, x0:x1]`` has at least one bit of ``mask``."""
    nints, ngroups = dq.shape[0], dq.shape[1]
    planes[:] = True
    for i in range(nints):
        for g in range(ngroups):
            done = False
            for y in range(y0, y1):
                for x in range(x0, x1):
                    if not dq[i, g, y, x] & mask:
                        planes[i, g] = False
                        done = True
                        break
                if done:
                    break


@_jit
def _neighbours(seeds, seed_any, near, out):
    """JUMP_DET on the 4-connected cross of every seed, where the group is not SAT/DNU."""
    nints, ndiff, ny, nx = seeds.shape
    for y in range(ny):
        for x in range(nx):
            if seed_any[y, x]:
                near[y, x] = True
                if y > 0:
                    near[y - 1, x] = True
                if y < ny - 1:
                    near[y + 1, x] = True
                if x > 0:
                    near[y, x - 1] = True
                if x < nx - 1:
                    near[y, x + 1] = True
    for y in range(ny):
        for x in range(nx):
            if not near[y, x]:
                continue
            for i in range(nints):
                for k in range(ndiff):
                    hit = seeds[i, k, y, x] != 0
                    if not hit and y > 0:
                        hit = seeds[i, k, y - 1, x] != 0
                    if not hit and y < ny - 1:
                        hit = seeds[i, k, y + 1, x] != 0
                    if not hit and x > 0:
                        hit = seeds[i, k, y, x - 1] != 0
                    if not hit and x < nx - 1:
                        hit = seeds[i, k, y, x + 1] != 0
                    if hit and not out[i, k + 1, y, x] & BAD:
                        out[i, k + 1, y, x] |= JUMP


@_jit
def _after_jumps(sci, gdq, gain, e1, n1, e2, n2, out, d, s):
    """Flag the ``n`` groups after each jump whose ``d - median`` [e-] is at least ``e``.

    Seeds are the JUMP_DET groups present before this pass (detections, neighbours and
    input flags); the flagged groups are not SAT/DNU.
    """
    nints, ngroups, ny, nx = out.shape
    ndiff = ngroups - 1
    for y in range(ny):
        for x in range(nx):
            any_jump = False
            for i in range(nints):
                for g in range(1, ngroups):
                    if out[i, g, y, x] & JUMP:
                        any_jump = True
            if not any_jump:
                continue
            nan32 = np.float32(np.nan)
            for i in range(nints):
                prev = nan32 if gdq[i, 0, y, x] & BAD else sci[i, 0, y, x] * gain[y, x]
                for k in range(ndiff):
                    cur = nan32 if gdq[i, k + 1, y, x] & BAD else sci[i, k + 1, y, x] * gain[y, x]
                    d[i * ndiff + k] = np.float64(cur - prev)
                    prev = cur
            med = _median(d, s)
            for i in range(nints):
                reach = -1
                for g in range(1, ngroups):
                    if out[i, g, y, x] & JUMP:
                        e = d[i * ndiff + g - 1] - med
                        if e >= e1:
                            reach = max(reach, g + n1)
                        if e >= e2:
                            reach = max(reach, g + n2)
                    if g <= reach and not out[i, g, y, x] & BAD:
                        out[i, g, y, x] |= JUMP


@_jit
def _clean(out):
    """Remove JUMP_DET from groups that are also DO_NOT_USE or SATURATED."""
    flat = out.reshape(-1)
    for j in range(flat.shape[0]):
        v = flat[j]
        flat[j] = v & NOT_JUMP if v & BAD else v


def finish(sci, gdq, gain, seeds, seed_any, use_seeds, after, out):
    """Neighbour flags, after-jump flags and clean-up, in place on ``out``.

    Parameters
    ----------
    sci, gdq, gain : ndarray
        As for :func:`detect` (``gdq`` is the input GROUPDQ).
    seeds, seed_any : ndarray
        From :func:`detect`.
    use_seeds : bool
        Flag the 4-connected cross around each seed.
    after : tuple
        ``(e1, n1, e2, n2)``: a JUMP_DET group whose difference minus the median is at least
        ``e`` [e-] flags the next ``n`` groups (``n <= 0``: off).
    out : ndarray
        uint8 C-contiguous GROUPDQ after detection, modified in place.
    """
    ny, nx = out.shape[2], out.shape[3]
    if use_seeds:
        _neighbours(seeds, seed_any, np.zeros((ny, nx), np.bool_), out)
    e1, n1, e2, n2 = after
    if n1 > 0 or n2 > 0:
        total = out.shape[0] * (out.shape[1] - 1)
        _after_jumps(sci, gdq, gain, e1, n1, e2, n2, out, np.empty(total), np.empty(total))
    _clean(out)
