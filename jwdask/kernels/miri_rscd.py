"""rscd kernels (MIRI): flag the first groups of each integration DO_NOT_USE (spec §6.8).

jwst 3.0's RSCD step only flags: the RSCD table gives the number of leading groups ``skip``
to flag in the first integration and in later ones (:func:`skip_counts` applies jwst's limits
for short ramps). Where a pixel saturates early the count is lowered so that, if possible, two
unsaturated groups remain after the flagged ones; pixels lowered in any integration get
FLUX_ESTIMATED.

The lowering is jwst's loop over "levels" ``k = 0 .. skip``: at level ``k`` a pixel is a
*problem* when group ``skip + 1 - k`` is SATURATED and group 0 is not; problems lose one
flagged group. The loop stops at the first level where **no pixel of the integration range**
is a problem. That stop is global, so the work is split in two:

1. :func:`problem_levels` per (y, x) tile -> ``(skip + 1,)`` booleans, OR-ed over tiles;
2. :func:`flag_rscd` per tile, given the OR-ed levels.

For saturation flags that propagate forward (the saturation step guarantees it) the result is
``n = min(skip, max(0, s0 - 2))`` with ``s0`` the first saturated group (``n = skip`` when
group 0 is saturated), and the global stop never matters.

REQUIRED_TILE: any (y, x) tile with every integration and group; the level vectors are small
global reductions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jwdask import dqflags

__all__ = ["REQUIRED_TILE", "RscdResult", "flag_rscd", "integration_ranges", "problem_levels",
           "skip_counts"]

REQUIRED_TILE = "any (y, x) tile with all integrations and groups, plus two global level vectors"


class RscdResult(NamedTuple):
    """Output of :func:`flag_rscd`."""

    groupdq: np.ndarray
    """uint8 ``(integration, group, y, x)`` with DO_NOT_USE on the flagged leading groups."""
    pixeldq: np.ndarray
    """uint32 ``(y, x)``: input OR FLUX_ESTIMATED where the count was lowered."""


def skip_counts(skip1: int, skip2p: int, *, ngroups: int, nints: int) -> tuple[int, int] | None:
    """The groups to flag in integration 1 and in integrations 2+, as jwst limits them.

    Parameters
    ----------
    skip1, skip2p : int
        The RSCD table's ``group_skip1`` (negative in old files: use 1) and ``group_skip``.
    ngroups, nints : int
        The exposure's NGROUPS and NINTS.

    Returns
    -------
    tuple of int or None
        ``None`` when NGROUPS < 3 (the step is skipped).

    Examples
    --------
    >>> skip_counts(4, 3, ngroups=10, nints=2), skip_counts(4, 3, ngroups=5, nints=2)
    ((4, 3), (1, 1))
    >>> skip_counts(6, 6, ngroups=7, nints=1)
    (4, 6)
    """
    if ngroups < 3:
        return None
    if skip1 < 0:
        skip1 = 1
    if ngroups <= 5:
        skip1 = skip2p = 1
    if ngroups < skip1 + 3:
        skip1 = max(0, ngroups - 3)
    if nints > 1 and ngroups < skip2p + 3:
        skip2p = max(0, ngroups - 3)
    return int(skip1), int(skip2p)


def integration_ranges(n_file: int, *, nints: int, integration_start: int | None,
                       skip1: int, skip2p: int) -> list[tuple[int, int, int]]:
    """The ``(first, stop, skip)`` integration ranges of the file that jwst flags.

    The exposure's first integration (only in a file with INTSTART 1 or none) uses ``skip1``;
    the others use ``skip2p``, and only when NINTS > 1.

    Examples
    --------
    >>> integration_ranges(3, nints=3, integration_start=None, skip1=4, skip2p=3)
    [(0, 1, 4), (1, 3, 3)]
    >>> integration_ranges(2, nints=9, integration_start=5, skip1=4, skip2p=3)
    [(0, 2, 3)]
    """
    first_file = integration_start in (None, 1)
    ranges = []
    if first_file:
        ranges.append((0, min(1, n_file), skip1))
    if nints > 1:
        ranges.append((1 if first_file else 0, n_file, skip2p))
    return [r for r in ranges if r[1] > r[0]]


def _problems(groupdq: np.ndarray, skip: int) -> np.ndarray:
    """``(skip + 1, integration, y, x)`` booleans: group ``skip + 1 - k`` SATURATED and group 0
    not, for levels ``k = 0 .. skip``."""
    sat = (groupdq & dqflags.SATURATED) != 0
    first = sat[:, 0]
    return np.stack([sat[:, skip + 1 - k] & ~first for k in range(skip + 1)])


def problem_levels(groupdq: np.ndarray, skip: int) -> np.ndarray:
    """Per level ``k = 0 .. skip``: whether any pixel of this tile is a problem.

    Parameters
    ----------
    groupdq : ndarray
        uint8 ``(integration, group, y, x)`` of one integration range, ``group > skip + 1``.
    skip : int
        Groups to flag.

    Returns
    -------
    ndarray
        bool ``(skip + 1,)``; OR these over all tiles before :func:`flag_rscd`.
    """
    if groupdq.shape[1] < skip + 2:
        msg = f"rscd: {groupdq.shape[1]} groups cannot hold {skip} flagged groups plus two"
        raise ValueError(msg)
    return _problems(groupdq, skip).any(axis=(1, 2, 3))


def _levels_run(levels: np.ndarray) -> int:
    """How many levels jwst's loop runs: up to the first level without any problem."""
    quiet = np.flatnonzero(~np.asarray(levels, dtype=bool))
    return int(quiet[0]) if quiet.size else len(levels)


