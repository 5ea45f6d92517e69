"""bkg_subtract (imaging) against jwst's BackgroundStep on identical science and background rates."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits

import jwdask
from jwdask.errors import InputError, ParameterError
from jwdask.image2.background import (
    COMBINED_VARS,
    background,
    combined_background,
    combined_background_product,
)
from jwdask.io.products import open_product, product_url, write_product
from jwdask.kernels.background import combine_backgrounds, reduce_integrations
from jwdask.pipeline import Pipeline, Step
from tests.conftest import write_uncal
from tests.image2.rate_inputs import assert_close, jwst_offline, no_compute, write_rate

__all__ = ["jwst_offline"]

SCI_WINDOW, SCI_SHAPE = (101, 201), (40, 56)
BACKGROUNDS = [  # (SUBSTRT1, SUBSTRT2), shape: three like the science, one larger, one elsewhere
    (SCI_WINDOW, SCI_SHAPE), (SCI_WINDOW, SCI_SHAPE), (SCI_WINDOW, SCI_SHAPE),
    ((91, 191), (60, 80)), ((1001, 1001), SCI_SHAPE),
]


@pytest.fixture
def meta(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "jw02736001001_02101_00001_nrcb1_uncal.fits"
    write_uncal(path, nints=1, ngroups=2)
    return jwdask.open_uncal(str(path)).attrs["meta"]


def _inputs(tmp_path: Path, meta: dict, nints: int | None) -> tuple[Any, list[str]]:
    kind = "rate" if nints is None else "rateints"
    sci = write_rate(tmp_path / f"jw02736001001_02101_00001_nrcb1_{kind}.fits", meta, shape=SCI_SHAPE,
                     window=SCI_WINDOW, nints=nints, seed=1, level=20.0)
    paths = []
    for i, (window, shape) in enumerate(BACKGROUNDS):
        n = None if nints is None else nints + i % 3
        bkg = write_rate(tmp_path / f"jw02736002001_02101_0000{i + 1}_nrcb1_{kind}.fits", meta, shape=shape,
                         window=window, nints=n, seed=10 + i, outliers=60 if i % 2 else 0)
        paths.append(bkg.attrs["source"])
    return sci, paths


@pytest.mark.reference
@pytest.mark.usefixtures("jwst_offline")
@pytest.mark.parametrize(("nints", "maxiters"), [(None, None), (None, 1), (3, None)])
def test_matches_jwst(tmp_path: Path, meta: dict, nints: int | None, maxiters: int | None) -> None:
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    from jwst.background import BackgroundStep
    from jwst.background.background_sub import average_background

    sci, paths = _inputs(tmp_path, meta, nints)
    with no_compute():
        out = background(sci, None, bkg_list=paths, sigma=2.0, maxiters=maxiters)
        combined = combined_background(sci, paths, sigma=2.0, maxiters=maxiters)
    out, combined = out.compute(), combined.compute()
    with datamodels.open(sci.attrs["source"]) as model:
        theirs_bkg = average_background(model, paths, 2.0, maxiters)
        theirs = BackgroundStep.call(model, paths, sigma=2.0, maxiters=maxiters)
    assert_close(out.sci.values, theirs.data, "sci")
    np.testing.assert_array_equal(out.dq.values, theirs.dq)
    for name in ("err", "var_poisson", "var_rnoise"):
        np.testing.assert_array_equal(out[name].values, sci[name].values)
    assert out.attrs["meta"]["cal_step"]["bkg_subtract"] == theirs.meta.cal_step.bkg_subtract == "COMPLETE"
    assert_close(combined.sci.values, theirs_bkg.data, "background")
    assert_close(combined.err.values, theirs_bkg.err, "background error")
    np.testing.assert_array_equal(combined.dq.values, theirs_bkg.dq)
    if nints is None:  # the outliers were clipped: the result is not the plain mean
        planes = [fits.getdata(p, "SCI") for p in paths[:3]] + [fits.getdata(paths[3], "SCI")[10:50, 10:66]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            plain = np.nanmean(np.stack(planes).astype(np.float64), axis=0)
        assert (np.abs(plain - combined.sci.values) > 100).sum() > 50


def test_clipping_rejects_outliers() -> None:
    """Five backgrounds, one 1000 DN/s off: a 2-sigma clip drops it (with five values a single
    outlier never exceeds 2.5 sigma); no coverage gives 0."""
    c = np.array([[[1.0, np.nan]], [[1.2, np.nan]], [[0.8, np.nan]], [[1.1, np.nan]], [[1000.0, np.nan]]])
    out = combine_backgrounds(c, np.full_like(c, 0.04), sigma=2.0)
    assert out.data[0, 0] == pytest.approx(np.float32(1.025))
    assert out.err[0, 0] == pytest.approx(np.sqrt(4 * 0.04) / 4)
    assert out.data[0, 1] == 0.0
    ints = np.array([2.0, 2.0, 2.0, 2.0, 90.0], np.float32).reshape(5, 1, 1)
    dq = np.array([1, 0, 0, 0, 8], np.uint32).reshape(5, 1, 1)
    reduced = reduce_integrations(ints, np.ones_like(ints), dq, sigma=2.0)
    assert reduced.data[0, 0] == pytest.approx(2.0) and reduced.dq[0, 0] == 9


def test_partial_overlap_lands_on_its_pixels(tmp_path: Path, meta: dict) -> None:
    """A background covering only part of the window is placed by detector coordinates
    (jwst would copy it into the array corner); uncovered pixels get B = 0."""
    sci = write_rate(tmp_path / "s_rate.fits", meta, shape=SCI_SHAPE, window=SCI_WINDOW, seed=1)
    bkg = write_rate(tmp_path / "b_rate.fits", meta, shape=SCI_SHAPE, window=(111, 211), seed=2)
    out = background(sci, None, bkg_list=[bkg.attrs["source"]]).compute()
    b = bkg.sci.values[:30, :46]
    expected = sci.sci.values.copy()
    expected[10:, 10:] -= np.where(np.isnan(b), np.float32(0), b)
    np.testing.assert_array_equal(out.sci.values, expected)
    expected_dq = sci.dq.values.copy()
    expected_dq[10:, 10:] |= bkg.dq.values[:30, :46]
    np.testing.assert_array_equal(out.dq.values, expected_dq)


@pytest.mark.parametrize("bkg_list", [None, [], ""])
def test_without_backgrounds_skips(tmp_path: Path, meta: dict, bkg_list: Any) -> None:
    sci = write_rate(tmp_path / "s_rate.fits", meta, shape=SCI_SHAPE, window=SCI_WINDOW)
    out = background(sci, None, bkg_list=bkg_list)
    assert out.attrs["meta"]["cal_step"]["bkg_subtract"] == "SKIPPED"
    assert out.sci is sci.sci or np.array_equal(out.sci.values, sci.sci.values, equal_nan=True)


def test_bad_inputs(tmp_path: Path, meta: dict) -> None:
    sci = write_rate(tmp_path / "s_rate.fits", meta, shape=SCI_SHAPE, window=SCI_WINDOW)
    no_window = write_rate(tmp_path / "b1_rate.fits", meta, shape=SCI_SHAPE, window=None)
    with pytest.raises(InputError, match=r"b1_rate.fits: PRIMARY SUBSTRT1: required keyword is missing"):
        background(sci, None, bkg_list=[no_window.attrs["source"]])
    cube = write_rate(tmp_path / "b2_rateints.fits", meta, shape=SCI_SHAPE, window=SCI_WINDOW, nints=2)
    with pytest.raises(InputError, match="b2_rateints.fits: SCI: a 3-D background cannot be used for 2-D"):
        background(sci, None, bkg_list=[cube.attrs["source"]])
    with pytest.raises(ParameterError, match="sigma must be > 0"):
        background(sci, None, bkg_list=[cube.attrs["source"]], sigma=0.0)
    with pytest.raises(InputError, match="missing.txt"):
        background(sci, None, bkg_list=str(tmp_path / "missing.txt"))


def test_comma_separated_list(tmp_path: Path, meta: dict) -> None:
    sci = write_rate(tmp_path / "s_rate.fits", meta, shape=SCI_SHAPE, window=SCI_WINDOW, seed=1)
    b1 = write_rate(tmp_path / "b1_rate.fits", meta, shape=SCI_SHAPE, window=SCI_WINDOW, seed=2).attrs["source"]
    b2 = write_rate(tmp_path / "b2_rate.fits", meta, shape=SCI_SHAPE, window=SCI_WINDOW, seed=3).attrs["source"]
    a = background(sci, None, bkg_list=f"{b1},{b2},").sci.values
    b = background(sci, None, bkg_list=[b1, b2]).sci.values
    np.testing.assert_array_equal(a, b)


def _write_combined(out: xr.Dataset, folder: Path) -> Path:
    product = combined_background_product(out)
    url = product_url(str(folder), product.attrs["meta"], "combinedbackground")
    return Path(write_product(product, url, "combinedbackground"))


@pytest.mark.reference
@pytest.mark.usefixtures("jwst_offline")
@pytest.mark.parametrize("nints", [None, 3])
def test_save_combined_background_matches_jwst(tmp_path: Path, meta: dict, nints: int | None) -> None:
    """``save_combined_background``: the same ``<exposure>_combinedbackground.fits`` as jwst's
    BackgroundStep writes (ImageModel with SCI, ERR, DQ), same values."""
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    from jwst.background import BackgroundStep

    sci, paths = _inputs(tmp_path, meta, nints)
    with no_compute():
        out = background(sci, None, bkg_list=paths, sigma=2.0, save_combined_background=True)
    ours_dir, theirs_dir = tmp_path / "ours", tmp_path / "theirs"
    ours_dir.mkdir()
    theirs_dir.mkdir()
    ours = _write_combined(out, ours_dir)
    BackgroundStep.call(sci.attrs["source"], paths, sigma=2.0, save_combined_background=True,
                        output_dir=str(theirs_dir))
    theirs = theirs_dir / ours.name
    assert ours.name == sci.attrs["source"].rsplit("/", 1)[-1].replace(
        "_rateints.fits" if nints else "_rate.fits", "_combinedbackground.fits")
    assert sorted(p.name for p in theirs_dir.iterdir()) == [ours.name]
    assert sorted(p.name for p in ours_dir.iterdir()) == [ours.name]  # no temporary file left
    with fits.open(ours) as a, fits.open(theirs) as b:
        assert {h.name for h in a} == {h.name for h in b} == {"PRIMARY", "SCI", "ERR", "DQ", "ASDF"}
        assert a[0].header["DATAMODL"] == b[0].header["DATAMODL"] == "ImageModel"
    with datamodels.ImageModel(str(ours)) as a, datamodels.ImageModel(str(theirs)) as b:
        assert_close(a.data, b.data, "combined background")
        assert_close(a.err, b.err, "combined background error")
        np.testing.assert_array_equal(a.dq, b.dq)


def test_combined_background_kept_only_when_requested(tmp_path: Path, meta: dict) -> None:
    """Default False (as jwst): no combined background variables and no product; requested,
    the product holds combined_background()'s B, E_B, DQ_B [DN/s] on the science pixels; with
    no backgrounds (step SKIPPED) there is none either."""
    sci, paths = _inputs(tmp_path, meta, None)
    plain = background(sci, None, bkg_list=paths)
    assert combined_background_product(plain) is None
    assert not set(COMBINED_VARS.values()) & set(plain.data_vars)
    assert combined_background_product(background(sci, None, bkg_list=None, save_combined_background=True)) is None
    kept = background(sci, None, bkg_list=paths, save_combined_background=True)
    np.testing.assert_array_equal(kept.sci.values, plain.sci.values)
    product = combined_background_product(kept)
    expected = combined_background(sci, paths).compute()
    for var in ("sci", "err", "dq"):
        np.testing.assert_array_equal(product[var].values, expected[var].values)
    assert product.sci.attrs["units"] == "DN/s"
    back = open_product(str(_write_combined(kept, tmp_path)))
    assert back.attrs["meta"]["model_type"] == "ImageModel"
    np.testing.assert_array_equal(back.sci.values, expected.sci.values)
    np.testing.assert_array_equal(back.dq.values, expected.dq.values)
    np.testing.assert_array_equal(back["y"].values, sci["y"].values)


def test_combined_background_as_pipeline_product(tmp_path: Path, meta: dict) -> None:
    """Declared as a product taken after bkg_subtract (``{function, after}``), it is written
    with the pipeline's other products, under the exposure's name."""
    sci, paths = _inputs(tmp_path, meta, None)
    pipeline = Pipeline(
        "bkg", (Step("bkg_subtract", "jwdask.image2.background:background",
                     {"bkg_list": paths, "save_combined_background": True}),),
        input="rate", products={"combinedbackground": {
            "function": "jwdask.image2.background:combined_background_product", "after": "bkg_subtract"}})
    final, intermediates = pipeline.run_all(sci, None)
    out = tmp_path / "out"
    out.mkdir()
    urls = pipeline.write(final, str(out), intermediates=intermediates)
    assert [Path(u).name for u in urls] == ["jw02736001001_02101_00001_nrcb1_combinedbackground.fits"]
    assert sorted(p.name for p in out.iterdir()) == [Path(urls[0]).name]
    np.testing.assert_array_equal(open_product(urls[0]).sci.values, combined_background(sci, paths).sci.values)
