"""MIRI lastframe and firstframe: kernels, step wrappers (skips, laziness) and equality with
jwst 3.0's LastFrameStep / FirstFrameStep on the same RampModel."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.detector1.firstframe import firstframe
from jwdask.detector1.lastframe import lastframe
from jwdask.kernels.miri_firstframe import flag_first_group
from jwdask.kernels.miri_lastframe import flag_last_group
from tests.kernels.miri_support import exposure, header, no_compute, ramp_model, run_jwst

DNU, SAT, FE = dqflags.DO_NOT_USE, dqflags.SATURATED, dqflags.FLUX_ESTIMATED


def _ramps(nints: int = 2, ngroups: int = 5, ny: int = 20, nx: int = 28, seed: int = 0):
    rng = np.random.default_rng(seed)
    sci = rng.normal(1000, 10, (nints, ngroups, ny, nx)).astype(np.float32)
    gdq = np.zeros(sci.shape, np.uint8)
    first_sat = rng.integers(1, ngroups + 2, (nints, ny, nx))
    for g in range(ngroups):
        gdq[:, g][first_sat <= g] |= SAT
    gdq[rng.random(sci.shape) < 0.05] |= DNU
    pdq = np.where(rng.random((ny, nx)) < 0.05, dqflags.HOT, 0).astype(np.uint32)
    return sci, gdq, pdq


def test_last_group_flagged():
    gdq = np.zeros((2, 3, 1, 2), np.uint8)
    gdq[0, 2, 0, 0] = SAT
    out = flag_last_group(gdq).groupdq
    assert out[:, -1].ravel().tolist() == [SAT | DNU, DNU, DNU, DNU]
    assert not out[:, :2].any()
    with pytest.raises(ValueError, match="group > 2"):
        flag_last_group(np.zeros((1, 2, 1, 1), np.uint8))


@pytest.mark.parametrize("bright", [True, False])
def test_first_group_flagged_unless_group2_saturated(bright):
    gdq = np.zeros((2, 4, 1, 3), np.uint8)
    gdq[0, 2:, 0, 1] = SAT           # pixel 1 saturates in group 2 of integration 0 only
    gdq[:, 1:, 0, 2] = SAT           # pixel 2 saturates in group 1 everywhere
    out = flag_first_group(gdq, np.zeros((1, 3), np.uint32), bright_use_group1=bright)
    dnu0 = (out.groupdq[:, 0, 0] & DNU).tolist()
    if bright:
        assert dnu0 == [[1, 0, 0], [1, 1, 0]]
        assert out.pixeldq.tolist() == [[0, FE, FE]]
    else:
        assert dnu0 == [[1, 1, 1], [1, 1, 1]]
        assert not out.pixeldq.any()
    with pytest.raises(ValueError, match="group > 3"):
        flag_first_group(np.zeros((1, 3, 1, 1), np.uint8), np.zeros((1, 1), np.uint32))


def test_steps_skip_like_jwst():
    sci, gdq, pdq = _ramps(ngroups=3)
    ds = exposure(sci, gdq, pdq, header(sci))
    out = firstframe(ds)
    assert out.attrs["meta"]["cal_step"]["firstframe"] == "SKIPPED"
    assert lastframe(ds).attrs["meta"]["cal_step"]["lastframe"] == "COMPLETE"
    short = exposure(sci[:, :2], gdq[:, :2], pdq, header(sci[:, :2]))
    assert lastframe(short).attrs["meta"]["cal_step"]["lastframe"] == "SKIPPED"
    nircam = exposure(sci, gdq, pdq, header(sci, INSTRUME="NIRCAM", DETECTOR="NRCB1"))
    assert lastframe(nircam).attrs["meta"]["cal_step"]["lastframe"] == "SKIPPED"
    assert firstframe(nircam).attrs["meta"]["cal_step"]["firstframe"] == "SKIPPED"


def test_steps_are_lazy_and_tiled():
    sci, gdq, pdq = _ramps()
    ds = exposure(sci, gdq, pdq, header(sci))
    out = lastframe(firstframe(ds))
    assert out.groupdq.chunks == ds.groupdq.chunks
    expected = flag_last_group(flag_first_group(gdq, pdq).groupdq).groupdq
    np.testing.assert_array_equal(out.groupdq.values, expected)


@pytest.mark.reference
@pytest.mark.parametrize("bright", [True, False])
def test_equal_to_jwst(tmp_path, bright):
    pytest.importorskip("jwst")
    from jwst.firstframe import FirstFrameStep
    from jwst.lastframe import LastFrameStep

    sci, gdq, pdq = _ramps(nints=3, ngroups=6, seed=3)
    keys = header(sci)
    with no_compute():
        ours = lastframe(firstframe(exposure(sci, gdq, pdq, keys), bright_use_group1=bright))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = run_jwst(FirstFrameStep, ramp_model(sci, gdq, pdq, keys), tmp_path, skip=False,
                         bright_use_group1=bright)
    model = run_jwst(LastFrameStep, model, tmp_path)
    np.testing.assert_array_equal(ours.groupdq.values, model.groupdq)
    np.testing.assert_array_equal(ours.pixeldq.values, model.pixeldq)
    assert model.meta.cal_step.firstframe == ours.attrs["meta"]["cal_step"]["firstframe"] == "COMPLETE"
