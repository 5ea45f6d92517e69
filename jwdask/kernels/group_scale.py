"""group_scale kernel: undo the on-board frame-averaging divisor (spec §6.1).

The on-board electronics divide the sum of the NFRAMES frames of a group by FRMDIVSR, a power
of two. When NFRAMES is not a power of two the stored groups are too small or too large by
``FRMDIVSR / NFRAMES``; this kernel multiplies them back. Deciding whether the step runs at
all (NFRAMES unknown, FRMDIVSR absent or equal to NFRAMES) is the wrapper's business.

REQUIRED_TILE: any block; purely element-wise.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["GroupScaleResult", "scale_groups"]


class GroupScaleResult(NamedTuple):
    """Output of :func:`scale_groups`."""

    sci: np.ndarray
    """Rescaled ramps, float32 ``(integration, group, y, x)`` [DN]."""


def scale_groups(sci: np.ndarray, *, nframes: int, frame_divisor: int) -> GroupScaleResult:
    """Multiply every group by ``frame_divisor / nframes``.

    The factor is formed in double precision and applied in float32, as jwst does
    (``model.data *= float(FRMDIVSR) / NFRAMES``).

    Parameters
    ----------
    sci : ndarray
        Ramps, float32 ``(integration, group, y, x)`` [DN]; any shape works.
    nframes : int
        Frames averaged per group (NFRAMES), > 0.
    frame_divisor : int
        Divisor used on board (FRMDIVSR).

    Returns
    -------
    GroupScaleResult
        ``sci`` [DN], a new float32 array.

    Examples
    --------
    >>> scale_groups(np.full((1, 1, 1, 1), 3.0, np.float32), nframes=5, frame_divisor=4).sci.ravel()
    array([2.4], dtype=float32)
    """
    if nframes <= 0:
        msg = f"nframes must be > 0, got {nframes}"
        raise ValueError(msg)
    factor = float(frame_divisor) / nframes
    return GroupScaleResult(np.multiply(sci, factor, dtype=np.float32))
