"""flat_field kernel for imaging: divide by the FLAT and propagate the variances (image2.md §4).

Flat hygiene: NaN or zero flat values get ``DO_NOT_USE | NO_FLAT_FIELD``; ``NO_FLAT_FIELD``
implies ``DO_NOT_USE``; wherever the flat dq has ``DO_NOT_USE`` the flat is taken as 1.0.
Forward: ``SCI /= F``, ``VAR_FLAT = SCI**2 / F**2 * ERR_F**2``, ``VAR_POISSON, VAR_RNOISE /= F**2``,
``ERR = sqrt(VAR_POISSON + VAR_RNOISE + VAR_FLAT)``, ``DQ |= DQ_F``; inverse multiplies and sets
``VAR_FLAT = 0``. Then :func:`match_nans_and_flags`. All float32, in the order jwst uses.

REQUIRED_TILE: any (y, x) tile (with every integration of a cube); element-wise.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jwdask.dqflags import DO_NOT_USE, NO_FLAT_FIELD

__all__ = ["FlatFieldResult", "NanMatchResult", "apply_flat", "clean_flat", "match_nans_and_flags"]


class NanMatchResult(NamedTuple):
    """Output of :func:`match_nans_and_flags`."""

    sci: np.ndarray
    err: np.ndarray
    dq: np.ndarray
    var_poisson: np.ndarray | None
    var_rnoise: np.ndarray | None
    var_flat: np.ndarray | None


class FlatFieldResult(NamedTuple):
    """Output of :func:`apply_flat`: new float32 arrays (uint32 dq), science shape."""

    sci: np.ndarray
    """Flat-fielded data [input unit, DN/s]."""
    err: np.ndarray
    """Total error [DN/s]."""
    dq: np.ndarray
    """Science dq OR the cleaned flat dq, DO_NOT_USE where any array is NaN."""
    var_poisson: np.ndarray | None
    """Poisson variance [(DN/s)^2]; None if the input had none."""
    var_rnoise: np.ndarray | None
    """Read-noise variance [(DN/s)^2]; None if the input had none."""
    var_flat: np.ndarray
    """Flat-field variance [(DN/s)^2] (zeros for ``inverse``)."""


def match_nans_and_flags(sci: np.ndarray, err: np.ndarray, dq: np.ndarray,
                         var_poisson: np.ndarray | None = None, var_rnoise: np.ndarray | None = None,
                         var_flat: np.ndarray | None = None) -> NanMatchResult:
    """Make NaNs and ``DO_NOT_USE`` agree (``jwst.lib.pipe_utils.match_nans_and_flags``).

    A pixel is bad where SCI, ERR or any variance is NaN or dq has ``DO_NOT_USE``; bad
    pixels get ``DO_NOT_USE`` and NaN in every float array. Arrays whose shape differs from
    SCI are passed through unchanged (as jwst does, with its warning).

    Parameters
    ----------
    sci, err : ndarray
        float32 ``(..., y, x)``.
    dq : ndarray
        uint32, same shape.
    var_poisson, var_rnoise, var_flat : ndarray, optional
        Variances, same shape (None when absent).

    Returns
    -------
    NanMatchResult
        New arrays (None stays None).

    Examples
    --------
    >>> out = match_nans_and_flags(np.array([1.0, np.nan, 3.0], np.float32), np.ones(3, np.float32),
    ...                            np.array([0, 0, 1], np.uint32))
    >>> out.sci.tolist(), out.err.tolist(), out.dq.tolist()
    ([1.0, nan, nan], [1.0, nan, nan], [0, 1, 1])
    """
    shape = sci.shape
    floats = {"sci": sci, "err": err, "var_poisson": var_poisson, "var_rnoise": var_rnoise,
              "var_flat": var_flat}
    same = {k: a is not None and a.shape == shape for k, a in floats.items()}
    bad = np.zeros(shape, dtype=bool)
    for key, arr in floats.items():
        if same[key]:
            bad |= np.isnan(arr)
    out_dq = dq
    if dq.shape == shape:
        bad |= (dq & DO_NOT_USE).astype(bool)
        out_dq = np.where(bad, dq | np.uint32(DO_NOT_USE), dq).astype(dq.dtype)
    out = {k: (np.where(bad, np.float32(np.nan), a).astype(a.dtype) if same[k] else a)
           for k, a in floats.items()}
    return NanMatchResult(out["sci"], out["err"], out_dq, out["var_poisson"], out["var_rnoise"],
                          out["var_flat"])


def clean_flat(flat: np.ndarray, flat_dq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flat and its dq after jwst's hygiene (see module docstring).

    Parameters
    ----------
    flat : ndarray
        FLAT SCI ``(y, x)`` [dimensionless], cut to the science window.
    flat_dq : ndarray
        FLAT DQ ``(y, x)``.

    Returns
    -------
    (ndarray, ndarray)
        float32 flat with 1.0 where unusable; uint32 dq.

    Examples
    --------
    >>> f, d = clean_flat(np.array([2.0, np.nan, 0.0, 3.0], np.float32),
    ...                   np.array([0, 0, 0, 262144], np.uint32))
    >>> f.tolist(), d.tolist()
    ([2.0, 1.0, 1.0, 1.0], [0, 262145, 262145, 262145])
    """
    data = np.array(flat, dtype=np.float32)
    dq = np.array(flat_dq, dtype=np.uint32)
    bad_value = np.isnan(data) | (data == 0.0)
    dq[bad_value] |= np.uint32(DO_NOT_USE | NO_FLAT_FIELD)
    dq[(dq & NO_FLAT_FIELD) != 0] |= np.uint32(DO_NOT_USE)
    data[(dq & DO_NOT_USE) != 0] = np.float32(1.0)
    return data, dq


