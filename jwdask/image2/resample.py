"""resample (image2): drizzle one calibrated exposure [MJy/sr] onto its own grid, the ``_i2d`` (image2.md §6).

The stage-3 engine (:func:`jwdask.image3.resample.resample_mosaic`) applied to a one-exposure
list with header blending off, as jwst does for a single input.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from jwdask.image3.resample import resample_mosaic


def resample(ds: xr.Dataset, refs: Any = None, **params: Any) -> xr.Dataset:
    """The i2d Dataset of one 2-D cal Dataset; ``params`` as jwst's ResampleStep (pixfrac,
    kernel, weight_type, pixel_scale_ratio, pixel_scale [arcsec], rotation [deg], crpix,
    crval, output_shape, ...) plus ``tile`` [pixels]. ``refs`` is unused."""
    params.pop("blendheaders", None)
    return resample_mosaic([ds], refs, blendheaders=False, **params)


def i2d_product(ds: xr.Dataset) -> xr.Dataset:
    """The ``_i2d`` product of a resampled exposure (the Dataset resample returned)."""
    return ds
