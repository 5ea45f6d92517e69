"""charge_migration: flag groups brighter than ``signal_threshold`` [DN] (off by default).

A group above the threshold gets CHARGELOSS | DO_NOT_USE, with every later group of its
integration, in the pixel and its four edge neighbours; per (y, x) tile with a 1-pixel halo.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from jwdask.detector1._ramp import require_ramp
from jwdask.kernels.charge_migration import HALO_DEPTH, flag_charge_migration
from jwdask.steps import completed
from jwdask.tiles import map_tiles


def charge_migration(ds: xr.Dataset, refs: Any, *, signal_threshold: float = 25000.0) -> xr.Dataset:
    """Flag charge migration (no reference file).

    Parameters
    ----------
    signal_threshold : float
        Group value [DN] above which charge migrates to the neighbours.
    """
    require_ramp(ds, "charge_migration")
    flags = map_tiles(flag_charge_migration, [ds.sci, ds.groupdq],
                      {"groupdq": (ds.groupdq.dims, np.uint8)}, like=ds.sci, depth=HALO_DEPTH,
                      name="charge_migration", signal_threshold=float(signal_threshold))
    return completed(ds, "charge_migration", flags)
