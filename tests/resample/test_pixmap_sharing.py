"""Each exposure's pixel map is evaluated once per output grid, shared by outlier detection's
drizzle and blot and by the final resample, and the results are those of separate maps."""

from __future__ import annotations

import uuid
from typing import Any

import dask
import numpy as np
import pytest
import xarray as xr

import jwdask.resample.reduce as reduce_module
from jwdask.image3.outlier_detection import outlier_detection
from jwdask.image3.resample import resample_mosaic
from jwdask.resample.drizzle import input_from_dataset, map_token
from tests.resample.helpers import exposure

OFFSETS = [(0.0, 0.0), (7.3, 4.1), (-5.2, 9.7)]


@pytest.fixture(scope="module")
def inputs() -> list[xr.Dataset]:
    return [exposure(k, offset=o) for k, o in enumerate(OFFSETS)]


def test_map_token_identifies_equal_maps(inputs: list[xr.Dataset]) -> None:
    """Equal transforms built separately give one token; another exposure or grid another."""
    twin = exposure(0, offset=OFFSETS[0])
    grid = resample_mosaic(inputs).attrs["wcs"]
    rebuilt = resample_mosaic([twin, *inputs[1:]]).attrs["wcs"]
    finer = resample_mosaic(inputs, pixel_scale_ratio=0.5).attrs["wcs"]
    first, again, other = (input_from_dataset(k, ds)[0] for k, ds in ((0, inputs[0]), (0, twin), (1, inputs[1])))
    token = map_token(first, grid, None, 1)
    assert token == map_token(again, rebuilt, None, 3)
    assert token != map_token(other, grid, None, 1)
    assert token != map_token(first, finer, None, 1)


def _outlier_then_resample(inputs: list[xr.Dataset]) -> dict[str, np.ndarray]:
    flagged = outlier_detection(inputs, tile=40)
    mosaic = resample_mosaic(flagged, tile=(40, 50))
    with dask.config.set(scheduler="sync"):
        arrays, dqs = dask.compute({k: v.data for k, v in mosaic.data_vars.items() if "." not in str(k)},
                                   [ds["dq"].data for ds in flagged])
    return {**arrays, **{f"dq{k}": dq for k, dq in enumerate(dqs)}}


def test_outlier_detection_and_resample_share_one_map(inputs: list[xr.Dataset],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = reduce_module.exposure_map

    def counting(info: Any, *args: Any) -> np.ndarray:
        calls.append(info.index)
        return original(info, *args)

    monkeypatch.setattr(reduce_module, "exposure_map", counting)
    shared = _outlier_then_resample(inputs)
    assert sorted(calls) == list(range(len(inputs)))
    calls.clear()
    monkeypatch.setattr(reduce_module, "map_token", lambda *args: uuid.uuid4().hex)
    separate = _outlier_then_resample(inputs)
    assert len(calls) > len(inputs)
    assert shared.keys() == separate.keys()
    for name, value in shared.items():
        np.testing.assert_array_equal(value, separate[name], err_msg=name)
