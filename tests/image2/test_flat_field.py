"""flat_field (imaging) against jwst's FlatFieldStep on identical rate files and FLAT references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import jwdask
from jwdask import dqflags
from jwdask.errors import InputError, ReferenceFileError
from jwdask.image2.flat_field import flat_field
from jwdask.kernels.flat_field import apply_flat, match_nans_and_flags
from jwdask.refs import RefProvider
from jwdask.simulate import simulate_program
from tests.image2.rate_inputs import assert_close, jwst_offline, no_compute, rate_meta, write_rate

__all__ = ["jwst_offline"]

SHAPE = (48, 64)
WINDOWS = {"corner": (1, 1), "subarray": (501, 701)}


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return simulate_program("tiny", tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def meta(prog: Any) -> dict[str, Any]:
    return jwdask.open_uncal(str(prog.uncal[0])).attrs["meta"]


@pytest.fixture(scope="module")
def bad_flat(prog: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated flat with NaN, zero, NO_FLAT_FIELD, DO_NOT_USE, UNRELIABLE_FLAT and NaN-ERR
    pixels inside both test windows; its DQ_DEF stores NO_FLAT_FIELD as bit 2 and
    UNRELIABLE_FLAT as bit 3, and bit 5 (no DQ_DEF row) must be dropped."""
    path = tmp_path_factory.mktemp("flat") / "jwst_nircam_flat_9002.fits"
    with fits.open(prog.reference_files["flat"]) as hdul:
        sci, err, dq = hdul["SCI"].data.copy(), hdul["ERR"].data.copy(), hdul["DQ"].data.copy()
        for x0, y0 in WINDOWS.values():
            y, x = y0 - 1, x0 - 1
            sci[y + 3, x + 4] = np.nan
            sci[y + 5, x + 40] = 0.0
            dq[y + 10, x + 11] |= 4
            dq[y + 30, x + 12] |= dqflags.DO_NOT_USE
            dq[y + 31, x + 50] |= 8
            dq[y + 15, x + 15] |= 32
            err[y + 20, x + 33] = np.nan
        hdul["SCI"].data, hdul["ERR"].data, hdul["DQ"].data = sci, err, dq
        dq_def = Table(hdul["DQ_DEF"].data)
        dq_def.add_row((2, 4, "NO_FLAT_FIELD", "No flat"))
        dq_def.add_row((3, 8, "UNRELIABLE_FLAT", "Unreliable flat"))
        hdul["DQ_DEF"] = fits.BinTableHDU(dq_def, name="DQ_DEF")
        hdul[0].header["FILENAME"] = path.name
        hdul.writeto(path)
    return path


def _jwst_flat(rate_path: str, flat: Path, inverse: bool) -> Any:
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    from jwst.flatfield import FlatFieldStep

    with datamodels.open(rate_path) as model:
        return FlatFieldStep.call(model, override_flat=str(flat), override_fflat="N/A", override_sflat="N/A",
                                  override_dflat="N/A", inverse=inverse)


@pytest.mark.reference
@pytest.mark.usefixtures("jwst_offline")
@pytest.mark.parametrize(("window", "nints", "inverse", "which"), [
    ("corner", None, False, "simulated"),
    ("subarray", None, False, "bad"),
    ("subarray", 3, False, "bad"),
    ("corner", None, True, "bad"),
])
def test_matches_jwst(prog: Any, meta: dict, bad_flat: Path, tmp_path: Path, window: str, nints: int | None,
                      inverse: bool, which: str) -> None:
    flat = prog.reference_files["flat"] if which == "simulated" else bad_flat
    name = "jw09001001001_02101_00001_nrcb1_" + ("rate" if nints is None else "rateints") + ".fits"
    ds = write_rate(tmp_path / name, meta, shape=SHAPE, window=WINDOWS[window], nints=nints, seed=3)
    with no_compute():
        out = flat_field(ds, RefProvider(overrides={"flat": str(flat)}), inverse=inverse)
    theirs = _jwst_flat(ds.attrs["source"], flat, inverse)
    assert out.attrs["meta"]["cal_step"]["flat_field"] == theirs.meta.cal_step.flat_field == "COMPLETE"
    assert out.attrs["meta"]["ref_file"]["flat"]["name"] == str(Path(flat).resolve())
    out = out.compute()
    for ours, attr in (("sci", "data"), ("err", "err"), ("var_poisson", "var_poisson"),
                       ("var_rnoise", "var_rnoise"), ("var_flat", "var_flat")):
        assert_close(out[ours].values, getattr(theirs, attr), ours)
    np.testing.assert_array_equal(out.dq.values, theirs.dq)
    if which == "bad" and not inverse:
        assert (out.dq.values[..., 10, 11] & dqflags.NO_FLAT_FIELD).all()
        assert (out.dq.values[..., 31, 50] & dqflags.UNRELIABLE_FLAT).all()
        assert not (out.dq.values[..., 15, 15] & 32).any()
        assert np.isnan(out.sci.values[..., 3, 4]).all()
    assert out.sci.attrs["units"] == "DN/s"


def test_kernel_flags_and_variances() -> None:
    """Hand-computed pixels: good, NaN flat, zero flat, NO_FLAT_FIELD, NaN flat error."""
    sci = np.array([[8.0, 8.0, 8.0, 8.0, 8.0]], np.float32)
    one = np.ones_like(sci)
    flat = np.array([[2.0, np.nan, 0.0, 4.0, 2.0]], np.float32)
    ferr = np.array([[0.5, 0.0, 0.0, 0.0, np.nan]], np.float32)
    fdq = np.array([[0, 0, 0, dqflags.NO_FLAT_FIELD, 0]], np.uint32)
    out = apply_flat(sci, one, np.zeros_like(sci, np.uint32), one, one, flat, ferr, fdq)
    bad = dqflags.DO_NOT_USE | dqflags.NO_FLAT_FIELD
    assert out.dq.tolist() == [[0, bad, bad, bad, dqflags.DO_NOT_USE]]
    assert out.sci[0, 0] == 4.0 and np.isnan(out.sci[0, 1:]).all()
    assert out.var_flat[0, 0] == pytest.approx(4.0**2 * 0.5**2 / 4.0)
    assert out.var_poisson[0, 0] == pytest.approx(0.25)
    assert out.err[0, 0] == pytest.approx(np.sqrt(0.25 + 0.25 + 1.0))


