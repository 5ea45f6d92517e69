"""refpix kernel: near-IR reference-pixel correction, "median" algorithm (spec §6.7.1-6.7.4).

For every (integration, group) plane, in detector orientation:

* **amplifier mode** (full frame, or a subarray read with 4 outputs): per 512-column amplifier,
  sigma-clipped means of the top (rows 2044-2047) and bottom (rows 0-3) reference pixels,
  separately for even and odd detector columns (``odd_even_columns``), averaged top/bottom and
  subtracted from the amplifier's columns; then (``use_side_ref_pixels``) the running median
  of the left (columns 0-3) and right (2044-2047) reference columns over
  ``side_smoothing_length`` rows (mirrored at rows 0 and 2047), averaged left/right, times
  ``side_gain``, is subtracted from every row;
* **single-output subarrays**: one sigma-clipped mean of the window's reference pixels
  (REFERENCE_PIXEL set, DO_NOT_USE clear), per detector-column parity, subtracted from the
  whole window. NIRSpec SUB512, SUB512S and SUB32 use their first and last four DMS columns as
  pseudo reference pixels.

Pixels with DO_NOT_USE in ``pixeldq`` never enter a statistic. A subarray is processed as jwst
does it, as a window of the 2048 x 2048 detector whose outside is unusable; only the window's
own pixels are touched here. ZEROFRAME is corrected as a one-group cube, its zeros kept.

Precision follows jwst 3.0: statistics are float32 numpy reductions on the same pixel
sequences, and **[quirk]** in amplifier mode with side pixels jwst keeps its work buffer in
double precision after the first plane of the exposure, so every plane but science
(integration 0, group 0) is processed in float64; ``starts_exposure`` says whether the block's
first plane is that one. With that, results are bit-identical to jwst in the tests.

:func:`correct_nir` is :func:`measure_nir` (the per-plane statistics, reading only reference
pixels: in amplifier mode only the 4-pixel border strips of the window) followed by
:func:`apply_nir` (per detector column, then per detector row subtraction), which works on any
(y, x) tile given the corrections of its pixels: the Detector1 step measures on the border
strips and subtracts tile by tile, never holding whole planes.

With ``refpix_algorithm="sirs"`` (full frames) the side running median is replaced by the
SIRS convolution of :mod:`jwdask.kernels.refpix_sirs`, whose correction varies per detector row
and amplifier (:attr:`NirCorrections.per_amplifier`; :func:`expand_amplifiers`).

IRS2 frames are corrected by :mod:`jwdask.kernels.refpix_irs2`; this "median" algorithm on them
(jwst's ``irs2_mean_subtraction``), MIRI and multistripe subarrays are not implemented here.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from jwdask import dqflags
from jwdask.kernels.refpix_sirs import AMPLIFIERS, SirsKernels, sirs_template

__all__ = ["DETECTOR_SIZE", "NRS_EDGELESS_SUBARRAYS", "REQUIRED_TILE", "NirCorrections", "RefpixResult", "apply_nir",
           "correct_nir", "expand_amplifiers", "measure_nir", "reads_border_only"]

DETECTOR_SIZE = 2048
"""Near-IR detector rows and columns."""

NRS_EDGELESS_SUBARRAYS = ("SUB512", "SUB512S", "SUB32")
"""NIRSpec subarrays that touch no reference pixel; their edge columns serve instead."""

REQUIRED_TILE = ("correct_nir/measure_nir: whole (y, x) planes of the window (in amplifier mode only their "
                 "4-pixel border strips are read); apply_nir: any (y, x) tile")
"""Chunking the kernels need: statistics see whole planes (or their borders), the subtraction any tile."""

_BORDER = 4
_AMP_WIDTH = 512


class RefpixResult(NamedTuple):
    """Output of :func:`correct_nir`."""

    sci: np.ndarray
    """Corrected ramps, float32 ``(integration, group, y, x)`` [DN]."""
    zeroframe: np.ndarray | None
    """Corrected ZEROFRAME ``(integration, y, x)`` [DN], zeros kept; None without one."""


def _to_detector(a: np.ndarray, fastaxis: int, slowaxis: int) -> np.ndarray:
    """View of ``a`` (..., y, x) in DMS orientation as detector (slow, fast) orientation."""
    sf, ss = int(np.sign(fastaxis)), int(np.sign(slowaxis))
    if abs(fastaxis) == 1:
        return a[..., ::ss, ::sf]
    return np.swapaxes(a[..., ::sf, ::ss], -2, -1)


def _to_dms(a: np.ndarray, fastaxis: int, slowaxis: int) -> np.ndarray:
    """Inverse of :func:`_to_detector`."""
    sf, ss = int(np.sign(fastaxis)), int(np.sign(slowaxis))
    if abs(fastaxis) == 1:
        return a[..., ::ss, ::sf]
    return np.swapaxes(a, -2, -1)[..., ::sf, ::ss]


def _detector_origin(origin: tuple[int, int], shape: tuple[int, int], fastaxis: int,
                     slowaxis: int) -> tuple[int, int]:
    """Full-frame detector (row, column) of the window's first detector-oriented pixel."""
    y0, x0 = origin
    ny, nx = shape
    sf, ss = np.sign(fastaxis), np.sign(slowaxis)
    if abs(fastaxis) == 1:
        return (y0 if ss > 0 else DETECTOR_SIZE - y0 - ny, x0 if sf > 0 else DETECTOR_SIZE - x0 - nx)
    return (x0 if ss > 0 else DETECTOR_SIZE - x0 - nx, y0 if sf > 0 else DETECTOR_SIZE - y0 - ny)


