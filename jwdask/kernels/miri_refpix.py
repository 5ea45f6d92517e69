"""refpix kernels (MIRI full frame): left/right reference-column correction (spec §6.7.6).

MIRI full frames are 1024 rows x 1032 columns; columns 0-3 (left) and 1028-1031 (right) are
reference columns, one per amplifier A-D, and amplifier ``a`` reads every fourth column
starting at ``a``. Per integration the ramp is first taken relative to its group 0. For each
group ``g >= 1`` and amplifier, sigma-clipped means of the left and right reference column
(DO_NOT_USE pixels excluded) are taken separately over even and odd rows
(``odd_even_rows``; jwst's "odd" rows are 0-based rows 0, 2, 4...) or over all rows; their
left/right average is subtracted from the amplifier's columns in those rows; group 0 is then
added back. Group 0 itself is never corrected.

**[quirk]** When some clipped mean has no usable pixel, jwst stops correcting that
integration at that group, and because the flag is never cleared, later integrations are not
corrected at all.

Precision follows jwst: the group-0 subtraction, correction and addition round to float32
each time (so even uncorrected groups may change by 1 ulp); the clipped means are float32
(float64 when all values are equal).

The work is split into a small global reduction, :func:`reference_levels`, over the eight
reference columns of every plane (``(integration, group, 1024, 8)``), and a per-tile
:func:`apply_levels`.

REQUIRED_TILE: :func:`reference_levels` needs the eight reference columns of every
(integration, group) plane in one task; :func:`apply_levels` any (y, x) tile with all
integrations and groups.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jwdask import dqflags
from jwdask.kernels.refpix import _clipped_mean

__all__ = ["FULL_SHAPE", "REFERENCE_COLUMNS", "REQUIRED_TILE", "RefpixMiriResult", "apply_levels",
           "reference_levels"]

FULL_SHAPE = (1024, 1032)
"""MIRI full-frame (rows, columns)."""

REFERENCE_COLUMNS = (0, 1, 2, 3, 1028, 1029, 1030, 1031)
"""Left reference columns of amplifiers A-D, then right ones."""

REQUIRED_TILE = ("reference_levels: the 8 reference columns of all planes in one task; "
                 "apply_levels: any (y, x) tile with all integrations and groups")


class RefpixMiriResult(NamedTuple):
    """Output of :func:`apply_levels`."""

    sci: np.ndarray
    """Corrected ramps, float32 ``(integration, group, y, x)`` [DN]."""


def reference_levels(refcols: np.ndarray, refdq: np.ndarray, *, odd_even_rows: bool = True,
                     siglimit: float = 3.0) -> np.ndarray:
    """The level subtracted from each (integration, group, row parity, amplifier).

    Parameters
    ----------
    refcols : ndarray
        float32 ``(integration, group, 1024, 8)``: the columns :data:`REFERENCE_COLUMNS` [DN].
    refdq : ndarray
        uint32 ``(1024, 8)``: their pixel DQ.
    odd_even_rows : bool
        Separate levels for even and odd rows (else one level for both).
    siglimit : float
        Sigma-clipping limit.

    Returns
    -------
    ndarray
        float64 ``(integration, group, 2, 4)`` [DN] relative to group 0: index 2 is the row
        parity (0-based row % 2), index 3 the amplifier; 0 where jwst applies no correction
        (group 0, and the planes after a missing reference value).

    Examples
    --------
    >>> ref = np.zeros((1, 2, 1024, 8), np.float32)
    >>> ref[0, 1] = 5.0
    >>> reference_levels(ref, np.zeros((1024, 8), np.uint32))[0, 1].tolist()
    [[5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0]]
    """
    nints, ngroups, nrows, ncols = refcols.shape
    if ncols != len(REFERENCE_COLUMNS) or refdq.shape != (nrows, ncols):
        msg = (f"reference columns must be (integration, group, rows, 8) with (rows, 8) DQ, "
               f"got {refcols.shape}, {refdq.shape}")
        raise ValueError(msg)
    good = (refdq & dqflags.DO_NOT_USE) == 0
    rows = [slice(0, nrows, 2), slice(1, nrows, 2)] if odd_even_rows else [slice(0, nrows)]
    levels = np.zeros((nints, ngroups, 2, 4), np.float64)
    bad = False
    for i in range(nints):
        relative = (refcols[i] - refcols[i, 0]).astype(np.float32)
        for g in range(1, ngroups):
            means = np.empty((len(rows), 4, 2), object)
            for amp in range(4):
                for side in range(2):
                    col = amp + 4 * side
                    for p, sel in enumerate(rows):
                        means[p, amp, side] = _clipped_mean(relative[g, sel, col][good[sel, col]], siglimit)
                    if any(m is None for m in means[:, amp, side]):
                        bad = True
            if bad:
                break
            for p in range(len(rows)):
                for amp in range(4):
                    level = 0.5 * (means[p, amp, 0] + means[p, amp, 1])
                    if odd_even_rows:
                        levels[i, g, p, amp] = level
                    else:
                        levels[i, g, :, amp] = level
    return levels


def apply_levels(sci: np.ndarray, parity_amp: np.ndarray, *, levels: np.ndarray) -> RefpixMiriResult:
    """Subtract the reference levels from every pixel of a tile.

    Parameters
    ----------
    sci : ndarray
        float32 ``(integration, group, y, x)`` [DN].
    parity_amp : ndarray
        int ``(y, x)``: ``4 * (row % 2) + column % 4`` of each pixel (full-frame indices).
    levels : ndarray
        float64 ``(integration, group, 2, 4)`` from :func:`reference_levels`.

    Returns
    -------
    RefpixMiriResult
        The corrected tile.
    """
    flat = levels.reshape(levels.shape[0], levels.shape[1], 8)
    level = flat[:, :, parity_amp]
    first = sci[:, :1]
    relative = (sci - first).astype(np.float32)
    corrected = (relative - level).astype(np.float32)
    return RefpixMiriResult(sci=(corrected + first).astype(np.float32))
