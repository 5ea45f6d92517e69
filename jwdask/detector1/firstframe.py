"""firstframe (MIRI, deprecated and off by default in jwst 3.0): flag group 0 DO_NOT_USE.

Skipped for non-MIRI detectors and for ramps of 3 groups or fewer, as in jwst 3.0.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import xarray as xr

from jwdask.detector1._miri import detector, task_name
from jwdask.detector1._ramp import require_ramp
from jwdask.kernels.miri_firstframe import flag_first_group
from jwdask.steps import completed, skipped
from jwdask.tiles import map_tiles

log = logging.getLogger(__name__)


def firstframe(ds: xr.Dataset, refs: Any = None, *, bright_use_group1: bool = True) -> xr.Dataset:
    """Add DO_NOT_USE to group 0 of ``groupdq``.

    Parameters
    ----------
    bright_use_group1 : bool
        Keep group 0 where group 2 is SATURATED; those pixels get FLUX_ESTIMATED in ``pixeldq``.
    """
    require_ramp(ds, "firstframe")
    log.warning("firstframe is deprecated in jwst 3.0: the rscd step flags the first groups")
    det = detector(ds)
    if det.upper()[:3] != "MIR":
        return skipped(ds, "firstframe", f"only for MIRI data (DETECTOR={det or 'missing'})")
    if ds.sizes["group"] <= 3:
        return skipped(ds, "firstframe", f"too few groups ({ds.sizes['group']} <= 3)")
    out = map_tiles(flag_first_group, [ds.groupdq, ds.pixeldq],
                    {"groupdq": (ds.groupdq.dims, np.uint8), "pixeldq": (("y", "x"), np.uint32)},
                    like=ds.sci, bright_use_group1=bool(bright_use_group1),
                    name=task_name("firstframe", ds.groupdq.data, ds.pixeldq.data, bright_use_group1))
    return completed(ds, "firstframe", out)
