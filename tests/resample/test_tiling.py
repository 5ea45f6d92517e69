"""The tiled drizzle engine: tiled == one tile, == drizzle on the whole mosaic, lazy, bounded."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from drizzle.resample import Drizzle

from jwdask.errors import InputError, ParameterError
from jwdask.image2.resample import resample
from jwdask.image3.resample import resample_mosaic
from jwdask.io.products import write_product
from jwdask.kernels.flat_field import match_nans_and_flags
from tests.resample.helpers import exposure

OFFSETS = [(0.0, 0.0), (7.3, 4.1), (-5.2, 9.7)]


@pytest.fixture(scope="module")
def inputs() -> list[xr.Dataset]:
    return [exposure(k, offset=o) for k, o in enumerate(OFFSETS)]


def _compute(ds: xr.Dataset) -> dict[str, np.ndarray]:
    with dask.config.set(scheduler="sync"):
        values = dask.compute({k: v.data for k, v in ds.data_vars.items()})[0]
    return dict(values)


def whole_mosaic_drizzle(inputs: list[xr.Dataset], out: xr.Dataset, kernel: str, pixfrac: float, *,
                         with_dq: bool = False) -> dict[str, Any]:
    """What jwst does: every exposure drizzled in turn onto the whole output array."""
    grid_wcs = out.attrs["wcs"]
    psr = out.attrs["meta"]["resample"]["pixel_scale_ratio"]
    driz = Drizzle(kernel=kernel, fillval="NaN", out_shape=out.sci.shape, max_ctx_id=len(inputs) - 1)
    for ds in inputs:
        sci, dq, vr = (np.asarray(ds[v].values) for v in ("sci", "dq", "var_rnoise"))
        m = match_nans_and_flags(sci, np.asarray(ds.err.values), dq, np.asarray(ds.var_poisson.values), vr,
                                 np.asarray(ds.var_flat.values))
        ny, nx = sci.shape
        y, x = np.indices((ny, nx), dtype=float)
        px, py = grid_wcs.invert(*ds.attrs["wcs"](x, y), with_bounding_box=False)
        with np.errstate(divide="ignore"):
            inv = 1.0 / m.var_rnoise
        inv[~np.isfinite(inv)] = 0
        weight = (inv * ((m.dq & (1 | 512)) == 0)).astype(np.float32)
        level = ds.attrs["meta"]["background"]["level"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            driz.add_image(m.sci - level, exptime=1.0, pixmap=np.dstack([px, py]), pixel_scale_ratio=psr,
                           weight_map=weight, pixfrac=pixfrac, xmin=0, xmax=nx - 1, ymin=0, ymax=ny - 1,
                           **({"dq": m.dq} if with_dq else {}))
    return {"sci": driz.out_img, "wht": driz.out_wht, "con": driz.out_ctx, "dq": driz.out_dq}


def test_tiled_equals_single_tile(inputs: list[xr.Dataset]) -> None:
    tiled = _compute(resample_mosaic(inputs, tile=23))
    whole = _compute(resample_mosaic(inputs, tile=4096))
    assert tiled.keys() == whole.keys() == {"sci", "wht", "con", "err", "var_rnoise", "var_flat", "var_poisson"}
    for name in tiled:
        np.testing.assert_array_equal(tiled[name], whole[name], err_msg=name)
    assert np.isfinite(tiled["sci"]).sum() > 0.8 * tiled["sci"].size


@pytest.mark.parametrize(("kernel", "pixfrac", "extra"), [
    ("square", 1.0, {}),
    ("square", 0.6, {"rotation": 17.0, "pixel_scale_ratio": 0.7}),
    ("turbo", 0.8, {"pixel_scale_ratio": 1.3}),
    ("point", 1.0, {"rotation": 0.0}),
    ("gaussian", 1.0, {"pixel_scale_ratio": 0.8}),
    ("lanczos3", 1.0, {}),
])
def test_tiles_equal_whole_mosaic_drizzle(inputs: list[xr.Dataset], kernel: str, pixfrac: float,
                                          extra: dict[str, Any]) -> None:
    out = resample_mosaic(inputs, kernel=kernel, pixfrac=pixfrac, tile=(19, 26), enable_err=False, **extra)
    got = _compute(out)
    ref = whole_mosaic_drizzle(inputs, out, kernel, pixfrac)
    np.testing.assert_array_equal(got["con"], ref["con"])
    np.testing.assert_array_equal(np.isnan(got["sci"]), np.isnan(ref["sci"]))
    np.testing.assert_allclose(got["wht"], ref["wht"], rtol=2e-6, atol=1e-6 * ref["wht"].max())
    finite = np.isfinite(ref["sci"])
    np.testing.assert_allclose(got["sci"][finite], ref["sci"][finite], rtol=1e-5,
                               atol=1e-6 * np.abs(ref["sci"][finite]).max())


def test_graph_only_and_tile_chunks(inputs: list[xr.Dataset]) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        msg = "resample computed something while building its graph"
        raise AssertionError(msg)

    with dask.config.set(scheduler=refuse):
        out = resample_mosaic(inputs, tile=(32, 40))
    ny, nx = out.sci.shape
    assert out.sci.data.chunks == (tuple(min(32, ny - y) for y in range(0, ny, 32)),
                                   tuple(min(40, nx - x) for x in range(0, nx, 40)))
    assert out.con.dims == ("plane", "y", "x") and out.con.data.chunks[0] == (1,)
    assert out.attrs["kind"] == "i2d" and out.attrs["wcs"].array_shape == (ny, nx)


def test_metadata(inputs: list[xr.Dataset]) -> None:
    meta = resample_mosaic(inputs).attrs["meta"]
    assert meta["exposure"]["exposure_time"] == pytest.approx(303.0)
    assert meta["exposure"]["measurement_time"] == pytest.approx(273.0)
    assert meta["exposure"]["start_time"] == 60000.0 and meta["exposure"]["end_time"] == 60002.01
    assert meta["resample"]["pointings"] == 3 and meta["resample"]["weight_type"] == "ivm"
    assert meta["cal_step"]["resample"] == "COMPLETE"
    assert "ra_ref" not in meta["wcsinfo"] and meta["wcsinfo"]["ctype1"] == "RA---TAN"
    assert meta["wcsinfo"]["s_region"].startswith("POLYGON ICRS")
    assert "background" not in meta
    assert meta["photometry"]["pixelarea_arcsecsq"] == pytest.approx(0.031**2, rel=1e-3)


def test_image2_single_exposure(inputs: list[xr.Dataset]) -> None:
    out = resample(inputs[0], tile=50)
    got = _compute(out)
    assert out.con.shape[0] == 1 and set(np.unique(got["con"])) <= {0, 1}
    assert out.attrs["meta"]["resample"]["pointings"] == 1
    ref = whole_mosaic_drizzle(inputs[:1], out, "square", 1.0)
    np.testing.assert_array_equal(got["wht"], ref["wht"])
    np.testing.assert_array_equal(got["sci"], ref["sci"])


def test_dq_no_err_no_ctx_written(inputs: list[xr.Dataset], tmp_path: Path) -> None:
    out = resample_mosaic(inputs, enable_err=False, enable_ctx=False, propagate_dq=True, tile=(40, 30))
    assert set(out.data_vars) == {"sci", "wht", "dq"}
    got = _compute(out)
    ref = whole_mosaic_drizzle(inputs, out, "square", 1.0, with_dq=True)
    np.testing.assert_array_equal(got["dq"], ref["dq"])
    path = write_product(out, str(tmp_path / "nodq_i2d.fits"), "i2d")
    with fits.open(path) as hdul:
        assert {h.name for h in hdul} >= {"SCI", "WHT", "DQ"} and "ERR" not in hdul and "CON" not in hdul
        np.testing.assert_array_equal(hdul["DQ"].data, got["dq"])


def test_zarr_store_by_tile(inputs: list[xr.Dataset], tmp_path: Path) -> None:
    from jwdask.io.zarr_store import open_zarr, to_zarr

    out = resample_mosaic(inputs[:2], tile=32)
    to_zarr(out, str(tmp_path / "i2d.zarr"))
    back = open_zarr(str(tmp_path / "i2d.zarr"))
    assert back.sci.data.chunks == out.sci.data.chunks
    got, expected = _compute(back), _compute(out)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert back.attrs["wcs"].forward_transform.crval == pytest.approx(out.attrs["wcs"].forward_transform.crval)


def test_custom_output_wcs(inputs: list[xr.Dataset], tmp_path: Path) -> None:
    import asdf

    default = resample_mosaic(inputs, tile=40)
    path = tmp_path / "grid.asdf"
    asdf.AsdfFile({"wcs": default.attrs["wcs"], "pixel_scale": 0.031}).write_to(path)
    custom = resample_mosaic(inputs, output_wcs=str(path), tile=40)
    assert custom.sci.shape == default.sci.shape
    got, expected = _compute(custom), _compute(default)
    for name in ("sci", "wht", "con"):
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert custom.attrs["meta"]["photometry"]["pixelarea_arcsecsq"] == pytest.approx(0.031**2)


def test_bad_inputs(inputs: list[xr.Dataset]) -> None:
    no_wcs = inputs[0].copy()
    no_wcs.attrs = {k: v for k, v in no_wcs.attrs.items() if k != "wcs"}
    with pytest.raises(InputError, match="assign_wcs"):
        resample_mosaic([no_wcs])
    with pytest.raises(InputError, match="VAR_RNOISE"):
        resample_mosaic([inputs[0].drop_vars("var_rnoise")])
    with pytest.raises(ParameterError, match="kernel"):
        resample_mosaic(inputs, kernel="cubic")
    with pytest.raises(ParameterError, match="crpix"):
        resample_mosaic(inputs, crpix=[1.0, None])
    with pytest.raises(NotImplementedError, match="single"):
        resample_mosaic(inputs, single=True)


def test_each_drizzle_task_runs_once(inputs: list[xr.Dataset], monkeypatch: pytest.MonkeyPatch) -> None:
    """All output fields computed together run each (input, tile) drizzle exactly once, also
    when dask fuses linear chains (the tile reduction must not be copied into every field)."""
    import jwdask.resample.reduce as reduce_module

    calls: dict[tuple[int, tuple[int, int, int, int]], int] = {}
    original = reduce_module._partial

    def counting(*args: Any) -> dict[str, Any]:
        key = (args[7].index, args[9].tile)
        calls[key] = calls.get(key, 0) + 1
        return original(*args)

    monkeypatch.setattr(reduce_module, "_partial", counting)
    got = _compute(resample_mosaic(inputs[:1], tile=4096))
    assert len(got) == 7 and calls and set(calls.values()) == {1}
    calls.clear()
    _compute(resample_mosaic(inputs, tile=(40, 50)))
    assert len(calls) > len(inputs) and set(calls.values()) == {1}
