"""linearity kernel: correct every group with the LINEARITY polynomial (spec §6.9).

``F_lin = c0 + c1 F + c2 F^2 + ...`` evaluated by Horner's rule in float32, except in groups
flagged SATURATED, which keep their value. Coefficients of pixels flagged NO_LIN_CORR in the
reference dq, with any NaN coefficient, or with a zero linear term, are replaced by the
identity ``(0, 1, 0, ...)``; the last two cases add NO_LIN_CORR to ``pixeldq``. ZEROFRAME is
corrected with the same coefficients (its zeros stay 0).

When inverse coefficients are given and NFRAMES > 1 the read-level correction of stcal 1.20 is
used: each group is modelled as the average of its NFRAMES frames along a linear ramp
(double precision), and the average of the corrected frames replaces the group.

REQUIRED_TILE: any (y, x) tile; the read-level path needs all groups of each integration.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jwdask import dqflags

__all__ = ["LinearityResult", "correct_linearity", "prepare_coefficients"]


class LinearityResult(NamedTuple):
    """Output of :func:`correct_linearity`."""

    sci: np.ndarray
    """Linearized ramps, float32 ``(integration, group, y, x)`` [DN]."""
    pixeldq: np.ndarray
    """uint32 ``(y, x)``: input OR reference dq OR NO_LIN_CORR for replaced coefficients."""
    zeroframe: np.ndarray | None
    """Linearized ZEROFRAME ``(integration, y, x)`` [DN], zeros kept; None without one."""


def prepare_coefficients(coeffs: np.ndarray, lin_dq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace unusable polynomial coefficients by the identity.

    Parameters
    ----------
    coeffs : ndarray
        ``(ncoeffs, y, x)`` polynomial coefficients (ncoeffs >= 2).
    lin_dq : ndarray
        Reference dq ``(y, x)``.

    Returns
    -------
    coeffs : ndarray
        A new array of ``coeffs``' dtype: identity where the reference flags NO_LIN_CORR, where
        any coefficient is NaN, or where the linear term is 0 (tested in that order).
    flags : ndarray
        uint32 ``(y, x)``: NO_LIN_CORR where NaN or zero-linear-term coefficients were replaced.

    Examples
    --------
    >>> c = np.array([[[0.0, 1.0]], [[0.0, 2.0]], [[np.nan, 0.0]]], np.float32)
    >>> new, flags = prepare_coefficients(c, np.zeros((1, 2), np.uint32))
    >>> new[:, 0].T.tolist(), flags.tolist()
    ([[0.0, 1.0, 0.0], [1.0, 2.0, 0.0]], [[1048576, 0]])
    """
    if coeffs.ndim != 3 or coeffs.shape[0] < 2:
        msg = f"linearity coefficients must be (ncoeffs >= 2, y, x), got shape {coeffs.shape}"
        raise ValueError(msg)
    identity = np.zeros(coeffs.shape[0], coeffs.dtype)
    identity[1] = 1
    identity = identity[:, None, None]
    flagged = (lin_dq & dqflags.NO_LIN_CORR) != 0
    out = np.where(flagged, identity, coeffs)
    bad_nan = np.isnan(out).any(axis=0)
    out = np.where(bad_nan, identity, out)
    bad_zero = out[1] == 0
    out = np.where(bad_zero, identity, out)
    flags = np.where(bad_nan | bad_zero, np.uint32(dqflags.NO_LIN_CORR), np.uint32(0))
    return out.astype(coeffs.dtype), flags


