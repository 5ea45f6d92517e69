"""gain_scale: multiply rates by the gain reference's GAINFACT when it has one.

``sci, err *= g``; ``var_poisson, var_rnoise *= g**2`` for the rate and per-integration
arrays (DN/s stays DN/s, rescaled to the nominal gain). SKIPPED without GAINFACT.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from jwdask.io import keywords
from jwdask.steps import completed, skipped


def gain_scale(ds: xr.Dataset, refs: Any) -> xr.Dataset:
    """Apply ``meta.exposure.gain_factor`` (copied by ramp_fit from GAINFACT)."""
    factor = keywords.get(ds.attrs.get("meta", {}), "exposure.gain_factor")
    if factor is None:
        return skipped(ds, "gain_scale", "the gain reference has no GAINFACT")
    g = float(factor)
    variables = {}
    for suffix in ("", "_ints"):
        for name, power in (("sci", 1), ("err", 1), ("var_poisson", 2), ("var_rnoise", 2)):
            if name + suffix in ds:
                var = ds[name + suffix]
                variables[name + suffix] = (var * g**power).astype(var.dtype).assign_attrs(var.attrs)
    return completed(ds, "gain_scale", variables)
