"""ramp_fit algorithm LIKELY: the kernel against stcal 1.20 on randomized cubes, hand cases, tiling,
step-level selection, and the Detector1 pipeline on the ``tiny`` preset (against jwst 3.0 too)."""

from __future__ import annotations

import logging
from pathlib import Path

import dask
import numpy as np
import pytest
from astropy.io import fits

from jwdask import dqflags
from jwdask.kernels.ramp_fit import RampFitResult, fit_ramps
from jwdask.kernels.ramp_fit_likely import Covariance, fit_ramps_likely, read_pattern

DNU = dqflags.DO_NOT_USE
SAT = dqflags.SATURATED
JUMP = dqflags.JUMP_DET
TFRAME = 10.737


def _cube(seed: int, nints: int, ngroups: int, *, ny: int = 9, nx: int = 11, nframes: int = 1, groupgap: int = 0,
          zeroframe: bool = False):
    """Random ramps with flagged and unflagged jumps, saturation, NaN, DO_NOT_USE and PERSISTENCE."""
    rng = np.random.default_rng(seed)
    tgroup = TFRAME * (nframes + groupgap)
    rate = rng.gamma(1.0, 30.0, (ny, nx)) * rng.choice([1.0, 10.0, 100.0, -0.02], (ny, nx))
    t = np.arange(ngroups) * tgroup
    sci = 1000 + rate * t[:, None, None] + rng.normal(0, 8, (nints, ngroups, ny, nx))
    gdq = np.zeros(sci.shape, np.uint8)
    jumps = rng.random(sci.shape) < 0.06
    jumps[:, 0] = False
    sci += np.cumsum(jumps * rng.uniform(200, 3000, sci.shape), axis=1)
    gdq[jumps & (rng.random(sci.shape) < 0.5)] |= JUMP  # the other half is left to LIKELY to find
    gdq[np.maximum.accumulate(sci > 20000 + rng.uniform(0, 20000, (ny, nx)), axis=1)] |= SAT
    gdq[rng.random(sci.shape) < 0.04] |= DNU
    gdq[rng.random(sci.shape) < 0.02] |= dqflags.PERSISTENCE
    sci[rng.random(sci.shape) < 0.005] = np.nan
    gdq[:, :, 0, 0] = SAT
    gdq[0, 2:, 0, 1] = SAT
    pixeldq = np.where(rng.random((ny, nx)) < 0.05, DNU, 0).astype(np.uint32)
    pixeldq[1, :2] = [dqflags.HOT, dqflags.WARM]
    readnoise = rng.uniform(5, 20, (ny, nx)).astype(np.float32)
    gain = rng.uniform(1.5, 2.5, (ny, nx)).astype(np.float32)
    dark = rng.uniform(0, 0.5, (ny, nx)).astype(np.float32)
    zf = None
    if zeroframe:
        zf = (1000 + rate * 0.5 * TFRAME + rng.normal(0, 8, (nints, ny, nx))).astype(np.float32)
    kw = {"frame_time": TFRAME, "group_time": tgroup, "nframes": nframes, "groupgap": groupgap}
    return sci.astype(np.float32), gdq, pixeldq, readnoise, gain, zf, dark, kw


def _ours(sci, gdq, pixeldq, readnoise, gain, zf, dark, kw, **extra) -> RampFitResult:
    return fit_ramps_likely(sci, gdq, pixeldq, readnoise, gain, frame_time=kw["frame_time"], nframes=kw["nframes"],
                            groupgap=kw["groupgap"], zeroframe=zf, average_dark_current=dark, **extra)


