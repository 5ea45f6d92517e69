"""jump kernel: hand-made ramps, tiles with a halo, threads, and equality with jwst 3.0 / stcal."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.kernels.jump import HALO_DEPTH, detect_jumps, sigclip_flagged_planes

DNU, SAT, JUMP = dqflags.DO_NOT_USE, dqflags.SATURATED, dqflags.JUMP_DET
PERS, NGV = dqflags.PERSISTENCE, dqflags.NO_GAIN_VALUE
TIMING = {"nframes": 1, "frame_time": 10.0, "group_time": 10.0}


def _ramps(nints: int, ngroups: int, ny: int = 5, nx: int = 5, slope: float = 10.0) -> np.ndarray:
    """Noise-free ramps [DN]: every difference equals ``slope``."""
    ramp = np.arange(ngroups, dtype=np.float32) * np.float32(slope)
    return np.ascontiguousarray(np.broadcast_to(ramp[None, :, None, None], (nints, ngroups, ny, nx)))


def _run(sci: np.ndarray, groupdq: np.ndarray | None = None, *, rn: float = 5.0, gain: float = 1.0,
         **kwargs):
    ny, nx = sci.shape[-2:]
    gdq = np.zeros(sci.shape, np.uint8) if groupdq is None else groupdq
    return detect_jumps(sci, gdq, np.zeros((ny, nx), np.uint32), np.full((ny, nx), rn, np.float32),
                        np.full((ny, nx), gain, np.float32), **{**TIMING, **kwargs})


def _cube(seed: int, nints: int, ngroups: int, ny: int, nx: int, nframes: int = 1, *,
          p_jump: float = 0.02, quantize: bool = False):
    """Noisy ramps with jumps, saturation (propagating forward), DO_NOT_USE groups and pixels,
    PERSISTENCE, earlier JUMP_DET flags, NaNs, bad gains and zero read noise."""
    rng = np.random.default_rng(seed)
    gain = rng.uniform(1.5, 2.5, (ny, nx)).astype(np.float32)
    rn = rng.uniform(5.0, 15.0, (ny, nx)).astype(np.float32)
    rate = rng.exponential(50.0, (ny, nx))
    shape = (nints, ngroups, ny, nx)
    sci = np.cumsum(rng.poisson(np.broadcast_to(rate * gain, shape)) / gain, axis=1)
    sci += rng.normal(0.0, 1.0, shape) * rn / np.sqrt(2 * nframes) + 1000.0
    amp = rng.choice([15.0, 40.0, 100.0, 400.0, 3000.0, 1e5], size=shape) * rng.choice([1, 1, 1, -1], size=shape)
    sci += np.cumsum(np.where(rng.random(shape) < p_jump, amp, 0.0), axis=1)
    sci = sci.astype(np.float32)
    if quantize:
        sci = np.round(sci / 4).astype(np.float32)
        gain = np.round(gain).astype(np.float32)
        rn = np.round(rn).astype(np.float32)
    gdq = np.zeros(shape, np.uint8)
    gdq[np.logical_or.accumulate(rng.random(shape) < 0.05 / ngroups, axis=1)] |= SAT
    gdq[rng.random(shape) < 0.02] |= DNU
    gdq[rng.random(shape) < 0.01] |= PERS
    gdq[rng.random(shape) < 0.005] |= JUMP
    gdq[:, :, rng.random((ny, nx)) < 0.01] |= DNU
    sci[rng.random(shape) < 0.002] = np.nan
    pdq = np.where(rng.random((ny, nx)) < 0.02, dqflags.DEAD, 0).astype(np.uint32)
    bad = rng.random((ny, nx))
    gain[bad < 0.01] = 0.0
    gain[(bad >= 0.01) & (bad < 0.015)] = np.nan
    gain[(bad >= 0.015) & (bad < 0.02)] = -1.5
    rn[rng.random((ny, nx)) < 0.01] = 0.0
    return sci, gdq, pdq, rn, gain


# ---------------------------------------------------------------------------------------------
# Hand-made ramps
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ngroups", [6, 12])  # iterative (5 differences) and single pass (11)
def test_single_jump_and_its_four_neighbours(ngroups):
    sci = _ramps(1, ngroups)
    sci[0, 3:, 2, 2] += 500.0
    out = _run(sci).groupdq
    assert out[0, :, 2, 2].tolist() == [JUMP if g == 3 else 0 for g in range(ngroups)]
    cross = np.zeros((5, 5), np.uint8)
    cross[2, 1:4] = cross[1:4, 2] = JUMP
    np.testing.assert_array_equal(out[0, 3], cross)
    out[0, 3] = 0
    assert not out.any()


@pytest.mark.parametrize(("amplitude", "neighbours"), [(45.0, False), (500.0, True), (1e5, False)])
def test_neighbours_only_inside_the_sigma_window(amplitude, neighbours):
    """sigma = sqrt(10 + 5^2) e-: 45 DN is 7.6 sigma (below 10), 1e5 DN is 1.7e4 (above 1000)."""
    sci = _ramps(1, 6)
    sci[0, 3:, 2, 2] += amplitude
    out = _run(sci).groupdq
    assert out[0, 3, 2, 2] == JUMP
    assert bool(out[0, 3, 1, 2]) is neighbours
    assert np.count_nonzero(out) == (5 if neighbours else 1)


def test_neighbour_window_follows_the_parameters():
    sci = _ramps(1, 6)
    sci[0, 3:, 2, 2] += 45.0
    out = _run(sci, min_jump_to_flag_neighbors=5.0, max_jump_to_flag_neighbors=8.0).groupdq
    assert np.count_nonzero(out[0, 3]) == 5
    assert not _run(sci, flag_4_neighbors=False).groupdq[0, 3, 1, 2]


@pytest.mark.parametrize(("nints", "ngroups"), [(1, 12), (2, 10), (1, 4)])
def test_no_false_positives_on_noise_at_a_high_threshold(nints, ngroups):
    rng = np.random.default_rng(11)
    sci = (_ramps(nints, ngroups, 30, 30) + rng.normal(0, 10, (nints, ngroups, 30, 30))).astype(np.float32)
    high = {"rejection_threshold": 50.0, "three_group_rejection_threshold": 50.0,
            "four_group_rejection_threshold": 50.0}
    assert not _run(sci, rn=10.0, **high).groupdq.any()
    low = {"rejection_threshold": 1.0, "three_group_rejection_threshold": 1.0,
           "four_group_rejection_threshold": 1.0}
    assert _run(sci, rn=10.0, **low).groupdq.any()


@pytest.mark.parametrize(("ngroups", "step", "flagged"), [
    (3, 55.0, False), (3, 65.0, True),    # 2 differences: three_group threshold, 6 sigma
    (4, 45.0, False), (4, 55.0, True),    # 3 differences: four_group threshold, 5 sigma
    (5, 35.0, False), (5, 45.0, True),    # 4 differences: rejection_threshold, 4 sigma
])
def test_three_and_four_group_thresholds(ngroups, step, flagged):
    """Flat ramps with a last difference of ``step`` DN: the median is 0, sigma = RN = 10 DN."""
    sci = np.zeros((1, ngroups, 3, 3), np.float32)
    sci[0, -1, 1, 1] = step
    out = _run(sci, rn=10.0).groupdq
    assert bool(out[0, -1, 1, 1]) is flagged
    assert np.count_nonzero(out) == int(flagged)


def test_three_group_threshold_is_a_parameter():
    sci = np.zeros((1, 3, 3, 3), np.float32)
    sci[0, 2, 1, 1] = 55.0
    assert _run(sci, rn=10.0, three_group_rejection_threshold=5.0).groupdq[0, 2, 1, 1] == JUMP
    sci = np.zeros((1, 4, 3, 3), np.float32)
    sci[0, 3, 1, 1] = 45.0
    assert _run(sci, rn=10.0, four_group_rejection_threshold=4.0).groupdq[0, 3, 1, 1] == JUMP


@pytest.mark.parametrize("ngroups", [1, 2])
def test_one_and_two_group_ramps_are_left_alone(ngroups):
    sci = _ramps(1, ngroups)
    sci[0, -1, 2, 2] += 1e4
    gdq = np.zeros(sci.shape, np.uint8)
    gdq[0, 0, 0, 0] = JUMP | DNU
    gain = np.ones((5, 5), np.float32)
    gain[1, 1] = 0.0
    res = detect_jumps(sci, gdq, np.zeros((5, 5), np.uint32), np.full((5, 5), 5.0, np.float32), gain, **TIMING)
    np.testing.assert_array_equal(res.groupdq, gdq)
    assert not res.pixeldq.any()


def test_gate_with_too_few_usable_groups_only_cleans_up():
    """Group 0 is DO_NOT_USE everywhere: 2 usable groups < 3, so nothing is detected, but JUMP
    is still removed where DO_NOT_USE is set and bad gains are flagged (as stcal)."""
    sci = _ramps(1, 3)
    sci[0, 2, 2, 2] += 1e4
    gdq = np.zeros(sci.shape, np.uint8)
    gdq[0, 0] = DNU
    gdq[0, 0, 1, 1] = DNU | JUMP
    gdq[0, 2, 3, 3] = JUMP
    gain = np.ones((5, 5), np.float32)
    gain[4, 4] = np.nan
    res = detect_jumps(sci, gdq, np.zeros((5, 5), np.uint32), np.full((5, 5), 5.0, np.float32), gain, **TIMING)
    expected = gdq.copy()
    expected[0, 0, 1, 1] = DNU
    np.testing.assert_array_equal(res.groupdq, expected)
    assert res.pixeldq[4, 4] == NGV | DNU
    frame = np.zeros((1, 3), bool)  # the whole frame's group 0 is not all DO_NOT_USE
    assert _run(sci, gdq, plane_all_dnu=frame).groupdq[0, 2, 2, 2] == 0  # 2 diffs but 1 usable
    gdq[0, 0] = 0
    sci4 = _ramps(1, 4)
    sci4[0, 3, 2, 2] += 1e4
    assert _run(sci4).groupdq[0, 3, 2, 2] == JUMP
    assert _run(sci4, minimum_groups=5).groupdq[0, 3, 2, 2] == JUMP  # stcal forces 3 [quirk]
    assert not _run(sci4, minimum_groups=5, fix_minimum_groups=True).groupdq.any()


def test_saturated_and_do_not_use_groups_are_ignored():
    sci = _ramps(1, 8)
    gdq = np.zeros(sci.shape, np.uint8)
    sci[0, 4:, 1, 1] += 1000.0          # hidden: group 4 is DO_NOT_USE
    gdq[0, 4, 1, 1] = DNU
    sci[0, 5:, 3, 3] = 70000.0          # saturates from group 5 on
    gdq[0, 5:, 3, 3] = SAT
    sci[0, 2, 0, 4] = np.nan            # unusable value
    sci[0, 6:, 0, 4] += 800.0           # ... but a later jump is still found
    out = _run(sci, gdq, flag_4_neighbors=False).groupdq
    expected = gdq.copy()
    expected[0, 6, 0, 4] = JUMP
    np.testing.assert_array_equal(out, expected)


def test_after_jump_flagging_in_dn_and_seconds():
    """gain 2: a 1000 DN jump is 2000 e- >= 500 DN * 2; 25 s // 10 s = 2 more groups."""
    sci = _ramps(1, 10)
    sci[0, 3:, 2, 2] += 1000.0
    sci[0, 2:, 0, 0] += 300.0
    gdq = np.zeros(sci.shape, np.uint8)
    gdq[0, 5, 2, 2] = DNU
    kwargs = {"gain": 2.0, "flag_4_neighbors": False, "after_jump_flag_dn1": 500.0,
              "after_jump_flag_time1": 25.0}
    out = _run(sci, gdq, **kwargs).groupdq
    assert out[0, :, 2, 2].tolist() == [0, 0, 0, JUMP, JUMP, DNU, 0, 0, 0, 0]
    assert out[0, :, 0, 0].tolist() == [0, 0, JUMP, 0, 0, 0, 0, 0, 0, 0]
    out = _run(sci, gdq, after_jump_flag_dn2=100.0, after_jump_flag_time2=10.0, **kwargs).groupdq
    assert out[0, :, 0, 0].tolist() == [0, 0, JUMP, JUMP, 0, 0, 0, 0, 0, 0]
    assert not _run(sci, gdq, **{**kwargs, "after_jump_flag_time1": 9.0}).groupdq[0, 4].any()


