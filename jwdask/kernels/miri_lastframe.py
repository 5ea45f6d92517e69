"""lastframe kernel (MIRI): the last group of every integration is DO_NOT_USE (spec §6.8).

jwst 3.0 flags the final group when an integration has more than two groups; the wrapper
skips the step otherwise.

REQUIRED_TILE: any (y, x) tile holding the last group of every integration.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jwdask import dqflags

__all__ = ["LastFrameResult", "REQUIRED_TILE", "flag_last_group"]

REQUIRED_TILE = "any (y, x) tile with all groups of every integration"


class LastFrameResult(NamedTuple):
    """Output of :func:`flag_last_group`."""

    groupdq: np.ndarray
    """uint8 ``(integration, group, y, x)`` with DO_NOT_USE added to the last group."""


def flag_last_group(groupdq: np.ndarray) -> LastFrameResult:
    """Add DO_NOT_USE to the last group of every integration.

    Parameters
    ----------
    groupdq : ndarray
        uint8 ``(integration, group, y, x)``, at least 3 groups.

    Returns
    -------
    LastFrameResult
        A new groupdq array.

    Examples
    --------
    >>> flag_last_group(np.zeros((1, 3, 1, 1), np.uint8)).groupdq.ravel().tolist()
    [0, 0, 1]
    """
    if groupdq.ndim != 4 or groupdq.shape[1] <= 2:
        msg = f"lastframe needs (integration, group > 2, y, x) group DQ, got shape {groupdq.shape}"
        raise ValueError(msg)
    out = groupdq.copy()
    out[:, -1] |= np.uint8(dqflags.DO_NOT_USE)
    return LastFrameResult(groupdq=out)
