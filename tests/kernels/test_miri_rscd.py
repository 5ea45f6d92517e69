"""MIRI rscd (flag-only in jwst 3.0): skip counts, saturation back-off, the global stop of
jwst's back-off loop, and equality with jwst's RscdStep on the same RampModel."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.detector1.rscd import rscd
from jwdask.errors import ReferenceFileError
from jwdask.kernels.miri_rscd import flag_rscd, integration_ranges, problem_levels, skip_counts
from jwdask.refs import RefProvider
from tests.kernels.miri_support import exposure, header, no_compute, ramp_model, run_jwst, write_rscd

DNU, SAT, FE = dqflags.DO_NOT_USE, dqflags.SATURATED, dqflags.FLUX_ESTIMATED
TABLE = [("SUB64", "FAST", 3, 4), ("FULL", "FAST", -1, 2), ("SLITLESSPRISM", "FAST", 2, 2)]


def _ramps(nints: int, ngroups: int, ny: int = 20, nx: int = 28, seed: int = 0, monotone: bool = True):
    rng = np.random.default_rng(seed)
    sci = rng.normal(1000, 10, (nints, ngroups, ny, nx)).astype(np.float32)
    gdq = np.zeros(sci.shape, np.uint8)
    if monotone:
        first_sat = rng.integers(0, ngroups + 4, (nints, ny, nx))
        for g in range(ngroups):
            gdq[:, g][first_sat <= g] |= SAT
    else:
        gdq[rng.random(sci.shape) < 0.15] |= SAT
    gdq[rng.random(sci.shape) < 0.05] |= DNU
    pdq = np.where(rng.random((ny, nx)) < 0.05, dqflags.HOT, 0).astype(np.uint32)
    return sci, gdq, pdq


def test_skip_counts_follow_jwst_limits():
    assert skip_counts(3, 4, ngroups=2, nints=1) is None
    assert skip_counts(-1, 4, ngroups=20, nints=2) == (1, 4)
    assert skip_counts(3, 4, ngroups=5, nints=2) == (1, 1)
    assert skip_counts(3, 4, ngroups=3, nints=2) == (0, 0)
    assert skip_counts(5, 6, ngroups=8, nints=1) == (5, 6)
    assert skip_counts(5, 6, ngroups=8, nints=2) == (5, 5)


def test_closed_form_for_forward_saturation():
    """n = min(skip, max(0, s0 - 2)); n = skip when group 0 is saturated."""
    ngroups, skip = 9, 4
    gdq = np.zeros((1, ngroups, 1, ngroups + 1), np.uint8)
    for s0 in range(ngroups):
        gdq[0, s0:, 0, s0] = SAT
    lv = [problem_levels(gdq, skip)]
    out = flag_rscd(gdq, np.zeros((1, ngroups + 1), np.uint32), ranges=[(0, 1, skip)], levels=lv)
    n = (out.groupdq[0, :, 0] & DNU).sum(axis=0).tolist()
    assert n == [skip] + [min(skip, max(0, s0 - 2)) for s0 in range(1, ngroups)] + [skip]
    lowered = [0] + [int(min(skip, max(0, s0 - 2)) < skip) for s0 in range(1, ngroups)] + [0]
    assert ((out.pixeldq[0] & FE) != 0).astype(int).tolist() == lowered


def test_loop_stop_is_global():
    """Pixel A is saturated in groups 3 and 1 but not 2 (not forward-propagated): it loses a
    second flagged group only if another pixel keeps jwst's loop running through level 1."""
    gdq = np.zeros((1, 6, 1, 2), np.uint8)
    gdq[0, [1, 3], 0, 0] = SAT
    alone = flag_rscd(gdq[..., :1], np.zeros((1, 1), np.uint32), ranges=[(0, 1, 2)],
                      levels=[problem_levels(gdq[..., :1], 2)])
    assert (alone.groupdq[0, :, 0, 0] & DNU).sum() == 1
    gdq[0, 2:, 0, 1] = SAT
    tile_a = gdq[..., :1]
    levels = problem_levels(tile_a, 2) | problem_levels(gdq[..., 1:], 2)
    joint = flag_rscd(tile_a, np.zeros((1, 1), np.uint32), ranges=[(0, 1, 2)], levels=[levels])
    assert (joint.groupdq[0, :, 0, 0] & DNU).sum() == 0