def test_clean_up_and_bad_gain():
    sci = _ramps(1, 5)
    gdq = np.zeros(sci.shape, np.uint8)
    gdq[0, 1, 0, 0] = JUMP | DNU
    gdq[0, 4, 0, 1] = JUMP | SAT
    gdq[0, 2, 0, 2] = JUMP | PERS
    gain = np.ones((5, 5), np.float32)
    gain[4, 0], gain[4, 1], gain[4, 2] = 0.0, -1.0, np.nan
    pdq = np.full((5, 5), dqflags.HOT, np.uint32)
    res = detect_jumps(sci, gdq, pdq, np.full((5, 5), 5.0, np.float32), gain, **TIMING)
    assert (res.groupdq[0, 1, 0, 0], res.groupdq[0, 4, 0, 1], res.groupdq[0, 2, 0, 2]) == (DNU, SAT, JUMP | PERS)
    assert res.pixeldq[4, :3].tolist() == [dqflags.HOT | NGV | DNU] * 3
    assert (res.pixeldq[:4] == dqflags.HOT).all() and res.pixeldq[4, 3] == dqflags.HOT


def test_inputs_untouched_outputs_native_and_big_endian_accepted():
    sci, gdq, pdq, rn, gain = _cube(4, 2, 6, 9, 8)
    copies = [a.copy() for a in (sci, gdq, pdq, rn, gain)]
    res = detect_jumps(sci, gdq, pdq, rn, gain, **TIMING)
    for before, after in zip(copies, (sci, gdq, pdq, rn, gain), strict=True):
        np.testing.assert_array_equal(before, after)
    assert res.groupdq.dtype == np.uint8 and res.pixeldq.dtype == np.uint32
    assert res.groupdq.dtype.isnative and res.pixeldq.dtype.isnative
    swapped = detect_jumps(sci.astype(">f4"), gdq, pdq.astype(">u4"), rn.astype(">f4"), gain.astype(">f4"), **TIMING)
    np.testing.assert_array_equal(swapped.groupdq, res.groupdq)
    np.testing.assert_array_equal(swapped.pixeldq, res.pixeldq)


