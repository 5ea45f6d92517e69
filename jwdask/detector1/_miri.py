"""Helpers shared by the MIRI Detector1 step modules: detector tests, pixel indices, and
references used as delivered (not cut to the subarray)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from dask.base import tokenize

from jwdask.errors import ReferenceFileError
from jwdask.io import keywords


def meta_value(ds: xr.Dataset, path: str, default: Any = None) -> Any:
    """``ds.attrs["meta"]`` value at a dotted path."""
    return keywords.get(ds.attrs.get("meta", {}), path, default)


def detector(ds: xr.Dataset) -> str:
    """DETECTOR of the exposure (``""`` if missing)."""
    return str(meta_value(ds, "instrument.detector", "") or "")


def instrument(ds: xr.Dataset) -> str:
    """INSTRUME of the exposure (``""`` if missing)."""
    return str(meta_value(ds, "instrument.name", "") or "")


def window_indices(ds: xr.Dataset) -> tuple[xr.DataArray, xr.DataArray]:
    """``(rows, cols)``: int32 ``(y, x)`` arrays of each pixel's 0-based index in the window."""
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    coords = {d: ds[d] for d in ("y", "x") if d in ds.coords}
    rows = xr.DataArray(np.broadcast_to(np.arange(ny, dtype=np.int32)[:, None], (ny, nx)), dims=("y", "x"),
                        coords=coords)
    cols = xr.DataArray(np.broadcast_to(np.arange(nx, dtype=np.int32)[None, :], (ny, nx)), dims=("y", "x"),
                        coords=coords)
    return rows, cols


def as_delivered(refs: Any, reftype: str, ds: xr.Dataset) -> tuple[xr.Dataset | None, str]:
    """A reference jwst applies without cutting it to the subarray (RESET, MIRI DARK).

    Returns ``(None, "N/A")`` when there is none; otherwise the reference on the exposure's
    pixel coordinates, tiled like it.

    Raises
    ------
    ReferenceFileError
        If no provider is given or its (y, x) shape differs from the exposure's.
    """
    if refs is None:
        raise ReferenceFileError(reftype, "no reference provider was given (pass refs=RefProvider(...))")
    meta = ds.attrs.get("meta", {})
    path = refs.path(reftype, meta)
    if path is None:
        return None, "N/A"
    ref = refs.open(reftype, meta)
    shape = (ref.sizes.get("y"), ref.sizes.get("x"))
    if shape != (ds.sizes["y"], ds.sizes["x"]):
        msg = (f"{path}: image (y, x) shape {shape} differs from the exposure's "
               f"{(ds.sizes['y'], ds.sizes['x'])}; jwst uses {reftype.upper()} files as delivered "
               "(no subarray cut)")
        raise ReferenceFileError(reftype, msg)
    ref = ref.drop_vars([c for c in ("y", "x") if c in ref.coords])
    ref = ref.assign_coords({d: ds[d] for d in ("y", "x") if d in ds.coords})
    chunks = {d: ds.chunks[d] for d in ("y", "x") if d in ds.chunks}
    return ref.chunk(chunks), refs.record(reftype, meta)


def task_name(step: str, *parts: Any) -> str:
    """A dask key name unique to the inputs: ``map_tiles`` uses its ``name`` as the full key."""
    return f"{step}-{tokenize(*parts)}"