def flag_rscd(groupdq: np.ndarray, pixeldq: np.ndarray, *,
              ranges: list[tuple[int, int, int]], levels: list[np.ndarray]) -> RscdResult:
    """Flag the RSCD-affected leading groups.

    Parameters
    ----------
    groupdq : ndarray
        uint8 ``(integration, group, y, x)``.
    pixeldq : ndarray
        uint32 ``(y, x)``.
    ranges : list of (int, int, int)
        ``(first, stop, skip)`` integration ranges (:func:`integration_ranges`).
    levels : list of ndarray
        Per range, :func:`problem_levels` OR-ed over the whole (y, x) window.

    Returns
    -------
    RscdResult
        New arrays.

    Examples
    --------
    >>> gdq = np.zeros((1, 8, 1, 2), np.uint8)
    >>> gdq[0, 3:, 0, 1] = 2                     # pixel 1 saturates in group 3
    >>> lv = [problem_levels(gdq, 4)]
    >>> out = flag_rscd(gdq, np.zeros((1, 2), np.uint32), ranges=[(0, 1, 4)], levels=lv)
    >>> (out.groupdq[0, :, 0] & 1).T.tolist(), out.pixeldq.tolist()
    ([[1, 1, 1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]], [[0, 268435456]])
    """
    out = groupdq.copy()
    new_pdq = pixeldq.astype(np.uint32, copy=True)
    ngroups = groupdq.shape[1]
    group_index = np.arange(ngroups)[None, :, None, None]
    for (first, stop, skip), lv in zip(ranges, levels, strict=True):
        part = groupdq[first:stop]
        nskip = np.full((stop - first, *groupdq.shape[2:]), skip, np.int64)
        run = _levels_run(lv)
        if run:
            problems = _problems(part, skip)[:run]
            nskip = np.maximum(skip - problems.sum(axis=0), 0)
            new_pdq[(nskip < skip).any(axis=0)] |= np.uint32(dqflags.FLUX_ESTIMATED)
        flagged = group_index < nskip[:, None]
        out[first:stop] |= np.where(flagged, np.uint8(dqflags.DO_NOT_USE), np.uint8(0))
    return RscdResult(groupdq=out, pixeldq=new_pdq)
