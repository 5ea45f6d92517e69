"""picture_frame: NIRSpec thermal picture-frame correction (off by default in jwst 3.0).

Not implemented in jwdask (NIRSpec only; whole-frame fit, spec §6.13).
"""

from __future__ import annotations

from typing import Any

import xarray as xr


def picture_frame(ds: xr.Dataset, refs: Any, **params: Any) -> xr.Dataset:
    """Raise: the step is not implemented (it is skipped by default, as in jwst)."""
    msg = "detector1 step 'picture_frame' is not implemented in jwdask; keep skip: true"
    raise NotImplementedError(msg)
