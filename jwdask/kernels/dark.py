"""dark_current kernels: match the DARK reference to the readout pattern and subtract it
(spec §6.10).

A DARK reference normally holds one plane per frame (its NFRAMES = 1, GROUPGAP = 0). It is
linearly extrapolated from its last two planes when it covers fewer frames than the exposure,
its NaNs are taken as 0, and it is averaged over NFRAMES frames per group with GROUPGAP
frames skipped between groups. Near-IR darks are ``(group, y, x)`` and are subtracted from
every integration; MIRI darks are ``(integration, group, y, x)`` and dark integration ``i``
(or the last one) is subtracted from science integration ``i``. The dark dq (UNRELIABLE_DARK
and friends) is OR-ed into ``pixeldq``.

Arithmetic follows stcal 1.20: an extrapolated dark is double precision, a frame-averaged dark
is float32 (sequential float32 sums for float32 darks), and the subtraction is done in the
wider of the two precisions and rounded to float32.

REQUIRED_TILE: any (y, x) tile with all integrations and groups of the exposure (MIRI
integrations are matched by index) and the dark tile over the same pixels with all its planes.
:func:`average_dark_current` works on whole (y, x) frames (its "all zero" test is global).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["DarkResult", "average_dark", "average_dark_current", "dark_applies", "subtract_dark"]


class DarkResult(NamedTuple):
    """Output of :func:`subtract_dark`."""

    sci: np.ndarray
    """Dark-subtracted ramps, float32 ``(integration, group, y, x)`` [DN]."""
    pixeldq: np.ndarray
    """uint32 ``(y, x)``: input pixel DQ OR the dark dq."""


def dark_applies(*, nframes: int, groupgap: int, dark_nframes: int, dark_groupgap: int) -> bool:
    """Whether a dark can be matched to the exposure.

    jwst skips the step (returns the input unchanged) when the dark's NFRAMES or GROUPGAP
    exceeds the science value.

    Examples
    --------
    >>> dark_applies(nframes=4, groupgap=1, dark_nframes=1, dark_groupgap=0)
    True
    """
    return dark_nframes <= nframes and dark_groupgap <= groupgap


def _extrapolate(dark: np.ndarray, ngroups: int, nframes: int, groupgap: int,
                 dark_nframes: int, dark_groupgap: int) -> np.ndarray:
    """The dark with planes appended along axis -3 until it covers the exposure's frames."""
    ngd = dark.shape[-3]
    frames_sci = ngroups * nframes + (ngroups - 1) * groupgap
    frames_dark = ngd * dark_nframes + (ngd - 1) * dark_groupgap
    if frames_sci <= frames_dark:
        return dark
    add = math.ceil((frames_sci - frames_dark + dark_groupgap) / (dark_nframes + dark_groupgap))
    last = dark[..., -1:, :, :]
    step = dark[..., -1:, :, :] - dark[..., -2:-1, :, :]
    k = np.arange(1, add + 1, dtype=np.int64).reshape(-1, 1, 1)
    return np.concatenate([dark, k * step + last], axis=-3)


def average_dark(
    dark: np.ndarray,
    *,
    ngroups: int,
    nframes: int,
    groupgap: int,
    dark_nframes: int = 1,
    dark_groupgap: int = 0,
    nints: int | None = None,
) -> np.ndarray:
    """The dark matched to the exposure's groups: extrapolated, NaN-free and frame-averaged.

    Parameters
    ----------
    dark : ndarray
        DARK data ``(group, y, x)`` (near-IR) or ``(integration, group, y, x)`` (MIRI) [DN].
    ngroups, nframes, groupgap : int
        The exposure's NGROUPS, NFRAMES, GROUPGAP.
    dark_nframes, dark_groupgap : int
        The dark's NFRAMES and GROUPGAP; must pass :func:`dark_applies`.
    nints : int, optional
        The exposure's number of integrations (MIRI darks only): only the first
        ``min(nints, dark integrations)`` integrations of an averaged dark are filled.

    Returns
    -------
    ndarray
        ``(ngroups, y, x)`` or ``(dark integration, ngroups, y, x)`` [DN]. float32 when the
        planes were averaged; otherwise the dark's planes as they are (double precision if it
        was extrapolated). For a MIRI dark with more integrations than ``nints`` the
        surplus integrations of an averaged dark are 0, as in stcal **[quirk]**: a segment
        file (INTSTART > 1) then subtracts zeros, see :func:`subtract_dark`.

    Examples
    --------
    >>> dark = np.arange(6, dtype=np.float32).reshape(6, 1, 1)
    >>> average_dark(dark, ngroups=2, nframes=2, groupgap=1).ravel().tolist()
    [0.5, 3.5]
    """
    if not dark_applies(nframes=nframes, groupgap=groupgap, dark_nframes=dark_nframes,
                        dark_groupgap=dark_groupgap):
        msg = (f"dark NFRAMES/GROUPGAP {dark_nframes}/{dark_groupgap} exceed the science "
               f"{nframes}/{groupgap}: the step must be skipped")
        raise ValueError(msg)
    full = _extrapolate(dark, ngroups, nframes, groupgap, dark_nframes, dark_groupgap)
    full = np.where(np.isnan(full), full.dtype.type(0), full)
    if nframes == dark_nframes and groupgap == dark_groupgap:
        return full[..., :ngroups, :, :]
    out = np.zeros((*full.shape[:-3], ngroups, *full.shape[-2:]), np.float32)
    if full.ndim == 4:
        filled = full.shape[0] if nints is None else min(nints, full.shape[0])
        out[:filled] = _frame_average(full[:filled], ngroups, nframes, groupgap)
    else:
        out[...] = _frame_average(full, ngroups, nframes, groupgap)
    return out


