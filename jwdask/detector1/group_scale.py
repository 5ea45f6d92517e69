"""group_scale: undo on-board frame averaging by FRMDIVSR when NFRAMES is not a power of two.

``sci *= FRMDIVSR / NFRAMES`` [DN]; a no-op (SKIPPED) when FRMDIVSR is absent or equals NFRAMES.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from jwdask.detector1._ramp import exposure
from jwdask.steps import completed, skipped


def group_scale(ds: xr.Dataset, refs: Any) -> xr.Dataset:
    """Rescale groups averaged with a divisor other than NFRAMES (no parameters)."""
    nframes = exposure(ds, "nframes", required=False)
    divisor = exposure(ds, "frame_divisor", required=False)
    if nframes is None:
        return skipped(ds, "group_scale", "NFRAMES unknown")
    if divisor is None or int(divisor) == int(nframes):
        return skipped(ds, "group_scale", "FRMDIVSR absent or equal to NFRAMES")
    factor = float(divisor) / float(nframes)
    sci = (ds.sci.astype("float32") * factor).astype("float32")
    sci.attrs = dict(ds.sci.attrs)
    return completed(ds, "group_scale", {"sci": sci})
