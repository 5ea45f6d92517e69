"""saturation kernel: hand-made ramps, tiles with halos, and bit-equality with stcal / jwst."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.kernels.saturation import ATOD_LIMIT, flag_saturation, halo_depth

SAT, DNU, AD = dqflags.SATURATED, dqflags.DO_NOT_USE, dqflags.AD_FLOOR


def _inputs(sci: np.ndarray, thresh: float | np.ndarray = 100.0):
    ny, nx = sci.shape[-2:]
    return (sci.astype(np.float32), np.zeros(sci.shape, np.uint8), np.zeros((ny, nx), np.uint32),
            np.broadcast_to(np.float32(thresh), (ny, nx)).astype(np.float32), np.zeros((ny, nx), np.uint32))


def _ramp(values: list[float], ny: int = 5, nx: int = 5) -> np.ndarray:
    """One integration; pixel (2, 2) follows ``values``, all others stay at 10 DN."""
    sci = np.full((1, len(values), ny, nx), 10.0, np.float32)
    sci[0, :, 2, 2] = values
    return sci


def test_forward_pass_propagates_and_grows():
    """A group at threshold and every later group is SATURATED, grown to the 3x3 box."""
    sci = _ramp([10, 50, 100, 20, 150])
    out = flag_saturation(*_inputs(sci), n_pix_grow_sat=1, use_readpatt=False)
    assert out.groupdq[0, :, 2, 2].tolist() == [0, 0, SAT, SAT, SAT]
    expected = np.zeros((5, 5), np.uint8)
    expected[1:4, 1:4] = SAT
    for g in (2, 3, 4):
        np.testing.assert_array_equal(out.groupdq[0, g], expected)
    assert not out.groupdq[0, :2].any()


def test_ad_floor_only_in_its_group_and_not_grown():
    sci = _ramp([5, 0, -3, 12])
    out = flag_saturation(*_inputs(sci), n_pix_grow_sat=2, use_readpatt=False)
    assert out.groupdq[0, :, 2, 2].tolist() == [0, AD | DNU, AD | DNU, 0]
    assert out.groupdq[0, :, 2, 3].tolist() == [0, 0, 0, 0]


def test_nan_and_no_sat_check_thresholds_never_saturate():
    sci = np.full((1, 2, 1, 3), 65535.0, np.float32)
    args = list(_inputs(sci))
    args[3] = np.array([[100.0, np.nan, 100.0]], np.float32)
    args[4] = np.array([[0, 0, dqflags.NO_SAT_CHECK]], np.uint32)
    out = flag_saturation(*args, n_pix_grow_sat=0, use_readpatt=False)
    assert out.groupdq[0, :, 0].tolist() == [[SAT, 0, 0], [SAT, 0, 0]]
    assert out.pixeldq.tolist() == [[0, dqflags.NO_SAT_CHECK, dqflags.NO_SAT_CHECK]]
    assert ATOD_LIMIT == 65535.0


def test_backfill_marks_diluted_group_do_not_use():
    """NFRAMES = 4: group 1 averages frames 5-8 (dilution 6.5 / 8); at 85 DN >= 100 * 0.8125
    it is DO_NOT_USE (not SATURATED) because group 2 is SATURATED; the flag grows too."""
    sci = _ramp([40, 85, 120])
    out = flag_saturation(*_inputs(sci), n_pix_grow_sat=1, nframes=4)
    assert out.groupdq[0, :, 2, 2].tolist() == [0, DNU, SAT]
    assert out.groupdq[0, 1, 1:4, 1:4].tolist() == [[DNU] * 3] * 3
    assert out.groupdq[0, 1, 0].tolist() == [0] * 5
    low = flag_saturation(*_inputs(_ramp([40, 80, 120])), n_pix_grow_sat=1, nframes=4)
    assert low.groupdq[0, 1, 2, 2] == 0


def test_backfill_needs_frame_averaging():
    out = flag_saturation(*_inputs(_ramp([40, 99, 120])), n_pix_grow_sat=0, nframes=1)
    assert out.groupdq[0, :, 2, 2].tolist() == [0, 0, SAT]


def test_group2_test_uses_bias():
    """NFRAMES = 2 (groups average frames 1-2, 3-4, 5-6): S0 = 20 extrapolates to
    20 / 1.5 * 6 = 80 < 100 by the end of group 2; S1 - S0 = 50 > (100 - 20) / 2; group 2 is
    SATURATED and group 1 (70, below 100 * 3.5 / 4 too) is not -> group 1 DO_NOT_USE.
    A bias of 50 makes the extrapolation (20 - 50) * 4 + 50 = -70 (still below); S0 = 30
    extrapolates to 120 and the test does not fire."""
    out = flag_saturation(*_inputs(_ramp([20, 70, 120])), n_pix_grow_sat=0, nframes=2)
    assert out.groupdq[0, :, 2, 2].tolist() == [0, DNU, SAT]
    biased = flag_saturation(*_inputs(_ramp([20, 70, 120])), bias=np.full((5, 5), 50, np.float32),
                             n_pix_grow_sat=0, nframes=2)
    assert biased.groupdq[0, 1, 2, 2] == DNU
    bright = flag_saturation(*_inputs(_ramp([30, 70, 120])), n_pix_grow_sat=0, nframes=2)
    assert bright.groupdq[0, 1, 2, 2] == 0
    off = flag_saturation(*_inputs(_ramp([20, 70, 120])), n_pix_grow_sat=0, nframes=2, use_readpatt=False)
    assert off.groupdq[0, 1, 2, 2] == 0


def test_zeroframe_flags_become_zero():
    sci = _ramp([10, 20])
    zf = np.full((1, 5, 5), 30.0, np.float32)
    zf[0, 2, 2] = 150.0
    zf[0, 0, 4] = -1.0
    out = flag_saturation(*_inputs(sci), zeroframe=zf, n_pix_grow_sat=1, use_readpatt=False)
    expected = np.full((5, 5), 30.0, np.float32)
    expected[1:4, 1:4] = 0.0
    expected[0, 4] = 0.0
    np.testing.assert_array_equal(out.zeroframe[0], expected)
    assert zf[0, 2, 2] == 150.0


def test_inputs_are_not_modified():
    sci, gdq, pdq, thresh, sdq = _inputs(_ramp([10, 120, 130]))
    thresh[0, 0] = np.nan
    copies = [a.copy() for a in (sci, gdq, pdq, thresh, sdq)]
    flag_saturation(sci, gdq, pdq, thresh, sdq, nframes=2)
    for before, after in zip(copies, (sci, gdq, pdq, thresh, sdq), strict=True):
        np.testing.assert_array_equal(before, after)


def _random_case(seed: int, nints: int = 2, ngroups: int = 5, ny: int = 37, nx: int = 41):
    rng = np.random.default_rng(seed)
    thresh = rng.uniform(100, 200, (ny, nx)).astype(np.float32)
    thresh[rng.random((ny, nx)) < 0.03] = np.nan
    sat_dq = np.where(rng.random((ny, nx)) < 0.03, dqflags.NO_SAT_CHECK, 0).astype(np.uint32)
    base = rng.uniform(-15, 80, (nints, 1, ny, nx))
    rate = rng.uniform(0, 60, (nints, 1, ny, nx))
    sci = (base + rate * np.arange(ngroups)[None, :, None, None]).astype(np.float32)
    sci[rng.random(sci.shape) < 0.02] += 150
    gdq = np.where(rng.random(sci.shape) < 0.03, DNU, 0).astype(np.uint8)
    pdq = np.where(rng.random((ny, nx)) < 0.03, dqflags.HOT, 0).astype(np.uint32)
    bias = rng.uniform(-20, 20, (ny, nx)).astype(np.float32)
    zf = (sci[:, 0] + rng.normal(0, 30, (nints, ny, nx))).astype(np.float32)
    return sci, gdq, pdq, thresh, sat_dq, bias, zf


@pytest.mark.parametrize(("n_grow", "nframes", "use_readpatt"), [(1, 4, True), (2, 2, True), (1, 1, False)])
def test_tiles_with_halo_equal_whole_frame(n_grow, nframes, use_readpatt):
    sci, gdq, pdq, thresh, sat_dq, bias, zf = _random_case(7)
    kw = {"n_pix_grow_sat": n_grow, "nframes": nframes, "use_readpatt": use_readpatt}
    whole = flag_saturation(sci, gdq, pdq, thresh, sat_dq, bias=bias, zeroframe=zf, **kw)
    depth = halo_depth(n_grow, nframes=nframes, use_readpatt=use_readpatt)
    ny, nx = sci.shape[-2:]
    for y0, y1 in ((0, 11), (11, 25), (25, ny)):
        for x0, x1 in ((0, 8), (8, 30), (30, nx)):
            top, bottom = min(depth, y0), min(depth, ny - y1)
            left, right = min(depth, x0), min(depth, nx - x1)
            ys, xs = slice(y0 - top, y1 + bottom), slice(x0 - left, x1 + right)
            tile = flag_saturation(sci[..., ys, xs], gdq[..., ys, xs], pdq[ys, xs], thresh[ys, xs],
                                   sat_dq[ys, xs], bias=bias[ys, xs], zeroframe=zf[..., ys, xs],
                                   halo=(top, bottom, left, right), **kw)
            inner = (..., slice(top, top + y1 - y0), slice(left, left + x1 - x0))
            np.testing.assert_array_equal(tile.groupdq[inner], whole.groupdq[..., y0:y1, x0:x1])
            np.testing.assert_array_equal(tile.pixeldq[inner], whole.pixeldq[y0:y1, x0:x1])
            np.testing.assert_array_equal(tile.zeroframe[inner], whole.zeroframe[..., y0:y1, x0:x1])


def test_backfill_reach_is_twice_the_growth():
    """p = (2, 2) saturates in group 2; its grown flag makes q = (2, 3) (85 DN in group 1, above
    the diluted threshold) a back-fill candidate, whose grown DO_NOT_USE reaches (2, 4): two
    pixels from p. A tile starting at column 4 needs a halo of 2 = 2 * n_pix_grow_sat."""
    sci = np.full((1, 3, 5, 8), 10.0, np.float32)
    sci[0, :, 2, 2] = [40, 40, 120]
    sci[0, :, 2, 3] = [40, 85, 50]
    args = _inputs(sci)
    whole = flag_saturation(*args, n_pix_grow_sat=1, nframes=4)
    assert whole.groupdq[0, 1, 2, 4] == DNU
    assert halo_depth(1, nframes=4) == 2

    def tile(first_col, halo):
        return flag_saturation(*(a[..., first_col:] for a in args), n_pix_grow_sat=1, nframes=4, halo=halo)

    assert tile(2, (0, 0, 2, 0)).groupdq[0, 1, 2, 2] == DNU
    assert tile(3, (0, 0, 0, 0)).groupdq[0, 1, 2, 1] == 0
    with pytest.raises(ValueError, match="halo of 2"):
        tile(3, (0, 0, 1, 0))


def test_thread_safe():
    case = _random_case(11, nints=1, ngroups=4, ny=64, nx=64)
    expected = flag_saturation(*case[:5], bias=case[5], zeroframe=case[6], nframes=3)
    results = [None] * 6
    barrier = threading.Barrier(len(results))

    def work(k):
        barrier.wait()
        results[k] = flag_saturation(*case[:5], bias=case[5], zeroframe=case[6], nframes=3)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r.groupdq, expected.groupdq)


@pytest.mark.reference
@pytest.mark.parametrize("seed", range(8))
def test_equal_to_stcal(seed):
    stcal_sat = pytest.importorskip("stcal.saturation.saturation")
    rng = np.random.default_rng(100 + seed)
    ngroups = int(rng.integers(1, 7))
    nframes = int(rng.integers(1, 5))
    n_grow = int(seed % 3)
    sci, gdq, pdq, thresh, sat_dq, bias, zf = _random_case(seed, ngroups=ngroups)
    use_bias, use_zf, use_readpatt = seed % 2 == 0, seed % 3 != 0, seed % 4 != 3
    pattern = ([[x + 1 + g * nframes for x in range(nframes)] for g in range(ngroups)]
               if use_readpatt else None)
    ref_gdq, ref_pdq, ref_zf = stcal_sat.flag_saturated_pixels(
        sci.copy(), gdq.copy(), pdq.copy(), thresh.copy(), sat_dq.copy(), ATOD_LIMIT, dqflags.PIXEL,
        n_pix_grow_sat=n_grow, zframe=zf.copy() if use_zf else None, read_pattern=pattern,
        bias=bias.copy() if use_bias else None)
    out = flag_saturation(sci, gdq, pdq, thresh, sat_dq, bias=bias if use_bias else None,
                          zeroframe=zf if use_zf else None, n_pix_grow_sat=n_grow, nframes=nframes,
                          use_readpatt=use_readpatt)
    np.testing.assert_array_equal(out.groupdq, ref_gdq)
    assert out.groupdq.dtype == np.uint8
    np.testing.assert_array_equal(out.pixeldq, ref_pdq)
    if use_zf:
        np.testing.assert_array_equal(out.zeroframe, ref_zf)


@pytest.mark.reference
def test_passes_are_exercised_and_equal_jwst():
    """jwst's flag_saturation on stdatamodels models (read pattern built by jwst) gives the
    same flags, and the random case really uses the back-fill and group-2 passes."""
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    jwst_sat = pytest.importorskip("jwst.saturation.saturation")
    sci, gdq, pdq, thresh, sat_dq, bias, zf = _random_case(3, ngroups=6)
    sci[0, :, 5, 5] = [20, 95, 150, 160, 170, 180]
    nframes = 2
    meta = {"xstart": 1, "ystart": 1, "xsize": sci.shape[-1], "ysize": sci.shape[-2]}
    model = datamodels.RampModel(data=sci.copy(), groupdq=gdq.copy(), pixeldq=pdq.copy(), zeroframe=zf.copy())
    model.meta.exposure.ngroups, model.meta.exposure.nframes = sci.shape[1], nframes
    model.meta.exposure.zero_frame = True
    ref = datamodels.SaturationModel(data=thresh.copy(), dq=sat_dq.copy())
    bias_model = datamodels.SuperBiasModel(data=bias.copy())
    for m in (model, ref, bias_model):
        m.meta.instrument.name = "NIRCAM"
        for key, value in meta.items():
            setattr(m.meta.subarray, key, value)
    result = jwst_sat.flag_saturation(model, ref, 1, True, bias_model=bias_model)
    out = flag_saturation(sci, gdq, pdq, thresh, sat_dq, bias=bias, zeroframe=zf, n_pix_grow_sat=1,
                          nframes=nframes)
    np.testing.assert_array_equal(out.groupdq, result.groupdq)
    np.testing.assert_array_equal(out.pixeldq, result.pixeldq)
    np.testing.assert_array_equal(out.zeroframe, result.zeroframe)
    forward = flag_saturation(sci, gdq, pdq, thresh, sat_dq, zeroframe=zf, n_pix_grow_sat=1,
                              use_readpatt=False)
    added = out.groupdq & ~forward.groupdq
    assert (added[:, :-1] & DNU).any()
    assert (added[:, 1] & DNU).any()