def test_bad_arguments():
    sci = _ramps(1, 4)
    with pytest.raises(NotImplementedError, match="expand_large_events"):
        _run(sci, expand_large_events=True)
    with pytest.raises(NotImplementedError, match="find_showers"):
        _run(sci, find_showers=True)
    with pytest.raises(ValueError, match="halo"):
        _run(sci, halo=(0, -1, 0, 0))
    with pytest.raises(ValueError, match="halo"):
        _run(sci, halo=(3, 2, 0, 0))
    with pytest.raises(ValueError, match="threshold"):
        _run(sci, rejection_threshold=-1.0)
    with pytest.raises(ValueError, match="plane_all_dnu"):
        _run(sci, plane_all_dnu=np.zeros((1, 3), bool))
    with pytest.raises(ValueError, match="groupdq"):
        _run(sci, np.zeros((1, 4, 5, 4), np.uint8))
    with pytest.raises(ValueError, match="group_time"):
        _run(sci, group_time=0.0)


# ---------------------------------------------------------------------------------------------
# Tiles and threads
# ---------------------------------------------------------------------------------------------


def _tiled(sci, gdq, pdq, rn, gain, ybounds, xbounds, **kwargs):
    """Run the kernel per tile with a 1-pixel halo inside the frame and stitch the interiors."""
    ny, nx = sci.shape[-2:]
    gdq_out = np.zeros_like(gdq)
    pdq_out = np.zeros_like(pdq)
    d = HALO_DEPTH
    for y0, y1 in zip(ybounds[:-1], ybounds[1:], strict=True):
        for x0, x1 in zip(xbounds[:-1], xbounds[1:], strict=True):
            top, bottom, left, right = min(d, y0), min(d, ny - y1), min(d, x0), min(d, nx - x1)
            ys, xs = slice(y0 - top, y1 + bottom), slice(x0 - left, x1 + right)
            res = detect_jumps(sci[..., ys, xs], gdq[..., ys, xs], pdq[ys, xs], rn[ys, xs], gain[ys, xs],
                               halo=(top, bottom, left, right), **kwargs)
            inner = (slice(top, top + y1 - y0), slice(left, left + x1 - x0))
            gdq_out[..., y0:y1, x0:x1] = res.groupdq[(..., *inner)]
            pdq_out[y0:y1, x0:x1] = res.pixeldq[inner]
    return gdq_out, pdq_out