def test_integration_ranges():
    assert integration_ranges(1, nints=1, integration_start=None, skip1=3, skip2p=4) == [(0, 1, 3)]
    assert integration_ranges(1, nints=5, integration_start=1, skip1=3, skip2p=4) == [(0, 1, 3)]
    assert integration_ranges(3, nints=5, integration_start=3, skip1=3, skip2p=4) == [(0, 3, 4)]


@pytest.mark.reference
@pytest.mark.parametrize(("nints", "ngroups", "subarray", "intstart", "monotone"), [
    (3, 10, "SUB64", None, True), (2, 8, "SUB64", None, False), (1, 5, "SUB64", None, True),
    (3, 10, "SUBPRISM", None, True), (2, 10, "SUB64", 4, True), (2, 7, "FULL", None, False),
])
def test_equal_to_jwst(tmp_path, nints, ngroups, subarray, intstart, monotone):
    pytest.importorskip("jwst")
    from jwst.rscd import RscdStep

    sci, gdq, pdq = _ramps(nints, ngroups, seed=nints * ngroups, monotone=monotone)
    extra = {} if intstart is None else {"INTSTART": intstart, "INTEND": intstart + nints - 1, "NINTS": 9}
    keys = header(sci, subarray=subarray, **extra)
    path = write_rscd(tmp_path / "rscd.fits", TABLE)
    with no_compute():
        ours = rscd(exposure(sci, gdq, pdq, keys, tile=(8, 12)), RefProvider(overrides={"rscd": str(path)}))
    theirs = run_jwst(RscdStep, ramp_model(sci, gdq, pdq, keys), tmp_path, override_rscd=str(path))
    np.testing.assert_array_equal(ours.groupdq.values, theirs.groupdq)
    np.testing.assert_array_equal(ours.pixeldq.values, theirs.pixeldq)
    assert ours.attrs["meta"]["cal_step"]["rscd"] == theirs.meta.cal_step.rscd == "COMPLETE"
    for key in ("ngroups_skip_int1", "ngroups_skip_int2p"):
        assert ours.attrs["meta"]["rscd"].get(key) == getattr(theirs.meta.rscd, key)


@pytest.mark.reference
def test_skips_like_jwst(tmp_path):
    pytest.importorskip("jwst")
    from jwst.rscd import RscdStep

    path = write_rscd(tmp_path / "rscd.fits", TABLE)
    refs = RefProvider(overrides={"rscd": str(path)})
    for ngroups, keys_extra in ((2, {}), (6, {"SUBARRAY": "SUB128"}), (6, {"READPATT": "SLOW"})):
        sci, gdq, pdq = _ramps(2, ngroups)
        keys = header(sci, **keys_extra)
        ours = rscd(exposure(sci, gdq, pdq, keys), refs)
        theirs = run_jwst(RscdStep, ramp_model(sci, gdq, pdq, keys), tmp_path, override_rscd=str(path))
        assert ours.attrs["meta"]["cal_step"]["rscd"] == theirs.meta.cal_step.rscd == "SKIPPED"
        np.testing.assert_array_equal(ours.groupdq.values, theirs.groupdq)


def test_bad_inputs(tmp_path):
    sci, gdq, pdq = _ramps(1, 6)
    ds = exposure(sci, gdq, pdq, header(sci))
    assert rscd(ds, RefProvider(overrides={"rscd": "N/A"})).attrs["meta"]["cal_step"]["rscd"] == "SKIPPED"
    nircam = exposure(sci, gdq, pdq, header(sci, INSTRUME="NIRCAM", DETECTOR="NRCB1"))
    assert rscd(nircam, None).attrs["meta"]["cal_step"]["rscd"] == "SKIPPED"
    with pytest.raises(ReferenceFileError, match="no reference provider"):
        rscd(ds, None)
    with pytest.raises(ValueError, match="cannot hold"):
        problem_levels(gdq[:, :3], 2)