def test_match_nans_skips_other_shapes() -> None:
    sci = np.array([[1.0, 2.0]], np.float32)
    out = match_nans_and_flags(sci, np.array([[np.nan, 1.0]], np.float32), np.zeros((1, 2), np.uint32),
                               var_flat=np.zeros(3, np.float32))
    assert out.dq.tolist() == [[1, 0]] and np.isnan(out.sci[0, 0]) and out.var_flat.shape == (3,)


def test_wrong_filter_is_an_error(prog: Any, meta: dict, tmp_path: Path) -> None:
    other = tmp_path / "jwst_nircam_flat_9003.fits"
    with fits.open(prog.reference_files["flat"]) as hdul:
        hdul[0].header["FILTER"] = "F150W"
        hdul.writeto(other)
    ds = write_rate(tmp_path / "x_rate.fits", meta, shape=SHAPE, window=(1, 1))
    with pytest.raises(ReferenceFileError, match=r"jwst_nircam_flat_9003\.fits is for FILTER=F150W.*FILTER=F200W"):
        flat_field(ds, RefProvider(overrides={"flat": str(other)}))


def test_missing_filter_keyword(prog: Any, meta: dict, tmp_path: Path) -> None:
    ds = write_rate(tmp_path / "x_rate.fits", rate_meta(meta, **{"instrument.filter": None}), shape=SHAPE,
                    window=(1, 1))
    with pytest.raises(InputError, match="x_rate.fits: PRIMARY FILTER: required keyword is missing"):
        flat_field(ds, RefProvider(overrides={"flat": str(prog.reference_files["flat"])}))


def test_not_applicable_and_small_flat_skip(prog: Any, meta: dict, tmp_path: Path) -> None:
    ds = write_rate(tmp_path / "x_rate.fits", meta, shape=SHAPE, window=(101, 201))
    out = flat_field(ds, RefProvider(overrides={"flat": "N/A"}))
    assert out.attrs["meta"]["cal_step"]["flat_field"] == "SKIPPED" and "var_flat" not in out
    small = tmp_path / "jwst_nircam_flat_9004.fits"
    hdr = {"TELESCOP": "JWST", "INSTRUME": "NIRCAM", "DETECTOR": "NRCB1", "REFTYPE": "FLAT", "FILTER": "F200W",
           "PUPIL": "CLEAR", "SUBARRAY": "SUB32", "SUBSTRT1": 101, "SUBSTRT2": 201, "SUBSIZE1": 32, "SUBSIZE2": 32}
    fits.HDUList([fits.PrimaryHDU(header=fits.Header(list(hdr.items()))),
                  fits.ImageHDU(np.ones((32, 32), np.float32), name="SCI")]).writeto(small)
    out = flat_field(ds, RefProvider(overrides={"flat": str(small)}))
    assert out.attrs["meta"]["cal_step"]["flat_field"] == "SKIPPED"
    np.testing.assert_array_equal(out.sci.values, ds.sci.values)


def test_flat_not_covering_the_window(prog: Any, meta: dict, tmp_path: Path) -> None:
    part = tmp_path / "jwst_nircam_flat_9005.fits"
    hdr = {"TELESCOP": "JWST", "INSTRUME": "NIRCAM", "DETECTOR": "NRCB1", "REFTYPE": "FLAT", "FILTER": "F200W",
           "PUPIL": "CLEAR", "SUBARRAY": "SUB64", "SUBSTRT1": 1, "SUBSTRT2": 1, "SUBSIZE1": 64, "SUBSIZE2": 64}
    fits.HDUList([fits.PrimaryHDU(header=fits.Header(list(hdr.items()))),
                  fits.ImageHDU(np.ones((64, 64), np.float32), name="SCI")]).writeto(part)
    ds = write_rate(tmp_path / "x_rate.fits", meta, shape=SHAPE, window=(101, 201))
    with pytest.raises(ReferenceFileError, match="jwst_nircam_flat_9005.fits covers"):
        flat_field(ds, RefProvider(overrides={"flat": str(part)}))


def test_user_supplied_flat(bad_flat: Path, meta: dict, tmp_path: Path) -> None:
    """A user flat replaces the reference (none is resolved) and gives the same result."""
    ds = write_rate(tmp_path / "x_rate.fits", meta, shape=SHAPE, window=(501, 701), seed=4)
    by_user = flat_field(ds, None, user_supplied_flat=str(bad_flat))
    by_ref = flat_field(ds, RefProvider(overrides={"flat": str(bad_flat)}))
    assert by_user.attrs["meta"]["ref_file"]["flat"]["name"] == str(bad_flat)
    for name in ("sci", "err", "dq", "var_flat"):
        np.testing.assert_array_equal(by_user[name].values, by_ref[name].values)


def test_nirspec_spectroscopy_not_implemented(meta: dict, tmp_path: Path) -> None:
    ds = write_rate(tmp_path / "x_rate.fits", rate_meta(meta, **{"exposure.type": "NRS_FIXEDSLIT"}), shape=SHAPE,
                    window=(1, 1))
    with pytest.raises(NotImplementedError, match="NIRSpec spectroscopy"):
        flat_field(ds, None)
