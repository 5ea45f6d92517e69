"""persistence kernel: flag groups inside a persistence window (spec §6.14, jwst 3.0).

The flag-only algorithm of jwst 3.0 (no trap model). Each pixel carries the end time ``W``
[s, Unix epoch; 0 = no window] of its current persistence window, possibly inherited from
earlier exposures. Group by group (time ``t`` = integration start + (group + 1) * TGROUP):
windows that ended before ``t`` are closed; the first SATURATED group of an integration, and
(with ``dn_threshold``) a value above ``dn_threshold`` [DN] where no window is open, open a
window ending at ``t + persistence_time``; a window ending later than that is discarded
("backwards flagging"); every group inside an open window gets PERSISTENCE (and DO_NOT_USE
with ``persistence_dnu``).

REQUIRED_TILE: any (y, x) tile with all integrations and groups of the exposure in order
(the window state carries from one integration to the next).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from jwdask import dqflags

__all__ = ["PersistenceResult", "flag_persistence", "integration_start_epochs", "mjd_to_epoch"]


class PersistenceResult(NamedTuple):
    """Output of :func:`flag_persistence`."""

    groupdq: np.ndarray
    """uint8 ``(integration, group, y, x)`` with PERSISTENCE (| DO_NOT_USE) added."""
    window_end: np.ndarray
    """float64 ``(y, x)``: end of each pixel's open window [s, Unix epoch], 0 if none; what
    jwst saves with ``save_persistence`` for the next exposure."""


def mjd_to_epoch(mjd: float) -> float:
    """Modified Julian Date [d] to Unix epoch time [s], as jwst computes it.

    Examples
    --------
    >>> mjd_to_epoch(40588.0)
    86400.0
    """
    return (mjd - 40587.0) * 86400.0


def integration_start_epochs(
    nints: int,
    *,
    exposure_start_mjd: float,
    integration_time: float,
    int_start_mjd: Sequence[float] | None = None,
) -> np.ndarray:
    """Start time [s, Unix epoch] of each integration, as jwst's persistence step takes it.

    Integration ``i`` uses ``int_start_MJD_UTC[i]`` of the INT_TIMES table when the table has
    that row, else EXPSTART + ``i`` * EFFINTTM.

    Parameters
    ----------
    nints : int
        Integrations in the exposure (or segment file).
    exposure_start_mjd : float
        EXPSTART [MJD].
    integration_time : float
        EFFINTTM [s].
    int_start_mjd : sequence of float, optional
        The ``int_start_MJD_UTC`` column of INT_TIMES, indexed by local integration.

    Returns
    -------
    ndarray
        float64 ``(nints,)``.

    Examples
    --------
    >>> integration_start_epochs(2, exposure_start_mjd=40588.0, integration_time=10.0).tolist()
    [86400.0, 86410.0]
    """
    start = mjd_to_epoch(exposure_start_mjd)
    table = [] if int_start_mjd is None else list(int_start_mjd)
    return np.array([mjd_to_epoch(float(table[i])) if i < len(table) else start + i * integration_time
                     for i in range(nints)], dtype=np.float64)


def flag_persistence(
    sci: np.ndarray,
    groupdq: np.ndarray,
    *,
    integration_start: np.ndarray,
    group_time: float,
    persistence_time: float,
    dn_threshold: float | None = None,
    persistence_dnu: bool = False,
    window_end: np.ndarray | None = None,
) -> PersistenceResult:
    """Flag PERSISTENCE on groups that fall inside a persistence window.

    Parameters
    ----------
    sci : ndarray
        float32 ``(integration, group, y, x)`` [DN].
    groupdq : ndarray
        uint8, same shape; SATURATED groups open windows.
    integration_start : ndarray
        ``(integration,)`` start times [s, Unix epoch]; see :func:`integration_start_epochs`.
    group_time : float
        TGROUP [s].
    persistence_time : float
        Window length [s], > 0 (jwst marks the step FAILED otherwise).
    dn_threshold : float, optional
        [DN]; values above it also open a window.
    persistence_dnu : bool
        Also set DO_NOT_USE with PERSISTENCE.
    window_end : ndarray, optional
        float64 ``(y, x)`` window ends [s] carried over from earlier exposures; zeros if None.

    Returns
    -------
    PersistenceResult
        New ``groupdq`` and ``window_end``.

    Examples
    --------
    >>> gdq = np.array([0, 2, 0, 0], np.uint8).reshape(2, 2, 1, 1)
    >>> out = flag_persistence(np.zeros(gdq.shape, np.float32), gdq, group_time=10.0,
    ...                        integration_start=np.array([0.0, 20.0]), persistence_time=25.0)
    >>> out.groupdq.ravel().tolist(), out.window_end.tolist()
    ([0, 34, 32, 32], [[45.0]])
    """
    if persistence_time is None or persistence_time <= 0:
        msg = f"persistence_time must be > 0 s, got {persistence_time}"
        raise ValueError(msg)
    nints, ngroups = sci.shape[:2]
    if len(integration_start) != nints:
        msg = f"integration_start has {len(integration_start)} times for {nints} integrations"
        raise ValueError(msg)
    ends = (np.zeros(sci.shape[-2:], np.float64) if window_end is None
            else np.array(window_end, dtype=np.float64))
    gdq = groupdq.copy()
    flag = np.uint8(dqflags.PERSISTENCE | (dqflags.DO_NOT_USE if persistence_dnu else 0))
    for i in range(nints):
        t = float(integration_start[i])
        sat_count = np.zeros(sci.shape[-2:], np.uint32)
        for g in range(ngroups):
            t = t + group_time
            ends[ends < t] = 0.0
            new_end = t + persistence_time
            sat_count[(gdq[i, g] & dqflags.SATURATED) > 0] += 1
            ends[sat_count == 1] = new_end
            if dn_threshold is not None:
                ends[(sci[i, g] > dn_threshold) & ~(ends > 0.0)] = new_end
            ends[(ends != 0.0) & (ends - new_end > 0.0)] = 0.0
            gdq[i, g][ends > 0.0] |= flag
    return PersistenceResult(groupdq=gdq, window_end=ends)
