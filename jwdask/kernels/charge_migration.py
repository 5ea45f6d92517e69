"""charge_migration kernel: flag groups above a signal threshold (spec §6.11).

A group whose value exceeds ``signal_threshold`` [DN], and whose GROUPDQ is not exactly
DO_NOT_USE (jwst compares with ``!= 1``, not a bit test), marks CHARGELOSS | DO_NOT_USE on that
group and every later group of its integration, in the pixel itself and in its four edge
neighbours (up, down, left, right; clipped at the array edges).

REQUIRED_TILE: a (y, x) tile with all groups of each integration (flags propagate forward in
time) and a halo of :data:`HALO_DEPTH` pixel on every side that touches another tile
(``map_overlap(depth=1, boundary="none")``); 0 at the true detector edge.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jwdask import dqflags

__all__ = ["HALO_DEPTH", "ChargeMigrationResult", "flag_charge_migration"]

HALO_DEPTH = 1
"""Halo [pixels] a tile needs on each side that touches another tile."""


class ChargeMigrationResult(NamedTuple):
    """Output of :func:`flag_charge_migration`."""

    groupdq: np.ndarray
    """uint8 ``(integration, group, y, x)`` with CHARGELOSS | DO_NOT_USE added; same shape as
    the input (halo included: the caller trims it)."""


def flag_charge_migration(
    sci: np.ndarray,
    groupdq: np.ndarray,
    *,
    signal_threshold: float = 25000.0,
    halo: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> ChargeMigrationResult:
    """Flag charge migration around groups brighter than ``signal_threshold``.

    Parameters
    ----------
    sci : ndarray
        Ramps, float32 ``(integration, group, y, x)`` [DN], halo included.
    groupdq : ndarray
        uint8, same shape.
    signal_threshold : float
        [DN]; compared with ``>`` in the data's precision (float32), as jwst does.
    halo : tuple of int
        ``(top, bottom, left, right)`` halo rows/columns included in the block (any non-zero
        side is at least :data:`HALO_DEPTH` deep). The output keeps the halo; only the
        interior equals the whole-frame result.

    Returns
    -------
    ChargeMigrationResult
        A new ``groupdq``.

    Examples
    --------
    >>> sci = np.zeros((1, 3, 3, 3), np.float32); sci[0, 1, 1, 1] = 3e4
    >>> gdq = flag_charge_migration(sci, np.zeros(sci.shape, np.uint8)).groupdq
    >>> gdq[0, :, 1].tolist()
    [[0, 0, 0], [129, 129, 129], [129, 129, 129]]
    """
    _check_halo(halo)
    seed = (sci > float(signal_threshold)) & (groupdq != dqflags.DO_NOT_USE)
    hit = seed
    for g in range(1, hit.shape[1]):  # a running OR over groups (ufunc.accumulate is 20x slower)
        np.logical_or(hit[:, g], hit[:, g - 1], out=hit[:, g])
    grown = hit.copy()
    grown[..., 1:, :] |= hit[..., :-1, :]
    grown[..., :-1, :] |= hit[..., 1:, :]
    grown[..., :, 1:] |= hit[..., :, :-1]
    grown[..., :, :-1] |= hit[..., :, 1:]
    flag = np.uint8(dqflags.CHARGELOSS | dqflags.DO_NOT_USE)
    return ChargeMigrationResult(np.where(grown, groupdq | flag, groupdq).astype(np.uint8))


def _check_halo(halo: tuple[int, int, int, int]) -> None:
    if len(halo) != 4 or min(halo) < 0:
        msg = f"halo must be four non-negative pixel counts (top, bottom, left, right), got {halo}"
        raise ValueError(msg)
