"""superbias kernel: subtract the bias frame from every group (spec §6.6, near-IR only).

``sci[i, g] -= bias`` [DN] with NaN bias values taken as 0; the SUPERBIAS dq is OR-ed into
``pixeldq``; ZEROFRAME is bias-subtracted too, except its zeros (which mean "unusable") stay 0.

REQUIRED_TILE: any (y, x) tile with all integrations and groups of the block; element-wise.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["SuperbiasResult", "subtract_bias"]


class SuperbiasResult(NamedTuple):
    """Output of :func:`subtract_bias`."""

    sci: np.ndarray
    """Bias-subtracted ramps, float32 ``(integration, group, y, x)`` [DN]."""
    pixeldq: np.ndarray
    """uint32 ``(y, x)``: input pixel DQ OR the SUPERBIAS dq."""
    zeroframe: np.ndarray | None
    """Bias-subtracted ZEROFRAME ``(integration, y, x)`` [DN], zeros kept; None without one."""


def subtract_bias(
    sci: np.ndarray,
    pixeldq: np.ndarray,
    bias: np.ndarray,
    bias_dq: np.ndarray,
    *,
    zeroframe: np.ndarray | None = None,
) -> SuperbiasResult:
    """Subtract the SUPERBIAS reference.

    Parameters
    ----------
    sci : ndarray
        Ramps, float32 ``(integration, group, y, x)`` [DN].
    pixeldq : ndarray
        uint32 ``(y, x)``.
    bias : ndarray
        SUPERBIAS data ``(y, x)`` [DN], cut to the science window; NaN means 0.
    bias_dq : ndarray
        SUPERBIAS dq ``(y, x)``.
    zeroframe : ndarray, optional
        ZEROFRAME, float32 ``(integration, y, x)`` [DN]; 0 marks unusable values.

    Returns
    -------
    SuperbiasResult
        New arrays.

    Examples
    --------
    >>> out = subtract_bias(np.full((1, 2, 1, 2), 10, np.float32), np.zeros((1, 2), np.uint32),
    ...                     np.array([[3, np.nan]], np.float32), np.array([[0, 4194304]], np.uint32))
    >>> out.sci[0, :, 0].tolist(), out.pixeldq.tolist()
    ([[7.0, 10.0], [7.0, 10.0]], [[0, 4194304]])
    """
    clean = np.where(np.isnan(bias), np.float32(0), bias).astype(np.float32)
    out_zero = None
    if zeroframe is not None:
        out_zero = np.where(zeroframe == 0.0, np.float32(0), zeroframe - clean).astype(np.float32)
    return SuperbiasResult(
        sci=(sci - clean).astype(np.float32),
        pixeldq=(pixeldq | bias_dq.astype(np.uint32)).astype(np.uint32),
        zeroframe=out_zero,
    )
