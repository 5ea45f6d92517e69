"""reset (MIRI): subtract the RESET anomaly reference [DN] from the first groups.

Reset integration ``min(i, reset NINTS - 1)`` is subtracted from the first
``min(NGROUPS, reset NGROUPS)`` groups of science integration ``i`` (absolute index, so
segment files use INTSTART); NaN reset values count as 0; the reset dq is OR-ed into
``pixeldq``. As in jwst the RESET file is used as delivered (its shape must match).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from jwdask.detector1._miri import as_delivered, detector, meta_value, task_name
from jwdask.detector1._ramp import exposure, require_ramp
from jwdask.errors import InputError, ReferenceFileError
from jwdask.io import keywords
from jwdask.kernels.miri_reset import subtract_reset
from jwdask.steps import completed, skipped
from jwdask.tiles import map_tiles


def reset(ds: xr.Dataset, refs: Any) -> xr.Dataset:
    """Subtract the RESET reference (no parameters)."""
    require_ramp(ds, "reset")
    det = detector(ds)
    if not det.startswith("MIR"):
        return skipped(ds, "reset", f"only for MIRI data (DETECTOR={det or 'missing'})")
    ref, name = as_delivered(refs, "reset", ds)
    if ref is None:
        return skipped(ds, "reset", "no reset reference", ref_files={"reset": name})
    if "sci" not in ref or "dq" not in ref:
        found = sorted(map(str, ref.data_vars))
        raise ReferenceFileError("reset", f"{name}: needs SCI and DQ images, found {found}")
    if ref.sci.ndim != 4 or ref.dq.dims != ("y", "x"):
        msg = (f"{name}: SCI must be (integration, group, y, x) and DQ (y, x), got "
               f"{ref.sci.dims} and {ref.dq.dims}")
        raise ReferenceFileError("reset", msg)
    ref_meta = ref.attrs.get("meta", {})
    reset_nints = keywords.get(ref_meta, "exposure.nints")
    reset_ngroups = keywords.get(ref_meta, "exposure.ngroups")
    if reset_nints is None or reset_ngroups is None:
        raise ReferenceFileError("reset", f"{name}: PRIMARY NINTS and NGROUPS keywords are required")
    nints, ngroups = int(exposure(ds, "nints")), int(exposure(ds, "ngroups"))
    start = meta_value(ds, "exposure.integration_start")
    end = meta_value(ds, "exposure.integration_end")
    first = 0 if start is None else int(start) - 1
    stop = nints if end is None else int(end)
    n_corrected = max(0, stop - first)
    if n_corrected > ds.sizes["integration"]:
        raise InputError(ds.attrs.get("source", "exposure"), "SCI",
                         f"INTSTART/INTEND/NINTS ask for {n_corrected} integrations but SCI holds "
                         f"{ds.sizes['integration']}")
    last = min(first + n_corrected - 1, int(reset_nints) - 1)
    if n_corrected and (ref.sizes["integration"] <= last
                        or ref.sizes["group"] < min(ngroups, int(reset_ngroups))):
        msg = (f"{name}: SCI shape {tuple(ref.sci.shape)} lacks reset integration {last} or the "
               f"first {min(ngroups, int(reset_ngroups))} groups (NINTS={reset_nints}, "
               f"NGROUPS={reset_ngroups})")
        raise ReferenceFileError("reset", msg)
    planes = ref.sci.rename({"integration": "reset_integration", "group": "reset_group"})
    out = map_tiles(subtract_reset, [ds.sci, ds.pixeldq, planes, ref.dq],
                    {"sci": (ds.sci.dims, np.float32), "pixeldq": (("y", "x"), np.uint32)},
                    like=ds.sci, ngroups=ngroups, reset_nints=int(reset_nints),
                    name=task_name("reset", ds.sci.data, ds.pixeldq.data, planes.data, ref.dq.data, first,
                                   n_corrected),
                    reset_ngroups=int(reset_ngroups), first_integration=first, n_corrected=n_corrected)
    out["sci"].attrs = dict(ds.sci.attrs)
    return completed(ds, "reset", out, ref_files={"reset": name})
