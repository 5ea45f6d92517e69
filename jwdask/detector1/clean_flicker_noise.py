"""clean_flicker_noise: 1/f noise removal from group differences (off by default in jwst 3.0).

Not implemented in jwdask: it needs whole-frame background masks and row fits (spec §6.13).
"""

from __future__ import annotations

from typing import Any

import xarray as xr


def clean_flicker_noise(ds: xr.Dataset, refs: Any, **params: Any) -> xr.Dataset:
    """Raise: the step is not implemented (it is skipped by default, as in jwst)."""
    msg = "detector1 step 'clean_flicker_noise' is not implemented in jwdask; keep skip: true"
    raise NotImplementedError(msg)
