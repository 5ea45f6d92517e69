"""bkg_subtract kernels for imaging: combine background exposures (image2.md §2).

Per background ``k``: 2-D ``c_k = SCI_k``, ``v_k = ERR_k**2``; 3-D (``rateints``): SCI and ERR**2
are sigma-clipped along the integration axis and averaged (:func:`reduce_integrations`).
Across backgrounds (:func:`combine_backgrounds`): ``B`` = mean of the unclipped ``c_k`` after a
sigma clip along the background axis (astropy ``sigma_clip``: median centre, std spread, NaNs
masked; 0 where every value is masked, as jwst), ``E_B = sqrt(sum of unclipped v_k) / N``.
Each pixel's statistics use that pixel's values only, so per-tile results equal whole-image ones.

REQUIRED_TILE: any (y, x) tile with every background (and integration) of it.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from astropy.stats import sigma_clip
from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["CombinedBackground", "ReducedBackground", "combine_backgrounds", "reduce_integrations"]


class ReducedBackground(NamedTuple):
    """One background exposure reduced to an image (output of :func:`reduce_integrations`)."""

    data: np.ndarray
    """float64 ``(y, x)`` clipped mean over integrations [DN/s]."""
    var: np.ndarray
    """float64 ``(y, x)`` clipped mean of ERR**2 over integrations [(DN/s)^2]."""
    dq: np.ndarray
    """uint32 ``(y, x)`` OR over integrations."""


class CombinedBackground(NamedTuple):
    """Output of :func:`combine_backgrounds`."""

    data: np.ndarray
    """float32 ``(y, x)`` combined background ``B`` [DN/s] (0 where nothing survives)."""
    err: np.ndarray
    """float32 ``(y, x)`` error of the mean ``E_B`` [DN/s]."""


def _clip(data: np.ndarray, sigma: float, maxiters: int | None) -> np.ma.MaskedArray:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=AstropyUserWarning, message=".*automatically clipped.*")
        return sigma_clip(data, sigma=sigma, maxiters=maxiters, axis=0)


def reduce_integrations(sci: np.ndarray, err: np.ndarray, dq: np.ndarray, *, sigma: float = 3.0,
                        maxiters: int | None = None) -> ReducedBackground:
    """Collapse one ``rateints`` background tile over its integrations.

    Parameters
    ----------
    sci, err : ndarray
        float32 ``(integration, y, x)`` [DN/s], NaN outside the background's footprint.
    dq : ndarray
        uint32, same shape, 0 outside the footprint.
    sigma : float
        Clipping threshold [standard deviations], both sides.
    maxiters : int or None
        Clipping iterations (None: until nothing changes).

    Returns
    -------
    ReducedBackground
        New arrays.

    Examples
    --------
    >>> sci = np.ones((3, 1, 1), np.float32)
    >>> out = reduce_integrations(sci, 2 * sci, np.array([1, 4, 0], np.uint32).reshape(3, 1, 1))
    >>> out.data.tolist(), out.var.tolist(), out.dq.tolist()
    ([[1.0]], [[4.0]], [[5]])
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        data = _clip(sci, sigma, maxiters).mean(axis=0)
        var = _clip(err * err, sigma, maxiters).mean(axis=0)
    data = np.ma.getdata(data).astype(np.float64)
    var = np.ma.getdata(var).astype(np.float64)
    return ReducedBackground(data, var, np.bitwise_or.reduce(dq.astype(np.uint32), axis=0))


def combine_backgrounds(cdata: np.ndarray, cvar: np.ndarray, *, sigma: float = 3.0,
                        maxiters: int | None = None) -> CombinedBackground:
    """Sigma-clipped mean of the backgrounds of one tile (jwst ``average_background``).

    Parameters
    ----------
    cdata : ndarray
        float64 ``(background, y, x)`` per-background images [DN/s] (NaN: no coverage).
    cvar : ndarray
        float64 ``(background, y, x)`` per-background variances [(DN/s)^2].
    sigma : float
        Clipping threshold [standard deviations], both sides.
    maxiters : int or None
        Clipping iterations (None: until nothing changes).

    Returns
    -------
    CombinedBackground
        New float32 arrays.

    Examples
    --------
    >>> c = np.array([[[1.0, np.nan]], [[3.0, np.nan]]])
    >>> out = combine_backgrounds(c, np.ones_like(c))
    >>> out.data.tolist(), [round(float(e), 4) for e in out.err[0]]
    ([[2.0, 0.0]], [0.7071, 0.0])
    """
    nbkg = cdata.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        clipped = _clip(cdata, sigma, maxiters)
        data = clipped.mean(axis=0)
        masked_var = np.ma.masked_array(cvar, mask=clipped.mask)
        err = np.sqrt(masked_var.sum(axis=0)) / (nbkg - masked_var.mask.sum(axis=0))
    return CombinedBackground(np.ma.getdata(data).astype(np.float32), np.ma.getdata(err).astype(np.float32))

