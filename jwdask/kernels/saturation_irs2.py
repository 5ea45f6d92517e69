"""saturation kernel for NIRSpec IRS2 exposures (jwst 3.0 ``irs2_flag_saturation``).

jwst flags IRS2 data with its own loop, not stcal's: it runs on the normal rows only (the caller
cuts them out with :mod:`jwdask.refs.irs2_layout` and writes the flags back). Per integration
and group ``g``, in this order:

1. SATURATED where the group is at or above the threshold [DN] (this group's value only; flags
   already in ``groupdq`` are not grown);
2. group-2 test (``use_readpatt`` and ``g == 2``, any NFRAMES): group 1 gets SATURATED (not
   DO_NOT_USE as in stcal) where group 2 is at or above the threshold, group 1 jumped by more than
   ``(thresh - S0) / NFRAMES`` and group 0 extrapolated with the superbias to the last frame of
   group 2 stays below the threshold; grown by the box;
3. AD_FLOOR | DO_NOT_USE on this group where it is at or below 0 DN;
4. the SATURATED flags of step 1, grown by ``n_pix_grow_sat`` pixels (a square box, clipped at
   the array edges), are set on this and every later group.

ZEROFRAME values at or above the threshold (grown by the box) or at or below 0 become 0. NaN or
NO_SAT_CHECK thresholds are never reached; NaN thresholds add NO_SAT_CHECK to the reference dq,
which is OR-ed into ``pixeldq``. Comparisons use jwst's precisions (the group-0 extrapolation in
double precision), so the flags are bit-identical.

REQUIRED_TILE: a (y, x) tile of the normal-layout frame with all groups of each integration and
a halo of ``n_pix_grow_sat`` pixels on every side that touches another tile; 0 at the edges of
the 2048 x 2048 normal frame.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from jwdask import dqflags
from jwdask.kernels.saturation import ATOD_LIMIT, SaturationResult

__all__ = ["flag_saturation_irs2"]


def _grown(flags: np.ndarray, n: int) -> np.ndarray:
    """bool: the non-zero pixels of a 2-D ``flags`` dilated by a ``(2n + 1)`` square box."""
    if n <= 0:
        return flags != 0
    box = np.ones((2 * n + 1, 2 * n + 1), dtype=bool)
    return ndimage.binary_dilation(flags != 0, structure=box)


def flag_saturation_irs2(
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
    halo: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> SaturationResult:
    """Flag saturation and the A/D floor on the normal rows of an IRS2 exposure.

    Parameters
    ----------
    sci : ndarray
        float32 ``(integration, group, y, x)`` [DN], normal rows only, halo included.
    groupdq : ndarray
        uint8, same shape.
    pixeldq : ndarray
        uint32 ``(y, x)``.
    sat_thresh, sat_dq : ndarray
        SATURATION data [DN] (float32, NaN = no check) and dq ``(y, x)`` on the same pixels.
    bias : ndarray, optional
        SUPERBIAS data ``(y, x)`` [DN] on the same pixels (NaN kept) for the group-2 test; 0 if None.
    zeroframe : ndarray, optional
        float32 ``(integration, y, x)`` [DN].
    n_pix_grow_sat : int
        Box half-width [pixels] by which SATURATED flags grow.
    nframes : int
        NFRAMES: the read pattern is ``[g * NFRAMES + 1 .. (g + 1) * NFRAMES]`` for group ``g``.
    use_readpatt : bool
        Run the group-2 test.
    halo : tuple of int
        ``(top, bottom, left, right)`` halo in the block (only its interior is exact).

    Returns
    -------
    SaturationResult
        New ``groupdq``, ``pixeldq`` and ``zeroframe`` (None without one).

    Examples
    --------
    >>> sci = np.array([10, 60, 0], np.float32).reshape(1, 3, 1, 1)
    >>> out = flag_saturation_irs2(sci, np.zeros(sci.shape, np.uint8), np.zeros((1, 1), np.uint32),
    ...                            np.full((1, 1), 50, np.float32), np.zeros((1, 1), np.uint32))
    >>> out.groupdq.ravel().tolist()
    [0, 2, 67]
    """
    if len(halo) != 4 or any(0 < h < n_pix_grow_sat for h in halo):
        msg = f"IRS2 saturation with n_pix_grow_sat={n_pix_grow_sat} needs that halo on tiled sides, got {halo}"
        raise ValueError(msg)
    if nframes < 1:
        msg = f"nframes must be >= 1, got {nframes}"
        raise ValueError(msg)
    sat = np.uint8(dqflags.SATURATED)
    low_flag = np.uint8(dqflags.AD_FLOOR | dqflags.DO_NOT_USE)
    nan = np.isnan(sat_thresh)
    no_check = ((sat_dq & dqflags.NO_SAT_CHECK) == dqflags.NO_SAT_CHECK) | nan
    thresh = np.where(no_check, np.float32(ATOD_LIMIT + 1), sat_thresh).astype(np.float32)
    out_sat_dq = np.where(nan, sat_dq | dqflags.NO_SAT_CHECK, sat_dq).astype(np.uint32)
    base = 0.0 if bias is None else bias
    gdq = groupdq.copy()
    nints, ngroups = sci.shape[:2]
    first_mean = np.mean([k + 1 for k in range(nframes)])
    for i in range(nints):
        for g in range(ngroups):
            plane = sci[i, g]
            above = plane >= thresh
            if g == 2 and use_readpatt:
                s0 = sci[i, 0]
                mask = ((s0 - base) / first_mean) * (3 * nframes) + base < thresh
                mask &= (sci[i, 1] - s0) > (thresh - s0) / nframes
                mask &= above
                np.bitwise_or(gdq[i, 1], sat, out=gdq[i, 1], where=_grown(mask, n_pix_grow_sat))
            np.bitwise_or(gdq[i, g:], sat, out=gdq[i, g:], where=_grown(above, n_pix_grow_sat))
            np.bitwise_or(gdq[i, g], low_flag, out=gdq[i, g], where=plane <= 0)
    out_zero = None
    if zeroframe is not None:
        out_zero = zeroframe.copy()
        for i in range(out_zero.shape[0]):
            plane = out_zero[i]
            plane[_grown(plane >= thresh, n_pix_grow_sat) | (plane <= 0)] = 0.0
    return SaturationResult(groupdq=gdq, pixeldq=(pixeldq | out_sat_dq).astype(np.uint32), zeroframe=out_zero)