def _clipped_mean(values: np.ndarray, siglimit: float) -> np.generic | None:
    """jwst's ``Dataset.sigma_clip`` of already DO_NOT_USE-filtered values (1-D, row-major).

    None if there are no values; the plain float64 mean if they are all equal; otherwise the
    mean of the survivors of iterated mean +- siglimit * std clipping (scipy's ``sigmaclip``),
    in the values' own precision (NaN if nothing survives, e.g. NaN data).
    """
    if values.size == 0:
        return None
    if np.std(values, dtype=np.float64) == 0.0:
        return values.mean(dtype=np.float64)
    kept = values
    while kept.size:
        size = kept.size
        std = kept.std()
        mean = kept.mean()
        kept = kept[(kept >= mean - std * siglimit) & (kept <= mean + std * siglimit)]
        if kept.size == size:
            return kept.mean()
    return values.dtype.type(np.nan)


def _average(a: np.generic | None, b: np.generic | None) -> np.generic | None:
    """Mean of two optional values: the other one if one is None, None if both are."""
    if a is None:
        return b
    if b is None:
        return a
    return 0.5 * (a + b)


@njit(cache=True, nogil=True)
def _running_median(block, dq, row0, nfull, first, length, dnu, one_half):
    """Per row ``r``: median of the good pixels of rows ``r+first .. r+first+length-1``
    (mirrored without repeating the edge row at 0 and ``nfull-1``; rows outside the block are
    unusable). NaN if no pixel is usable or if any of them is NaN."""
    nrows, ncols = block.shape
    out = np.empty(nrows, np.float64)
    buf = np.empty(length * ncols, block.dtype)
    for r in range(nrows):
        n = 0
        has_nan = False
        for k in range(first, first + length):
            j = row0 + r + k
            if j < 0:
                j = -j
            elif j >= nfull:
                j = 2 * (nfull - 1) - j
            j -= row0
            if j < 0 or j >= nrows:
                continue
            for c in range(ncols):
                if dq[j, c] & dnu:
                    continue
                v = block[j, c]
                if np.isnan(v):
                    has_nan = True
                buf[n] = v
                n += 1
        if n == 0 or has_nan:
            out[r] = np.nan
            continue
        s = np.sort(buf[:n])
        if n % 2:
            out[r] = s[n // 2]
        else:
            out[r] = (s[n // 2 - 1] + s[n // 2]) * one_half
    return out


class _Geometry(NamedTuple):
    """Pixel selections of the window in detector orientation (fixed for all planes)."""

    amp_mode: bool
    amps: list[tuple[list[tuple[slice, slice, np.ndarray]], ...]]
    """Per amplifier and column group (even then odd detector columns, or all): the (rows,
    cols, good) selections of its top and bottom reference pixels inside the window."""
    amp_cols: list[tuple[slice, ...]]
    """Per amplifier: the column slices of its column groups inside the window."""
    sides: list[tuple[slice, np.ndarray]]
    """Left and right reference-column slices inside the window and their DQ."""
    single: list[tuple[np.ndarray, slice]]
    """Single-output mode: per column group, the reference-pixel mask and the column slice."""


def _span(lo: int, hi: int, start: int, size: int, parity: int | None = None) -> slice:
    """Window-local slice of the absolute detector indices ``lo <= i < hi`` that fall in the
    window ``start .. start + size - 1``: all of them, or those of one parity (step 2)."""
    lo, hi = max(lo, start), min(hi, start + size)
    if parity is not None:
        lo += (parity - lo) % 2
    return slice(lo - start, max(lo, hi) - start, 1 if parity is None else 2)


def _geometry(dq: np.ndarray, r0: int, c0: int, amp_mode: bool, odd_even: bool) -> _Geometry:
    nrows, ncols = dq.shape
    dnu = dqflags.DO_NOT_USE
    parities = (0, 1) if odd_even else (None,)
    amps, amp_cols, single = [], [], []
    if amp_mode:
        edges = [_span(DETECTOR_SIZE - _BORDER, DETECTOR_SIZE, r0, nrows), _span(0, _BORDER, r0, nrows)]
        for amp in range(DETECTOR_SIZE // _AMP_WIDTH):
            cols = tuple(_span(amp * _AMP_WIDTH, (amp + 1) * _AMP_WIDTH, c0, ncols, p) for p in parities)
            amp_cols.append(cols)
            amps.append(tuple([(rows, cs, (dq[rows, cs] & dnu) == 0) for rows in edges] for cs in cols))
    sides = []
    for lo in (0, DETECTOR_SIZE - _BORDER):
        cs = _span(lo, lo + _BORDER, c0, ncols)
        sides.append((cs, np.ascontiguousarray(dq[:, cs])))
    if not amp_mode:
        ref = ((dq & dqflags.REFERENCE_PIXEL) != 0) & ((dq & dnu) == 0)
        col_parity = (np.arange(ncols) + c0) % 2
        for p in parities:
            mask = ref if p is None else ref & (col_parity == p)[None, :]
            single.append((mask, _span(0, DETECTOR_SIZE, c0, ncols, p)))
    return _Geometry(amp_mode, amps, amp_cols, sides, single)


def _plane_corrections(plane: np.ndarray, geo: _Geometry, r0: int, work: type, *, side: bool,
                       smoothing: int, side_gain: float, siglimit: float, sirs: SirsKernels | None,
                       sigreject: float) -> tuple[np.ndarray, np.ndarray | None]:
    """The corrections of one detector-oriented plane, computed in precision ``work``.

    Returns ``(columns, rows)``: float64 values [DN] to subtract from every detector column
    (the result rounded to ``work``), then from every detector row (in float64; None without
    side pixels; with ``sirs``, ``(rows, 4)`` per detector row and amplifier, without
    ``side_gain`` as in jwst). Only reference pixels of ``plane`` are read. Rounding float32
    differences through float64 is exact, so :func:`_apply_plane` reproduces jwst's in-place
    updates.
    """
    columns = np.zeros(plane.shape[1], np.float64)
    if not geo.amp_mode:
        if any(mask.any() for mask, _ in geo.single):
            for mask, cols in geo.single:
                value = _clipped_mean(np.asarray(plane[mask], dtype=work), siglimit)
                if value is not None:
                    columns[cols] = value
        return columns, None
    signals = [[_average(*(_clipped_mean(np.asarray(plane[rows, cols], dtype=work)[good], siglimit)
                           for rows, cols, good in sel))
                for sel in amp] for amp in geo.amps]
    for amp_signals, cols_list in zip(signals, geo.amp_cols, strict=True):
        if all(s is not None for s in amp_signals):
            for value, cols in zip(amp_signals, cols_list, strict=True):
                columns[cols] = value
    if not side:
        return columns, None
    strips = [np.ascontiguousarray((plane[:, cols].astype(np.float64) - columns[cols]).astype(work))
              for cols, _ in geo.sides]
    if sirs is not None:
        return columns, sirs_template(*strips, sirs, sigreject=sigreject)
    medians = []
    for block, (_, dq) in zip(strips, geo.sides, strict=True):
        medians.append(_running_median(block, dq, r0, DETECTOR_SIZE, -(smoothing // 2), smoothing,
                                       dqflags.DO_NOT_USE, work(0.5)))
    left, right = medians
    combined = np.where(np.isnan(left), np.where(np.isnan(right), 0.0, right),
                        np.where(np.isnan(right), left, 0.5 * (left + right)))
    return columns, side_gain * combined


def _apply_plane(plane: np.ndarray, columns: np.ndarray, rows: np.ndarray | None, work: type) -> np.ndarray:
    """float32 ``plane`` minus ``columns`` (rounded to ``work``) minus ``rows``; the
    corrections broadcast against ``plane`` (any orientation)."""
    out = plane.astype(np.float64) - columns
    if work is np.float32:
        out = out.astype(np.float32)
    if rows is not None:
        out = out - rows
    return out.astype(np.float32)


def correct_nir(
    sci: np.ndarray,
    pixeldq: np.ndarray,
    *,
    fastaxis: int,
    slowaxis: int,
    origin: tuple[int, int] = (0, 0),
    noutputs: int = 4,
    subarray: str = "FULL",
    odd_even_columns: bool = True,
    use_side_ref_pixels: bool = True,
    side_smoothing_length: int = 11,
    side_gain: float = 1.0,
    siglimit: float = 3.0,
    refpix_algorithm: str = "median",
    sirs_kernels: SirsKernels | None = None,
    sigreject: float = 4.0,
    zeroframe: np.ndarray | None = None,
    starts_exposure: bool = True,
) -> RefpixResult:
    """Correct near-IR ramps for bias drifts with the reference pixels (jwst "median").

    Parameters
    ----------
    sci : ndarray
        float32 ``(integration, group, y, x)`` [DN] in DMS orientation: the whole science
        window (2048 x 2048 full frame or a subarray).
    pixeldq : ndarray
        uint32 ``(y, x)``: DO_NOT_USE pixels are excluded; REFERENCE_PIXEL marks the
        references of single-output subarrays.
    fastaxis, slowaxis : int
        FASTAXIS and SLOWAXIS keywords (+-1, +-2) giving the detector orientation.
    origin : tuple of int
        0-based full-frame ``(y, x)`` (DMS) of the window's first pixel, i.e.
        ``(SUBSTRT2 - 1, SUBSTRT1 - 1)``; ignored for full frames.
    noutputs : int
        NOUTPUTS (1 or 4) of a subarray readout; full frames always use amplifier mode.
    subarray : str
        SUBARRAY name; NIRSpec SUB512, SUB512S, SUB32 get pseudo reference columns.
    odd_even_columns : bool
        Separate statistics for even and odd detector columns.
    use_side_ref_pixels : bool
        Apply the side (left/right) reference correction (amplifier mode only).
    side_smoothing_length : int
        Height ``L`` [rows] of the running-median window, rows ``r - L//2 .. r - L//2 + L - 1``
        (>= 2). **[quirk]** jwst documents that an even ``L`` is made odd, but only its
        mirror padding is: the window keeps ``L`` rows and is off-centre by one.
    side_gain : float
        Factor applied to the side reference signal of the running median (not to SIRS).
    siglimit : float
        Sigma-clipping limit [standard deviations] of the reference means.
    refpix_algorithm : {"median", "sirs"}
        Side-pixel algorithm; "sirs" (full frames only) needs ``sirs_kernels``.
    sirs_kernels : SirsKernels, optional
        The detector's SIRS kernels (:func:`jwdask.kernels.refpix_sirs.make_sirs_kernels`).
    sigreject : float
        SIRS outlier rejection limit [robust standard deviations].
    zeroframe : ndarray, optional
        float32 ``(integration, y, x)`` [DN]; zeros stay 0.
    starts_exposure : bool
        Whether ``sci[0, 0]`` is the exposure's first plane (integration 0, group 0); see the
        module notes on precision.

    Returns
    -------
    RefpixResult
        New ``sci`` and ``zeroframe`` (float32).

    Raises
    ------
    NotImplementedError
        For windows wider than the detector (IRS2: see :mod:`jwdask.kernels.refpix_irs2`), and
        "sirs" on a subarray.
    ValueError
        If a subarray window does not fit on the detector (jwst skips the step then), for bad
        axis keywords, for ``side_smoothing_length < 2`` where side pixels are used, or for
        "sirs" without kernels.

    Examples
    --------
    >>> sci = np.zeros((1, 1, 8, 8), np.float32); sci[..., 0::2] = 5.0; sci[..., 1::2] = 7.0
    >>> dq = np.zeros((8, 8), np.uint32); dq[:, :2] = dqflags.REFERENCE_PIXEL
    >>> out = correct_nir(sci, dq, fastaxis=1, slowaxis=2, origin=(100, 0), noutputs=1)
    >>> float(abs(out.sci).max())
    0.0
    """
    corrections = measure_nir(sci, pixeldq, fastaxis=fastaxis, slowaxis=slowaxis, origin=origin, noutputs=noutputs,
                              subarray=subarray, odd_even_columns=odd_even_columns,
                              use_side_ref_pixels=use_side_ref_pixels, side_smoothing_length=side_smoothing_length,
                              side_gain=side_gain, siglimit=siglimit, refpix_algorithm=refpix_algorithm,
                              sirs_kernels=sirs_kernels, sigreject=sigreject, starts_exposure=starts_exposure)
    out_sci = apply_nir(sci, corrections)
    out_zero = None
    if zeroframe is not None:
        planes = zeroframe[:, np.newaxis]
        zero_corr = measure_nir(planes, pixeldq, fastaxis=fastaxis, slowaxis=slowaxis, origin=origin,
                                noutputs=noutputs, subarray=subarray, odd_even_columns=odd_even_columns,
                                use_side_ref_pixels=use_side_ref_pixels,
                                side_smoothing_length=side_smoothing_length, side_gain=side_gain,
                                siglimit=siglimit, refpix_algorithm=refpix_algorithm, sirs_kernels=sirs_kernels,
                                sigreject=sigreject, starts_exposure=False)
        corrected = apply_nir(planes, zero_corr)[:, 0]
        out_zero = np.where(zeroframe == 0.0, np.float32(0), corrected).astype(np.float32)
    return RefpixResult(sci=out_sci, zeroframe=out_zero)


class NirCorrections(NamedTuple):
    """Output of :func:`measure_nir`: what to subtract from every plane, in DMS orientation."""

    columns: np.ndarray
    """float64 ``(..., 1, x)`` or ``(..., y, 1)`` [DN]: per detector column (amplifier and parity
    means); the difference is rounded to the plane's working precision."""
    rows: np.ndarray | None
    """float64 ``(..., y, 1)`` or ``(..., 1, x)`` [DN]: per detector row (side reference signal
    times ``side_gain``), subtracted after ``columns``; None without side pixels. With
    ``per_amplifier`` (SIRS) ``(..., y, 4)`` or ``(..., 4, x)``: per detector row and amplifier."""
    float32: np.ndarray
    """bool ``(...)``: planes worked in float32 (jwst's precision quirk); float64 otherwise."""
    per_amplifier: bool = False
    """Whether ``rows`` holds one value per amplifier along the detector columns (full frames):
    :func:`apply_nir` expands it, a tile needs :func:`expand_amplifiers` sliced like itself."""


def reads_border_only(shape: tuple[int, int], noutputs: int) -> bool:
    """Whether the statistics of a window of ``shape`` (y, x) only read pixels within 4 pixels
    of its edges (amplifier mode: full frames and 4-output subarrays), so that
    :func:`measure_nir` may be given planes holding only those border strips."""
    ny, nx = shape
    return (ny >= DETECTOR_SIZE and nx >= DETECTOR_SIZE) or noutputs == 4


def measure_nir(
    sci: np.ndarray,
    pixeldq: np.ndarray,
    *,
    fastaxis: int,
    slowaxis: int,
    origin: tuple[int, int] = (0, 0),
    noutputs: int = 4,
    subarray: str = "FULL",
    odd_even_columns: bool = True,
    use_side_ref_pixels: bool = True,
    side_smoothing_length: int = 11,
    side_gain: float = 1.0,
    siglimit: float = 3.0,
    refpix_algorithm: str = "median",
    sirs_kernels: SirsKernels | None = None,
    sigreject: float = 4.0,
    starts_exposure: bool = True,
) -> NirCorrections:
    """The corrections of :func:`correct_nir` (same parameters) without applying them.

    Only reference pixels of ``sci`` are read: with :func:`reads_border_only`, the planes may
    hold just their 4-pixel border strips (anything elsewhere). Apply with :func:`apply_nir`
    to the whole window, or tile by tile with the corrections sliced like the tile.
    """
    if refpix_algorithm not in ("median", "sirs"):
        msg = f"refpix_algorithm must be 'median' or 'sirs', got {refpix_algorithm!r}"
        raise ValueError(msg)
    if sorted((abs(fastaxis), abs(slowaxis))) != [1, 2]:
        msg = f"fastaxis/slowaxis must be +-1 and +-2 (one each), got {fastaxis}/{slowaxis}"
        raise ValueError(msg)
    ny, nx = sci.shape[-2:]
    if ny > DETECTOR_SIZE or nx > DETECTOR_SIZE:
        msg = (f"the traditional reference means of {ny} x {nx} (IRS2) frames (jwst irs2_mean_subtraction) are not "
               "implemented in jwdask; the IRS2 correction itself is jwdask.kernels.refpix_irs2")
        raise NotImplementedError(msg)
    is_subarray = ny < DETECTOR_SIZE or nx < DETECTOR_SIZE
    y0, x0 = origin if is_subarray else (0, 0)
    if y0 < 0 or x0 < 0 or y0 + ny > DETECTOR_SIZE or x0 + nx > DETECTOR_SIZE:
        msg = f"subarray window {ny} x {nx} at {origin} does not fit on the detector"
        raise ValueError(msg)
    dq = pixeldq.astype(np.uint32)
    if is_subarray and subarray in NRS_EDGELESS_SUBARRAYS:
        dq[:, :_BORDER] |= dqflags.REFERENCE_PIXEL
        dq[:, nx - _BORDER:] |= dqflags.REFERENCE_PIXEL
    amp_mode = not is_subarray or noutputs == 4
    side = amp_mode and use_side_ref_pixels
    sirs = sirs_kernels if side and refpix_algorithm == "sirs" else None
    if refpix_algorithm == "sirs" and is_subarray:
        msg = "refpix_algorithm='sirs' is only defined for full frames (jwst uses the running median on subarrays)"
        raise NotImplementedError(msg)
    if refpix_algorithm == "sirs" and sirs_kernels is None:
        msg = "refpix_algorithm='sirs' needs the detector's sirs_kernels"
        raise ValueError(msg)
    if side and side_smoothing_length < 2:
        msg = f"side_smoothing_length must be >= 2 rows (jwst fails below), got {side_smoothing_length}"
        raise ValueError(msg)
    r0, c0 = _detector_origin((y0, x0), (ny, nx), fastaxis, slowaxis)
    geo = _geometry(np.ascontiguousarray(_to_detector(dq, fastaxis, slowaxis)), r0, c0, amp_mode,
                    odd_even_columns)
    options = {"side": side, "smoothing": int(side_smoothing_length), "side_gain": float(side_gain),
               "siglimit": float(siglimit), "sirs": sirs, "sigreject": float(sigreject)}
    lead = sci.shape[:-2]
    float32 = np.full(lead, not side)
    if side and starts_exposure and float32.size:
        float32[(0,) * len(lead)] = True
    det_rows, det_cols = _to_detector(dq, fastaxis, slowaxis).shape
    columns = np.empty((*lead, det_cols), np.float64)
    rows = np.empty((*lead, det_rows, AMPLIFIERS) if sirs else (*lead, det_rows, 1), np.float64) if side else None
    for index in np.ndindex(lead):
        work = np.float32 if float32[index] else np.float64
        columns[index], plane_rows = _plane_corrections(_to_detector(sci[index], fastaxis, slowaxis), geo, r0, work,
                                                        **options)
        if rows is not None:
            rows[index] = plane_rows.reshape(rows[index].shape)
    return NirCorrections(
        columns=_to_dms(columns[..., np.newaxis, :], fastaxis, slowaxis),
        rows=None if rows is None else _to_dms(rows, fastaxis, slowaxis),
        float32=float32, per_amplifier=sirs is not None)


def expand_amplifiers(rows: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per-amplifier ``rows`` of :class:`NirCorrections` (``(..., y, 4)`` or ``(..., 4, x)``)
    repeated over each amplifier's pixels of a full frame of ``shape`` (y, x)."""
    axis = -1 if rows.shape[-2] == shape[0] else -2
    return np.repeat(rows, shape[axis] // AMPLIFIERS, axis=axis)


def apply_nir(sci: np.ndarray, corrections: NirCorrections) -> np.ndarray:
    """float32 ``sci`` (``(..., y, x)`` [DN]) minus :func:`measure_nir` corrections that
    broadcast against it (sliced to the same pixels for a tile)."""
    out = np.empty(sci.shape, np.float32)
    if corrections.per_amplifier and corrections.rows is not None:
        corrections = corrections._replace(rows=expand_amplifiers(corrections.rows, sci.shape[-2:]),
                                           per_amplifier=False)
    for index in np.ndindex(sci.shape[:-2]):
        work = np.float32 if corrections.float32[index] else np.float64
        out[index] = _apply_plane(sci[index], corrections.columns[index],
                                  None if corrections.rows is None else corrections.rows[index], work)
    return out
