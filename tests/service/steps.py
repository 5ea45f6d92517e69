"""A step used by the runner tests to keep tasks busy long enough to kill a worker or
cancel a program mid-flight: it sleeps in every tile task and returns the data unchanged."""

from __future__ import annotations

import time

import numpy as np
import xarray as xr


def _pause(block: np.ndarray, seconds: float) -> np.ndarray:
    time.sleep(seconds)
    return block


def pause(ds: xr.Dataset, refs: object, *, seconds: float = 0.5) -> xr.Dataset:
    """Identity on ``sci`` that takes ``seconds`` [s] per tile task."""
    sci = ds.sci.copy(data=ds.sci.data.map_blocks(_pause, seconds, dtype=ds.sci.dtype))
    return ds.assign(sci=sci)