def _frame_average(full: np.ndarray, ngroups: int, nframes: int, groupgap: int) -> np.ndarray:
    """Plane ``g`` = mean of frames ``g(NF+GG) .. g(NF+GG)+NF-1`` (sequential sums), float32."""
    out = np.zeros((*full.shape[:-3], ngroups, *full.shape[-2:]), np.float32)
    nplanes = full.shape[-3]
    for g in range(ngroups):
        start = g * (nframes + groupgap)
        if nframes == 1:
            out[..., g, :, :] = full[..., start, :, :]
            continue
        stop = min(start + nframes, nplanes)
        if stop <= start:
            out[..., g, :, :] = np.nan
            continue
        acc = full[..., start, :, :].copy()
        for k in range(start + 1, stop):
            acc += full[..., k, :, :]
        out[..., g, :, :] = acc / (stop - start)
    return out


def subtract_dark(
    sci: np.ndarray,
    pixeldq: np.ndarray,
    dark: np.ndarray,
    dark_dq: np.ndarray,
    *,
    nframes: int,
    groupgap: int,
    dark_nframes: int = 1,
    dark_groupgap: int = 0,
    integration_start: int | None = None,
) -> DarkResult:
    """Subtract the DARK reference, matched to the exposure's readout pattern.

    Parameters
    ----------
    sci : ndarray
        Ramps, float32 ``(integration, group, y, x)`` [DN].
    pixeldq : ndarray
        uint32 ``(y, x)``.
    dark : ndarray
        DARK data [DN]: ``(group, y, x)`` near-IR, ``(integration, group, y, x)`` MIRI; cut to
        the science pixels.
    dark_dq : ndarray
        DARK dq: ``(y, x)`` near-IR; MIRI ``(integration, k, y, x)`` of which plane ``k = 0`` of
        every integration is OR-ed.
    nframes, groupgap : int
        The exposure's NFRAMES and GROUPGAP.
    dark_nframes, dark_groupgap : int
        The dark's NFRAMES and GROUPGAP; must pass :func:`dark_applies` (the wrapper skips the
        step otherwise).
    integration_start : int, optional
        INTSTART (1-based) of a segment file; MIRI only. Unless it is 1 or None every
        integration uses the last dark integration.

    Returns
    -------
    DarkResult
        New ``sci`` (float32) and ``pixeldq`` (uint32).

    Examples
    --------
    >>> sci = np.full((1, 2, 1, 1), 10, np.float32)
    >>> dark = np.array([1, 2, 3, 4], np.float32).reshape(4, 1, 1)
    >>> out = subtract_dark(sci, np.zeros((1, 1), np.uint32), dark, np.full((1, 1), 8388608, np.uint32),
    ...                     nframes=1, groupgap=1)
    >>> out.sci.ravel().tolist(), out.pixeldq.tolist()
    ([9.0, 7.0], [[8388608]])
    """
    nints, ngroups = sci.shape[:2]
    avg = average_dark(dark, ngroups=ngroups, nframes=nframes, groupgap=groupgap,
                       dark_nframes=dark_nframes, dark_groupgap=dark_groupgap, nints=nints)
    if avg.ndim == 3:
        dq = dark_dq
        out = sci - avg[np.newaxis]
    else:
        dq = np.bitwise_or.reduce(dark_dq[:, 0], axis=0)
        ndark = avg.shape[0]
        first = integration_start in (None, 1)
        planes = [avg[i] if (i < ndark and first) else avg[-1] for i in range(nints)]
        out = sci - np.stack(planes) if planes else sci.copy()
    return DarkResult(sci=out.astype(np.float32),
                      pixeldq=(pixeldq | dq.astype(np.uint32)).astype(np.uint32))


def average_dark_current(
    shape: tuple[int, int],
    *,
    parameter: float | None = None,
    reference: np.ndarray | None = None,
    keyword: float | None = None,
) -> np.ndarray:
    """The 2-D average dark current stored on the ramp for ramp_fit's Poisson variance.

    Priority as in jwst: the step parameter; else the reference's AVDRKCUR extension if it
    exists, is not all zero and has the exposure's shape (a mis-shaped one is ignored and
    zeros are used); else the reference's AVDRKCUR keyword; else 0. The value is used as
    DN/s by ramp_fit although the parameter is documented in e-/s (spec §4).

    Parameters
    ----------
    shape : tuple of int
        The exposure's ``(y, x)`` shape (the whole window).
    parameter : float, optional
        The step's ``average_dark_current``.
    reference : ndarray, optional
        The reference's 2-D ``average_dark_current`` array for the whole window.
    keyword : float, optional
        The reference's AVDRKCUR keyword.

    Returns
    -------
    ndarray
        float32 ``(y, x)``.

    Examples
    --------
    >>> average_dark_current((1, 2), keyword=0.5).tolist()
    [[0.5, 0.5]]
    """
    base = np.zeros(shape, np.float32)
    if parameter is not None:
        return base + parameter
    if reference is None or np.sum(reference) == 0.0:
        return base + (0.0 if keyword is None else keyword)
    if np.shape(reference) != tuple(shape):
        return base
    return np.array(reference, dtype=np.float32)
