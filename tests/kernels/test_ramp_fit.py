"""ramp_fit kernel (OLS_C, spec §6.15): golden pixels, hand-derived cases, tiling, the batched and
per-pixel compute paths, and equality with stcal 1.20 called the way jwst 3.0's RampFitStep calls it."""

from __future__ import annotations

import threading
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jwdask import dqflags
from jwdask.kernels import ramp_fit
from jwdask.kernels.ramp_fit import (
    GroupFlagSummary,
    RampFitResult,
    combine_group_flag_summaries,
    exposure_group_range,
    fit_ramps,
    group_dnu_bounds,
    group_flag_summary,
)

DNU = dqflags.DO_NOT_USE
SAT = dqflags.SATURATED
JUMP = dqflags.JUMP_DET
PERS = dqflags.PERSISTENCE
CL = dqflags.CHARGELOSS
NO_GAIN = dqflags.NO_GAIN_VALUE
TFRAME = 10.737


def fit_pixel(values, dq=None, *, rn=10.0, gain=2.0, nframes=1, groupgap=0, tframe=10.0, tgroup=10.0,
              **kwargs) -> RampFitResult:
    """Fit one pixel; ``values``/``dq`` are one ramp or ``(nints, ngroups)``."""
    sci = np.atleast_2d(np.asarray(values, np.float32))[..., None, None]
    gdq = np.zeros(sci.shape, np.uint8) if dq is None else np.atleast_2d(np.asarray(dq, np.uint8))[..., None, None]
    return fit_ramps(sci, gdq, np.zeros((1, 1), np.uint32), np.full((1, 1), rn, np.float32),
                     np.full((1, 1), gain, np.float32), frame_time=tframe, group_time=tgroup,
                     nframes=nframes, groupgap=groupgap, **kwargs)


def pixel_values(res: RampFitResult, i: int | None = None) -> list[float]:
    """``[slope, var_poisson, var_rnoise, err, dq]`` of the rate (or of integration ``i``)."""
    if i is None:
        fields = (res.slope, res.var_poisson, res.var_rnoise, res.err, res.dq)
        return [float(a[0, 0]) for a in fields]
    fields = (res.slope_ints, res.var_poisson_ints, res.var_rnoise_ints, res.err_ints, res.dq_ints)
    return [float(a[i, 0, 0]) for a in fields]


def assert_printed(got: list[float], want: list[str]) -> None:
    """``got`` equals the printed values ``want`` to their last digit (and float32 rounding)."""
    for g, w in zip(got, want, strict=True):
        if w == "nan":
            assert np.isnan(g)
            continue
        tol = float(Decimal(1).scaleb(Decimal(w).as_tuple().exponent)) / 2 + abs(float(w)) * 2.0**-23
        assert abs(g - float(w)) <= tol, (got, want)


