"""ramp_fit kernel (OLS_C): golden single pixels (spec §6.15.11), hand cases, tiling, and
equality with stcal 1.20 called the way jwst 3.0's RampFitStep calls it."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.kernels.ramp_fit import RampFitResult, fit_ramps

DNU = dqflags.DO_NOT_USE
SAT = dqflags.SATURATED
JUMP = dqflags.JUMP_DET
PERS = dqflags.PERSISTENCE
CLOSS = dqflags.CHARGELOSS


def _pixel(values, dq=None, *, rn=10.0, gain=2.0, nframes=1, groupgap=0, tframe=10.0, tgroup=10.0,
           **kwargs) -> RampFitResult:
    """Fit one pixel; ``values``/``dq`` are ``(nints, ngroups)``."""
    sci = np.asarray(values, np.float32)
    sci = sci.reshape(sci.shape + (1, 1)) if sci.ndim == 2 else sci.reshape(1, -1, 1, 1)
    gdq = np.zeros(sci.shape, np.uint8) if dq is None else np.asarray(dq, np.uint8).reshape(sci.shape)
    return fit_ramps(sci, gdq, np.zeros((1, 1), np.uint32), np.full((1, 1), rn, np.float32),
                     np.full((1, 1), gain, np.float32), frame_time=tframe, group_time=tgroup,
                     nframes=nframes, groupgap=groupgap, **kwargs)


def _rate(res: RampFitResult) -> list[float]:
    return [float(res.slope[0, 0]), float(res.var_poisson[0, 0]), float(res.var_rnoise[0, 0]),
            float(res.err[0, 0]), int(res.dq[0, 0])]


def _ints(res: RampFitResult, i: int) -> list[float]:
    return [float(res.slope_ints[i, 0, 0]), float(res.var_poisson_ints[i, 0, 0]),
            float(res.var_rnoise_ints[i, 0, 0]), float(res.err_ints[i, 0, 0]), int(res.dq_ints[i, 0, 0])]


def _close(got, want, rtol=1e-5):
    np.testing.assert_allclose(np.array(got, float), np.array(want, float), rtol=rtol, atol=1e-7)


# ------------------------------------------------------------------ golden values (spec §6.15.11)

def test_golden_a_clean_ramp():
    res = _pixel([0, 100, 200, 300, 400])
    _close(_rate(res), [10, 0.125, 0.05, 0.41833, 0], rtol=2e-5)
    _close(_ints(res, 0), _rate(res))


def test_golden_b_jump_splits_segments():
    res = _pixel([0, 100, 200, 1300, 1400, 1500], [0, 0, 0, JUMP, 0, 0])
    _close(_rate(res), [10, 0.125, 0.125, 0.5, JUMP])
    _close(_ints(res, 0), _rate(res))


def test_golden_c_partial_saturation_two_integrations():
    values = [[0, 50, 100, 150, 200, 250]] * 2
    res = _pixel(values, [[0, 0, 0, SAT, SAT, SAT], [0] * 6])
    _close(_rate(res), [5, 0.0357143, 0.0256410, 0.2477, SAT], rtol=1e-4)
    _close(_ints(res, 0), [5, 0.125, 0.25, 0.61237, SAT], rtol=2e-5)
    _close(_ints(res, 1), [5, 0.05, 0.0285714, 0.28031, 0], rtol=2e-5)


def test_golden_d_one_good_group():
    dq = [0, SAT, SAT]
    d1 = _pixel([500, 1000, 1500], dq)
    assert np.isnan(d1.slope[0, 0]) and np.isnan(d1.slope_ints[0, 0, 0])
    assert _rate(d1)[1:] == [0, 0, 0, DNU | SAT]
    d2 = _pixel([500, 1000, 1500], dq, suppress_one_group=False)
    _close(_rate(d2), [50, 2.5, 1.0, 1.87083, SAT], rtol=2e-5)
    _close(_ints(d2, 0), _rate(d2), rtol=2e-5)


def test_golden_e_single_group():
    res = _pixel([500])
    _close(_rate(res), [50, 2.5, 1.0, 1.87083, 0], rtol=2e-5)


def test_golden_f_nframes_groupgap():
    values = [1000, 6000, 11050, 15900, 21000, 26010, 30980, 36000]
    res = _pixel(values, rn=12.0, gain=1.8, nframes=4, groupgap=1, tframe=10.737, tgroup=53.685)
    _close(_rate(res), [93.134583, 0.13796256, 1.4870217e-4, 0.37163323, 0])
    _close(_ints(res, 0), _rate(res))


# ------------------------------------------------------------------ hand cases

def test_noiseless_constant_slope_is_exact():
    """Any SNR power, any segment split: a straight line gives its slope."""
    t = np.arange(20, dtype=np.float32)
    for rate in (0.5, 3.0, 1234.0):
        res = _pixel(1000 + rate * t * 10.0, rn=5.0)
        assert res.slope[0, 0] == pytest.approx(rate, rel=1e-6)


def test_two_groups_and_all_saturated():
    two = _pixel([100, 300])  # vp = 20/(10*2); vr = 2*RN^2/(2*NF)/tg^2 = 100/100
    _close(_rate(two), [20, 1.0, 1.0, np.sqrt(2.0), 0])
    sat = _pixel([[1, 2, 3], [4, 5, 6]], [[SAT] * 3, [SAT] * 3])
    assert np.isnan(sat.slope[0, 0]) and np.isnan(sat.slope_ints).all()
    assert _rate(sat)[1:] == [0, 0, 0, DNU | SAT]
    assert sat.dq_ints.ravel().tolist() == [DNU | SAT] * 2


def test_bad_gain_and_dnu_pixel():
    for gain in (0.0, -1.0, np.nan):
        res = _pixel([0, 100, 200], gain=gain)
        assert np.isnan(res.slope[0, 0]) and res.err[0, 0] == 0
        assert int(res.dq[0, 0]) == DNU | dqflags.NO_GAIN_VALUE


def test_inputs_unchanged_and_byte_order():
    rng = np.random.default_rng(3)
    sci = rng.normal(100, 5, (2, 4, 3, 5)).astype(">f4")
    gdq = np.zeros(sci.shape, np.uint8)
    gdq[0, 2, 1, 1] = SAT
    args = [sci, gdq, np.zeros((3, 5), ">u4"), np.full((3, 5), 9, ">f4"), np.full((3, 5), 2, ">f4")]
    copies = [a.copy() for a in args]
    res = fit_ramps(*args, frame_time=10.0, group_time=10.0, nframes=1, groupgap=0)
    for a, c in zip(args, copies):
        np.testing.assert_array_equal(a, c)
    native = fit_ramps(*[a.astype(a.dtype.newbyteorder("=")) for a in args], frame_time=10.0,
                       group_time=10.0, nframes=1, groupgap=0)
    for name in RampFitResult._fields:
        np.testing.assert_array_equal(getattr(res, name), getattr(native, name))
        assert getattr(res, name).dtype.isnative


QUIRK_ROWS = [
    # values, groupdq, pixeldq -> rate slope, var_rnoise, dq
    ([0, 100, 200, 300], [JUMP] * 4, 0, 0.0, 0.0, JUMP),  # no segment, not invalid: slope 0, not NaN
    ([0, 100, 200, 300], [dqflags.DROPOUT] * 4, 0, 0.0, 0.0, 0),
    ([0, 100, 200, 300], [0, CLOSS, 0, 0], 0, 10.0, 1.0, 0),  # CHARGELOSS alone: XOR sets DNU
    ([0, 100, 200, 300], [0, CLOSS | DNU, 0, 0], DNU, np.nan, 0.1, DNU),  # var_rnoise recomputed though NaN
    ([5, 100, 200, 300], [0, DNU, 0, DNU], 0, 0.5, 1.0, 0),  # kept length-1 segment: y0 / TGROUP
    ([0, 100, 200, 300], [PERS, PERS, 0, 0], 0, 10.0, 0.1, PERS),
    ([0, 100, 200, 300], [JUMP, 0, 0, 0], 0, 10.0, 0.1, JUMP),
]


def _quirk_inputs():
    n = len(QUIRK_ROWS)
    sci = np.array([r[0] for r in QUIRK_ROWS], np.float32).T.reshape(1, 4, 1, n)
    gdq = np.array([r[1] for r in QUIRK_ROWS], np.uint8).T.reshape(1, 4, 1, n)
    pdq = np.array([[r[2] for r in QUIRK_ROWS]], np.uint32)
    kw = {"frame_time": 10.0, "group_time": 10.0, "nframes": 1, "groupgap": 0}
    return sci, gdq, pdq, np.full((1, n), 10, np.float32), np.full((1, n), 2, np.float32), None, kw


def test_stcal_quirks():
    """Behaviour of stcal 1.20 that the spec leaves implicit (checked against stcal below)."""
    *arrays, _, kw = _quirk_inputs()
    res = fit_ramps(*arrays, **kw)
    _close(res.slope.ravel(), [r[3] for r in QUIRK_ROWS])
    _close(res.var_rnoise.ravel(), [r[4] for r in QUIRK_ROWS])
    assert res.dq.ravel().tolist() == [r[5] for r in QUIRK_ROWS]


@pytest.mark.reference
def test_stcal_quirks_match_stcal():
    pytest.importorskip("stcal")
    pytest.importorskip("jwst")
    cube = _quirk_inputs()
    *arrays, zf, kw = cube
    _assert_same(fit_ramps(*arrays, **kw), _stcal(*cube))


# ------------------------------------------------------------------ random cubes

def _cube(seed, nints, ngroups, ny=9, nx=11, nframes=1, zeroframe=False, chargeloss=False):
    """A random ramp cube with jumps, saturation, NaN, DNU, PERSISTENCE and bad pixels."""
    rng = np.random.default_rng(seed)
    tgroup = 10.737 * nframes
    rate = rng.gamma(1.0, 30.0, (ny, nx)) * rng.choice([1.0, 10.0, 100.0, -0.02], (ny, nx))
    t = np.arange(ngroups) * tgroup
    sci = 1000 + rate * t[:, None, None] + rng.normal(0, 8, (nints, ngroups, ny, nx))
    gdq = np.zeros(sci.shape, np.uint8)
    if ngroups > 1:
        jumps = rng.random(sci.shape) < 0.08
        jumps[:, 0] = False
        sci += np.cumsum(jumps * rng.uniform(200, 3000, sci.shape), axis=1)
        gdq[jumps] |= JUMP
    gdq[np.maximum.accumulate(sci > 20000 + rng.uniform(0, 20000, (ny, nx)), axis=1)] |= SAT
    gdq[rng.random(sci.shape) < 0.04] |= DNU
    gdq[rng.random(sci.shape) < 0.03] |= PERS
    gdq[rng.random(sci.shape) < 0.01] |= dqflags.DROPOUT
    if chargeloss:
        gdq[rng.random(sci.shape) < 0.06] |= CLOSS | DNU
        gdq[rng.random(sci.shape) < 0.01] |= CLOSS
    sci[rng.random(sci.shape) < 0.01] = np.nan
    gdq[:, :, 0, 0] = SAT
    gdq[:, :, 0, 1] = 0
    gdq[0, 1:, 0, 1] = SAT
    pixeldq = np.where(rng.random((ny, nx)) < 0.05, DNU, 0).astype(np.uint32)
    pixeldq[1, :3] = [dqflags.HOT, SAT, dqflags.WARM]
    readnoise = rng.uniform(5, 20, (ny, nx)).astype(np.float32)
    gain = rng.uniform(1.5, 2.5, (ny, nx)).astype(np.float32)
    gain[2, :4] = [0.0, np.nan, -1.0, 1e-5]
    readnoise[3, 0] = 5e4
    zf = None
    if zeroframe:
        zf = (1000 + rate * 0.5 * 10.737 + rng.normal(0, 8, (nints, ny, nx))).astype(np.float32)
        zf[rng.random(zf.shape) < 0.3] = 0.0
    kw = {"frame_time": 10.737, "group_time": tgroup, "nframes": nframes, "groupgap": 0}
    return sci.astype(np.float32), gdq, pixeldq, readnoise, gain, zf, kw


def _stcal(sci, gdq, pixeldq, readnoise, gain, zf, kw, *, suppress_one_group=True, firstgroup=None,
           lastgroup=None):
    """stcal OLS_C, as jwst 3.0's RampFitStep runs it (rate, rateints as RampFitResult)."""
    from jwst.ramp_fitting.ramp_fit_step import set_groupdq
    from stcal.ramp_fitting import ramp_fit
    from stdatamodels.jwst.datamodels import RampModel, dqflags as jdq

    model = RampModel(data=sci.copy(), groupdq=gdq.copy(), pixeldq=pixeldq.copy())
    if zf is not None:
        model.zeroframe = zf.copy()
    model.meta.instrument.name = "NIRCAM"
    model.meta.exposure.frame_time = kw["frame_time"]
    model.meta.exposure.group_time = kw["group_time"]
    model.meta.exposure.nframes = kw["nframes"]
    model.meta.exposure.groupgap = kw["groupgap"]
    model.meta.exposure.drop_frames1 = 0
    if firstgroup is not None or lastgroup is not None:
        set_groupdq(firstgroup, lastgroup, sci.shape[1], model.groupdq, jdq.group)
    image, ints, _ = ramp_fit.ramp_fit(model, False, readnoise.copy(), gain.copy(), "OLS_C", "optimal",
                                       "none", jdq.pixel, suppress_one_group=suppress_one_group)
    return RampFitResult(image["slope"], image["err"], image["dq"], image["var_poisson"], image["var_rnoise"],
                         ints["slope"], ints["err"], ints["dq"], ints["var_poisson"], ints["var_rnoise"])


