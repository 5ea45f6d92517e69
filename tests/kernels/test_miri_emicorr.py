"""MIRI emicorr, joint algorithm: the fit recovers an injected waveform, the step skips like
jwst, and the corrected ramps equal jwst 3.0's EmiCorrStep on the same RampModel."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.detector1.emicorr import emicorr
from jwdask.errors import InputError, ParameterError
from jwdask.kernels.miri_emicorr import EmiSums, accumulate, fit_waveform, subtract_waveform, timing, waveform
from jwdask.refs import RefProvider
from tests.kernels.miri_support import exposure, header, no_compute, ramp_model, run_jwst, write_emicorr

ROWCLOCKS, FRAMECLOCKS = 28, 8512
CASES = {"SUB64": {"rowclocks": ROWCLOCKS, "frameclocks": FRAMECLOCKS,
                   "freqs": {"FAST": ["Hz390", "Hz218a"], "SLOW": {"MIRIMAGE": ["Hz390"]}}}}


def _wave(n: int, harmonics: tuple[float, ...] = (1.0, 0.3)) -> np.ndarray:
    p = (np.arange(n) + 0.5) / n
    return sum(a * np.sin(2 * np.pi * (k + 1) * p + k) for k, a in enumerate(harmonics)).astype(np.float32)


FREQS = {"Hz390": (390.625, _wave(256)), "Hz218a": (218.52055, _wave(457, (1.0, -0.2, 0.1)))}


def _emi_ramps(nints: int = 2, ngroups: int = 6, ny: int = 64, nx: int = 72, *, readpatt: str = "FAST",
               amplitudes=(4.0, 1.5), offsets=(0.3, 0.71), seed: int = 0, with_truth: bool = False):
    """Linear ramps plus the reference waveforms at each sample's read time."""
    rng = np.random.default_rng(seed)
    nsamples = 9 if "SLOW" in readpatt else 1
    extra = FRAMECLOCKS if readpatt.endswith("R1") else 0
    frametime = ny * ROWCLOCKS + (1024.0 - ny) * 7
    i, g, j, c = np.meshgrid(np.arange(nints), np.arange(ngroups), np.arange(ny), np.arange(nx), indexing="ij")
    ticks = j * ROWCLOCKS + (c // 4) * nsamples + g * frametime + i * (ngroups * frametime + extra)
    rate = rng.uniform(5, 50, (ny, nx))
    sci = 1000 + rate * g + rng.normal(0, 0.5, ticks.shape)
    truth = sci.copy()
    for (hz, wave), amp, off in zip(FREQS.values(), amplitudes, offsets, strict=True):
        spline, _ = waveform(wave)
        sci += amp * spline((ticks / ((1.0 / hz) / 1e-5) + off) % 1)
    sci[:, :, 5, 7] += 3000.0 * g[:, :, 5, 7]                  # a bright pixel (excluded from the fit)
    gdq = np.zeros(sci.shape, np.uint8)
    pdq = np.zeros((ny, nx), np.uint32)
    pdq[10, 10] = dqflags.HOT
    if with_truth:
        return sci.astype(np.float32), gdq, pdq, truth
    return sci.astype(np.float32), gdq, pdq


def test_fit_recovers_injected_waveform():
    hz, wave = FREQS["Hz390"]
    sci, _, pdq, truth = _emi_ramps(amplitudes=(4.0, 0.0), with_truth=True)
    ny, nx = sci.shape[2:]
    geo = timing(hz, ny=ny, ngroups=sci.shape[1], rowclocks=ROWCLOCKS, frameclocks=0)
    rows, cols = np.indices((ny, nx))
    sums = accumulate(sci, pdq, rows, cols, scatter_median=np.median(np.std(sci, axis=1)), nphases=wave.size,
                      nsamples=1, rowclocks=ROWCLOCKS, period=geo.period)
    amps, phases = fit_waveform(sums, wave, dphase=geo.dphase, dphase_frame=geo.dphase_frame)
    np.testing.assert_allclose(amps, 4.0, rtol=0.02)
    assert abs((phases[0] - 0.3 + 0.5) % 1 - 0.5) < 0.01
    clean = subtract_waveform(sci, rows, cols, refwave=wave, amplitudes=amps, phases=phases, nsamples=1,
                              rowclocks=ROWCLOCKS, period=geo.period, dphase=geo.dphase).sci
    good = pdq == 0
    good[5, 7] = False
    assert np.abs(sci - truth)[..., good].max() > 3.5
    assert np.abs(clean - truth)[..., good].max() < 0.3


def test_split_sums_add_up():
    hz, wave = FREQS["Hz390"]
    sci, _, pdq = _emi_ramps()
    rows, cols = np.indices(sci.shape[2:])
    kw = dict(scatter_median=np.float32(1.0), nphases=wave.size, nsamples=1, rowclocks=ROWCLOCKS, period=256.0)
    whole = accumulate(sci, pdq, rows, cols, **kw)
    top = accumulate(sci[..., :30, :], pdq[:30], rows[:30], cols[:30], **kw)
    bottom = accumulate(sci[..., 30:, :], pdq[30:], rows[30:], cols[30:], **kw)
    np.testing.assert_allclose(whole.y, top.y + bottom.y, rtol=1e-12)
    np.testing.assert_array_equal(whole.n, top.n + bottom.n)
    with pytest.raises(ValueError, match="phase bins"):
        fit_waveform(EmiSums(whole.y[:, :10], whole.n[:, :10]), wave, dphase=0.1, dphase_frame=0.2)


@pytest.mark.reference
@pytest.mark.parametrize(("readpatt", "separately"), [("FAST", False), ("FASTR1", True), ("SLOW", False)])
def test_equal_to_jwst(tmp_path, readpatt, separately):
    pytest.importorskip("jwst")
    from jwst.emicorr import EmiCorrStep

    sci, gdq, pdq = _emi_ramps(readpatt=readpatt)
    keys = header(sci, subarray="SUB64", xstart=1, ystart=779, READPATT=readpatt,
                  NSAMPLES=9 if "SLOW" in readpatt else 1)
    path = write_emicorr(tmp_path / "emicorr.asdf", FREQS, CASES)
    with no_compute():
        ours = emicorr(exposure(sci, gdq, pdq, keys), RefProvider(overrides={"emicorr": str(path)}),
                       fit_ints_separately=separately)
    theirs = run_jwst(EmiCorrStep, ramp_model(sci, gdq, pdq, keys), tmp_path, skip=False,
                      override_emicorr=str(path), fit_ints_separately=separately)
    assert ours.attrs["meta"]["cal_step"]["emicorr"] == theirs.meta.cal_step.emicorr == "COMPLETE"
    np.testing.assert_allclose(ours.sci.values, theirs.data, rtol=0, atol=1e-3)
    assert np.abs(theirs.data - sci).max() > 1.0


@pytest.mark.reference
def test_skips_like_jwst(tmp_path):
    pytest.importorskip("jwst")
    from jwst.emicorr import EmiCorrStep

    path = write_emicorr(tmp_path / "emicorr.asdf", FREQS, CASES)
    refs = RefProvider(overrides={"emicorr": str(path)})
    for ngroups, extra in ((2, {}), (5, {"READPATT": "FASTGRPAVG"}), (5, {"SUBARRAY": "SUB128"}),
                           (5, {"READPATT": "SLOW", "DETECTOR": "MIRIFULONG"})):
        sci, gdq, pdq = _emi_ramps(ngroups=ngroups)
        keys = header(sci, **extra)
        ours = emicorr(exposure(sci, gdq, pdq, keys), refs)
        theirs = run_jwst(EmiCorrStep, ramp_model(sci, gdq, pdq, keys), tmp_path, skip=False,
                          override_emicorr=str(path))
        assert ours.attrs["meta"]["cal_step"]["emicorr"] == theirs.meta.cal_step.emicorr == "SKIPPED", extra
        np.testing.assert_array_equal(ours.sci.values, theirs.data)


def test_bad_inputs():
    sci, gdq, pdq = _emi_ramps(ngroups=4)
    ds = exposure(sci, gdq, pdq, header(sci))
    nircam = exposure(sci, gdq, pdq, header(sci, INSTRUME="NIRCAM", DETECTOR="NRCB1"))
    assert emicorr(nircam, None).attrs["meta"]["cal_step"]["emicorr"] == "SKIPPED"
    assert emicorr(ds, RefProvider(overrides={"emicorr": "N/A"})).attrs["meta"]["cal_step"]["emicorr"] == "SKIPPED"
    with pytest.raises(ParameterError, match="algorithm"):
        emicorr(ds, None, algorithm="fast")
    with pytest.raises(ParameterError, match="nbins"):
        emicorr(ds, None, nbins=0)
    assert emicorr(ds, None, onthefly_corr_freq=[]).attrs["meta"]["cal_step"]["emicorr"] == "SKIPPED"
    odd = exposure(sci[..., :70], gdq[..., :70], pdq[:, :70], header(sci[..., :70]))
    pytest.importorskip("stdatamodels")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = write_emicorr(Path(tmp) / "e.asdf", FREQS, CASES)
        with pytest.raises(InputError, match="divisible by 4"):
            emicorr(odd, RefProvider(overrides={"emicorr": str(path)}))


@pytest.mark.reference
@pytest.mark.parametrize("params", [{}, {"scale_reference": False, "nints_to_phase": 2, "nbins": 100},
                                    {"onthefly_corr_freq": [390.625, 218.52055]},
                                    {"onthefly_corr_freq": [390.625], "use_n_cycles": None}])
def test_sequential_equal_to_jwst(tmp_path, params):
    pytest.importorskip("jwst")
    from jwst.emicorr import EmiCorrStep

    sci, gdq, pdq = _emi_ramps(nints=3, ngroups=10, readpatt="FASTR1")
    keys = header(sci, subarray="SUB64", xstart=1, ystart=779, READPATT="FASTR1")
    path = write_emicorr(tmp_path / "emicorr.asdf", FREQS, CASES)
    with no_compute():
        ours = emicorr(exposure(sci, gdq, pdq, keys), RefProvider(overrides={"emicorr": str(path)}),
                       algorithm="sequential", **params)
    theirs = run_jwst(EmiCorrStep, ramp_model(sci, gdq, pdq, keys), tmp_path, skip=False,
                      override_emicorr=str(path), algorithm="sequential", **params)
    assert ours.attrs["meta"]["cal_step"]["emicorr"] == theirs.meta.cal_step.emicorr == "COMPLETE"
    np.testing.assert_allclose(ours.sci.values, theirs.data, rtol=0, atol=1e-3)
    assert np.abs(theirs.data - sci).max() > 1.0


@pytest.mark.reference
def test_sequential_full_frame_equal_to_jwst(tmp_path):
    """Full frame: the last column block is read 2**32 + 3 ticks late [quirk]."""
    pytest.importorskip("jwst")
    from jwst.emicorr import EmiCorrStep

    rng = np.random.default_rng(9)
    ny, nx = 1024, 1032
    sci = (1000 + rng.normal(0, 1, (1, 4, ny, nx)) + 10.0 * np.arange(4)[:, None, None]).astype(np.float32)
    sci += (3 * np.sin(2 * np.pi * np.arange(nx // 4) * 0.1)).repeat(4)[None, None, None, :].astype(np.float32)
    gdq, pdq = np.zeros(sci.shape, np.uint8), np.zeros((ny, nx), np.uint32)
    keys = header(sci, subarray="FULL", xstart=1, ystart=1)
    ours = emicorr(exposure(sci, gdq, pdq, keys, tile=(512, 344)), None, onthefly_corr_freq=[390.625])
    theirs = run_jwst(EmiCorrStep, ramp_model(sci, gdq, pdq, keys), tmp_path, skip=False,
                      onthefly_corr_freq=[390.625])
    np.testing.assert_allclose(ours.sci.values, theirs.data, rtol=0, atol=1e-3)