def make_cube(seed: int, nints: int, ngroups: int, *, ny: int = 12, nx: int = 11, nframes: int = 1):
    """A random tile with jumps, forward-propagating saturation, DO_NOT_USE groups and pixels, NaN,
    PERSISTENCE, CHARGELOSS (with and without DO_NOT_USE), rare other flags, bad gain and read
    noise, and a ZEROFRAME with unusable (0) values. Returns the arrays and the timing keywords."""
    rng = np.random.default_rng(seed)
    tgroup = TFRAME * nframes
    rate = rng.choice([0.0, 0.5, 5.0, 50.0, 500.0, 3000.0], (ny, nx)) * rng.random((ny, nx))
    t = (np.arange(ngroups) + 1.0) * tgroup
    sci = 1000.0 + rate * t[:, None, None] + rng.normal(0.0, 8.0, (nints, ngroups, ny, nx))
    gdq = np.zeros(sci.shape, np.uint8)
    jumps = rng.random(sci.shape) < 0.08
    jumps[:, 0] = False
    sci += np.cumsum(jumps * rng.uniform(200.0, 5000.0, sci.shape), axis=1)
    gdq[jumps] |= JUMP
    full_well = rng.choice([np.inf, 30000.0, 60000.0], (ny, nx), p=[0.6, 0.3, 0.1])
    gdq[np.maximum.accumulate(sci > full_well, axis=1)] |= SAT
    gdq[rng.random(sci.shape) < 0.06] |= DNU
    gdq[rng.random(sci.shape) < 0.04] |= PERS
    loss_from = rng.integers(0, ngroups + 8, (nints, 1, ny, nx))
    lossy = (np.arange(ngroups)[None, :, None, None] >= loss_from) & (rng.random((nints, 1, ny, nx)) < 0.15)
    gdq[lossy] |= CL | DNU
    gdq[rng.random(sci.shape) < 0.01] |= CL
    gdq[rng.random(sci.shape) < 0.01] |= dqflags.DROPOUT
    gdq[rng.random(sci.shape) < 0.01] |= dqflags.AD_FLOOR | DNU
    sci[rng.random(sci.shape) < 0.01] = np.nan
    pixeldq = np.zeros((ny, nx), np.uint32)
    pixeldq[rng.random((ny, nx)) < 0.05] |= DNU
    pixeldq[rng.random((ny, nx)) < 0.05] |= dqflags.HOT
    pixeldq[rng.random((ny, nx)) < 0.02] |= SAT
    gain = rng.uniform(1.5, 2.5, (ny, nx)).astype(np.float32)
    for value, fraction in ((0.0, 0.03), (-1.0, 0.02), (np.nan, 0.02), (1e-4, 0.02)):
        gain[rng.random((ny, nx)) < fraction] = value
    readnoise = rng.uniform(5.0, 20.0, (ny, nx)).astype(np.float32)
    readnoise[rng.random((ny, nx)) < 0.02] = 0.0
    readnoise[rng.random((ny, nx)) < 0.02] = 5000.0
    zeroframe = np.nan_to_num(0.5 * sci[:, 0] + 100.0).astype(np.float32)
    zeroframe[rng.random(zeroframe.shape) < 0.3] = 0.0
    timing = {"frame_time": TFRAME, "group_time": tgroup, "nframes": nframes, "groupgap": 0}
    return (sci.astype(np.float32), gdq, pixeldq, readnoise, gain), zeroframe, timing


def assert_results_equal(got: RampFitResult, want: RampFitResult) -> None:
    """Bit-for-bit equality, NaN included."""
    for name in RampFitResult._fields:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


# ------------------------------------------------------------------ golden values (spec §6.15.11)

RAMP_C = [0, 50, 100, 150, 200, 250]
GOLDEN = {
    "A": ([[0, 100, 200, 300, 400]], None, {}, ["10", "0.125", "0.05", "0.41833", "0"], None),
    "B": ([[0, 100, 200, 1300, 1400, 1500]], [[0, 0, 0, JUMP, 0, 0]], {},
          ["10", "0.125", "0.125", "0.5", "4"], None),
    "C": ([RAMP_C, RAMP_C], [[0, 0, 0, SAT, SAT, SAT], [0] * 6], {},
          ["5", "0.0357143", "0.0256410", "0.2477", "2"],
          [["5", "0.125", "0.25", "0.61237", "2"], ["5", "0.05", "0.0285714", "0.28031", "0"]]),
    "D1": ([[500, 1000, 1500]], [[0, SAT, SAT]], {"suppress_one_group": True},
           ["nan", "0", "0", "0", "3"], None),
    "D2": ([[500, 1000, 1500]], [[0, SAT, SAT]], {"suppress_one_group": False},
           ["50", "2.5", "1.0", "1.87083", "2"], None),
    "E": ([[500]], None, {}, ["50", "2.5", "1.0", "1.87083", "0"], None),
    "F": ([[1000, 6000, 11050, 15900, 21000, 26010, 30980, 36000]], None,
          {"rn": 12.0, "gain": 1.8, "nframes": 4, "groupgap": 1, "tframe": 10.737, "tgroup": 53.685},
          ["93.134583", "0.13796256", "1.4870217e-4", "0.37163323", "0"], None),
}


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden_pixels(case):
    values, dq, kwargs, rate, ints = GOLDEN[case]
    res = fit_pixel(values, dq, **kwargs)
    assert_printed(pixel_values(res), rate)
    for i in range(len(values)):
        assert_printed(pixel_values(res, i), rate if ints is None else ints[i])


