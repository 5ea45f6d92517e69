"""map_tiles: per-tile kernels with and without halos equal the whole-array result; region
tasks and after_blocks build graph tasks on an array's own block keys."""

from __future__ import annotations

from typing import NamedTuple

import dask
import dask.array as da
import numpy as np
import xarray as xr

from dask.highlevelgraph import HighLevelGraph

from jwdask.tiles import after_blocks, map_tiles, region_task


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


def test_region_task_cuts_any_window():
    rng = np.random.default_rng(5)
    full = rng.normal(size=(2, 23, 31))
    arr = da.from_array(full, chunks=(2, 7, 10))
    windows = [(0, 23, 0, 31), (3, 5, 4, 9), (6, 15, 9, 21), (7, 14, 10, 20), (22, 23, 30, 31)]
    for n, window in enumerate(windows):
        name = f"region-{n}"
        graph = HighLevelGraph.from_collections(name, {(name, 0): region_task(arr, *window)}, dependencies=[arr])
        y0, y1, x0, x1 = window
        got = dask.get(dict(graph), (name, 0))
        np.testing.assert_array_equal(got, full[:, y0:y1, x0:x1])


def test_after_blocks_sees_every_block_once():
    calls = []
    arr = da.arange(20, chunks=3).map_blocks(lambda b: calls.append(1) or b)
    done = after_blocks(lambda tag, blocks: (tag, np.concatenate(blocks)), "tag", arrays=[arr, arr + 1], name="all")
    calls.clear()  # map_blocks probed the function for its meta
    tag, values = dask.compute(done, scheduler="sync")[0]
    assert tag == "tag"
    np.testing.assert_array_equal(values, np.r_[np.arange(20), np.arange(20) + 1])
    assert len(calls) == arr.numblocks[0]
