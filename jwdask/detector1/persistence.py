"""persistence: flag groups inside a persistence window after saturation (off by default).

The flag-only algorithm of jwst 3.0 (spec §6.14) is not implemented in jwdask yet.
"""

from __future__ import annotations

from typing import Any

import xarray as xr


def persistence(ds: xr.Dataset, refs: Any, *, persistence_time: float | None = None,
                dn_threshold: float | None = None, persistence_dnu: bool = False) -> xr.Dataset:
    """Raise: the step is not implemented (it is skipped by default, as in jwst)."""
    msg = "detector1 step 'persistence' is not implemented in jwdask; keep skip: true"
    raise NotImplementedError(msg)
