"""Inputs shared by the image2 step tests: rate products written to disk (so jwdask and jwst
read identical files) and an offline environment for the official steps."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from jwdask.dqflags import DO_NOT_USE, JUMP_DET, SATURATED
from jwdask.io import keywords
from jwdask.io.products import open_product, write_product
from jwdask.io.uncal import detector_coords
from tests.official import offline_crds

def rate_meta(meta: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``meta`` with dotted paths (``subarray__xstart``) set (None removes)."""
    out = copy.deepcopy(meta)
    for key, value in changes.items():
        path = key.replace("__", ".").split(".")
        if value is None:
            parent = keywords.get(out, path[:-1], {})
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
        else:
            keywords.put(out, path, value)
    return out


def write_rate(path: Path, meta: dict[str, Any], *, shape: tuple[int, int], window: tuple[int, int] | None,
               seed: int = 0, nints: int | None = None, tile: tuple[int, int] = (24, 32),
               level: float = 5.0, outliers: int = 0) -> xr.Dataset:
    """Write a ``_rate`` (or, with ``nints``, ``_rateints``) product of random DN/s data and
    open it again. ``window`` = (SUBSTRT1, SUBSTRT2), or None to drop the SUBSTRT/SUBSIZE
    keywords. Some pixels are NaN + DO_NOT_USE, some carry other dq bits; ``outliers``
    pixels get +1000 DN/s."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    changes: dict[str, Any] = {"subarray.xsize": nx, "subarray.ysize": ny}
    if window is None:
        changes.update({"subarray.xstart": None, "subarray.ystart": None, "subarray.xsize": None,
                        "subarray.ysize": None})
    else:
        changes.update({"subarray.xstart": window[0], "subarray.ystart": window[1]})
    meta = rate_meta(meta, **changes)
    full = shape if nints is None else (nints, *shape)
    dims = ("y", "x") if nints is None else ("integration", "y", "x")
    vp = np.abs(rng.normal(0.5, 0.1, full)).astype(np.float32)
    vr = np.abs(rng.normal(0.3, 0.05, full)).astype(np.float32)
    sci = rng.normal(level, 1.0, full).astype(np.float32)
    flat_sci = sci.reshape(-1)
    flat_sci[rng.choice(sci.size, outliers, replace=False)] += np.float32(1000.0)
    dq = np.zeros(full, np.uint32)
    flat_dq = dq.reshape(-1)
    flat_dq[rng.choice(dq.size, 12, replace=False)] |= np.uint32(JUMP_DET)
    flat_dq[rng.choice(dq.size, 6, replace=False)] |= np.uint32(SATURATED)
    bad = rng.choice(dq.size, 6, replace=False)
    flat_dq[bad] |= np.uint32(DO_NOT_USE)
    flat_sci[bad] = np.nan
    arrays = {"sci": sci, "err": np.sqrt(vp + vr), "dq": dq, "var_poisson": vp, "var_rnoise": vr}
    chunks = (-1,) * (len(dims) - 2) + tile
    ds = xr.Dataset({k: (dims, da.from_array(v, chunks=chunks)) for k, v in arrays.items()},
                    coords=detector_coords(meta, ny, nx), attrs={"meta": meta, "tables": {}})
    ds.sci.attrs["units"] = ds.err.attrs["units"] = "DN/s"
    kind = "rate" if nints is None else "rateints"
    url = write_product(ds, str(path), kind)
    return open_product(url, tile=tile)


@pytest.fixture
def jwst_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment in which jwst steps run offline with every reference overridden."""
    pytest.importorskip("jwst")
    offline_crds(tmp_path, monkeypatch)


def _no_compute(*args: Any, **kwargs: Any) -> Any:
    msg = "a step computed dask arrays while building its graph"
    raise AssertionError(msg)


def no_compute() -> Any:
    """Context in which any dask computation fails (steps must only build graphs)."""
    return dask.config.set(scheduler=_no_compute)


def assert_close(ours: np.ndarray, theirs: np.ndarray, name: str, rtol: float = 1e-5) -> None:
    """Same NaN pattern and values within ``rtol`` (relative) elsewhere."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, name
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=f"{name}: NaN pattern")
    np.testing.assert_allclose(ours, theirs.astype(ours.dtype), rtol=rtol, atol=0, equal_nan=True, err_msg=name)