# ------------------------------------------------------------------ hand-derived cases


@pytest.mark.parametrize("ngroups", [3, 4, 5, 10, 20, 50])
def test_noiseless_line_recovers_slope(ngroups):
    """A straight ramp gives its slope whatever the weighting power, also across a jump."""
    steps = np.array([0.0, 1.0, 7.0, 40.0, 333.0, 2500.0], np.float32)
    ramps = 1000.0 + steps[None, :] * np.arange(ngroups, dtype=np.float32)[:, None]
    sci = np.stack([ramps, ramps + 500.0 * (np.arange(ngroups) >= ngroups // 2)[:, None]])[:, :, None, :]
    gdq = np.zeros(sci.shape, np.uint8)
    gdq[1, ngroups // 2] = JUMP
    ones = np.ones((1, steps.size), np.float32)
    res = fit_ramps(sci.astype(np.float32), gdq, np.zeros((1, steps.size), np.uint32), 12 * ones, 2 * ones,
                    frame_time=10.0, group_time=10.0, nframes=1, groupgap=0)
    np.testing.assert_allclose(res.slope[0], steps / 10.0, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.slope_ints[:, 0], np.stack([steps, steps]) / 10.0, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("nframes", [1, 4])
def test_one_group_ramp(nframes):
    """NGROUPS = 1: slope S / t1 with t1 = (NF + 1) TFRAME / 2, vp = rate / (t1 g), vr = RN^2 / (NF t1^2)."""
    res = fit_pixel([800.0], rn=9.0, gain=2.0, nframes=nframes, tframe=10.0, tgroup=10.0 * nframes)
    t1 = (nframes + 1) * 10.0 / 2
    rate, vp, vr = 800.0 / t1, 800.0 / t1 / (t1 * 2.0), 81.0 / (nframes * t1**2)
    np.testing.assert_allclose(pixel_values(res), [rate, vp, vr, np.sqrt(vp + vr), 0], rtol=1e-6)


@pytest.mark.parametrize("nframes", [1, 4])
def test_two_group_ramp(nframes):
    """NGROUPS = 2: slope (S1 - S0) / tg, vp = rate / (tg g), vr = RN^2 / (NF tg^2)."""
    tg = 10.0 * nframes
    res = fit_pixel([100.0, 300.0], rn=9.0, gain=2.0, nframes=nframes, tgroup=tg)
    rate, vp, vr = 200.0 / tg, 200.0 / tg / (tg * 2.0), 81.0 / (nframes * tg**2)
    np.testing.assert_allclose(pixel_values(res), [rate, vp, vr, np.sqrt(vp + vr), 0], rtol=1e-6)
    np.testing.assert_allclose(pixel_values(res, 0), [rate, vp, vr, np.sqrt(vp + vr), 0], rtol=1e-6)


def test_all_saturated_is_nan_with_flags():
    res = fit_pixel([[1, 2, 3], [4, 5, 6]], [[SAT] * 3, [SAT] * 3])
    assert pixel_values(res)[1:] == [0, 0, 0, DNU | SAT]
    assert np.isnan(res.slope[0, 0])
    for i in range(2):
        assert pixel_values(res, i)[1:] == [0, 0, 0, DNU | SAT]
        assert np.isnan(res.slope_ints[i, 0, 0])


def test_partial_saturation_is_flagged_but_fitted():
    res = fit_pixel([0, 100, 200, 300, 400], [0, 0, 0, 0, SAT])
    assert res.slope[0, 0] == pytest.approx(10.0)
    assert int(res.dq[0, 0]) == SAT and int(res.dq_ints[0, 0, 0]) == SAT


@pytest.mark.parametrize("gain", [0.0, -1.0, np.nan])
def test_bad_gain_is_no_gain_value(gain):
    res = fit_pixel([0, 100, 200], gain=gain)
    assert np.isnan(res.slope[0, 0])
    assert pixel_values(res)[1:] == [0, 0, 0, DNU | NO_GAIN]


def test_pixel_flags_are_carried():
    sci = np.arange(5, dtype=np.float32).reshape(1, 5, 1, 1) * np.ones((1, 1, 1, 2), np.float32) * 100
    ones = np.ones((1, 2), np.float32)
    pixeldq = np.array([[dqflags.HOT, DNU | dqflags.DEAD]], np.uint32)
    res = fit_ramps(sci, np.zeros(sci.shape, np.uint8), pixeldq, 10 * ones, 2 * ones, frame_time=10.0,
                    group_time=10.0, nframes=1, groupgap=0)
    assert res.slope[0, 0] == pytest.approx(10.0) and np.isnan(res.slope[0, 1])
    assert res.dq.tolist() == [[dqflags.HOT, DNU | dqflags.DEAD]]
    assert res.dq_ints[0].tolist() == [[dqflags.HOT, DNU | dqflags.DEAD]]


def test_huge_variance_is_clamped_to_zero():
    """A read-noise variance >= 1e6 (DN/s)^2 becomes 0, and so does the slope weighted by it
    (spec §8.11); the integration ERR (from vp + vr > 1e6) is 0 too, the rate ERR is sqrt(vp)."""
    res = fit_pixel([0, 100, 200, 300, 400], rn=1e5, gain=2.0)
    assert pixel_values(res) == [0.0, 0.125, 0.0, pytest.approx(np.sqrt(0.125)), 0]
    assert pixel_values(res, 0) == [0.0, 0.125, 0.0, 0.0, 0]


def test_one_group_segment_quirk():
    """Two isolated good groups keep only the first, fitted as level / TGROUP (spec §6.15.3)."""
    res = fit_pixel([300, 400, 500, 600], [0, DNU, 0, DNU])
    assert res.slope[0, 0] == pytest.approx(30.0)


def test_firstgroup_lastgroup_cut_the_ramp():
    values = [0, 100, 200, 900, 1000, 1100, 1200, 5000]
    res = fit_pixel(values, firstgroup=3, lastgroup=6)
    assert res.slope[0, 0] == pytest.approx(10.0)
    assert group_dnu_bounds(-2, 20, 8) == (0, 20)


def test_exposure_group_range():
    gdq = np.zeros((2, 5, 3, 4), np.uint8)
    gdq[:, 0] |= DNU
    gdq[:, 1, 0, 0] |= JUMP
    gdq[:, 4] |= DNU
    tiles = [group_flag_summary(gdq[:, :, ys, xs]) for ys in (slice(0, 1), slice(1, 3))
             for xs in (slice(0, 3), slice(3, 4))]
    summary = combine_group_flag_summaries(tiles)
    for combined, whole in zip(summary, group_flag_summary(gdq), strict=True):
        np.testing.assert_array_equal(combined, whole)
    assert exposure_group_range(summary, miri=True) == (1, 4)
    assert exposure_group_range(summary, miri=False) == (0, 5)
    gdq[:, 1:3] |= DNU
    assert exposure_group_range(group_flag_summary(gdq), miri=True) is None
    sat = np.full((1, 3, 2, 2), SAT, np.uint8)
    assert exposure_group_range(group_flag_summary(sat), miri=False) is None


def test_summary_includes_one_group_suppression():
    """A group left alone by suppression counts as DO_NOT_USE everywhere."""
    gdq = np.zeros((1, 3, 1, 2), np.uint8)
    gdq[0, 1:, :, :] = SAT
    assert group_flag_summary(gdq, suppress_one_group=True).all_dnu.tolist() == [True, True, True]
    assert group_flag_summary(gdq, suppress_one_group=False).all_dnu.tolist() == [False, False, False]
    assert group_flag_summary(gdq[:, :1]).all_dnu.tolist() == [False]
    with pytest.raises(ValueError, match="at least one"):
        combine_group_flag_summaries([])
    assert isinstance(combine_group_flag_summaries([group_flag_summary(gdq)]), GroupFlagSummary)


# ------------------------------------------------------------------ inputs, tiles, paths, threads


def test_inputs_unchanged_read_only_byte_order_and_strides():
    arrays, zeroframe, timing = make_cube(3, 2, 6)
    expected = fit_ramps(*arrays, zeroframe=zeroframe, suppress_one_group=False, **timing)
    copies = [a.copy() for a in arrays]
    frozen = [a.copy() for a in arrays]
    for a in frozen:
        a.flags.writeable = False
    assert_results_equal(fit_ramps(*frozen, zeroframe=zeroframe, suppress_one_group=False, **timing), expected)
    swapped = [a.astype(a.dtype.newbyteorder(">")) for a in arrays]
    got = fit_ramps(*swapped, zeroframe=zeroframe.astype(">f4"), suppress_one_group=False, **timing)
    assert_results_equal(got, expected)
    assert all(getattr(got, name).dtype.isnative for name in RampFitResult._fields)
    padded = []
    for a in arrays:
        wide = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)
        wide[..., ::2] = a
        padded.append(wide[..., ::2])
    assert not padded[0].flags.c_contiguous
    assert_results_equal(fit_ramps(*padded, zeroframe=zeroframe, suppress_one_group=False, **timing), expected)
    for a, c in zip(arrays, copies, strict=True):
        np.testing.assert_array_equal(a, c)


def test_uneven_tiles_stitch_to_the_whole():
    arrays, zeroframe, timing = make_cube(30, 3, 6, ny=13, nx=17)
    sci, gdq, pixeldq, readnoise, gain = arrays
    whole = fit_ramps(*arrays, zeroframe=zeroframe, suppress_one_group=False, **timing)
    stitched = [np.empty_like(a) for a in whole]
    for ys in (slice(0, 5), slice(5, 6), slice(6, 13)):
        for xs in (slice(0, 1), slice(1, 9), slice(9, 17)):
            part = fit_ramps(sci[..., ys, xs], gdq[..., ys, xs], pixeldq[ys, xs], readnoise[ys, xs], gain[ys, xs],
                             zeroframe=zeroframe[:, ys, xs], suppress_one_group=False, **timing)
            for out, value in zip(stitched, part, strict=True):
                out[..., ys, xs] = value
    assert_results_equal(RampFitResult(*stitched), whole)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31), nints=st.integers(1, 3), ngroups=st.sampled_from([3, 4, 7, 10, 40, 41]),
       suppress=st.booleans(), ysplit=st.integers(1, 7), xsplit=st.integers(1, 140))
def test_batched_and_per_pixel_paths_agree(seed, nints, ngroups, suppress, ysplit, xsplit):
    """Clean pixels go through the vectorized path; forcing the per-pixel path changes no bit,
    and neither does cutting the tile (runs of 128 pixels along x included)."""
    arrays, zeroframe, timing = make_cube(seed, nints, ngroups, ny=8, nx=150)
    batched = fit_ramps(*arrays, zeroframe=zeroframe, suppress_one_group=suppress, **timing)
    ramp_fit._BATCHED = False
    try:
        per_pixel = fit_ramps(*arrays, zeroframe=zeroframe, suppress_one_group=suppress, **timing)
    finally:
        ramp_fit._BATCHED = True
    assert_results_equal(batched, per_pixel)
    part = fit_ramps(*(a[..., ysplit:, xsplit:] for a in arrays), zeroframe=zeroframe[..., ysplit:, xsplit:],
                     suppress_one_group=suppress, **timing)
    assert_results_equal(part, RampFitResult(*(a[..., ysplit:, xsplit:] for a in batched)))


def test_thread_safe():
    arrays, zeroframe, timing = make_cube(7, 2, 10, ny=40, nx=60)
    serial = fit_ramps(*arrays, zeroframe=zeroframe, **timing)
    barrier = threading.Barrier(4)
    results: list[RampFitResult] = []

    def work() -> None:
        barrier.wait()
        results.append(fit_ramps(*arrays, zeroframe=zeroframe, **timing))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for res in results:
        assert_results_equal(res, serial)


@pytest.mark.parametrize(("change", "error"), [
    ({"sci": np.zeros((1, 3, 2, 2))}, TypeError),
    ({"groupdq": np.zeros((1, 3, 2, 2), np.uint16)}, TypeError),
    ({"pixeldq": np.zeros((2, 3), np.uint32)}, ValueError),
    ({"sci": np.zeros((3, 2, 2), np.float32)}, ValueError),
    ({"zeroframe": np.zeros((2, 2), np.float32)}, ValueError),
    ({"nframes": 0}, ValueError),
    ({"groupgap": -1}, ValueError),
    ({"group_time": 0.0}, ValueError),
    ({"group_range": (2, 2)}, ValueError),
    ({"group_range": (0, 4)}, ValueError),
])
def test_bad_arguments(change, error):
    kwargs = {"sci": np.zeros((1, 3, 2, 2), np.float32), "groupdq": np.zeros((1, 3, 2, 2), np.uint8),
              "pixeldq": np.zeros((2, 2), np.uint32), "readnoise": np.ones((2, 2), np.float32),
              "gain": np.ones((2, 2), np.float32), "frame_time": 1.0, "group_time": 1.0, "nframes": 1,
              "groupgap": 0}
    kwargs.update(change)
    with pytest.raises(error):
        fit_ramps(**kwargs)


# ------------------------------------------------------------------ against stcal


def stcal_fit(arrays, zeroframe, timing, *, suppress_one_group=True, firstgroup=None, lastgroup=None,
              instrument="NIRCAM", dark=None) -> RampFitResult | None:
    """stcal OLS_C as jwst 3.0's RampFitStep runs it (None when it makes no product)."""
    ramp_fit_step = pytest.importorskip("jwst.ramp_fitting.ramp_fit_step")
    stcal_ramp_fit = pytest.importorskip("stcal.ramp_fitting.ramp_fit")
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")

    sci, gdq, pixeldq, readnoise, gain = arrays
    model = datamodels.RampModel(data=sci.copy(), groupdq=gdq.copy(), pixeldq=pixeldq.copy())
    model.meta.instrument.name = instrument
    model.meta.exposure.frame_time = timing["frame_time"]
    model.meta.exposure.group_time = timing["group_time"]
    model.meta.exposure.nframes = timing["nframes"]
    model.meta.exposure.groupgap = timing["groupgap"]
    model.meta.exposure.drop_frames1 = 0
    if zeroframe is not None:
        model.zeroframe = zeroframe.copy()
    if dark is not None:
        model.average_dark_current = dark.copy()
    if firstgroup is not None or lastgroup is not None:
        ramp_fit_step.set_groupdq(firstgroup, lastgroup, sci.shape[1], model.groupdq, datamodels.dqflags.group)
    image, integ, _ = stcal_ramp_fit.ramp_fit(model, False, readnoise.copy(), gain.copy(), "OLS_C", "optimal", "1",
                                              datamodels.dqflags.pixel, suppress_one_group=suppress_one_group)
    if image is None:
        return None
    return RampFitResult(image["slope"], image["err"], image["dq"], image["var_poisson"], image["var_rnoise"],
                         integ["slope"], integ["err"], integ["dq"], integ["var_poisson"], integ["var_rnoise"])


def assert_matches_stcal(got: RampFitResult, want: RampFitResult) -> None:
    """DQ and NaN positions identical; values within 1e-5 relative (spec §8.1)."""
    for name in RampFitResult._fields:
        g, w = getattr(got, name), getattr(want, name)
        assert g.shape == w.shape and g.dtype == w.dtype, name
        if name.startswith("dq"):
            np.testing.assert_array_equal(g, w, err_msg=name)
            continue
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=name)
        finite = np.isfinite(w)
        atol = 1e-6 * float(np.abs(w[finite]).max(initial=0.0))
        np.testing.assert_allclose(g[finite], w[finite], rtol=1e-5, atol=atol, err_msg=name)


def fit_like_stcal(arrays, zeroframe, timing, *, miri=False, **kwargs) -> RampFitResult | None:
    """jwdask's fit with the exposure-level decisions taken from uneven tiles' summaries."""
    gdq = arrays[1]
    options = {k: kwargs[k] for k in ("suppress_one_group", "firstgroup", "lastgroup") if k in kwargs}
    ny = gdq.shape[2]
    tiles = [group_flag_summary(gdq[..., ys, :], **options) for ys in (slice(0, ny // 3), slice(ny // 3, ny))]
    group_range = exposure_group_range(combine_group_flag_summaries(tiles), miri=miri)
    if group_range is None:
        return None
    return fit_ramps(*arrays, zeroframe=zeroframe, group_range=group_range, **kwargs, **timing)


@pytest.mark.reference
@pytest.mark.parametrize("suppress", [True, False])
@pytest.mark.parametrize("nframes", [1, 4])
@pytest.mark.parametrize("ngroups", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("nints", [1, 3])
def test_random_cubes_match_stcal(nints, ngroups, nframes, suppress):
    seed = 1000 * nints + 10 * ngroups + nframes + 5 * suppress
    arrays, zeroframe, timing = make_cube(seed, nints, ngroups, nframes=nframes)
    want = stcal_fit(arrays, zeroframe, timing, suppress_one_group=suppress)
    got = fit_like_stcal(arrays, zeroframe, timing, suppress_one_group=suppress)
    assert_matches_stcal(got, want)


@pytest.mark.reference
@pytest.mark.parametrize("ngroups", [30, 60])
def test_long_ramps_match_stcal(ngroups):
    """Long ramps: the batched path up to 40 groups, heap-sorted medians beyond 24 differences."""
    arrays, zeroframe, timing = make_cube(ngroups, 2, ngroups, ny=6, nx=140)
    want = stcal_fit(arrays, zeroframe, timing)
    assert_matches_stcal(fit_like_stcal(arrays, zeroframe, timing), want)


@pytest.mark.reference
@pytest.mark.parametrize(("firstgroup", "lastgroup"), [(2, None), (None, 6), (1, 7), (5, 5), (-1, 20), (9, 12)])
def test_firstgroup_lastgroup_match_stcal(firstgroup, lastgroup):
    arrays, zeroframe, timing = make_cube(40, 2, 10)
    want = stcal_fit(arrays, zeroframe, timing, firstgroup=firstgroup, lastgroup=lastgroup)
    got = fit_like_stcal(arrays, zeroframe, timing, firstgroup=firstgroup, lastgroup=lastgroup)
    assert_matches_stcal(got, want)


@pytest.mark.reference
@pytest.mark.parametrize("seed", [50, 51, 52])
def test_miri_group_trimming_matches_stcal(seed):
    arrays, zeroframe, timing = make_cube(seed, 2, 8)
    gdq = arrays[1]
    gdq[:, :2] |= DNU
    gdq[:, 2][np.random.default_rng(seed).random(gdq[:, 2].shape) < 0.3] |= JUMP
    gdq[:, -1] |= DNU
    want = stcal_fit(arrays, None, timing, instrument="MIRI")
    got = fit_like_stcal(arrays, None, timing, miri=True)
    assert_matches_stcal(got, want)


@pytest.mark.reference
def test_average_dark_current_matches_stcal():
    arrays, zeroframe, timing = make_cube(60, 2, 6)
    dark = np.random.default_rng(60).uniform(0.0, 0.5, arrays[2].shape).astype(np.float32)
    want = stcal_fit(arrays, zeroframe, timing, suppress_one_group=False, dark=dark)
    got = fit_like_stcal(arrays, zeroframe, timing, suppress_one_group=False, average_dark_current=dark)
    assert_matches_stcal(got, want)


@pytest.mark.reference
@pytest.mark.parametrize(("instrument", "ngroups", "flag", "groups"), [
    ("NIRCAM", 4, SAT, slice(None)),
    ("NIRCAM", 1, SAT, slice(None)),
    ("MIRI", 4, DNU, slice(0, 3)),
    ("MIRI", 2, DNU, slice(1, 2)),
])
def test_no_product_cases_match_stcal(instrument, ngroups, flag, groups):
    arrays, _, timing = make_cube(70, 2, ngroups)
    arrays[1][:, groups] |= flag
    assert stcal_fit(arrays, None, timing, instrument=instrument) is None
    assert fit_like_stcal(arrays, None, timing, miri=instrument == "MIRI") is None


ODD_PIXELS = [
    # (values, group flags, zeroframe), one pixel per column of a 3-integration, 4-group tile
    ([10, 20, 30, 40], [JUMP, JUMP, JUMP, JUMP], 0.0),
    ([10, 20, 30, 40], [0, DNU, 0, DNU], 0.0),
    ([10, np.nan, 30, 40], [0, 0, 0, 0], 0.0),
    ([10, 20, 30, 40], [CL | DNU] * 4, 0.0),
    ([10, 20, 30, 40], [CL, CL | DNU, 0, 0], 0.0),
    ([10, 20, 30, 40], [SAT] * 4, 7.0),
    ([10, 20, 30, 40], [0, SAT, SAT, SAT], 7.0),
    ([10, 20, 30, 40], [PERS] * 4, 7.0),
    ([10, 20, 30, 40], [JUMP | PERS, 0, PERS, JUMP], 0.0),
    ([10, 20, 30, 40], [DNU, JUMP, 0, 0], 0.0),
    ([np.nan] * 4, [0, 0, 0, 0], np.nan),
    ([-50, -20, -10, 0], [0, 0, 0, 0], 0.0),
]


@pytest.mark.reference
@pytest.mark.parametrize("suppress", [True, False])
def test_odd_pixels_match_stcal(suppress):
    """Jump-only ramps, one-group segments, NaN data, CHARGELOSS, ZEROFRAME substitution, ..."""
    n = len(ODD_PIXELS)
    sci = np.empty((3, 4, 1, n), np.float32)
    gdq = np.empty((3, 4, 1, n), np.uint8)
    zeroframe = np.empty((3, 1, n), np.float32)
    for x, (values, flags, zero) in enumerate(ODD_PIXELS):
        sci[:, :, 0, x] = values
        gdq[:, :, 0, x] = flags
        zeroframe[:, 0, x] = zero
    gdq[1, :, 0, ::2] = 0
    ones = np.ones((1, n), np.float32)
    arrays = (sci, gdq, np.zeros((1, n), np.uint32), 10 * ones, 2 * ones)
    timing = {"frame_time": 10.0, "group_time": 10.0, "nframes": 1, "groupgap": 0}
    want = stcal_fit(arrays, zeroframe, timing, suppress_one_group=suppress)
    got = fit_like_stcal(arrays, zeroframe, timing, suppress_one_group=suppress)
    assert_matches_stcal(got, want)