@pytest.mark.parametrize(("nints", "ngroups", "extra"), [
    (2, 6, {}),
    (1, 12, {}),
    (1, 8, {"after_jump_flag_dn1": 20.0, "after_jump_flag_time1": 25.0}),
])
def test_tiles_with_halo_equal_the_whole_frame(nints, ngroups, extra):
    sci, gdq, pdq, rn, gain = _cube(21 + ngroups, nints, ngroups, 37, 41, p_jump=0.05)
    sci[0, 3:, 9, 20] += 5000.0   # a jump on the last row of a tile: its neighbour below is in the next
    gdq[0, :, 9, 20] = 0
    gdq[0, :, 10, 20] = 0
    gdq[:, 0, 10:25, 7:30] |= DNU  # a plane that is DO_NOT_USE in a whole tile only
    kwargs = {**TIMING, **extra}
    whole = detect_jumps(sci, gdq, pdq, rn, gain, **kwargs)
    assert whole.groupdq[0, 3, 10, 20] & JUMP
    frame = {"plane_all_dnu": (gdq & DNU).astype(bool).all(axis=(2, 3)),
             "gain_median": float(np.nanmedian(gain))}
    tiles = _tiled(sci, gdq, pdq, rn, gain, (0, 10, 25, 37), (0, 7, 30, 41), **frame, **kwargs)
    np.testing.assert_array_equal(tiles[0], whole.groupdq)
    np.testing.assert_array_equal(tiles[1], whole.pixeldq)