def _stcal(sci, gdq, pixeldq, readnoise, gain, zf, dark, kw, *, firstgroup=None, lastgroup=None,
           read_times=None) -> RampFitResult:
    """stcal LIKELY, as jwst 3.0's RampFitStep runs it."""
    from jwst.ramp_fitting.ramp_fit_step import set_groupdq
    from stcal.ramp_fitting import ramp_fit
    from stdatamodels.jwst.datamodels import RampModel
    from stdatamodels.jwst.datamodels import dqflags as jdq

    model = RampModel(data=sci.copy(), groupdq=gdq.copy(), pixeldq=pixeldq.copy())
    if zf is not None:
        model.zeroframe = zf.copy()
    model.average_dark_current = dark.copy()
    model.meta.instrument.name = "NIRCAM"
    model.meta.exposure.frame_time = kw["frame_time"]
    model.meta.exposure.group_time = kw["group_time"]
    model.meta.exposure.nframes = kw["nframes"]
    model.meta.exposure.groupgap = kw["groupgap"]
    model.meta.exposure.drop_frames1 = 0
    if read_times is not None:
        model.meta.exposure.read_times = read_times
    if firstgroup is not None or lastgroup is not None:
        set_groupdq(firstgroup, lastgroup, sci.shape[1], model.groupdq, jdq.group)
    image, ints, _ = ramp_fit.ramp_fit(model, False, readnoise.copy(), gain.copy(), "LIKELY", "optimal", "none",
                                       jdq.pixel, suppress_one_group=True)
    return RampFitResult(image["slope"], image["err"], image["dq"], image["var_poisson"], image["var_rnoise"],
                         ints["slope"], ints["err"], ints["dq"], ints["var_poisson"], ints["var_rnoise"])


def _assert_same(got: RampFitResult, want: RampFitResult) -> None:
    for name in RampFitResult._fields:
        g, w = getattr(got, name), np.asarray(getattr(want, name))
        assert g.shape == w.shape, name
        if name.startswith("dq"):
            np.testing.assert_array_equal(g, w.astype(np.uint32), err_msg=name)
            continue
        assert g.dtype == np.float32, name
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=name)
        np.testing.assert_array_equal(np.isinf(g), np.isinf(w), err_msg=name)
        finite = np.isfinite(w)
        np.testing.assert_allclose(g[finite], w[finite], rtol=1e-5, atol=0, err_msg=name)


# ------------------------------------------------------------------ against stcal

CASES = [
    # seed, nints, ngroups, nframes, groupgap, zeroframe
    (1, 1, 10, 1, 0, False),
    (2, 3, 10, 1, 0, False),
    (3, 1, 4, 1, 0, False),
    (4, 2, 5, 4, 1, False),
    (5, 3, 6, 4, 1, True),   # ZEROFRAME becomes a resultant of its own
    (6, 2, 12, 2, 0, True),
    (7, 1, 25, 1, 0, False),  # > 10 differences: the covariance is renormalised twice
    (8, 3, 13, 8, 1, False),  # multi-read groups: two-difference omissions
    (9, 2, 8, 5, 0, True),
    (10, 2, 40, 1, 0, False),  # long ramps: the median sorts by heap sort
]


@pytest.mark.reference
@pytest.mark.parametrize(("seed", "nints", "ngroups", "nframes", "groupgap", "zeroframe"), CASES)
def test_matches_stcal(seed, nints, ngroups, nframes, groupgap, zeroframe):
    pytest.importorskip("stcal")
    pytest.importorskip("jwst")
    cube = _cube(seed, nints, ngroups, nframes=nframes, groupgap=groupgap, zeroframe=zeroframe)
    _assert_same(_ours(*cube), _stcal(*cube))


@pytest.mark.reference
@pytest.mark.parametrize(("firstgroup", "lastgroup"), [(2, None), (None, 7), (1, 8), (5, 5), (-1, 20)])
def test_matches_stcal_group_range(firstgroup, lastgroup):
    pytest.importorskip("stcal")
    pytest.importorskip("jwst")
    cube = _cube(20, 2, 11, ny=8, nx=10)
    _assert_same(_ours(*cube, firstgroup=firstgroup, lastgroup=lastgroup),
                 _stcal(*cube, firstgroup=firstgroup, lastgroup=lastgroup))


