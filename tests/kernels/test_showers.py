"""MIRI shower flagging: hand-made showers, the gate, tiles, and equality with stcal 1.20."""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pytest
import xarray as xr

from jwdask import dqflags
from jwdask.detector1.jump import shower_flags
from jwdask.kernels import showers

DNU, SAT, JUMP, REF = dqflags.DO_NOT_USE, dqflags.SATURATED, dqflags.JUMP_DET, dqflags.REFERENCE_PIXEL
GROUP_TIME = 2.775
DEFAULTS = {"extend_snr_threshold": 1.2, "extend_min_area": 90, "extend_inner_radius": 1.0,
            "extend_outer_radius": 2.6, "extend_ellipse_expand_ratio": 1.1, "time_masked_after_shower": 15.0,
            "max_extended_radius": 200, "minimum_sigclip_groups": 100,
            "max_shower_amplitude": showers.STCAL_MAX_SHOWER_AMPLITUDE}
DIMS = ("integration", "group", "y", "x")


def _ellipse(ny: int, nx: int, r0: float, c0: float, rad: float, ratio: float = 1.0, angle: float = 0.0):
    yy, xx = np.mgrid[:ny, :nx]
    dy, dx = yy - r0, xx - c0
    u = dy * np.cos(angle) + dx * np.sin(angle)
    v = -dy * np.sin(angle) + dx * np.cos(angle)
    return (u / rad) ** 2 + (v / (rad * ratio)) ** 2 <= 1


def _cube(seed: int, nints: int = 2, ngroups: int = 10, ny: int = 90, nx: int = 100, nshowers: int = 4):
    """MIRI-like ramps [DN] with faint extended steps (showers), jumps, saturation, DO_NOT_USE
    groups and pixels, other GROUPDQ bits, reference pixels."""
    rng = np.random.default_rng(seed)
    gain = rng.uniform(3.5, 4.5, (ny, nx)).astype(np.float32)
    rn = rng.uniform(5.0, 8.0, (ny, nx)).astype(np.float32)
    rate = rng.gamma(2.0, 5.0, (ny, nx))
    shape = (nints, ngroups, ny, nx)
    step = rate + rng.normal(0, 1, shape) * np.sqrt(rate / gain + (rn / gain) ** 2)
    for i in range(nints):
        for _ in range(nshowers):
            g, r0, c0 = int(rng.integers(1, ngroups)), rng.uniform(0, ny), rng.uniform(0, nx)
            region = _ellipse(ny, nx, r0, c0, rng.uniform(5, 20), rng.uniform(0.5, 1), rng.uniform(0, np.pi))
            step[i, g, region] += rng.uniform(5, 20)
    sci = np.cumsum(step, axis=1).astype(np.float32)
    gdq = np.zeros(shape, np.uint8)
    gdq[rng.random(shape) < 0.005] |= JUMP
    gdq[np.logical_or.accumulate(rng.random(shape) < 0.003, axis=1)] |= SAT
    gdq[rng.random(shape) < 0.005] |= DNU
    gdq[rng.random(shape) < 0.005] |= dqflags.DROPOUT
    if seed % 2:
        gdq[:, 0] |= DNU
    pdq = np.zeros((ny, nx), np.uint32)
    pdq[:, :4] = REF
    pdq[rng.random((ny, nx)) < 0.01] |= DNU
    return sci, gdq, pdq, rn, gain


