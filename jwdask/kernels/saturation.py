"""saturation kernel: flag saturated and A/D-floor groups (spec §6.4; jwst 3.0 + stcal 1.20).

Per integration, in this order:

1. forward pass: a group at or above the SATURATION threshold [DN] is SATURATED, and so is
   every later group of the integration; a group at or below 0 DN gets AD_FLOOR | DO_NOT_USE
   (that group only); SATURATED is grown by ``n_pix_grow_sat`` pixels in every direction
   (a full square box, clipped at the array edges) in each group;
2. frame-averaging back-fill (``use_readpatt`` with NFRAMES > 1): a group that is not yet
   SATURATED or DO_NOT_USE, whose successor is SATURATED, and whose value reaches the threshold
   diluted by the frame averaging (``mean(frames) / last(frame)``) gets DO_NOT_USE, grown by the
   same box;
3. group-2 test (``use_readpatt`` and NGROUPS > 2): group 1 gets DO_NOT_USE where group 2 is
   SATURATED but group 1 is not, group 1 jumped by more than ``(thresh - S0) / NFRAMES``, and
   group 0 extrapolated with the superbias would not have saturated by the end of group 2;
4. ZEROFRAME: values at or above the threshold (grown by the box) or at or below 0 are set
   to 0 ("unusable").

Thresholds that are NaN or flagged NO_SAT_CHECK are never reached; NaN thresholds add
NO_SAT_CHECK to the reference dq, which is OR-ed into ``pixeldq``. Floating-point comparisons
use the same precisions as stcal (double precision in the back-fill and group-2 tests), so the
flags are bit-identical.

REQUIRED_TILE: a (y, x) tile with all groups of each integration and a halo of
:func:`halo_depth` pixels (``2 * n_pix_grow_sat`` when the back-fill runs, else
``n_pix_grow_sat``) on every side that touches another tile (``map_overlap(boundary="none")``);
0 at the true detector edge.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jwdask import dqflags

__all__ = ["ATOD_LIMIT", "SaturationResult", "flag_saturation", "halo_depth"]

ATOD_LIMIT = 65535.0
"""Hard limit of the 16-bit A-to-D converter [DN]."""


class SaturationResult(NamedTuple):
    """Output of :func:`flag_saturation`; arrays keep the input (halo-included) shape."""

    groupdq: np.ndarray
    """uint8 ``(integration, group, y, x)`` with SATURATED, AD_FLOOR and DO_NOT_USE added."""
    pixeldq: np.ndarray
    """uint32 ``(y, x)``: input OR the SATURATION dq (with NO_SAT_CHECK for NaN thresholds)."""
    zeroframe: np.ndarray | None
    """float32 ``(integration, y, x)`` [DN] with flagged values set to 0; None without one."""


def halo_depth(n_pix_grow_sat: int, *, nframes: int, use_readpatt: bool = True) -> int:
    """Halo [pixels] a tile needs so that its interior equals the whole-frame result.

    The back-fill pass grows flags that depend on already-grown flags, doubling the reach.

    Examples
    --------
    >>> halo_depth(1, nframes=4), halo_depth(1, nframes=1), halo_depth(2, nframes=4, use_readpatt=False)
    (2, 1, 2)
    """
    backfill = use_readpatt and nframes > 1
    return max(0, int(n_pix_grow_sat)) * (2 if backfill else 1)


def _grow(mask: np.ndarray, n: int) -> np.ndarray:
    """Binary dilation of the last two axes by a ``(2n+1)`` square box, clipped at the edges."""
    if n <= 0:
        return mask
    rows = mask.copy()
    for d in range(1, n + 1):
        rows[..., d:] |= mask[..., :-d]
        rows[..., :-d] |= mask[..., d:]
    out = rows.copy()
    for d in range(1, n + 1):
        out[..., d:, :] |= rows[..., :-d, :]
        out[..., :-d, :] |= rows[..., d:, :]
    return out


def flag_saturation(
    sci: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    sat_thresh: np.ndarray,
    sat_dq: np.ndarray,
    *,
    bias: np.ndarray | None = None,
    zeroframe: np.ndarray | None = None,
    n_pix_grow_sat: int = 1,
    nframes: int = 1,
    use_readpatt: bool = True,
    atod_limit: float = ATOD_LIMIT,
    halo: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> SaturationResult:
    """Flag saturation and the A/D floor in GROUPDQ.

    Parameters
    ----------
    sci : ndarray
        Raw ramps, float32 ``(integration, group, y, x)`` [DN], halo included.
    groupdq : ndarray
        uint8, same shape (SATURATED flags already present are grown too, as in stcal).
    pixeldq : ndarray
        uint32 ``(y, x)``.
    sat_thresh : ndarray
        SATURATION data ``(y, x)`` [DN], float32, cut to the same pixels; NaN = no check.
    sat_dq : ndarray
        SATURATION dq ``(y, x)``.
    bias : ndarray, optional
        SUPERBIAS data ``(y, x)`` [DN] (NaN not cleaned) for the group-2 test; 0 if None.
    zeroframe : ndarray, optional
        float32 ``(integration, y, x)`` [DN].
    n_pix_grow_sat : int
        Box half-width [pixels] by which SATURATED (and back-filled DO_NOT_USE) flags grow.
    nframes : int
        NFRAMES; with ``use_readpatt`` it defines the read pattern ``[g*NF+1 .. g*NF+NF]``
        (GROUPGAP ignored, as in jwst).
    use_readpatt : bool
        Run the back-fill and group-2 passes (jwst default True).
    atod_limit : float
        [DN]; NO_SAT_CHECK pixels get the threshold ``atod_limit + 1``.
    halo : tuple of int
        ``(top, bottom, left, right)`` halo rows/columns in the block; any non-zero side must be
        at least :func:`halo_depth`. Only the interior equals the whole-frame result.

    Returns
    -------
    SaturationResult
        New ``groupdq``, ``pixeldq`` and ``zeroframe``.

    Examples
    --------
    >>> sci = np.array([10, 60, 70], np.float32).reshape(1, 3, 1, 1)
    >>> out = flag_saturation(sci, np.zeros(sci.shape, np.uint8), np.zeros((1, 1), np.uint32),
    ...                       np.full((1, 1), 50, np.float32), np.zeros((1, 1), np.uint32))
    >>> out.groupdq.ravel().tolist()
    [0, 2, 2]
    """
    need = halo_depth(n_pix_grow_sat, nframes=nframes, use_readpatt=use_readpatt)
    if len(halo) != 4 or min(halo) < 0 or any(0 < h < need for h in halo):
        msg = (f"saturation with n_pix_grow_sat={n_pix_grow_sat} needs a halo of {need} pixels "
               f"on tiled sides, got {halo}")
        raise ValueError(msg)
    if nframes < 1:
        msg = f"nframes must be >= 1, got {nframes}"
        raise ValueError(msg)
    sat, dnu = np.uint8(dqflags.SATURATED), np.uint8(dqflags.DO_NOT_USE)
    low_flag = np.uint8(dqflags.AD_FLOOR | dqflags.DO_NOT_USE)
    no_check = ((sat_dq & dqflags.NO_SAT_CHECK) == dqflags.NO_SAT_CHECK) | np.isnan(sat_thresh)
    out_sat_dq = np.where(np.isnan(sat_thresh), sat_dq | dqflags.NO_SAT_CHECK, sat_dq)
    thresh = np.where(no_check, sat_thresh.dtype.type(atod_limit + 1), sat_thresh)
    pattern = ([np.arange(g * nframes + 1, g * nframes + nframes + 1) for g in range(sci.shape[1])]
               if use_readpatt else None)
    gdq = groupdq.copy()
    out_zero = None if zeroframe is None else zeroframe.copy()
    for i in range(sci.shape[0]):
        _forward(sci[i], gdq[i], thresh, n_pix_grow_sat, sat, low_flag)
        if pattern is not None:
            _backfill(sci[i], gdq[i], thresh, no_check, pattern, n_pix_grow_sat, sat, dnu)
            if sci.shape[1] > 2:
                _group2(sci[i], gdq[i], thresh, bias, pattern, sat, dnu)
        if out_zero is not None:
            plane = out_zero[i]
            high = _grow(plane >= thresh, n_pix_grow_sat)
            plane[high | (plane <= 0)] = 0.0
    return SaturationResult(groupdq=gdq, pixeldq=(pixeldq | out_sat_dq).astype(np.uint32),
                            zeroframe=out_zero)


def _forward(sci: np.ndarray, gdq: np.ndarray, thresh: np.ndarray, n: int,
             sat: np.uint8, low_flag: np.uint8) -> None:
    """Pass 1 on one integration ``(group, y, x)``; updates ``gdq`` (a private copy) in place."""
    ever = sci >= thresh
    for g in range(1, ever.shape[0]):  # a running OR over groups (ufunc.accumulate is 20x slower)
        np.logical_or(ever[g], ever[g - 1], out=ever[g])
    np.bitwise_or(gdq, sat, out=gdq, where=ever)
    np.bitwise_or(gdq, low_flag, out=gdq, where=sci <= 0)
    if n > 0:
        np.bitwise_or(gdq, sat, out=gdq, where=_grow((gdq & sat) != 0, n))


def _backfill(sci: np.ndarray, gdq: np.ndarray, thresh: np.ndarray, no_check: np.ndarray,
              pattern: list[np.ndarray], n: int, sat: np.uint8, dnu: np.uint8) -> None:
    """Pass 2: DO_NOT_USE on groups that saturated inside their frame average."""
    for g in range(sci.shape[0] - 2, -1, -1):
        dilution = np.mean(pattern[g]) / pattern[g][-1]
        if dilution == 1:
            continue
        factor = np.where(no_check, 1.0, dilution)
        partial = ((sci[g] >= thresh * factor) & ((gdq[g] & (sat | dnu)) == 0)
                   & ((gdq[g + 1] & sat) != 0))
        np.bitwise_or(gdq[g], dnu, out=gdq[g], where=_grow(partial, n))


def _group2(sci: np.ndarray, gdq: np.ndarray, thresh: np.ndarray, bias: np.ndarray | None,
            pattern: list[np.ndarray], sat: np.uint8, dnu: np.uint8) -> None:
    """Pass 3: DO_NOT_USE on group 1 where a bright event saturated within its last frames."""
    b = 0.0 if bias is None else bias
    s0 = sci[0]
    expected = ((s0 - b) / np.mean(pattern[0])) * int(pattern[2][-1]) + b
    mask = expected < thresh
    mask &= (sci[1] - s0) > (thresh - s0) / len(pattern[1])
    mask &= ((gdq[2] & sat) != 0) & ((gdq[1] & sat) == 0)
    np.bitwise_or(gdq[1], dnu, out=gdq[1], where=mask)