@pytest.mark.reference
def test_matches_stcal_uneven_read_times():
    pytest.importorskip("stcal")
    pytest.importorskip("jwst")
    cube = _cube(21, 2, 7, ny=8, nx=10, zeroframe=True)
    times = [[10.0, 20.0, 30.0], [50.0], [60.0, 70.0], [100.0], [130.0, 140.0, 150.0, 160.0], [200.0], [210.0]]
    _assert_same(_ours(*cube, read_times=times), _stcal(*cube, read_times=times))


@pytest.mark.reference
def test_read_pattern_and_covariance_match_stcal():
    pytest.importorskip("stcal")
    from stcal.ramp_fitting.likely_algo_classes import Covar

    pattern = read_pattern(7, 4, 1, TFRAME)
    ours, theirs = Covariance.from_read_times(pattern), Covar(pattern)
    for name, other in (("delta_t", "delta_t"), ("alpha_rn", "alpha_readnoise"), ("beta_rn", "beta_readnoise"),
                        ("alpha_ph", "alpha_phnoise"), ("beta_ph", "beta_phnoise"), ("nreads", "Nreads")):
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, other), err_msg=name)


# ------------------------------------------------------------------ hand cases

def _pixel(values, dq=None, *, rn=10.0, gain=2.0, nframes=1, **kwargs) -> RampFitResult:
    sci = np.asarray(values, np.float32).reshape(1, -1, 1, 1)
    gdq = np.zeros(sci.shape, np.uint8) if dq is None else np.asarray(dq, np.uint8).reshape(sci.shape)
    return fit_ramps_likely(sci, gdq, np.zeros((1, 1), np.uint32), np.full((1, 1), rn, np.float32),
                            np.full((1, 1), gain, np.float32), frame_time=10.0, nframes=nframes, groupgap=0,
                            **kwargs)


def test_noiseless_ramp_gives_its_slope():
    t = np.arange(12, dtype=np.float64)
    for rate in (0.5, 3.0, 1234.0):
        res = _pixel(1000 + rate * t * 10.0)
        assert res.slope[0, 0] == pytest.approx(rate, rel=1e-6)
        assert res.dq[0, 0] == 0
        assert res.err[0, 0] ** 2 == pytest.approx(res.var_poisson[0, 0] + res.var_rnoise[0, 0], rel=1e-4)


def test_unflagged_jump_is_found_and_flagged():
    values = 100 + 20.0 * np.arange(10) * 10.0 + np.where(np.arange(10) >= 6, 5000.0, 0.0)
    res = _pixel(values)
    assert res.slope[0, 0] == pytest.approx(20.0, rel=1e-6)
    assert res.dq[0, 0] == JUMP


def test_flagged_groups_and_all_saturated():
    values = 100 + 20.0 * np.arange(8) * 10.0
    res = _pixel(values, [0, 0, 0, 0, 0, SAT, SAT, SAT])
    assert res.slope[0, 0] == pytest.approx(20.0, rel=1e-6)
    assert res.dq[0, 0] == SAT
    sat = _pixel(values, [SAT] * 8)
    assert np.isnan([sat.slope[0, 0], sat.err[0, 0], sat.var_poisson[0, 0], sat.var_rnoise[0, 0]]).all()
    assert sat.dq[0, 0] == SAT | DNU


def test_too_few_groups_and_bad_read_times():
    with pytest.raises(ValueError, match="at least 4 groups"):
        _pixel([1, 2, 3])
    with pytest.raises(ValueError, match="read_times lists 2 groups"):
        _pixel([1, 2, 3, 4], read_times=[[1.0], [2.0]])
    with pytest.raises(ValueError, match="must increase"):
        _pixel([1, 2, 3, 4], read_times=[[1.0], [2.0], [2.0], [3.0]])