def _ours(sci, gdq, pdq, rn, gain, nframes: int = 1, **params) -> np.ndarray:
    """The kernels on the whole frame, in the order the step graph runs them."""
    p = {**DEFAULTS, **params}
    raw, work = showers.dnu_planes(gdq, pdq)
    if not showers.gate_open(raw):
        return gdq.copy()
    ratio = showers.shower_ratios(sci, gdq, pdq, rn, gain, nframes=nframes,
                                  minimum_sigclip_groups=p["minimum_sigclip_groups"])
    nints, ngroups = gdq.shape[:2]
    tables = [np.zeros((0, 14))]
    for i in range(nints):
        for g in range(showers.first_good_group(work, i) + 1, ngroups):
            tables.append(showers.shower_events(
                ratio[i, g], integration=i, group=g, ngroups=ngroups,
                extend_snr_threshold=p["extend_snr_threshold"], extend_min_area=p["extend_min_area"],
                extend_inner_radius=p["extend_inner_radius"], extend_outer_radius=p["extend_outer_radius"],
                extend_ellipse_expand_ratio=p["extend_ellipse_expand_ratio"],
                groups_masked=int(p["time_masked_after_shower"] // GROUP_TIME),
                max_extended_radius=p["max_extended_radius"]))
    return showers.apply_showers(sci, gdq, pdq, gain, np.concatenate(tables), group_time=GROUP_TIME,
                                 max_shower_amplitude=p["max_shower_amplitude"])


def _stcal(sci, gdq, pdq, rn, gain, nframes: int = 1, **params) -> np.ndarray:
    from stcal.jump.jump import find_faint_extended
    from stcal.jump.jump_class import JumpData

    p = {**DEFAULTS, **params}
    jd = JumpData(gain2d=gain, rnoise2d=rn, dqflags=dqflags.PIXEL)
    jd.nframes = nframes
    jd.set_shower_info(True, p["extend_snr_threshold"], p["extend_min_area"], p["extend_inner_radius"],
                       p["extend_outer_radius"], p["extend_ellipse_expand_ratio"], 10,
                       p["max_extended_radius"] * 2)
    jd.minimum_sigclip_groups = p["minimum_sigclip_groups"]
    jd.grps_masked_after_shower = int(p["time_masked_after_shower"] // GROUP_TIME)
    jd.max_shower_amplitude = p["max_shower_amplitude"] * GROUP_TIME
    out, _ = find_faint_extended(sci * gain, gdq.copy(), pdq.copy(), rn * gain, jd)
    return out


# ---------------------------------------------------------------------------------------------
# Hand-made
# ---------------------------------------------------------------------------------------------


def test_a_faint_disk_is_flagged_for_the_masked_groups():
    ny, nx, ngroups = 60, 60, 12
    rng = np.random.default_rng(0)
    step = 10.0 + rng.normal(0.0, 1.0, (1, ngroups, ny, nx))
    step[0, 4, _ellipse(ny, nx, 30, 30, 10.0)] += 8.0  # ~2.4 sigma
    sci = np.cumsum(step, axis=1).astype(np.float32)
    gdq = np.zeros(sci.shape, np.uint8)
    pdq = np.zeros((ny, nx), np.uint32)
    ones = np.ones((ny, nx), np.float32)
    out = _ours(sci, gdq, pdq, ones, ones, time_masked_after_shower=2 * GROUP_TIME,
                max_shower_amplitude=100.0)
    flagged = (out[0] & JUMP) != 0
    assert flagged[4:7, 30, 30].all() and not flagged[[0, 1, 2, 3, 7], 30, 30].any()
    assert not flagged[:, 2, 2].any()
    # a small amplitude limit undoes the flags of pixels whose mean difference they change
    strict = (_ours(sci, gdq, pdq, ones, ones, max_shower_amplitude=0.01) & JUMP) != 0
    assert strict.sum() < 0.05 * flagged.sum()


def test_gate_needs_ten_usable_differences():
    sci, gdq, pdq, rn, gain = _cube(1, nints=1, ngroups=12)
    gdq[0, :3] |= DNU  # 11 differences minus 3 fully DO_NOT_USE planes = 8 < 10
    raw, _ = showers.dnu_planes(gdq, pdq)
    assert not showers.gate_open(raw)
    np.testing.assert_array_equal(_ours(sci, gdq, pdq, rn, gain), gdq)


# ---------------------------------------------------------------------------------------------
# Tiles
# ---------------------------------------------------------------------------------------------


def _graph(sci, gdq, pdq, rn, gain, tile: tuple[int, int]) -> np.ndarray:
    chunks = {"y": tile[0], "x": tile[1]}
    arrays = [xr.DataArray(sci, dims=DIMS).chunk(chunks), xr.DataArray(gdq, dims=DIMS).chunk(chunks),
              xr.DataArray(pdq, dims=("y", "x")), xr.DataArray(rn, dims=("y", "x")),
              xr.DataArray(gain, dims=("y", "x"))]
    with dask.config.set(scheduler="threads"):
        return shower_flags(*arrays, nframes=1, group_time=GROUP_TIME, extend_min_area=60).values


@pytest.mark.parametrize("tile", [(32, 40), (90, 23), (11, 100)])
def test_tiled_graph_equals_whole_frame(tile):
    cube = _cube(4)
    whole = _graph(*cube, tile=(90, 100))
    np.testing.assert_array_equal(_graph(*cube, tile=tile), whole)
    np.testing.assert_array_equal(whole, _ours(*cube, extend_min_area=60))
    assert (whole != cube[1]).any()


# ---------------------------------------------------------------------------------------------
# Reference: stcal 1.20
# ---------------------------------------------------------------------------------------------

PARAM_SETS = [
    {},
    {"extend_min_area": 40, "time_masked_after_shower": 6.0},
    {"max_shower_amplitude": 1.0, "extend_snr_threshold": 1.0},
    {"extend_inner_radius": 2.0, "extend_outer_radius": 4.0, "extend_ellipse_expand_ratio": 1.6,
     "max_extended_radius": 8},
]


@pytest.mark.reference
@pytest.mark.parametrize("params", PARAM_SETS)
@pytest.mark.parametrize("seed", range(3))
def test_showers_match_stcal(seed, params):
    pytest.importorskip("stcal")
    cube = _cube(seed, ny=80 + 9 * seed, nx=100 - 7 * seed)
    expected = _stcal(*cube, **params)
    assert (expected != cube[1]).any()
    np.testing.assert_array_equal(_ours(*cube, **params), expected)


@pytest.mark.reference
def test_sigma_clipping_path_matches_stcal():
    """NINTS >= minimum_sigclip_groups: the ratio uses astropy's sigma-clipped statistics."""
    pytest.importorskip("stcal")
    cube = _cube(7, nints=12, ngroups=4, ny=40, nx=48, nshowers=1)
    for params in ({"minimum_sigclip_groups": 10, "extend_min_area": 30}, {"extend_min_area": 30}):
        np.testing.assert_array_equal(_ours(*cube, **params), _stcal(*cube, **params))


def test_ratios_are_numpys_float32_arithmetic():
    """The compiled ratio equals stcal's NumPy expression, including NaN, inf, zero noise."""
    rng = np.random.default_rng(2)
    shape = (3, 7, 20, 30)
    sci = (rng.normal(0, 1, shape) * 10 ** rng.uniform(-3, 6, shape)).astype(np.float32)
    sci[rng.random(shape) < 0.03] = np.inf
    gdq = rng.choice(np.array([0, 0, 0, 1, 2, 3, 4, 5, 8, 9], np.uint8), size=shape)
    gdq[:, :, 0, :4] = DNU  # pixels without any difference
    pdq = np.where(rng.random(shape[2:]) < 0.1, REF, 0).astype(np.uint32)
    pdq[rng.random(shape[2:]) < 0.1] |= DNU
    rn = rng.uniform(0, 9, shape[2:]).astype(np.float32)
    rn[:2] = 0
    gain = rng.uniform(1, 5, shape[2:]).astype(np.float32)
    gain[2, :5] = 0
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        data = sci * gain
        data[np.isin(gdq, [1, 2, 3, 4, 5])] = np.nan
        diffs = np.diff(data, axis=1)
        median = np.nanmedian(diffs, axis=(0, 1))
        ratio = np.abs(diffs - median) / np.sqrt(np.abs(median) + (rn * gain) ** 2 / 2)
    work = gdq | np.where(pdq == REF, DNU, 0).astype(np.uint8)
    ratio[((work[:, 1:] | pdq) & (DNU | SAT | JUMP)) != 0] = np.nan
    with np.errstate(all="ignore"):
        ours = showers.shower_ratios(sci, gdq, pdq, rn, gain, nframes=2)
    assert np.isnan(ours[:, 0]).all()
    np.testing.assert_array_equal(ours[:, 1:], ratio)


# ---------------------------------------------------------------------------------------------
# The step: two-point detection then showers, tiled, against stcal's detect_jumps_data
# ---------------------------------------------------------------------------------------------


class _Refs:
    """A reference provider serving in-memory GAIN and READNOISE images."""

    def __init__(self, **images: np.ndarray) -> None:
        self.images = images

    def path(self, reftype: str, meta: dict) -> str:
        return f"memory://{reftype}"

    def open(self, reftype: str, meta: dict, **kwargs) -> xr.Dataset:
        return xr.Dataset({"sci": (("y", "x"), self.images[reftype])})

    def record(self, reftype: str, meta: dict) -> str:
        return self.path(reftype, meta)


@pytest.mark.reference
def test_step_matches_stcal_detect_jumps_on_any_tiling():
    pytest.importorskip("stcal")
    from stcal.jump.jump import detect_jumps_data
    from stcal.jump.jump_class import JumpData

    from jwdask.detector1.jump import jump

    sci, gdq, pdq, rn, gain = _cube(6, nints=1, ngroups=14, ny=64, nx=72)
    jd = JumpData(gain2d=gain.copy(), rnoise2d=rn.copy(), dqflags=dqflags.PIXEL)
    jd.init_arrays_from_arrays(sci.copy(), gdq.copy(), pdq.copy())
    jd.nframes, jd.dt_group, jd.n_reads_groupdiff, jd.max_cores = 1, np.ones(1), np.ones(1) * 2, "1"
    jd.set_shower_info(True, 1.2, 90, 1.0, 2.6, 1.1, 10, 400)
    jd.grps_masked_after_shower = int(15.0 // GROUP_TIME)
    jd.max_shower_amplitude = jd.max_shower_amplitude * GROUP_TIME
    expected, _, _, _ = detect_jumps_data(jd)
    refs = _Refs(gain=gain, readnoise=rn)
    meta = {"exposure": {"ngroups": sci.shape[1], "nints": sci.shape[0], "nframes": 1,
                         "group_time": GROUP_TIME, "frame_time": GROUP_TIME}}
    with dask.config.set(scheduler="threads"):
        for tile in (72, 20):
            ds = xr.Dataset({"sci": (DIMS, sci), "groupdq": (DIMS, gdq), "pixeldq": (("y", "x"), pdq)})
            ds = ds.chunk({"y": tile, "x": tile})
            ds.attrs["meta"] = meta
            out = jump(ds, refs, find_showers=True)
            np.testing.assert_array_equal(out.groupdq.values, expected)
    assert (jump(ds, refs).groupdq.values != expected).any()