def _assert_same(got: RampFitResult, want: RampFitResult):
    for name in RampFitResult._fields:
        g, w = getattr(got, name), getattr(want, name)
        assert g.shape == w.shape, name
        if name.startswith("dq"):
            np.testing.assert_array_equal(g, w.astype(np.uint32), err_msg=name)
            continue
        assert g.dtype == np.float32, name
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=name)
        finite = np.isfinite(w)
        atol = 1e-6 * max(float(np.abs(w[finite]).max(initial=0.0)), 1e-3)
        np.testing.assert_allclose(g[finite], w[finite], rtol=1e-5, atol=atol, err_msg=name)


CASES = [
    # seed, nints, ngroups, nframes, zeroframe, chargeloss, suppress
    (1, 1, 10, 1, False, False, True),
    (2, 3, 10, 1, False, False, True),
    (3, 1, 5, 4, False, False, True),
    (4, 3, 5, 4, True, False, False),
    (5, 1, 3, 1, True, False, False),
    (6, 3, 3, 1, False, False, True),
    (7, 1, 2, 1, False, False, True),
    (8, 3, 2, 4, True, False, False),
    (9, 1, 1, 1, True, False, True),
    (10, 3, 1, 4, True, False, True),
    (11, 3, 10, 1, False, True, True),
    (12, 1, 5, 1, True, True, False),
    (13, 3, 10, 4, True, True, True),
]


