"""lastframe (MIRI): flag the last group of every integration DO_NOT_USE.

Skipped for non-MIRI detectors and for ramps of 2 groups or fewer, as in jwst 3.0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from jwdask.detector1._miri import detector, task_name
from jwdask.detector1._ramp import require_ramp
from jwdask.kernels.miri_lastframe import flag_last_group
from jwdask.steps import completed, skipped
from jwdask.tiles import map_tiles


def lastframe(ds: xr.Dataset, refs: Any = None) -> xr.Dataset:
    """Add DO_NOT_USE to the last group's ``groupdq`` (no parameters, no reference file)."""
    require_ramp(ds, "lastframe")
    det = detector(ds)
    if det[:3] != "MIR":
        return skipped(ds, "lastframe", f"only for MIRI data (DETECTOR={det or 'missing'})")
    if ds.sizes["group"] <= 2:
        return skipped(ds, "lastframe", f"too few groups ({ds.sizes['group']} <= 2)")
    out = map_tiles(flag_last_group, [ds.groupdq], {"groupdq": (ds.groupdq.dims, np.uint8)},
                    like=ds.sci, name=task_name("lastframe", ds.groupdq.data))
    return completed(ds, "lastframe", out)