def test_explicit_read_times_equal_the_pattern():
    values = 100 + 7.0 * np.arange(6) * 20.0
    pattern = [list(t) for t in read_pattern(6, 2, 0, 10.0)]
    a = _pixel(values, nframes=2)
    b = _pixel(values, nframes=2, read_times=pattern)
    for name in RampFitResult._fields:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_tiles_stitch_to_whole_cube():
    """Tiles holding whole rows give the whole-cube numbers exactly; narrower tiles told the
    row width do on this cube too."""
    sci, gdq, pixeldq, readnoise, gain, zf, dark, kw = _cube(30, 3, 10, ny=13, nx=17, zeroframe=False)
    whole = _ours(sci, gdq, pixeldq, readnoise, gain, zf, dark, kw)
    stitched = {name: np.empty_like(getattr(whole, name)) for name in RampFitResult._fields}
    for ys in (slice(0, 5), slice(5, 6), slice(6, 13)):
        for xs in (slice(0, 7), slice(7, 17)):
            part = _ours(sci[:, :, ys, xs], gdq[:, :, ys, xs], pixeldq[ys, xs], readnoise[ys, xs], gain[ys, xs],
                         None, dark[ys, xs], kw, row_width=17)
            for name in RampFitResult._fields:
                stitched[name][..., ys, xs] = getattr(part, name)
    for name in RampFitResult._fields:
        np.testing.assert_array_equal(stitched[name], getattr(whole, name), err_msg=name)


# ------------------------------------------------------------------ the step and the pipeline

def _ramp_dataset(ngroups: int):
    import xarray as xr

    sci, gdq, pixeldq, readnoise, gain, _, _, kw = _cube(40, 2, ngroups, ny=6, nx=8)
    dims = ("integration", "group", "y", "x")
    ds = xr.Dataset({"sci": (dims, sci), "groupdq": (dims, gdq), "pixeldq": (("y", "x"), pixeldq)}).chunk(
        {"y": 3, "x": 4})
    ds.attrs["meta"] = {"instrument": {"name": "NIRCAM"},
                        "exposure": {"frame_time": kw["frame_time"], "group_time": kw["group_time"], "nframes": 1,
                                     "groupgap": 0, "ngroups": ngroups}}
    refs = {"gain": xr.Dataset({"sci": (("y", "x"), gain)}), "readnoise": xr.Dataset({"sci": (("y", "x"), readnoise)})}
    return ds, refs, (sci, gdq, pixeldq, readnoise, gain, kw)


class _Refs:
    """In-memory GAIN and READNOISE arrays with the provider methods jwdask.steps.reference uses."""

    def __init__(self, arrays):
        self.arrays = arrays

    def path(self, reftype, meta):
        return f"{reftype}.fits"

    def open(self, reftype, meta, tile=None):
        return self.arrays[reftype]

    def record(self, reftype, meta):
        return f"{reftype}.fits"


def test_step_selects_likely_and_falls_back_below_four_groups(caplog):
    from jwdask.detector1.ramp_fit import ramp_fit
    from jwdask.errors import ParameterError

    ds, arrays, (sci, gdq, pixeldq, readnoise, gain, kw) = _ramp_dataset(6)
    out = ramp_fit(ds, _Refs(arrays), algorithm="likely").compute()
    want = fit_ramps_likely(sci, gdq, pixeldq, readnoise, gain, frame_time=kw["frame_time"], nframes=1, groupgap=0,
                            row_width=sci.shape[3])
    np.testing.assert_array_equal(out.sci.values, want.slope)
    np.testing.assert_array_equal(out.dq_ints.values, want.dq_ints)

    ds3, arrays3, (sci3, gdq3, pixeldq3, rn3, gain3, kw3) = _ramp_dataset(3)
    with caplog.at_level(logging.INFO, logger="jwdask.detector1.ramp_fit"):
        out3 = ramp_fit(ds3, _Refs(arrays3), algorithm="LIKELY").compute()
    assert "using OLS_C" in caplog.text
    ols = fit_ramps(sci3, gdq3, pixeldq3, rn3, gain3, frame_time=kw3["frame_time"], group_time=kw3["group_time"],
                    nframes=1, groupgap=0)
    np.testing.assert_array_equal(out3.sci.values, ols.slope)
    with pytest.raises(ParameterError, match="unknown algorithm"):
        ramp_fit(ds, _Refs(arrays), algorithm="GLS")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from jwdask.simulate import simulate_program

    return simulate_program("tiny", tmp_path_factory.mktemp("sim"), seed=5)