def test_sigma_clipping_tiles_with_the_reset_pre_pass():
    """100 integrations: sigma clipping. Integration 7, group 2 jumps everywhere (a frame-wide
    glitch): stcal clears such planes, which tiles learn from the AND of the pre-pass."""
    rng = np.random.default_rng(5)
    sci = (_ramps(100, 3, 9, 10, 50.0) + rng.normal(0, 5, (100, 3, 9, 10))).astype(np.float32)
    sci[7, 2:] += 30000.0
    sci[7, 2:, 4, 4] -= 30000.0  # ... except one pixel of the frame
    sci[20, 2, 1, 1] += 3000.0
    gdq, pdq = np.zeros(sci.shape, np.uint8), np.zeros((9, 10), np.uint32)
    rn, gain = np.full((9, 10), 5.0, np.float32), np.full((9, 10), 2.0, np.float32)
    whole = detect_jumps(sci, gdq, pdq, rn, gain, **TIMING)
    assert whole.groupdq[7, 2, 0, 0] == JUMP and whole.groupdq[20, 2, 1, 1] == JUMP
    ys, xs = (0, 3, 9), (0, 4, 10)
    naive = _tiled(sci, gdq, pdq, rn, gain, ys, xs, **TIMING)[0]
    assert (naive != whole.groupdq).any()  # the tiles without pixel (4, 4) reset the glitch
    planes = np.ones((100, 3), bool)
    for y0, y1 in zip(ys[:-1], ys[1:], strict=True):
        for x0, x1 in zip(xs[:-1], xs[1:], strict=True):
            top, bottom, left, right = min(1, y0), min(1, 9 - y1), min(1, x0), min(1, 10 - x1)
            block = (slice(y0 - top, y1 + bottom), slice(x0 - left, x1 + right))
            planes &= sigclip_flagged_planes(sci[(..., *block)], gdq[(..., *block)], pdq[block], rn[block],
                                             gain[block], halo=(top, bottom, left, right), **TIMING)
    tiles = _tiled(sci, gdq, pdq, rn, gain, ys, xs, sigclip_reset_planes=planes, **TIMING)[0]
    np.testing.assert_array_equal(tiles, whole.groupdq)
    sci[7, 2:, 4, 4] += 30000.0  # now the whole plane jumps: stcal clears it
    assert not detect_jumps(sci, gdq, pdq, rn, gain, **TIMING).groupdq[7, 2].any()


