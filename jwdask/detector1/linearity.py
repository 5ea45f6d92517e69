"""linearity: correct every group [DN] with the LINEARITY polynomial (float32 Horner).

``F_lin = c0 + c1 F + c2 F^2 + ...``; SATURATED groups keep their value. Pixels with NaN
coefficients or a zero linear term get identity coefficients and NO_LIN_CORR; the reference
dq is OR-ed into ``pixeldq``. ZEROFRAME is corrected too (zeros stay zero).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from jwdask import dqflags
from jwdask.detector1._ramp import exposure, require_ramp
from jwdask.steps import completed, reference, skipped


def linearity(ds: xr.Dataset, refs: Any) -> xr.Dataset:
    """Apply the classic (group-level) linearity correction (no parameters)."""
    require_ramp(ds, "linearity")
    ref, name = reference(refs, "linearity", ds)
    if ref is None:
        return skipped(ds, "linearity", "no linearity reference", ref_files={"linearity": name})
    if "inv_coeffs" in ref and int(exposure(ds, "nframes")) > 1:
        msg = ("linearity: the read-level correction (INV_COEFFS with NFRAMES > 1, spec §6.9) "
               "is not implemented in jwdask yet")
        raise NotImplementedError(msg)
    coeffs = ref.coeffs.astype(np.float32)
    ref_dq = ref.dq.astype(np.uint32)
    bad = coeffs.isnull().any("coeff") | (coeffs.isel(coeff=1) == 0)
    identity = (ref_dq & dqflags.NO_LIN_CORR).astype(bool) | bad
    unit = xr.DataArray(np.eye(1, coeffs.sizes["coeff"], 1, dtype=np.float32)[0], dims=("coeff",))
    coeffs = xr.where(identity, unit, coeffs).astype(np.float32)
    pixeldq = ds.pixeldq | ref_dq | xr.where(bad, np.uint32(dqflags.NO_LIN_CORR), np.uint32(0))
    saturated = (ds.groupdq & dqflags.SATURATED).astype(bool)
    sci = xr.where(saturated, ds.sci, _horner(coeffs, ds.sci)).astype(np.float32).transpose(*ds.sci.dims)
    sci.attrs = dict(ds.sci.attrs)
    variables = {"sci": sci, "pixeldq": pixeldq.astype(np.uint32)}
    if "zeroframe" in ds:
        z = ds.zeroframe
        variables["zeroframe"] = xr.where(z == 0, z, _horner(coeffs, z)).astype(np.float32).transpose(*z.dims)
    return completed(ds, "linearity", variables, ref_files={"linearity": name})


def _horner(coeffs: xr.DataArray, values: xr.DataArray) -> xr.DataArray:
    """``sum_k coeffs[k] * values**k`` evaluated by Horner's rule in float32."""
    n = coeffs.sizes["coeff"]
    result = coeffs.isel(coeff=n - 1, drop=True)
    for k in range(n - 2, -1, -1):
        result = (result * values + coeffs.isel(coeff=k, drop=True)).astype(np.float32)
    return result
