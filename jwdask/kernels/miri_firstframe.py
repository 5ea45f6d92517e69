"""firstframe kernel (MIRI, deprecated in jwst 3.0): the first group is DO_NOT_USE (spec §6.8).

jwst flags group 0 of every integration when there are more than three groups. With
``bright_use_group1`` a pixel keeps group 0 in the integrations where its group 2 (third
group) is SATURATED, and every pixel that kept group 0 in any integration gets
FLUX_ESTIMATED in ``pixeldq``.

REQUIRED_TILE: any (y, x) tile with groups 0 and 2 of every integration.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jwdask import dqflags

__all__ = ["FirstFrameResult", "REQUIRED_TILE", "flag_first_group"]

REQUIRED_TILE = "any (y, x) tile with all groups of every integration"


class FirstFrameResult(NamedTuple):
    """Output of :func:`flag_first_group`."""

    groupdq: np.ndarray
    """uint8 ``(integration, group, y, x)``."""
    pixeldq: np.ndarray
    """uint32 ``(y, x)``: input OR FLUX_ESTIMATED where group 0 was kept."""


def flag_first_group(groupdq: np.ndarray, pixeldq: np.ndarray, *,
                     bright_use_group1: bool = True) -> FirstFrameResult:
    """Add DO_NOT_USE to group 0 of every integration.

    Parameters
    ----------
    groupdq : ndarray
        uint8 ``(integration, group, y, x)``, more than 3 groups.
    pixeldq : ndarray
        uint32 ``(y, x)``.
    bright_use_group1 : bool
        Keep group 0 where group 2 is SATURATED (and flag those pixels FLUX_ESTIMATED).

    Returns
    -------
    FirstFrameResult
        New arrays.

    Examples
    --------
    >>> gdq = np.zeros((1, 4, 1, 2), np.uint8)
    >>> gdq[0, 2:, 0, 1] = 2
    >>> out = flag_first_group(gdq, np.zeros((1, 2), np.uint32))
    >>> out.groupdq[0, 0].tolist(), out.pixeldq.tolist()
    ([[1, 0]], [[0, 268435456]])
    """
    if groupdq.ndim != 4 or groupdq.shape[1] <= 3:
        msg = f"firstframe needs (integration, group > 3, y, x) group DQ, got shape {groupdq.shape}"
        raise ValueError(msg)
    out = groupdq.copy()
    new_pdq = pixeldq.astype(np.uint32, copy=True)
    if bright_use_group1:
        kept = (groupdq[:, 2] & dqflags.SATURATED) != 0
        out[:, 0] |= np.where(kept, np.uint8(0), np.uint8(dqflags.DO_NOT_USE))
        new_pdq[kept.any(axis=0)] |= np.uint32(dqflags.FLUX_ESTIMATED)
    else:
        out[:, 0] |= np.uint8(dqflags.DO_NOT_USE)
    return FirstFrameResult(groupdq=out, pixeldq=new_pdq)
