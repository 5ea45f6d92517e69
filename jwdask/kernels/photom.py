"""photom kernels for imaging: the time-dependence factor and the scalar flux conversion
(image2.md §5).

``SCI, ERR *= C``, ``VAR_* *= C**2`` (``/`` for ``inverse``), computed in the precision of ``C``
(float32 from the PHOTOM table, float64 once divided by a time correction) and stored as
float32, then :func:`jwdask.kernels.flat_field.match_nans_and_flags`.

REQUIRED_TILE: any (y, x) tile (with every integration of a cube); element-wise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from jwdask.kernels.flat_field import match_nans_and_flags

__all__ = ["PhotomResult", "apply_conversion", "time_correction"]


class PhotomResult(NamedTuple):
    """Output of :func:`apply_conversion`: float32 arrays (uint32 dq), science shape."""

    sci: np.ndarray
    """Calibrated data [MJy/sr]."""
    err: np.ndarray
    """Total error [MJy/sr]."""
    dq: np.ndarray
    """Input dq, DO_NOT_USE where any array is NaN."""
    var_poisson: np.ndarray | None
    var_rnoise: np.ndarray | None
    var_flat: np.ndarray | None
    """Variances [(MJy/sr)^2]; None stays None."""


def _scale(a: np.ndarray | None, factor: np.generic, inverse: bool) -> np.ndarray | None:
    if a is None or a.size == 0:
        return a
    wide = np.asarray(a).astype(np.result_type(a.dtype, factor), copy=False)
    return (wide / factor if inverse else wide * factor).astype(np.float32)


def apply_conversion(sci: np.ndarray, err: np.ndarray, dq: np.ndarray, var_poisson: np.ndarray | None,
                     var_rnoise: np.ndarray | None, var_flat: np.ndarray | None, *,
                     conversion: float | np.floating, inverse: bool = False) -> PhotomResult:
    """Multiply one tile by the flux conversion factor (jwst ``DataSet.photom_io``).

    Parameters
    ----------
    sci, err : ndarray
        float32 ``(..., y, x)`` [DN/s].
    dq : ndarray
        uint32, same shape.
    var_poisson, var_rnoise, var_flat : ndarray or None
        float32 variances [(DN/s)^2].
    conversion : numpy float
        ``C`` [(MJy/sr)/(DN/s)]; its dtype sets the arithmetic precision (as in jwst).
    inverse : bool
        Divide instead (MJy/sr back to DN/s).

    Returns
    -------
    PhotomResult
        New arrays.

    Examples
    --------
    >>> one = np.ones((1, 2), np.float32)
    >>> out = apply_conversion(2 * one, one, np.array([[0, 1]], np.uint32), one, one, None,
    ...                        conversion=np.float32(0.5))
    >>> out.sci.tolist(), out.var_rnoise.tolist()
    ([[1.0, nan]], [[0.25, nan]])
    """
    c = conversion if isinstance(conversion, np.floating) else np.float64(conversion)
    c2 = c * c
    m = match_nans_and_flags(_scale(sci, c, inverse), _scale(err, c, inverse), dq,
                             _scale(var_poisson, c2, inverse), _scale(var_rnoise, c2, inverse),
                             _scale(var_flat, c2, inverse))
    return PhotomResult(*m)


def time_correction(mid_time: float, tables: Mapping[str, Mapping[str, np.ndarray]], nrows: int) -> np.ndarray:
    """Per-row throughput-loss factor of a PHOTOM reference at MJD ``mid_time``
    (``jwst.photom.time_dependence.get_correction_table``, unbounded).

    Parameters
    ----------
    mid_time : float
        Exposure mid time ``EXPMID`` [MJD].
    tables : mapping
        ``{"linear"|"exponential"|"powerlaw": {column: array}}``: the ``TIMECOEFF_*`` tables
        present (columns ``t0`` [MJD], ``lossperyear`` [1/yr]; ``amplitude``, ``tau`` [d],
        ``const``; ``year1value``, ``tsoft`` [d], ``alpha``).
    nrows : int
        Rows of the PHOTOM table (each coefficient table has one row per PHOTOM row).

    Returns
    -------
    ndarray
        float64 ``(nrows,)``, 1.0 where no correction applies.

    Examples
    --------
    >>> time_correction(60365.0, {"linear": {"t0": np.array([60000.0]),
    ...                                      "lossperyear": np.array([0.1])}}, 1).round(6).tolist()
    [0.9]
    """
    corr = np.full(nrows, 1.0)
    if "linear" in tables:
        p = tables["linear"]
        corr *= 1.0 - p["lossperyear"] * (mid_time - p["t0"]) / 365.0
    if "exponential" in tables:
        p = tables["exponential"]
        corr *= p["amplitude"] * np.exp(-(mid_time - p["t0"]) / p["tau"]) + p["const"]
    if "powerlaw" in tables:
        p = tables["powerlaw"]
        norm = ((365.0 + p["tsoft"]) ** p["alpha"]) / p["year1value"]
        corr *= ((mid_time - p["t0"] + p["tsoft"]) ** p["alpha"]) / norm
    return corr
