"""map_tiles: per-tile kernels with and without halos equal the whole-array result."""

from __future__ import annotations

from typing import NamedTuple

import dask
import dask.array as da
import numpy as np
import xarray as xr

from jwdask.tiles import map_tiles


class Out(NamedTuple):
    total: np.ndarray
    smooth: np.ndarray


def kernel(cube, image, *, scale, halo=(0, 0, 0, 0)):
    """Sum over groups times ``image``; plus a 4-neighbour sum that needs a 1-pixel halo."""
    total = cube.sum(axis=1) * image * scale
    padded = np.pad(image, 1)
    smooth = image + padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
    return Out(total.astype(np.float32), smooth.astype(np.float64))


def test_equal_to_whole_array_on_uneven_tiles():
    rng = np.random.default_rng(3)
    cube = rng.normal(size=(2, 4, 23, 31)).astype(np.float32)
    image = rng.normal(size=(23, 31))
    sci = xr.DataArray(da.from_array(cube, chunks=(2, 4, 7, 9)), dims=("integration", "group", "y", "x"),
                       coords={"y": np.arange(100, 123), "x": np.arange(5, 36)})
    img = xr.DataArray(da.from_array(image, chunks=(11, 13)), dims=("y", "x"))
    with dask.config.set(scheduler=lambda *a, **k: (_ for _ in ()).throw(AssertionError("computed"))):
        out = map_tiles(kernel, [sci, img], {"total": (("integration", "y", "x"), np.float32),
                                             "smooth": (("y", "x"), np.float64)},
                        like=sci, depth=1, scale=2.0)
    expected = kernel(cube, image, scale=2.0)
    assert out["total"].chunks == ((2,), (7, 7, 7, 2), (9, 9, 9, 4))
    np.testing.assert_allclose(out["total"].values, expected.total, rtol=1e-6)
    np.testing.assert_array_equal(out["smooth"].values, expected.smooth)
    np.testing.assert_array_equal(out["total"].y.values, np.arange(100, 123))


def test_optional_input_none():
    sci = xr.DataArray(da.ones((1, 2, 4, 4), chunks=(1, 2, 2, 2)), dims=("integration", "group", "y", "x"))

    def k(a, b):
        assert b is None
        return {"out": a[0, 0] * 2}

    out = map_tiles(k, [sci, None], {"out": (("y", "x"), np.float64)}, like=sci)
    assert float(out["out"].sum()) == 32.0