def apply_flat(sci: np.ndarray, err: np.ndarray, dq: np.ndarray, var_poisson: np.ndarray | None,
               var_rnoise: np.ndarray | None, flat: np.ndarray, flat_err: np.ndarray | None,
               flat_dq: np.ndarray | None, *, inverse: bool = False) -> FlatFieldResult:
    """Flat-field one tile of an image or cube (jwst ``apply_flat_field``).

    Parameters
    ----------
    sci, err : ndarray
        float32 ``(y, x)`` or ``(integration, y, x)`` [DN/s].
    dq : ndarray
        uint32, same shape.
    var_poisson, var_rnoise : ndarray or None
        float32 variances [(DN/s)^2]; when both are None (guider data) the new ERR is
        ``sqrt(ERR**2 + VAR_FLAT)``.
    flat : ndarray
        FLAT SCI ``(y, x)``, cut to the tile [dimensionless].
    flat_err : ndarray or None
        FLAT ERR ``(y, x)``; None means 0.
    flat_dq : ndarray or None
        FLAT DQ ``(y, x)``; None means 0.
    inverse : bool
        Multiply by the flat instead (undo a flat-fielding).

    Returns
    -------
    FlatFieldResult
        New arrays.

    Examples
    --------
    >>> one = np.ones((1, 2), np.float32)
    >>> out = apply_flat(4 * one, one, np.zeros((1, 2), np.uint32), one, one,
    ...                  np.array([[2.0, 0.0]], np.float32), np.zeros((1, 2), np.float32), None)
    >>> out.sci.tolist(), out.var_poisson.tolist(), out.dq.tolist()
    ([[2.0, nan]], [[0.25, nan]], [[0, 262145]])
    """
    ferr = np.zeros(flat.shape, np.float32) if flat_err is None else np.asarray(flat_err, np.float32)
    fdq = np.zeros(flat.shape, np.uint32) if flat_dq is None else flat_dq
    f, fdq = clean_flat(flat, fdq)
    f2 = f * f
    sci = np.asarray(sci, np.float32)
    vp = None if var_poisson is None else np.asarray(var_poisson, np.float32)
    vr = None if var_rnoise is None else np.asarray(var_rnoise, np.float32)
    if not inverse:
        out_sci = sci / f
        var_flat = out_sci**2 / f2 * ferr**2
    else:
        out_sci = sci * f
        var_flat = np.zeros_like(out_sci)
    if vp is not None or vr is not None:
        scale = (lambda v: v / f2) if not inverse else (lambda v: v * f2)
        vp = None if vp is None else scale(vp)
        vr = None if vr is None else scale(vr)
        total = np.zeros_like(out_sci) if vp is None else vp
        if vr is not None:
            total = total + vr
        out_err = np.sqrt(total + var_flat) if not inverse else np.sqrt(total)
    elif not inverse:
        out_err = np.sqrt(np.asarray(err, np.float32) ** 2 + var_flat)
    else:
        out_err = np.asarray(err, np.float32)
    out_dq = (dq | fdq).astype(np.uint32)
    m = match_nans_and_flags(out_sci.astype(np.float32), out_err.astype(np.float32), out_dq,
                             vp, vr, var_flat.astype(np.float32))
    return FlatFieldResult(m.sci, m.err, m.dq, m.var_poisson, m.var_rnoise, m.var_flat)
