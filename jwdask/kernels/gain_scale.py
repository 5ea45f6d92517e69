"""gain_scale kernel: rescale rates to the nominal gain with GAINFACT (spec §6.16).

``sci, err *= g`` and ``var_poisson, var_rnoise *= g**2`` for a rate or per-integration rate
product; ``g`` is the gain reference's GAINFACT (dimensionless). Deciding whether the step runs
(no GAINFACT → skipped) is the wrapper's business.

REQUIRED_TILE: any block; purely element-wise.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["GainScaleResult", "scale_rates"]


class GainScaleResult(NamedTuple):
    """Output of :func:`scale_rates`; ``None`` where the input was ``None``."""

    sci: np.ndarray
    """Rate [DN/s] times ``g``."""
    err: np.ndarray
    """Error [DN/s] times ``g``."""
    var_poisson: np.ndarray | None
    """Poisson variance [(DN/s)^2] times ``g**2``."""
    var_rnoise: np.ndarray | None
    """Read-noise variance [(DN/s)^2] times ``g**2``."""


def scale_rates(
    sci: np.ndarray,
    err: np.ndarray,
    var_poisson: np.ndarray | None = None,
    var_rnoise: np.ndarray | None = None,
    *,
    gain_factor: float,
) -> GainScaleResult:
    """Multiply a rate product by the gain factor.

    As in jwst, ``g`` and ``g**2`` are formed in double precision and applied in the arrays'
    own precision (float32 for products).

    Parameters
    ----------
    sci, err : ndarray
        Rate and its error [DN/s], ``(y, x)`` or ``(integration, y, x)``.
    var_poisson, var_rnoise : ndarray, optional
        Variances [(DN/s)^2], same shape.
    gain_factor : float
        GAINFACT of the gain reference (dimensionless).

    Returns
    -------
    GainScaleResult
        New arrays of the input dtypes.

    Examples
    --------
    >>> out = scale_rates(np.ones(2, np.float32), np.ones(2, np.float32), np.ones(2, np.float32),
    ...                   gain_factor=2.0)
    >>> out.sci.tolist(), out.var_poisson.tolist(), out.var_rnoise
    ([2.0, 2.0], [4.0, 4.0], None)
    """
    g = float(gain_factor)
    g2 = g**2
    return GainScaleResult(
        sci=np.multiply(sci, g, dtype=sci.dtype),
        err=np.multiply(err, g, dtype=err.dtype),
        var_poisson=None if var_poisson is None else np.multiply(var_poisson, g2, dtype=var_poisson.dtype),
        var_rnoise=None if var_rnoise is None else np.multiply(var_rnoise, g2, dtype=var_rnoise.dtype),
    )