@pytest.mark.reference
@pytest.mark.parametrize(("seed", "nints", "ngroups", "nframes", "zeroframe", "chargeloss", "suppress"), CASES)
def test_matches_stcal(seed, nints, ngroups, nframes, zeroframe, chargeloss, suppress):
    pytest.importorskip("stcal")
    pytest.importorskip("jwst")
    cube = _cube(seed, nints, ngroups, nframes=nframes, zeroframe=zeroframe, chargeloss=chargeloss)
    *arrays, zf, kw = cube
    got = fit_ramps(*arrays, zeroframe=zf, suppress_one_group=suppress, **kw)
    _assert_same(got, _stcal(*cube, suppress_one_group=suppress))


@pytest.mark.reference
@pytest.mark.parametrize(("firstgroup", "lastgroup"), [(2, None), (None, 6), (1, 7), (5, 5), (-1, 20)])
def test_matches_stcal_group_range(firstgroup, lastgroup):
    pytest.importorskip("stcal")
    pytest.importorskip("jwst")
    cube = _cube(20, 2, 10, chargeloss=True)
    *arrays, zf, kw = cube
    got = fit_ramps(*arrays, zeroframe=zf, firstgroup=firstgroup, lastgroup=lastgroup, **kw)
    _assert_same(got, _stcal(*cube, firstgroup=firstgroup, lastgroup=lastgroup))


def test_tiles_stitch_to_whole_cube():
    sci, gdq, pixeldq, readnoise, gain, zf, kw = _cube(30, 3, 6, ny=13, nx=17, zeroframe=True,
                                                      chargeloss=True)
    whole = fit_ramps(sci, gdq, pixeldq, readnoise, gain, zeroframe=zf, suppress_one_group=False, **kw)
    stitched = {name: np.empty_like(getattr(whole, name)) for name in RampFitResult._fields}
    for ys in (slice(0, 5), slice(5, 6), slice(6, 13)):
        for xs in (slice(0, 7), slice(7, 17)):
            part = fit_ramps(sci[:, :, ys, xs], gdq[:, :, ys, xs], pixeldq[ys, xs], readnoise[ys, xs],
                             gain[ys, xs], zeroframe=zf[:, ys, xs], suppress_one_group=False, **kw)
            for name in RampFitResult._fields:
                stitched[name][..., ys, xs] = getattr(part, name)
    for name in RampFitResult._fields:
        np.testing.assert_array_equal(stitched[name], getattr(whole, name), err_msg=name)