@pytest.fixture(scope="module")
def likely_rate(tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jwdask.commands import run_pipeline
    from jwdask.pipeline import Pipeline
    from jwdask.refs import RefProvider

    out = tmp_path_factory.mktemp("likely")
    pipeline = Pipeline.load("detector1").with_params(ramp_fit={"algorithm": "LIKELY"})
    with dask.config.set(scheduler="threads"):
        urls = run_pipeline(pipeline, [str(tiny.uncal[0])], str(out), RefProvider(refs_dir=str(tiny.refs_dir)),
                            tile=80)
    return Path(next(u for u in urls if u.endswith("_rate.fits")))


def test_pipeline_likely_on_tiny(tiny, likely_rate: Path) -> None:
    with fits.open(likely_rate) as hdul:
        rate, err, dq = hdul["SCI"].data, hdul["ERR"].data, hdul["DQ"].data
        assert hdul[0].header["S_RAMP"] == "COMPLETE"
    with fits.open(str(likely_rate).replace("_rate.fits", "_rateints.fits")) as hdul:
        assert hdul["SCI"].data.shape == (2, *rate.shape)
    truth = fits.getdata(tiny.truth_rate[0]).astype(np.float64)
    good = (dq == 0) & np.isfinite(err) & (err > 0)
    pull = ((rate - truth) / err)[good]
    assert good.mean() > 0.8
    assert abs(np.median(pull)) < 0.1
    assert 0.7 < np.std(pull) < 1.5


@pytest.mark.reference
def test_pipeline_likely_equals_jwst(tiny, likely_rate: Path, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("jwst")
    from tests.official import run_official_detector1

    official = run_official_detector1(tiny.uncal[0], tiny.reference_files, tmp_path, monkeypatch,
                                      ramp_fit={"algorithm": "LIKELY"})
    for suffix in ("_rate.fits", "_rateints.fits"):
        with fits.open(str(likely_rate).replace("_rate.fits", suffix)) as a, \
                fits.open(str(official).replace("_rate.fits", suffix)) as b:
            np.testing.assert_array_equal(a["DQ"].data, b["DQ"].data, err_msg=suffix)
            for name in ("SCI", "ERR", "VAR_POISSON", "VAR_RNOISE"):
                x, y = a[name].data, b[name].data
                np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=f"{suffix} {name}")
                ok = np.isfinite(x)
                np.testing.assert_allclose(x[ok], y[ok], rtol=1e-5, atol=1e-7, err_msg=f"{suffix} {name}")


def test_step_read_times_select_likely_and_are_checked(caplog):
    from jwdask.detector1.ramp_fit import ramp_fit
    from jwdask.errors import InputError

    ds, arrays, (sci, gdq, pixeldq, readnoise, gain, kw) = _ramp_dataset(6)
    times = [[2.0, 3.0], [9.0], [15.0, 16.0], [30.0], [41.0], [44.0, 45.0, 46.0]]  # unevenly sampled
    ds.attrs["meta"]["exposure"]["read_times"] = times
    with caplog.at_level(logging.WARNING, logger="jwdask.detector1.ramp_fit"):
        out = ramp_fit(ds, _Refs(arrays), algorithm="OLS_C").compute()
    assert "using LIKELY" in caplog.text
    want = fit_ramps_likely(sci, gdq, pixeldq, readnoise, gain, frame_time=kw["frame_time"], nframes=1, groupgap=0,
                            read_times=times)
    np.testing.assert_array_equal(out.sci_ints.values, want.slope_ints)
    ds.attrs["meta"]["exposure"]["read_times"] = times[:4]
    with pytest.raises(InputError, match="read_times"):
        ramp_fit(ds, _Refs(arrays), algorithm="LIKELY")
