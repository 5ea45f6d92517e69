"""Helpers shared by the Detector1 step modules: exposure keywords and ramp-array checks."""

from __future__ import annotations

from typing import Any

import xarray as xr

from jwdask.errors import InputError
from jwdask.io import keywords


def exposure(ds: xr.Dataset, path: str, default: Any = None, *, required: bool = True) -> Any:
    """``meta["exposure"][path]`` of ``ds``; a missing required value is an InputError."""
    value = keywords.get(ds.attrs.get("meta", {}), f"exposure.{path}", default)
    if value is None and required:
        kw = keywords.by_path().get(("exposure", *path.split(".")))
        raise InputError(ds.attrs.get("source", "exposure"), f"PRIMARY {kw.name if kw else path}",
                         "required keyword is missing")
    return value


def require_ramp(ds: xr.Dataset, step: str) -> None:
    """Check that ``ds`` is a ramp Dataset (after dq_init): float32 sci, groupdq, pixeldq."""
    for var in ("sci", "groupdq", "pixeldq"):
        if var not in ds:
            msg = (f"step '{step}' needs a ramp Dataset with '{var}' (run dq_init first); "
                   f"found {sorted(map(str, ds.data_vars))}")
            raise InputError(ds.attrs.get("source", "exposure"), var.upper(), msg)
