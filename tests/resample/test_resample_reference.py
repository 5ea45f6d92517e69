"""jwdask resample vs jwst 3.0 ResampleStep on identical cal files (3 dithered exposures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import xarray as xr

from jwdask.image2.resample import resample
from jwdask.image3.resample import resample_mosaic, resample_single

pytestmark = pytest.mark.reference

ARRAYS = {"sci": "data", "wht": "wht", "err": "err", "var_rnoise": "var_rnoise",
          "var_poisson": "var_poisson", "var_flat": "var_flat"}


def _jwst(files: list[Path], **params: Any) -> Any:
    from jwst.datamodels import ModelLibrary
    from jwst.resample import ResampleStep
    from stdatamodels.jwst import datamodels

    models = [datamodels.open(str(f)) for f in files]
    inputs = ModelLibrary(models) if len(models) > 1 else models[0]
    return ResampleStep(**params).run(inputs)


def _values(ds: xr.Dataset) -> dict[str, np.ndarray]:
    with dask.config.set(scheduler="threads"):
        return dict(dask.compute({k: v.data for k, v in ds.data_vars.items()})[0])


def _compare(ref: Any, got: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(got["con"], ref.con)
    wht = ref.wht
    assert (wht > 0).sum() > 1000
    for name, attr in ARRAYS.items():
        a, b = np.asarray(getattr(ref, attr)), got[name]
        assert b.shape == a.shape and b.dtype == np.float32, name
        np.testing.assert_array_equal(np.isnan(b), np.isnan(a), err_msg=name)
        finite = np.isfinite(a)
        scale = np.abs(a[finite]).max()
        rtol = 1e-6 if name == "wht" else 1e-5
        np.testing.assert_allclose(b[finite], a[finite], rtol=rtol, atol=1e-6 * scale, err_msg=name)
    well = wht > 0.5 * wht.max()
    sci_ref, sci = ref.data[well], got["sci"][well]
    floor = 1e-5 * np.sqrt(ref.var_rnoise[well])
    assert np.all(np.abs(sci - sci_ref) <= 1e-5 * np.abs(sci_ref) + floor)


CASES = {
    "default": {},
    "exptime-rotated": {"weight_type": "exptime", "rotation": 0.0, "pixel_scale_ratio": 0.7, "pixfrac": 0.8},
    "custom-grid": {"pixel_scale": 0.05, "crval": [53.1603, -27.7799], "crpix": [70.0, 60.0],
                    "output_shape": [150, 120], "kernel": "turbo", "pixmap_stepsize": 7.0, "pixmap_order": 3},
}


@pytest.mark.parametrize("case", list(CASES))
def test_mosaic_matches_jwst(cal_files: list[Path], cal_datasets: list[xr.Dataset], case: str) -> None:
    params = CASES[case]
    ref = _jwst(cal_files, **params)
    out = resample_mosaic(cal_datasets, tile=(48, 56), **params)
    assert out.sci.data.numblocks[0] > 1 and out.sci.data.numblocks[1] > 1
    _compare(ref, _values(out))
    meta = out.attrs["meta"]
    info = ref.meta.wcsinfo
    for key in ("crpix1", "crpix2", "crval1", "crval2", "cdelt1", "cdelt2", "pc1_1", "pc1_2", "pc2_1", "pc2_2"):
        assert meta["wcsinfo"][key] == pytest.approx(getattr(info, key), rel=1e-12, abs=1e-12), key
    assert meta["wcsinfo"]["s_region"] == info.s_region
    assert meta["photometry"]["pixelarea_steradians"] == pytest.approx(ref.meta.photometry.pixelarea_steradians,
                                                                       rel=1e-12)
    assert meta["resample"]["pixel_scale_ratio"] == pytest.approx(ref.meta.resample.pixel_scale_ratio, rel=1e-12)
    assert meta["resample"]["pointings"] == ref.meta.resample.pointings == 3
    exposure = ref.meta.exposure
    assert meta["exposure"]["exposure_time"] == pytest.approx(exposure.exposure_time)
    assert meta["exposure"]["measurement_time"] == pytest.approx(exposure.measurement_time)
    assert meta["exposure"]["start_time"] == pytest.approx(exposure.start_time)
    assert meta["exposure"]["end_time"] == pytest.approx(exposure.end_time)


def test_single_matches_jwst(cal_files: list[Path], cal_datasets: list[xr.Dataset]) -> None:
    """single=True: one image per exposure group equal to jwst's (SCI, WHT, CON; ERR drizzled),
    with jwst's exposure times, NDRIZ count and blended header table."""
    lib = _jwst(cal_files, single=True)
    outs = resample_single(cal_datasets, tile=(48, 56))
    assert len(outs) == len(lib) == 3
    with lib:
        for n, (model, out) in enumerate(zip(lib, outs, strict=True)):
            got = _values(out)
            np.testing.assert_array_equal(got["con"], model.con)
            for name, attr in (("sci", "data"), ("wht", "wht"), ("err", "err")):
                a, b = np.asarray(getattr(model, attr)), got[name]
                np.testing.assert_array_equal(np.isnan(b), np.isnan(a), err_msg=name)
                finite = np.isfinite(a)
                np.testing.assert_allclose(b[finite], a[finite], rtol=1e-5, atol=1e-6 * np.abs(a[finite]).max(),
                                           err_msg=name)
            assert not any(name.startswith("var_") for name in got)
            meta = out.attrs["meta"]
            assert meta["filename"] == model.meta.filename
            assert meta["resample"]["pointings"] == model.meta.resample.pointings == n + 1
            assert meta["wcsinfo"]["s_region"] == model.meta.wcsinfo.s_region
            for key in ("exposure_time", "start_time", "end_time", "duration"):
                assert meta["exposure"][key] == pytest.approx(getattr(model.meta.exposure, key)), key
            assert list(out["hdrtab.FILENAME"].values) == list(model.hdrtab["FILENAME"])
            lib.shelve(model, n, modify=False)


def test_image2_matches_jwst(cal_files: list[Path], cal_datasets: list[xr.Dataset]) -> None:
    ref = _jwst(cal_files[:1])
    out = resample(cal_datasets[0], tile=64)
    _compare(ref, _values(out))
    assert out.attrs["meta"]["resample"]["pointings"] == 1


def test_i2d_product_opens_in_stdatamodels(cal_datasets: list[xr.Dataset], tmp_path: Path) -> None:
    from stdatamodels.jwst import datamodels

    from jwdask.io.products import write_product

    out = resample_mosaic(cal_datasets, tile=(48, 56))
    values = _values(out)
    path = write_product(out, str(tmp_path / "jw09001-o001_t001_nircam_clear-f200w_i2d.fits"), "i2d")
    with datamodels.open(path) as model:
        assert type(model).__name__ == "ImageModel"
        np.testing.assert_array_equal(model.data, values["sci"])
        np.testing.assert_array_equal(model.con, values["con"])
        for name in ("wht", "err", "var_rnoise", "var_poisson", "var_flat"):
            np.testing.assert_array_equal(getattr(model, name), values[name])
        assert model.meta.resample.pointings == 3
        assert model.meta.wcsinfo.ctype1 == "RA---TAN"
        ny, nx = model.data.shape
        ra, dec = model.meta.wcs(nx / 2, ny / 2)
        ra2, dec2 = out.attrs["wcs"](nx / 2, ny / 2)
        assert (ra, dec) == pytest.approx((ra2, dec2), abs=1e-12)
