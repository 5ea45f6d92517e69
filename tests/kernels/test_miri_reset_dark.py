"""MIRI reset subtraction and 4-D (per-integration) dark subtraction: kernels, wrappers and
bit-equality with jwst 3.0's ResetStep / DarkCurrentStep on the same RampModel."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.detector1.dark_current import dark_current
from jwdask.detector1.reset import reset
from jwdask.errors import InputError, ReferenceFileError
from jwdask.kernels.miri_reset import subtract_reset
from jwdask.refs import RefProvider
from tests.kernels.miri_support import (exposure, header, no_compute, ramp_model, run_jwst, write_dark_miri,
                                        write_reset)

UD = dqflags.UNRELIABLE_DARK


def _ramps(nints: int = 3, ngroups: int = 5, ny: int = 20, nx: int = 28, seed: int = 0):
    rng = np.random.default_rng(seed)
    sci = (rng.normal(10000, 30, (nints, 1, ny, nx)) + 37.1 * np.arange(ngroups)[:, None, None]).astype(np.float32)
    gdq = np.where(rng.random(sci.shape) < 0.03, dqflags.SATURATED, 0).astype(np.uint8)
    pdq = np.where(rng.random((ny, nx)) < 0.05, dqflags.HOT, 0).astype(np.uint32)
    return sci, gdq, pdq


def _reset_ref(nints: int, ngroups: int, ny: int, nx: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    data = rng.normal(5, 2, (nints, ngroups, ny, nx)).astype(np.float32)
    data[0, 0, 0, 0] = np.nan
    dq = np.where(rng.random((ny, nx)) < 0.05, dqflags.DO_NOT_USE, 0).astype(np.uint32)
    return data, dq


def test_kernel_integration_and_group_limits():
    sci = np.full((3, 4, 1, 1), 100, np.float32)
    ref = np.arange(1, 7, dtype=np.float32).reshape(2, 3, 1, 1)
    ref[0, 0] = np.nan
    out = subtract_reset(sci, np.zeros((1, 1), np.uint32), ref, np.full((1, 1), 4, np.uint32),
                         ngroups=4, reset_nints=2, reset_ngroups=3)
    assert out.sci[:, :, 0, 0].tolist() == [[100, 98, 97, 100], [96, 95, 94, 100], [96, 95, 94, 100]]
    assert out.pixeldq.tolist() == [[4]]
    segment = subtract_reset(sci, np.zeros((1, 1), np.uint32), ref, np.zeros((1, 1), np.uint32),
                             ngroups=4, reset_nints=2, reset_ngroups=3, first_integration=0, n_corrected=1)
    assert segment.sci[1:, :, 0, 0].tolist() == [[100] * 4] * 2
    with pytest.raises(ValueError, match="lacks integration"):
        subtract_reset(sci, np.zeros((1, 1), np.uint32), ref[:1], np.zeros((1, 1), np.uint32),
                       ngroups=4, reset_nints=2, reset_ngroups=3)


@pytest.mark.reference
@pytest.mark.parametrize(("reset_shape", "intstart"), [((2, 3), None), ((4, 8), None), ((2, 3), 2)])
def test_reset_equal_to_jwst(tmp_path, reset_shape, intstart):
    pytest.importorskip("jwst")
    from jwst.reset import ResetStep

    sci, gdq, pdq = _ramps()
    extra = {} if intstart is None else {"INTSTART": intstart, "INTEND": intstart + 2, "NINTS": 9}
    keys = header(sci, subarray="SUB64", xstart=5, ystart=9, **extra)
    data, dq = _reset_ref(*reset_shape, *sci.shape[2:])
    path = write_reset(tmp_path / "reset.fits", data, dq, keys)
    with no_compute():
        ours = reset(exposure(sci, gdq, pdq, keys), RefProvider(overrides={"reset": str(path)}))
    theirs = run_jwst(ResetStep, ramp_model(sci, gdq, pdq, keys), tmp_path, override_reset=str(path))
    np.testing.assert_array_equal(ours.sci.values, theirs.data)
    np.testing.assert_array_equal(ours.pixeldq.values, theirs.pixeldq)
    assert ours.attrs["meta"]["cal_step"]["reset"] == theirs.meta.cal_step.reset == "COMPLETE"


def test_reset_skips_and_bad_references(tmp_path):
    sci, gdq, pdq = _ramps()
    keys = header(sci)
    ds = exposure(sci, gdq, pdq, keys)
    assert reset(ds, RefProvider(overrides={"reset": "N/A"})).attrs["meta"]["cal_step"]["reset"] == "SKIPPED"
    nircam = exposure(sci, gdq, pdq, header(sci, INSTRUME="NIRCAM", DETECTOR="NRCB1"))
    assert reset(nircam, None).attrs["meta"]["cal_step"]["reset"] == "SKIPPED"
    data, dq = _reset_ref(2, 3, sci.shape[2], sci.shape[3] - 4)
    wrong = write_reset(tmp_path / "narrow.fits", data, dq, header(sci[..., :-4]))
    with pytest.raises(ReferenceFileError, match="as delivered"):
        reset(ds, RefProvider(overrides={"reset": str(wrong)}))
    data, dq = _reset_ref(2, 3, *sci.shape[2:])
    short = write_reset(tmp_path / "short.fits", data, dq, keys, ngroups=5)
    with pytest.raises(ReferenceFileError, match="lacks reset integration"):
        reset(ds, RefProvider(overrides={"reset": str(short)}))
    too_many = exposure(sci, gdq, pdq, header(sci, NINTS=5))
    ok = write_reset(tmp_path / "ok.fits", data, dq, keys)
    with pytest.raises(InputError, match="INTSTART/INTEND/NINTS"):
        reset(too_many, RefProvider(overrides={"reset": str(ok)}))


def _dark_ref(nints: int, ngroups: int, ny: int, nx: int, seed: int = 2):
    rng = np.random.default_rng(seed)
    data = (rng.normal(0.5, 0.1, (nints, 1, ny, nx)) * np.arange(ngroups)[:, None, None]).astype(np.float32)
    data[1, 2, 3, 4] = np.nan
    dq = np.zeros((nints, 1, ny, nx), np.uint32)
    dq[0, 0, 1, 1] = UD
    dq[1, 0, 2, 2] = UD
    return data, dq


@pytest.mark.reference
@pytest.mark.parametrize(("dark_shape", "intstart"), [((2, 8), None), ((2, 3), None), ((4, 6), 3)])
def test_miri_dark_equal_to_jwst(tmp_path, dark_shape, intstart):
    """Per-integration dark planes (the last one for later integrations and for segment files),
    extrapolation of a short dark, dq OR-ed over dark integrations."""
    pytest.importorskip("jwst")
    from jwst.dark_current import DarkCurrentStep

    sci, gdq, pdq = _ramps()
    extra = {} if intstart is None else {"INTSTART": intstart, "INTEND": intstart + 2, "NINTS": 9}
    keys = header(sci, subarray="SUB64", xstart=5, ystart=9, **extra)
    data, dq = _dark_ref(*dark_shape, *sci.shape[2:])
    path = write_dark_miri(tmp_path / "dark.fits", data, dq, keys)
    with no_compute():
        ours = dark_current(exposure(sci, gdq, pdq, keys), RefProvider(overrides={"dark": str(path)}))
    theirs = run_jwst(DarkCurrentStep, ramp_model(sci, gdq, pdq, keys), tmp_path, override_dark=str(path))
    np.testing.assert_array_equal(ours.sci.values, theirs.data)
    np.testing.assert_array_equal(ours.pixeldq.values, theirs.pixeldq)
    np.testing.assert_array_equal(ours.average_dark_current.values, theirs.average_dark_current)
    assert ours.attrs["meta"]["cal_step"]["dark_sub"] == theirs.meta.cal_step.dark_sub == "COMPLETE"


def test_miri_dark_needs_4d_dq(tmp_path):
    pytest.importorskip("stdatamodels")
    from astropy.io import fits

    sci, gdq, pdq = _ramps()
    keys = header(sci)
    data, dq = _dark_ref(2, 5, *sci.shape[2:])
    path = write_dark_miri(tmp_path / "dark.fits", data, dq, keys)
    with fits.open(path) as hdul:
        hdul["DQ"] = fits.ImageHDU(dq[0, 0], name="DQ")
        hdul.writeto(tmp_path / "dark2d.fits")
    with pytest.raises(ReferenceFileError, match="4-D DQ"):
        dark_current(exposure(sci, gdq, pdq, keys), RefProvider(overrides={"dark": str(tmp_path / "dark2d.fits")}))
