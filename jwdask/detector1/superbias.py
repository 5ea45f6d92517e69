"""superbias: subtract the bias frame [DN] from every group (and from ZEROFRAME).

NaN bias values count as 0; the SUPERBIAS dq is OR-ed into ``pixeldq``. ZEROFRAME values of
exactly 0 (unusable) stay 0. A NIRSpec IRS2 exposure (3200 rows) takes a SUPERBIAS in the IRS2
layout, applied to every row as jwst does (:mod:`jwdask.refs.irs2_layout`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from jwdask.detector1._ramp import require_ramp
from jwdask.steps import completed, reference, skipped


def superbias(ds: xr.Dataset, refs: Any) -> xr.Dataset:
    """Subtract the SUPERBIAS reference (no parameters)."""
    require_ramp(ds, "superbias")
    ref, name = reference(refs, "superbias", ds)
    if ref is None:
        return skipped(ds, "superbias", "no superbias reference", ref_files={"superbias": name})
    bias = ref.sci.fillna(0).astype(np.float32)
    sci = (ds.sci - bias).astype(np.float32).transpose(*ds.sci.dims)
    sci.attrs = dict(ds.sci.attrs)
    variables = {"sci": sci, "pixeldq": ds.pixeldq | ref.dq.astype(np.uint32)}
    if "zeroframe" in ds:
        z = ds.zeroframe
        variables["zeroframe"] = xr.where(z == 0, np.float32(0), z - bias).astype(np.float32).transpose(*z.dims)
    return completed(ds, "superbias", variables, ref_files={"superbias": name})
