"""Detector1 through jwdask and through jwst's Detector1Pipeline on the same simulated exposure."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
from astropy.io import fits

from jwdask.pipeline import Pipeline
from jwdask.refs import RefProvider
from jwdask.simulate import Program, simulate_program

pytestmark = pytest.mark.reference

ARRAYS = ("SCI", "ERR", "VAR_POISSON", "VAR_RNOISE")


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Program:
    return simulate_program("tiny", tmp_path_factory.mktemp("sim"), seed=7)


@pytest.fixture(scope="module")
def official(prog: Program, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("jwst")
    from tests.official import run_official_detector1

    out = tmp_path_factory.mktemp("jwst")
    with pytest.MonkeyPatch.context() as mp:
        return run_official_detector1(prog.uncal[0], prog.reference_files, out, mp)


@pytest.fixture(scope="module")
def ours(prog: Program, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jwdask.commands import run_pipeline

    out = tmp_path_factory.mktemp("jwdask")
    refs = RefProvider(refs_dir=str(prog.refs_dir))
    with dask.config.set(scheduler="threads"):
        urls = run_pipeline(Pipeline.load("detector1"), [str(prog.uncal[0])], str(out), refs, tile=48)
    rate = [u for u in urls if u.endswith("_rate.fits")]
    assert len(rate) == 1
    return Path(rate[0])


def _compare(ours: Path, official: Path) -> None:
    with fits.open(ours) as a, fits.open(official) as b:
        np.testing.assert_array_equal(a["DQ"].data, b["DQ"].data)
        for name in ARRAYS:
            x, y = a[name].data, b[name].data
            assert x.shape == y.shape, name
            np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=name)
            ok = ~np.isnan(x)
            np.testing.assert_allclose(x[ok], y[ok], rtol=1e-5, atol=1e-7, err_msg=name)
        for key in ("BUNIT",):
            assert a["SCI"].header.get(key) == b["SCI"].header.get(key)


def test_rate_equals_jwst(ours: Path, official: Path) -> None:
    _compare(ours, official)


def test_rateints_equals_jwst(ours: Path, official: Path) -> None:
    _compare(Path(str(ours).replace("_rate.fits", "_rateints.fits")),
             Path(str(official).replace("_rate.fits", "_rateints.fits")))


def test_cal_steps_recorded_like_jwst(ours: Path, official: Path) -> None:
    with fits.open(ours) as a, fits.open(official) as b:
        theirs = {k: v for k, v in b[0].header.items() if k.startswith("S_")}
        mine = {k: v for k, v in a[0].header.items() if k.startswith("S_")}
    assert {k: mine.get(k) for k in theirs} == theirs


def test_rates_unbiased_against_truth(prog: Program, ours: Path) -> None:
    """Sky and stars: recovered rates agree with the simulator's true rates within the noise."""
    with fits.open(ours) as hdul:
        rate, err, dq = hdul["SCI"].data, hdul["ERR"].data, hdul["DQ"].data
    truth = fits.getdata(prog.truth_rate[0]).astype(np.float64)
    good = dq == 0
    pull = ((rate - truth) / err)[good & np.isfinite(err) & (err > 0)]
    assert abs(np.median(pull)) < 0.1
    assert 0.7 < np.std(pull) < 1.5
    stars = good & (truth > 300)
    assert abs(np.median((rate[stars] - truth[stars]) / truth[stars])) < 0.01


def test_jumps_flagged_where_truth_says(prog: Program, ours: Path) -> None:
    from astropy.table import Table

    from jwdask import dqflags

    with fits.open(str(ours).replace("_rate.fits", "_rateints.fits")) as hdul:
        dq = hdul["DQ"].data
    jumps = Table.read(prog.truth_jumps[0])
    assert len(jumps) > 0
    flagged = [(dq[j["integration"], j["y"], j["x"]] & dqflags.JUMP_DET) != 0 for j in jumps]
    assert np.mean(flagged) >= 0.8