def test_thread_safe():
    sci, gdq, pdq, rn, gain = _cube(8, 2, 8, 40, 40)
    serial = detect_jumps(sci, gdq, pdq, rn, gain, **TIMING)
    barrier = threading.Barrier(4)
    results: list = [None] * 4

    def work(k: int) -> None:
        barrier.wait()
        results[k] = detect_jumps(sci, gdq, pdq, rn, gain, **TIMING)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for res in results:
        np.testing.assert_array_equal(res.groupdq, serial.groupdq)
        np.testing.assert_array_equal(res.pixeldq, serial.pixeldq)


# ---------------------------------------------------------------------------------------------
# Against jwst 3.0's JumpStep (stcal 1.20 detect_jumps_data) on identical inputs
# ---------------------------------------------------------------------------------------------


def _jwst_jump(sci, gdq, pdq, rn, gain, *, nframes, group_time, **params):
    """jwst's JumpStep.process on a RampModel with in-memory GAIN/READNOISE references."""
    pytest.importorskip("stcal")
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    jump_step = pytest.importorskip("jwst.jump.jump_step")
    logging.getLogger("stpipe").setLevel(logging.WARNING)
    logging.getLogger("jwst").setLevel(logging.WARNING)
    logging.getLogger("stcal").setLevel(logging.WARNING)
    ny, nx = sci.shape[-2:]
    model = datamodels.RampModel(data=sci.copy(), groupdq=gdq.copy(), pixeldq=pdq.copy())
    model.meta.exposure.nframes = nframes
    model.meta.exposure.group_time = group_time
    model.meta.exposure.frame_time = group_time / nframes
    refs = {"gain": datamodels.GainModel(data=gain.copy()), "readnoise": datamodels.ReadnoiseModel(data=rn.copy())}
    for m in (model, *refs.values()):
        m.meta.instrument.name = "NIRCAM"
        m.meta.subarray.xstart = m.meta.subarray.ystart = 1
        m.meta.subarray.xsize, m.meta.subarray.ysize = nx, ny
    step = jump_step.JumpStep(**params)
    step.get_reference_file = lambda _model, reftype: refs[reftype]
    result = step.process(model)
    return np.asarray(result.groupdq), np.asarray(result.pixeldq)


def _assert_same_as_jwst(sci, gdq, pdq, rn, gain, *, nframes=1, group_time=10.0, **params):
    ours = detect_jumps(sci, gdq, pdq, rn, gain, nframes=nframes, frame_time=group_time / nframes,
                        group_time=group_time, **params)
    ref_gdq, ref_pdq = _jwst_jump(sci, gdq, pdq, rn, gain, nframes=nframes, group_time=group_time, **params)
    np.testing.assert_array_equal(ours.groupdq, ref_gdq)
    np.testing.assert_array_equal(ours.pixeldq, ref_pdq)
    return ref_gdq


@pytest.mark.reference
@pytest.mark.parametrize(("nints", "ngroups", "nframes"), [
    (1, 3, 1), (1, 4, 4), (1, 5, 1), (1, 10, 1), (1, 12, 4),
    (3, 3, 4), (3, 4, 1), (3, 5, 1), (3, 10, 4), (3, 12, 1), (1, 2, 1), (2, 1, 4),
])
@pytest.mark.parametrize("quantize", [False, True])
def test_equal_to_jwst(nints, ngroups, nframes, quantize):
    """Random ramps; 10 groups take the iterative path, 12 the single pass; 1-2 groups are
    skipped by the step. Quantized data exercise ties."""
    cube = _cube(100 * nints + ngroups + 7 * quantize, nints, ngroups, 23, 19, nframes, quantize=quantize)
    ref_gdq = _assert_same_as_jwst(*cube, nframes=nframes)
    if ngroups >= 3:
        assert (ref_gdq & ~cube[1] & JUMP).any()


