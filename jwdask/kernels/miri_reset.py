"""reset kernel (MIRI): subtract the RESET reference from the first groups (spec §6.8).

The RESET reference holds ``(reset integration, reset group, y, x)`` planes [DN]; NaNs count
as 0. Science integration ``i`` of the file (absolute index ``INTSTART - 1 + i``) uses reset
integration ``min(absolute index, reset NINTS - 1)``, and only the first
``min(NGROUPS, reset NGROUPS)`` groups are corrected. Integrations of the file beyond
``INTEND - INTSTART + 1`` (or NINTS) are left alone, as in jwst. The reset dq is OR-ed into
``pixeldq``. Arithmetic is float32, as in jwst.

REQUIRED_TILE: any (y, x) tile with every integration and group, and the RESET tile over the
same pixels with all its planes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["REQUIRED_TILE", "ResetResult", "subtract_reset"]

REQUIRED_TILE = "any (y, x) tile with all integrations and groups; RESET tile with all planes"


class ResetResult(NamedTuple):
    """Output of :func:`subtract_reset`."""

    sci: np.ndarray
    """Reset-corrected ramps, float32 ``(integration, group, y, x)`` [DN]."""
    pixeldq: np.ndarray
    """uint32 ``(y, x)``: input OR the reset dq (when any integration was corrected)."""


def subtract_reset(
    sci: np.ndarray,
    pixeldq: np.ndarray,
    reset: np.ndarray,
    reset_dq: np.ndarray,
    *,
    ngroups: int,
    reset_nints: int,
    reset_ngroups: int,
    first_integration: int = 0,
    n_corrected: int | None = None,
) -> ResetResult:
    """Subtract the reset anomaly.

    Parameters
    ----------
    sci : ndarray
        float32 ``(integration, group, y, x)`` [DN].
    pixeldq : ndarray
        uint32 ``(y, x)``.
    reset : ndarray
        RESET data ``(reset integration, reset group, y, x)`` [DN] on the same pixels.
    reset_dq : ndarray
        RESET dq ``(y, x)``.
    ngroups : int
        The exposure's NGROUPS.
    reset_nints, reset_ngroups : int
        The reference's NINTS and NGROUPS keywords.
    first_integration : int
        0-based absolute index of the file's first integration (``INTSTART - 1``).
    n_corrected : int, optional
        How many of the file's integrations jwst loops over (``INTEND - INTSTART + 1``, or
        NINTS); default all.

    Returns
    -------
    ResetResult
        New arrays.

    Examples
    --------
    >>> sci = np.full((2, 3, 1, 1), 10, np.float32)
    >>> reset = np.array([1, 2, 3, 4], np.float32).reshape(2, 2, 1, 1)
    >>> out = subtract_reset(sci, np.zeros((1, 1), np.uint32), reset, np.zeros((1, 1), np.uint32),
    ...                      ngroups=3, reset_nints=2, reset_ngroups=2)
    >>> out.sci[:, :, 0, 0].tolist()
    [[9.0, 8.0, 10.0], [7.0, 6.0, 10.0]]
    """
    nints = sci.shape[0]
    n_corrected = nints if n_corrected is None else n_corrected
    if n_corrected > nints:
        msg = f"{n_corrected} integrations to correct but the exposure holds {nints}"
        raise ValueError(msg)
    ngroups_corr = min(ngroups, reset_ngroups)
    last_int = min(first_integration + n_corrected - 1, reset_nints - 1)
    if reset.ndim != 4 or (n_corrected and (reset.shape[0] <= last_int or reset.shape[1] < ngroups_corr)):
        msg = (f"RESET data of shape {reset.shape} lacks integration {last_int} or group "
               f"{ngroups_corr - 1} (NINTS={reset_nints}, NGROUPS={reset_ngroups})")
        raise ValueError(msg)
    clean = np.where(np.isnan(reset), reset.dtype.type(0), reset)
    out = sci.astype(np.float32, copy=True)
    for i in range(n_corrected):
        plane = min(first_integration + i, reset_nints - 1)
        out[i, :ngroups_corr] -= clean[plane, :ngroups_corr].astype(np.float32)
    new_pdq = pixeldq.astype(np.uint32, copy=True)
    if n_corrected > 0:
        new_pdq |= reset_dq.astype(np.uint32)
    return ResetResult(sci=out, pixeldq=new_pdq)
