"""dq_init kernel: start the data-quality arrays from the MASK reference (spec §6.2).

``pixeldq |= mask`` (MASK dq, optionally OR-ed with a user-supplied array) and
``groupdq |= mask & DO_NOT_USE`` in every (integration, group) plane, so that no ramp is ever
fitted to a bad pixel. The raw uint16 ramps become float32 here (the conversion jwst does when it
opens a Level-1b file as a RampModel); values are exact.

REQUIRED_TILE: any (y, x) tile with all integrations and groups of the block; element-wise.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jwdask import dqflags

__all__ = ["DqInitResult", "init_dq"]


class DqInitResult(NamedTuple):
    """Output of :func:`init_dq`."""

    sci: np.ndarray
    """Ramps as float32 ``(integration, group, y, x)`` [DN]."""
    pixeldq: np.ndarray
    """uint32 ``(y, x)``: the input pixel DQ (or zeros) OR the mask."""
    groupdq: np.ndarray
    """uint8 ``(integration, group, y, x)``: the input group DQ (or zeros) OR DO_NOT_USE of the mask."""


def init_dq(
    sci: np.ndarray,
    mask_dq: np.ndarray,
    *,
    user_dq: np.ndarray | None = None,
    pixeldq: np.ndarray | None = None,
    groupdq: np.ndarray | None = None,
) -> DqInitResult:
    """Initialise PIXELDQ and GROUPDQ from the MASK reference and make the ramps float32.

    Parameters
    ----------
    sci : ndarray
        Raw ramps ``(integration, group, y, x)`` [DN], uint16 or float.
    mask_dq : ndarray
        MASK reference dq ``(y, x)``, cut to the science window; any unsigned integer type.
    user_dq : ndarray, optional
        Extra flags ``(y, x)`` OR-ed into the mask (jwst's ``user_supplied_dq``); its shape must
        equal ``mask_dq``'s.
    pixeldq : ndarray, optional
        Existing pixel DQ ``(y, x)``; a missing or mis-shaped one is replaced by zeros, as jwst
        does.
    groupdq : ndarray, optional
        Existing group DQ, shape of ``sci``; a missing or mis-shaped one is replaced by zeros.

    Returns
    -------
    DqInitResult
        ``sci`` float32 [DN], ``pixeldq`` uint32, ``groupdq`` uint8; all new arrays.

    Examples
    --------
    >>> raw = np.zeros((1, 2, 1, 2), np.uint16)
    >>> out = init_dq(raw, np.array([[1, 2048]], np.uint32))
    >>> out.pixeldq.tolist(), out.groupdq[0, :, 0].tolist()
    ([[1, 2048]], [[1, 0], [1, 0]])
    """
    ny, nx = sci.shape[-2:]
    if mask_dq.shape != (ny, nx):
        msg = f"mask dq shape {mask_dq.shape} differs from the science (y, x) shape {(ny, nx)}"
        raise ValueError(msg)
    mask = mask_dq.astype(np.uint32)
    if user_dq is not None:
        if user_dq.shape != mask.shape:
            msg = f"user_dq has shape={user_dq.shape} but expecting {mask.shape}"
            raise ValueError(msg)
        mask = mask | user_dq.astype(np.uint32)
    pdq = np.zeros((ny, nx), np.uint32) if pixeldq is None or pixeldq.shape != (ny, nx) else pixeldq
    gdq = np.zeros(sci.shape, np.uint8) if groupdq is None or groupdq.shape != sci.shape else groupdq
    dnu = (mask & dqflags.DO_NOT_USE).astype(np.uint8)
    return DqInitResult(
        sci=sci.astype(np.float32),
        pixeldq=(pdq | mask).astype(np.uint32),
        groupdq=(gdq | dnu).astype(np.uint8),
    )
