"""photom (imaging) and the _cal product against jwst's PhotomStep (and FlatFieldStep) on
identical rate files and PHOTOM/AREA references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.table import Table

import jwdask
from jwdask.errors import InputError, ReferenceFileError
from jwdask.image2.flat_field import flat_field
from jwdask.image2.photom import MJSR_TO_UJA2, cal_product, photom, select_row
from jwdask.io.products import write_product
from jwdask.kernels.photom import time_correction
from jwdask.refs import RefProvider
from jwdask.simulate import simulate_program
from tests.image2.rate_inputs import assert_close, jwst_offline, no_compute, rate_meta, write_rate

__all__ = ["jwst_offline"]

SHAPE = (48, 64)
ARRAYS = (("sci", "data"), ("err", "err"), ("var_poisson", "var_poisson"), ("var_rnoise", "var_rnoise"))


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return simulate_program("tiny", tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def meta(prog: Any) -> dict[str, Any]:
    return jwdask.open_uncal(str(prog.uncal[0])).attrs["meta"]


@pytest.fixture(scope="module")
def timed_photom(prog: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated PHOTOM plus linear, exponential and power-law TIMECOEFF tables."""
    path = tmp_path_factory.mktemp("photom") / "jwst_nircam_photom_9002.fits"
    with fits.open(prog.reference_files["photom"]) as hdul:
        phot = Table(hdul["PHOTOM"].data)
        n = len(phot)
        base = {"filter": phot["filter"], "pupil": phot["pupil"], "t0": np.full(n, 60100.0, np.float32)}
        tables = {
            "TIMECOEFF_LINEAR": {"lossperyear": np.linspace(0.01, 0.03, n, dtype=np.float32)},
            "TIMECOEFF_EXPONENTIAL": {"amplitude": np.full(n, 0.04, np.float32), "tau": np.full(n, 250.0, np.float32),
                                      "const": np.full(n, 0.96, np.float32)},
            "TIMECOEFF_POWERLAW": {"year1value": np.full(n, 0.985, np.float32), "tsoft": np.full(n, 12.0, np.float32),
                                   "alpha": np.full(n, -0.05, np.float32)},
        }
        for name, columns in tables.items():
            hdul.append(fits.BinTableHDU(Table({**base, **columns}), name=name))
        hdul[0].header["FILENAME"] = path.name
        hdul.writeto(path)
    return path


def _jwst_photom(rate_path: str, photom_ref: str, area_ref: str, **params: Any) -> Any:
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    from jwst.photom import PhotomStep

    with datamodels.open(rate_path) as model:
        return PhotomStep.call(model, override_photom=photom_ref, override_area=area_ref, **params)


@pytest.mark.reference
@pytest.mark.usefixtures("jwst_offline")
@pytest.mark.parametrize(("variant", "window", "nints", "params"), [
    ("simulated", (1, 1), None, {}),
    ("simulated", (501, 701), 2, {}),
    ("simulated", (1, 1), None, {"inverse": True}),
    ("timed", (1, 1), None, {}),
    ("timed", (501, 701), None, {"apply_time_correction": False}),
    ("no_area", (101, 201), None, {}),
])
def test_matches_jwst(prog: Any, meta: dict, timed_photom: Path, tmp_path: Path, variant: str,
                      window: tuple[int, int], nints: int | None, params: dict) -> None:
    photom_ref = str(timed_photom if variant == "timed" else prog.reference_files["photom"])
    area_ref = "N/A" if variant == "no_area" else str(prog.reference_files["area"])
    name = "jw09001001001_02101_00001_nrcb1_" + ("rate" if nints is None else "rateints") + ".fits"
    ds = write_rate(tmp_path / name, meta, shape=SHAPE, window=window, nints=nints, seed=5)
    with no_compute():
        out = photom(ds, RefProvider(overrides={"photom": photom_ref, "area": area_ref}), **params)
    theirs = _jwst_photom(ds.attrs["source"], photom_ref, area_ref, **params)
    out = out.compute()
    for ours, attr in ARRAYS:
        assert_close(out[ours].values, getattr(theirs, attr), ours)
    np.testing.assert_array_equal(out.dq.values, theirs.dq)
    ours_meta = out.attrs["meta"]
    phot = ours_meta["photometry"]
    assert phot["conversion_megajanskys"] == pytest.approx(theirs.meta.photometry.conversion_megajanskys, rel=1e-7)
    assert phot["conversion_microjanskys"] == pytest.approx(theirs.meta.photometry.conversion_microjanskys, rel=1e-7)
    assert phot["pixelarea_steradians"] == theirs.meta.photometry.pixelarea_steradians
    assert phot["pixelarea_arcsecsq"] == theirs.meta.photometry.pixelarea_arcsecsq
    assert ours_meta["bunit_data"] == theirs.meta.bunit_data == out.sci.attrs["units"]
    assert ours_meta["bunit_err"] == theirs.meta.bunit_err == out.err.attrs["units"]
    assert ours_meta["cal_step"]["photom"] == theirs.meta.cal_step.photom == "COMPLETE"
    if variant == "no_area":
        assert "area" not in out and ours_meta["ref_file"]["area"]["name"] == "N/A"
    else:
        np.testing.assert_array_equal(out.area.values, theirs.area)
    if variant == "timed" and params.get("apply_time_correction", True):
        assert abs(phot["conversion_megajanskys"] / float(np.float32(0.22)) - 1) > 1e-3


