"""The tiled drizzle engine: tiled == one tile, == drizzle on the whole mosaic, lazy, bounded."""

from __future__ import annotations

import copy
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
from jwdask.image3.resample import resample_mosaic, resample_single
from jwdask.io.products import open_product, write_product
from jwdask.kernels.flat_field import match_nans_and_flags
from tests.resample.helpers import exposure

OFFSETS = [(0.0, 0.0), (7.3, 4.1), (-5.2, 9.7)]


@pytest.fixture(scope="module")
def inputs() -> list[xr.Dataset]:
    return [exposure(k, offset=o) for k, o in enumerate(OFFSETS)]


def _compute(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """The image arrays of ``ds`` (not its tables, e.g. ``hdrtab.*``), computed."""
    with dask.config.set(scheduler="sync"):
        values = dask.compute({k: v.data for k, v in ds.data_vars.items() if "." not in str(k)})[0]
    return dict(values)


def whole_mosaic_drizzle(inputs: list[xr.Dataset], out: xr.Dataset, kernel: str, pixfrac: float, *,
                         with_dq: bool = False) -> dict[str, Any]:
    """What jwst does: every exposure drizzled in turn onto the whole output array (and its
    ERR with the same weights onto a second one: ``compute_err="driz_err"``)."""
    grid_wcs = out.attrs["wcs"]
    psr = out.attrs["meta"]["resample"]["pixel_scale_ratio"]
    driz = Drizzle(kernel=kernel, fillval="NaN", out_shape=out.sci.shape, max_ctx_id=len(inputs) - 1)
    driz_err = Drizzle(kernel=kernel, fillval="NaN", out_shape=out.sci.shape, disable_ctx=True)
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
            common = {"exptime": 1.0, "pixmap": np.dstack([px, py]), "pixel_scale_ratio": psr, "weight_map": weight,
                      "pixfrac": pixfrac, "xmin": 0, "xmax": nx - 1, "ymin": 0, "ymax": ny - 1}
            driz.add_image(m.sci - level, **common, **({"dq": m.dq} if with_dq else {}))
            driz_err.add_image(m.err, **common)
    return {"sci": driz.out_img, "wht": driz.out_wht, "con": driz.out_ctx, "dq": driz.out_dq,
            "err": driz_err.out_img / np.float32(psr)}


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


def test_blended_metadata_and_hdrtab(inputs: list[xr.Dataset], tmp_path: Path) -> None:
    """Several inputs: blended keywords (jwst's rules) and one HDRTAB row per input, written to
    the i2d and read back; header blending off, or one input: no HDRTAB."""
    varied = []
    for k, ds in enumerate(inputs):
        meta = copy.deepcopy(ds.attrs["meta"])
        meta["instrument"] = {"detector": f"NRCB{k + 1}", "filter": "F200W"}
        meta["exposure"]["mid_time"] = 60000.005 + k
        meta["background"]["method"] = "match"
        varied.append(ds.assign_attrs(meta=meta))
    out = resample_mosaic(varied, tile=40)
    meta = out.attrs["meta"]
    assert meta["instrument"] == {"detector": "MULTIPLE", "filter": "F200W"}
    assert meta["exposure"]["mid_time"] == pytest.approx(60001.005)
    assert meta["exposure"]["start_time"] == 60000.0 and meta["exposure"]["end_time"] == 60002.01
    assert meta["background"] == {"method": "match"}  # the output's level is unset, as jwst's
    path = write_product(out, str(tmp_path / "blend_i2d.fits"), "i2d")
    with fits.open(path) as hdul:
        assert [h.name for h in hdul][-2:] == ["HDRTAB", "ASDF"]
        table = hdul["HDRTAB"].data
        assert list(table["FILENAME"]) == [ds.attrs["meta"]["filename"] for ds in inputs]
        assert list(table["DETECTOR"]) == ["NRCB1", "NRCB2", "NRCB3"]
        np.testing.assert_array_equal(table["EXPSTART"], [60000.0, 60001.0, 60002.0])
        assert hdul[0].header["DETECTOR"] == "MULTIPLE" and hdul[0].header["EXPMID"] == pytest.approx(60001.005)
    back = open_product(path)
    assert list(back["hdrtab.EXPOSURE"].values) == ["00001", "00002", "00003"]
    assert "tables" not in resample_mosaic(varied, blendheaders=False).attrs
    assert "tables" not in resample_mosaic(varied[:1]).attrs


def test_single_groups_equal_whole_drizzle(inputs: list[xr.Dataset]) -> None:
    """single=True: each exposure group (here exposures 0 and 1 form one) drizzled alone onto
    the common grid, tiled, equals drizzle on the whole grid; ERR drizzled like SCI and
    divided by the pixel scale ratio; no VAR_*; jwst's names and NDRIZ count."""
    grouped = [ds.assign_attrs(meta={**ds.attrs["meta"], "group_id": gid}) for ds, gid in zip(inputs, "aab", strict=True)]
    mosaic = resample_mosaic(grouped, pixel_scale_ratio=0.8, tile=40)
    singles = resample_single(grouped, pixel_scale_ratio=0.8, tile=(19, 26))
    assert len(singles) == 2
    for n, (out, members) in enumerate(zip(singles, ([0, 1], [2]), strict=True)):
        assert out.sci.shape == mosaic.sci.shape
        assert out.attrs["wcs"].forward_transform.crval == pytest.approx(mosaic.attrs["wcs"].forward_transform.crval)
        got = _compute(out)
        assert set(got) == {"sci", "wht", "con", "err"}
        ref = whole_mosaic_drizzle([grouped[k] for k in members], out, "square", 1.0)
        np.testing.assert_array_equal(got["con"], ref["con"])
        finite = np.isfinite(ref["sci"])
        np.testing.assert_array_equal(np.isfinite(got["sci"]), finite)
        np.testing.assert_array_equal(np.isfinite(got["err"]), finite)
        np.testing.assert_allclose(got["wht"], ref["wht"], rtol=2e-6, atol=1e-6 * ref["wht"].max())
        for name in ("sci", "err"):
            np.testing.assert_allclose(got[name][finite], ref[name][finite], rtol=1e-5,
                                       atol=1e-6 * np.abs(ref[name][finite]).max(), err_msg=name)
        meta = out.attrs["meta"]
        first = grouped[members[0]].attrs["meta"]["filename"]
        assert meta["filename"] == first.replace("_cal.fits", "_outlier_i2d.fits")
        assert meta["resample"]["pointings"] == n + 1  # jwst 3.0 counts on across groups
        assert meta["exposure"]["exposure_time"] == sum(100.0 + k for k in members[:1])  # one group
        assert meta["wcsinfo"]["s_region"] == mosaic.attrs["meta"]["wcsinfo"]["s_region"]
        assert len(out["hdrtab.FILENAME"]) == len(members)
    with pytest.raises(ParameterError, match="resample_mosaic"):
        resample_single(grouped, single=False)


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
    assert {str(v) for v in out.data_vars if "." not in str(v)} == {"sci", "wht", "dq"}
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
    with pytest.raises(ParameterError, match="resample_single"):
        resample_mosaic(inputs, single=True)


def test_each_drizzle_task_runs_once(inputs: list[xr.Dataset], monkeypatch: pytest.MonkeyPatch) -> None:
    """All output fields computed together run each (input, tile) drizzle exactly once, also
    when dask fuses linear chains (the tile reduction must not be copied into every field)."""
    import jwdask.resample.reduce as reduce_module

    calls: dict[tuple[int, tuple[int, int, int, int]], int] = {}
    original = reduce_module._partial

    def counting(*args: Any) -> dict[str, Any]:
        key = (args[7].index, args[8].tile)
        calls[key] = calls.get(key, 0) + 1
        return original(*args)

    monkeypatch.setattr(reduce_module, "_partial", counting)
    got = _compute(resample_mosaic(inputs[:1], tile=4096))
    assert len(got) == 7 and calls and set(calls.values()) == {1}
    calls.clear()
    _compute(resample_mosaic(inputs, tile=(40, 50)))
    assert len(calls) > len(inputs) and set(calls.values()) == {1}