def _poly(values: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """``sum_k coeffs[k] * values**k`` by Horner's rule, in the promoted precision of the inputs.

    ``coeffs`` is ``(ncoeffs, y, x)`` and broadcasts against ``values`` ``(..., y, x)``.
    """
    n = coeffs.shape[0]
    result = coeffs[n - 1] * values
    for k in range(n - 2, 0, -1):
        result += coeffs[k]
        result *= values
    result += coeffs[0]
    return result


def _read_level(sci: np.ndarray, gdq: np.ndarray, coeffs: np.ndarray, inv: np.ndarray,
                nframes: int) -> np.ndarray:
    """stcal's read-level correction of one integration ``(group, y, x)``; float32 result."""
    ngroups = sci.shape[0]
    pattern = [np.arange(g * nframes + 1, g * nframes + nframes + 1) for g in range(ngroups)]
    mean_read = np.array([np.mean(p) for p in pattern])
    saturated = (gdq & dqflags.SATURATED) != 0
    n_unsat = (~saturated).sum(axis=0, dtype=np.int32) - 1
    n_unsat[n_unsat < 2] = 2
    last = (n_unsat - 1)[np.newaxis]
    first_lin = np.where(saturated[0], sci[0], _poly(sci[0], coeffs))
    last_sci = np.take_along_axis(sci, last, axis=0)[0]
    last_sat = np.take_along_axis(saturated, last, axis=0)[0]
    last_lin = np.where(last_sat, last_sci, _poly(last_sci, coeffs))
    rate = (last_lin - first_lin) / (mean_read[last[0]] - mean_read[0])
    out = np.empty_like(sci)
    for g in range(ngroups):
        since_first = pattern[g] - mean_read[0]
        reads = first_lin[np.newaxis] + rate[np.newaxis] * since_first[:, None, None]
        raw = _poly(reads, inv)
        raw += (sci[g] - np.mean(raw, axis=0))[np.newaxis]
        corrected = np.zeros_like(raw)
        for j in range(raw.shape[0]):
            corrected[j] = _poly(raw[j], coeffs)
        out[g] = np.where(saturated[g], sci[g], np.mean(corrected, axis=0))
    return out


def correct_linearity(
    sci: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    coeffs: np.ndarray,
    lin_dq: np.ndarray,
    *,
    zeroframe: np.ndarray | None = None,
    inv_coeffs: np.ndarray | None = None,
    nframes: int = 1,
) -> LinearityResult:
    """Apply the classic (group-level) or read-level linearity correction.

    Parameters
    ----------
    sci : ndarray
        Ramps, float32 ``(integration, group, y, x)`` [DN] (bias-subtracted near-IR).
    groupdq : ndarray
        uint8, same shape; SATURATED groups are left unchanged.
    pixeldq : ndarray
        uint32 ``(y, x)``.
    coeffs : ndarray
        LINEARITY ``coeffs`` float32 ``(ncoeffs, y, x)``, cut to the window.
    lin_dq : ndarray
        LINEARITY dq ``(y, x)``.
    zeroframe : ndarray, optional
        float32 ``(integration, y, x)`` [DN]; 0 marks unusable values.
    inv_coeffs : ndarray, optional
        LINEARITY ``inv_coeffs`` ``(ncoeffs, y, x)``. With ``nframes > 1`` they select the
        read-level correction (jwst also requires the exposure to have no explicit read
        times; the wrapper must not pass them otherwise). Their NaN / zero-linear-term pixels
        also get NO_LIN_CORR.
    nframes : int
        NFRAMES of the exposure (read pattern ``[g*NF+1 .. g*NF+NF]``, GROUPGAP ignored as in
        jwst).

    Returns
    -------
    LinearityResult
        New arrays.

    Examples
    --------
    >>> c = np.array([0.0, 1.0, 0.001], np.float32).reshape(3, 1, 1)
    >>> sci = np.array([100, 200], np.float32).reshape(1, 2, 1, 1)
    >>> gdq = np.array([0, 2], np.uint8).reshape(1, 2, 1, 1)
    >>> correct_linearity(sci, gdq, np.zeros((1, 1), np.uint32), c, np.zeros((1, 1), np.uint32)).sci.ravel()
    array([110., 200.], dtype=float32)
    """
    lin, flags = prepare_coefficients(coeffs, lin_dq)
    new_pdq = (pixeldq | lin_dq.astype(np.uint32) | flags).astype(np.uint32)
    read_level = inv_coeffs is not None and nframes > 1
    if read_level:
        if sci.shape[1] < 2:
            msg = "the read-level linearity correction needs at least 2 groups per integration"
            raise ValueError(msg)
        inv, inv_flags = prepare_coefficients(inv_coeffs, lin_dq)
        new_pdq |= inv_flags
        out = np.empty(sci.shape, np.float32)
        for i in range(sci.shape[0]):
            out[i] = _read_level(sci[i], groupdq[i], lin, inv, nframes)
    else:
        saturated = (groupdq & dqflags.SATURATED) != 0
        out = np.where(saturated, sci, _poly(sci, lin)).astype(np.float32)
    out_zero = None
    if zeroframe is not None:
        out_zero = np.where(zeroframe == 0.0, zeroframe.dtype.type(0), _poly(zeroframe, lin))
        out_zero = out_zero.astype(np.float32)
    return LinearityResult(sci=out, pixeldq=new_pdq, zeroframe=out_zero)
