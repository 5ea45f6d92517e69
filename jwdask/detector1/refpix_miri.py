"""refpix for MIRI: subtract left/right reference-column levels [DN], full frame only.

Per integration, group and amplifier, sigma-clipped means of the amplifier's left and right
reference columns (even and odd rows apart with ``odd_even_rows``), measured relative to group
0, are averaged and subtracted. MIRI subarrays are skipped, as in jwst 3.0. The near-IR-only
parameters are accepted (so one parameter set serves both) and ignored, as jwst does.
"""

from __future__ import annotations

import logging
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from jwdask.detector1._miri import instrument, task_name
from jwdask.detector1._ramp import require_ramp
from jwdask.errors import InputError, ParameterError
from jwdask.kernels.miri_refpix import (
    FULL_SHAPE,
    REFERENCE_COLUMNS,
    apply_levels,
    reference_levels,
)
from jwdask.steps import completed, skipped
from jwdask.tiles import as_delayed, map_tiles

log = logging.getLogger(__name__)


def refpix_miri(ds: xr.Dataset, refs: Any = None, *, odd_even_columns: bool = True,
                use_side_ref_pixels: bool = True, side_smoothing_length: int = 11, side_gain: float = 1.0,
                odd_even_rows: bool = True, siglimit: float = 3.0, refpix_algorithm: str = "median",
                sigreject: float = 4.0, gaussmooth: float = 1.0, halfwidth: int = 30,
                ovr_corr_mitigation_ftr: float = 3.0, preserve_irs2_refpix: bool = False,
                irs2_mean_subtraction: bool = False) -> xr.Dataset:
    """MIRI reference-pixel correction of ``sci`` [DN].

    Parameters
    ----------
    odd_even_rows : bool
        Separate reference levels for even and odd rows.
    siglimit : float
        Sigma-clipping limit [sigma] of the reference means.
    others
        Near-IR parameters of jwst's refpix step; not used for MIRI.
    """
    require_ramp(ds, "refpix")
    source = ds.attrs.get("source", "exposure")
    if instrument(ds).upper() != "MIRI":
        raise InputError(source, "PRIMARY INSTRUME",
                         f"refpix_miri is for MIRI exposures, got {instrument(ds) or 'none'}; "
                         "use jwdask.detector1.refpix")
    if refpix_algorithm not in ("median", "sirs"):
        msg = f"refpix: refpix_algorithm must be 'median' or 'sirs', got {refpix_algorithm!r}"
        raise ParameterError(msg)
    if siglimit <= 0:
        raise ParameterError(f"refpix: siglimit must be > 0 sigma, got {siglimit}")
    if refpix_algorithm == "sirs":
        log.info("refpix: SIRS is not applied to MIRI data")
    shape = (ds.sizes["y"], ds.sizes["x"])
    if shape[0] < FULL_SHAPE[0] or shape[1] < FULL_SHAPE[1]:
        return skipped(ds, "refpix", f"MIRI subarray {shape} (jwst corrects only full frames)")
    if shape != FULL_SHAPE:
        raise InputError(source, "SCI", f"(y, x) shape {shape} is larger than the MIRI full frame {FULL_SHAPE}")
    columns = list(REFERENCE_COLUMNS)
    refcols = ds.sci.isel(x=columns).data.rechunk(-1)
    refdq = ds.pixeldq.isel(x=columns).data
    refdq = refdq.rechunk(-1) if isinstance(refdq, da.Array) else np.asarray(refdq)
    nints, ngroups = ds.sizes["integration"], ds.sizes["group"]
    levels = da.from_delayed(
        dask.delayed(reference_levels)(as_delayed(refcols), as_delayed(refdq), odd_even_rows=bool(odd_even_rows), siglimit=float(siglimit)),
        shape=(nints, ngroups, 2, 4), dtype=np.float64)
    parity_amp = ((ds.y % 2) * 4 + ds.x % 4).astype(np.int8).transpose("y", "x")
    out = map_tiles(apply_levels, [ds.sci, parity_amp], {"sci": (ds.sci.dims, np.float32)},
                    like=ds.sci, name=task_name("refpix-miri", ds.sci.data, levels), levels=levels)
    out["sci"].attrs = dict(ds.sci.attrs)
    return completed(ds, "refpix", out)