@pytest.mark.reference
@pytest.mark.parametrize("params", [
    {"after_jump_flag_dn1": 100.0, "after_jump_flag_time1": 25.0, "after_jump_flag_dn2": 1000.0,
     "after_jump_flag_time2": 55.0},
    {"min_jump_to_flag_neighbors": 3.0, "max_jump_to_flag_neighbors": 50.0, "rejection_threshold": 5.0,
     "three_group_rejection_threshold": 4.0, "four_group_rejection_threshold": 4.5},
    {"flag_4_neighbors": False},
    {"min_diffs_single_pass": 4},
])
def test_equal_to_jwst_with_options(params):
    for nints, ngroups in ((1, 6), (2, 12)):
        _assert_same_as_jwst(*_cube(7 + ngroups, nints, ngroups, 21, 22), **params)


@pytest.mark.reference
@pytest.mark.parametrize(("nints", "ngroups", "ny", "nx"), [
    (10, 6, 12, 11),    # 50 pooled differences: iterative, sorted one by one
    (1, 40, 12, 11),    # 39 differences: single pass, sorted one by one
    (2, 12, 3, 1600),   # rows longer than one batch of pixels
    (20, 4, 4, 600),
])
def test_equal_to_jwst_long_ramps_and_rows(nints, ngroups, ny, nx):
    _assert_same_as_jwst(*_cube(nints * ngroups + nx, nints, ngroups, ny, nx))


@pytest.mark.reference
def test_equal_to_jwst_with_do_not_use_planes():
    """Fully DO_NOT_USE planes change the gate (2 usable groups) and the detector (9 usable
    differences: iterative instead of single pass)."""
    sci, gdq, pdq, rn, gain = _cube(31, 2, 12, 20, 20)
    gdq[:, 0] |= DNU
    gdq[1, 11] |= DNU
    _assert_same_as_jwst(sci, gdq, pdq, rn, gain)
    sci, gdq, pdq, rn, gain = _cube(32, 1, 4, 20, 20)
    gdq[0, 0] |= DNU
    gdq[0, 3] |= DNU
    ref_gdq = _assert_same_as_jwst(sci, gdq, pdq, rn, gain)
    assert not (ref_gdq & ~gdq & JUMP).any()


@pytest.mark.reference
@pytest.mark.parametrize(("nints", "ngroups", "params"), [
    (100, 4, {}),
    (25, 5, {"only_use_ints": False}),
    (30, 3, {"minimum_sigclip_groups": 20, "after_jump_flag_dn1": 10.0, "after_jump_flag_time1": 20.0}),
])
def test_equal_to_jwst_sigma_clipping(nints, ngroups, params):
    cube = _cube(nints + ngroups, nints, ngroups, 9, 8, quantize=nints == 25)
    _assert_same_as_jwst(*cube, **params)


@pytest.mark.reference
def test_equal_to_jwst_sigma_clipping_plane_reset():
    rng = np.random.default_rng(5)
    sci = (_ramps(100, 4, 6, 7, 50.0) + rng.normal(0, 5, (100, 4, 6, 7))).astype(np.float32)
    sci[7, 2:] += 30000.0       # whole plane (7, 2) jumps: cleared
    sci[11, 3] += 30000.0       # plane (11, 3) with one DO_NOT_USE pixel: cleared
    sci[40, 1:] += 30000.0      # plane (40, 1) with one NaN pixel: kept
    sci[40, 1, 0, 0] = np.nan
    gdq = np.zeros(sci.shape, np.uint8)
    gdq[11, 3, 0, 0] = DNU
    gdq[20, :, 2, 2] = JUMP | DNU
    ones = np.ones((6, 7), np.float32)
    ref_gdq = _assert_same_as_jwst(sci, gdq, np.zeros((6, 7), np.uint32), 5 * ones, 2 * ones)
    assert not (ref_gdq[7, 2] & JUMP).any() and (ref_gdq[40, 1] & JUMP).sum() == JUMP * 41
