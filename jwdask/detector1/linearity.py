"""linearity: correct every group [DN] with the LINEARITY polynomial (float32 Horner).

``F_lin = c0 + c1 F + c2 F^2 + ...``; SATURATED groups keep their value. Pixels with NaN
coefficients or a zero linear term get identity coefficients and NO_LIN_CORR; the reference
dq is OR-ed into ``pixeldq``. ZEROFRAME is corrected too (zeros stay zero). As in jwst 3.0, a
reference with INV_COEFFS, NFRAMES > 1 and no explicit read times select the read-level
correction (each group modelled as the mean of its NFRAMES frames along a linear ramp).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import xarray as xr

from jwdask.detector1._ramp import exposure, require_ramp
from jwdask.errors import InputError, ReferenceFileError
from jwdask.io import keywords
from jwdask.kernels.linearity import correct_linearity
from jwdask.steps import completed, reference, skipped
from jwdask.tiles import map_tiles

log = logging.getLogger(__name__)

EXPECTED_SHAPE = "expected (ncoeffs >= 2, y, x) over the same pixels as COEFFS"


def linearity(ds: xr.Dataset, refs: Any) -> xr.Dataset:
    """Apply the linearity correction to ``sci`` [DN] (no parameters): group-level, or
    read-level when the reference has INV_COEFFS and the exposure averages NFRAMES > 1 frames."""
    require_ramp(ds, "linearity")
    ref, name = reference(refs, "linearity", ds)
    if ref is None:
        return skipped(ds, "linearity", "no linearity reference", ref_files={"linearity": name})
    coeffs = _coefficients(ref, "coeffs", name)
    if "dq" not in ref:
        raise ReferenceFileError("linearity", f"{name}: no DQ image")
    nframes = int(exposure(ds, "nframes")) if "inv_coeffs" in ref else 1
    inv_coeffs = None
    if "inv_coeffs" in ref and nframes > 1 and not _has_read_times(ds):
        inv_coeffs = _coefficients(ref, "inv_coeffs", name)
        log.info("linearity: read-level correction (INV_COEFFS, NFRAMES=%d)", nframes)
        if ds.sizes["group"] < 2:
            msg = (f"the read-level linearity correction (INV_COEFFS in {name}, NFRAMES={nframes}) "
                   "needs at least 2 groups per integration")
            raise InputError(ds.attrs.get("source", "exposure"), "PRIMARY NGROUPS", msg)
    outputs = {"sci": (ds.sci.dims, np.float32), "pixeldq": (ds.pixeldq.dims, np.uint32)}
    zeroframe = ds.zeroframe if "zeroframe" in ds else None
    if zeroframe is not None:
        outputs["zeroframe"] = (zeroframe.dims, np.float32)
    variables = map_tiles(_correct, [ds.sci, ds.groupdq, ds.pixeldq, coeffs, ref.dq, zeroframe, inv_coeffs],
                          outputs, like=ds.sci, name="linearity", nframes=nframes)
    for var, out in variables.items():
        out.attrs = dict(ds[var].attrs)
    return completed(ds, "linearity", variables, ref_files={"linearity": name})


def _coefficients(ref: xr.Dataset, var: str, name: str) -> xr.DataArray:
    """``ref[var]`` as float32 ``(coeff, y, x)`` (the reader has already checked that every
    image covers the same pixels)."""
    if var not in ref:
        raise ReferenceFileError("linearity", f"{name}: no {var.upper()} image")
    values = ref[var]
    if values.ndim != 3 or values.dims[1:] != ("y", "x") or values.shape[0] < 2:
        msg = f"{name}: {var.upper()} has shape {tuple(values.shape)} over the exposure's pixels; {EXPECTED_SHAPE}"
        raise ReferenceFileError("linearity", msg)
    return values.astype(np.float32)


def _has_read_times(ds: xr.Dataset) -> bool:
    """Whether the exposure lists explicit read times (``meta.exposure.read_times``)."""
    read_times = keywords.get(ds.attrs.get("meta", {}), "exposure.read_times")
    return read_times is not None and len(read_times) > 0


def _correct(sci: np.ndarray, groupdq: np.ndarray, pixeldq: np.ndarray, coeffs: np.ndarray, lin_dq: np.ndarray,
             zeroframe: np.ndarray | None, inv_coeffs: np.ndarray | None, *, nframes: int) -> Any:
    return correct_linearity(sci, groupdq, pixeldq, coeffs, lin_dq.astype(np.uint32), zeroframe=zeroframe,
                             inv_coeffs=inv_coeffs, nframes=nframes)