@pytest.mark.reference
@pytest.mark.usefixtures("jwst_offline")
def test_cal_product_opens_as_imagemodel(prog: Any, meta: dict, tmp_path: Path) -> None:
    """flat_field -> photom -> _cal: stdatamodels opens every array; numbers equal jwst's chain."""
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    from jwst.flatfield import FlatFieldStep
    from jwst.photom import PhotomStep

    refs = {k: str(prog.reference_files[k]) for k in ("flat", "photom", "area")}
    ds = write_rate(tmp_path / "jw09001001001_02101_00001_nrcb1_rate.fits", meta, shape=SHAPE,
                    window=(501, 701), seed=7)
    provider = RefProvider(overrides=refs)
    cal = photom(flat_field(ds, provider), provider)
    url = write_product(cal_product(cal), str(tmp_path / "out" / "jw09001001001_02101_00001_nrcb1_cal.fits"), "cal")
    with datamodels.open(ds.attrs["source"]) as model:
        theirs = FlatFieldStep.call(model, override_flat=refs["flat"], override_fflat="N/A", override_sflat="N/A",
                                    override_dflat="N/A")
        theirs = PhotomStep.call(theirs, override_photom=refs["photom"], override_area=refs["area"])
    with datamodels.open(url) as model:
        assert type(model).__name__ == "ImageModel"
        for attr in ("data", "err", "var_poisson", "var_rnoise", "var_flat", "area"):
            assert_close(getattr(model, attr), getattr(theirs, attr), attr)
        np.testing.assert_array_equal(model.dq, theirs.dq)
        assert model.meta.bunit_data == model.meta.bunit_err == "MJy/sr"
        assert model.meta.photometry.conversion_megajanskys == pytest.approx(0.22, rel=1e-6)
        assert model.meta.photometry.pixelarea_steradians == theirs.meta.photometry.pixelarea_steradians
        assert model.meta.photometry.pixelarea_arcsecsq == theirs.meta.photometry.pixelarea_arcsecsq
        assert model.meta.cal_step.flat_field == model.meta.cal_step.photom == "COMPLETE"
        assert model.meta.ref_file.flat.name == refs["flat"] and model.meta.ref_file.area.name == refs["area"]
        assert model.meta.subarray.xstart == 501
    with fits.open(url) as hdul:
        assert {"SCI", "ERR", "DQ", "AREA", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT", "ASDF"} <= {h.name for h in hdul}
        assert hdul["SCI"].header["BUNIT"] == "MJy/sr"
        assert hdul["SCI"].header["PHOTUJA2"] == pytest.approx(0.22 * MJSR_TO_UJA2, rel=1e-6)


def test_missing_keywords(prog: Any, meta: dict, tmp_path: Path) -> None:
    refs = RefProvider(overrides={"photom": str(prog.reference_files["photom"]),
                                  "area": str(prog.reference_files["area"])})
    ds = write_rate(tmp_path / "x_rate.fits", rate_meta(meta, **{"instrument.pupil": None}), shape=SHAPE,
                    window=(1, 1))
    with pytest.raises(InputError, match="x_rate.fits: PRIMARY PUPIL: required keyword is missing"):
        photom(ds, refs)


def test_filter_without_photom_row(prog: Any, meta: dict, tmp_path: Path) -> None:
    refs = RefProvider(overrides={"photom": str(prog.reference_files["photom"]), "area": "N/A"})
    ds = write_rate(tmp_path / "x_rate.fits", rate_meta(meta, **{"instrument.filter": "F999W"}), shape=SHAPE,
                    window=(1, 1))
    with pytest.raises(ReferenceFileError, match=r"jwst_nircam_photom_9001.fits: no PHOTOM row for "
                                                 r"filter=F999W pupil=CLEAR"):
        photom(ds, refs)


def test_not_applicable_skips(meta: dict, tmp_path: Path) -> None:
    ds = write_rate(tmp_path / "x_rate.fits", meta, shape=SHAPE, window=(1, 1))
    out = photom(ds, RefProvider(overrides={"photom": "N/A"}))
    assert out.attrs["meta"]["cal_step"]["photom"] == "SKIPPED" and out.sci.attrs["units"] == "DN/s"


def _meta_only(**meta: Any) -> xr.Dataset:
    nested: dict[str, Any] = {}
    for key, value in meta.items():
        group, name = key.split("__")
        nested.setdefault(group, {})[name] = value
    return xr.Dataset(attrs={"meta": nested, "source": "x_rate.fits"})


def test_row_selection_rules() -> None:
    """MIRI retries SUBARRAY=GENERIC, NIRCam matches SUBARRAY when the table has it, FGS takes
    the first row, duplicates are an error."""
    miri = Table({"filter": ["F770W", "F770W", "F1000W"], "subarray": ["FULL", "GENERIC", "GENERIC"],
                  "photmjsr": np.array([1, 2, 3], np.float32)})
    ds = _meta_only(instrument__name="MIRI", instrument__detector="MIRIMAGE", instrument__filter="f770w",
                    subarray__name="SUB256")
    assert select_row(ds, miri, "p.fits") == 1
    nircam = Table({"filter": ["F200W", "F200W"], "pupil": ["CLEAR", "CLEAR"], "subarray": ["FULL", "SUB160"],
                    "photmjsr": np.array([1, 2], np.float32)})
    ds = _meta_only(instrument__name="NIRCAM", instrument__filter="F200W", instrument__pupil="CLEAR",
                    subarray__name="SUB160")
    assert select_row(ds, nircam, "p.fits") == 1
    fgs = Table({"photmjsr": np.array([4.0], np.float32)})
    assert select_row(_meta_only(instrument__name="FGS"), fgs, "p.fits") == 0
    twice = Table({"filter": ["F200W", "F200W"], "pupil": ["CLEARP", "CLEARP"], "photmjsr": np.ones(2, np.float32)})
    ds = _meta_only(instrument__name="NIRISS", instrument__filter="F200W", instrument__pupil="CLEARP")
    with pytest.raises(ReferenceFileError, match="2 PHOTOM rows match"):
        select_row(ds, twice, "p.fits")
    with pytest.raises(NotImplementedError, match="NIRSPEC"):
        select_row(_meta_only(instrument__name="NIRSPEC"), twice, "p.fits")


def test_time_correction_forms() -> None:
    t = 60465.0
    coeff = {"linear": {"t0": np.array([60100.0]), "lossperyear": np.array([0.02])},
             "exponential": {"t0": np.array([60100.0]), "amplitude": np.array([0.04]), "tau": np.array([250.0]),
                             "const": np.array([0.96])},
             "powerlaw": {"t0": np.array([60100.0]), "year1value": np.array([0.985]), "tsoft": np.array([12.0]),
                          "alpha": np.array([-0.05])}}
    expected = (1 - 0.02) * (0.04 * np.exp(-365 / 250) + 0.96) * 0.985
    assert time_correction(t, coeff, 1)[0] == pytest.approx(expected, rel=1e-12)
