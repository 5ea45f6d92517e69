"""Snowball flagging: regions, hand-made snowballs, tiles, and equality with stcal 1.20."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

from jwdask import dqflags
from jwdask.detector1.jump import snowball_flags
from jwdask.kernels.large_events import (
    KIND_PERSIST,
    KIND_SAT,
    apply_events,
    find_regions,
    snowball_events,
)

DNU, SAT, JUMP = dqflags.DO_NOT_USE, dqflags.SATURATED, dqflags.JUMP_DET
GROUP_TIME = 10.0
DEFAULTS = {"min_jump_area": 5.0, "min_sat_area": 1.0, "expand_factor": 2.0, "sat_required_snowball": True,
            "min_sat_radius_extend": 2.5, "sat_expand": 2, "edge_size": 25, "max_extended_radius": 200,
            "mask_snowball_core_next_int": True, "snowball_time_masked_next_int": 4000}
DIMS = ("integration", "group", "y", "x")


def _ellipse(ny: int, nx: int, r0: float, c0: float, rad: float, ratio: float = 1.0, angle: float = 0.0):
    yy, xx = np.mgrid[:ny, :nx]
    dy, dx = yy - r0, xx - c0
    u = dy * np.cos(angle) + dx * np.sin(angle)
    v = -dy * np.sin(angle) + dx * np.cos(angle)
    return (u / rad) ** 2 + (v / (rad * ratio)) ** 2 <= 1


def _gdq(seed: int, nints: int = 2, ngroups: int = 6, ny: int = 96, nx: int = 112) -> np.ndarray:
    """GROUPDQ after two-point detection: snowballs (saturated core from group g or g+1, jump
    halo in g, some off the frame), cosmic rays with their 4 neighbours and tracks, saturating
    stars, DO_NOT_USE groups; no JUMP_DET on SATURATED or DO_NOT_USE groups."""
    rng = np.random.default_rng(seed)
    gdq = np.zeros((nints, ngroups, ny, nx), np.uint8)
    for i in range(nints):
        for _ in range(6):
            g = int(rng.integers(1, ngroups))
            r0, c0 = rng.uniform(-5, ny + 5), rng.uniform(-5, nx + 5)
            rs = rng.uniform(0.5, 7)
            ratio, angle = rng.uniform(0.5, 1.0), rng.uniform(0, np.pi)
            core = _ellipse(ny, nx, r0, c0, rs, ratio, angle)
            halo = _ellipse(ny, nx, r0 + rng.normal(0, 1), c0 + rng.normal(0, 1), rs + rng.uniform(1, 12),
                            ratio, angle) & ~core
            gs = min(g + int(rng.integers(0, 2)), ngroups - 1)
            gdq[i, gs:, core] |= SAT
            gdq[i, g, halo] |= JUMP
        for _ in range(60):
            g, r, c = int(rng.integers(1, ngroups)), int(rng.integers(0, ny)), int(rng.integers(0, nx))
            for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
                if 0 <= r + dr < ny and 0 <= c + dc < nx:
                    gdq[i, g, r + dr, c + dc] |= JUMP
            if rng.random() < 0.3:
                angle = rng.uniform(0, np.pi)
                for t in range(int(rng.integers(3, 15))):
                    rr, cc = int(r + t * np.sin(angle)), int(c + t * np.cos(angle))
                    if 0 <= rr < ny and 0 <= cc < nx:
                        gdq[i, g, rr, cc] |= JUMP
        for _ in range(20):
            g, r, c = int(rng.integers(0, ngroups)), rng.uniform(0, ny), rng.uniform(0, nx)
            gdq[i, g:, _ellipse(ny, nx, r, c, rng.uniform(0.5, 4))] |= SAT
    gdq[rng.random(gdq.shape) < 0.01] |= DNU
    gdq[(gdq & (SAT | DNU)) != 0] &= np.uint8(0xFF ^ JUMP)
    return gdq


def _ours(gdq: np.ndarray, **params) -> np.ndarray:
    p = {**DEFAULTS, **params}
    tables = [snowball_events(gdq[i], integration=i, group_time=GROUP_TIME, **p) for i in range(gdq.shape[0])]
    events = np.concatenate(tables)
    last = events[:, 3] == KIND_PERSIST
    return apply_events(gdq, np.concatenate([events[~last], events[last]]))


def _stcal_jump_data(params: dict, gain=None, rnoise=None):
    from stcal.jump.jump_class import JumpData

    p = {**DEFAULTS, **params}
    jd = JumpData(gain2d=gain, rnoise2d=rnoise, dqflags=dqflags.PIXEL)
    jd.set_snowball_info(True, p["min_jump_area"], p["min_sat_area"], p["expand_factor"],
                         p["sat_required_snowball"], p["min_sat_radius_extend"], p["sat_expand"] * 2,
                         p["edge_size"])
    jd.max_extended_width = p["max_extended_radius"] * 2
    jd.mask_persist_grps_next_int = p["mask_snowball_core_next_int"]
    jd.persist_grps_flagged = int(p["snowball_time_masked_next_int"] // GROUP_TIME)
    return jd


def _stcal(gdq: np.ndarray, **params) -> np.ndarray:
    from stcal.jump.jump import flag_large_events

    out, _ = flag_large_events(gdq.copy(), JUMP, SAT, _stcal_jump_data(params))
    return out


# ---------------------------------------------------------------------------------------------
# Regions and drawing
# ---------------------------------------------------------------------------------------------


def test_regions_match_skimage():
    skimage = pytest.importorskip("skimage")
    rng = np.random.default_rng(3)
    mask = rng.random((70, 80)) < 0.35
    for min_area in (1, 5, 12):
        ours = find_regions(mask, min_area)
        props = [p for p in skimage.measure.regionprops(skimage.measure.label(mask)) if p.area_filled >= min_area]
        theirs = sorted((p.centroid[0], p.centroid[1]) for p in props)
        assert sorted(zip(ours.row.tolist(), ours.col.tolist(), strict=True)) == theirs


def test_holes_count_towards_the_area():
    mask = np.zeros((9, 9), bool)
    mask[2:5, 2:5] = True
    mask[3, 3] = False  # a ring of 8 pixels around a hole: filled area 9
    assert find_regions(mask, 9).index.size == 1
    assert find_regions(mask, 10).index.size == 0


def test_single_snowball_by_hand():
    ny = nx = 80
    gdq = np.zeros((1, 4, ny, nx), np.uint8)
    core = _ellipse(ny, nx, 40, 40, 4.0)
    halo = _ellipse(ny, nx, 40, 40, 9.0) & ~core
    gdq[0, 2:, core] = SAT
    gdq[0, 2, halo] = JUMP
    out = _ours(gdq, sat_expand=4)
    jump = (out[0, 2] & JUMP) != 0
    # the snowball grows to about twice its jump radius; SAT pixels never get JUMP_DET
    assert jump[40, 40 - 17] and not jump[40, 40 - 21] and not (jump & ((out[0, 2] & SAT) != 0)).any()
    # the core (full minor axis 6.9 > 2.5) grows to a radius round((6.9 + 2 * 4) / 2) = 7
    # and is set SATURATED for g >= 2
    sat = (out[0, 2] & SAT) != 0
    assert sat[40, 40 - 6] and not sat[40, 40 - 8] and sat[40 + 6, 40] and not sat[40 + 8, 40]
    assert np.array_equal(out[0, 3] & SAT, out[0, 2] & SAT)
    assert not (out[0, :2] != gdq[0, :2]).any()


def test_jump_without_saturated_core_is_not_a_snowball():
    gdq = np.zeros((1, 4, 80, 80), np.uint8)
    gdq[0, 2, _ellipse(80, 80, 40, 40, 9.0)] = JUMP
    np.testing.assert_array_equal(_ours(gdq), gdq)
    assert (_ours(gdq, sat_required_snowball=False) != gdq).any()


def test_cores_are_masked_in_the_next_integration():
    gdq = np.zeros((2, 5, 80, 80), np.uint8)
    core = _ellipse(80, 80, 40, 40, 4.0)
    gdq[0, 2:, core] = SAT
    gdq[0, 2, _ellipse(80, 80, 40, 40, 9.0) & ~core] = JUMP
    out = _ours(gdq, snowball_time_masked_next_int=4 * GROUP_TIME)
    # stcal draws the core's own ellipse (radius round(6.9 / 2) = 3), not the pixels
    assert ((out[1, 1:4] & JUMP) != 0)[:, _ellipse(80, 80, 40, 40, 2.5)].all()
    assert not (out[1, 0] & JUMP).any() and not (out[1, 4] & JUMP).any()
    events = snowball_events(gdq[0], integration=0, group_time=GROUP_TIME, **DEFAULTS)
    assert (events[:, 3] == KIND_SAT).sum() == 1 and (events[:, 3] == KIND_PERSIST).sum() == 1


# ---------------------------------------------------------------------------------------------
# Tiles
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tile", [(32, 40), (17, 112), (96, 29)])
def test_tiled_graph_equals_whole_frame(tile):
    gdq = _gdq(5)
    whole = xr.DataArray(gdq, dims=DIMS).chunk({"y": -1, "x": -1})
    tiled = xr.DataArray(gdq, dims=DIMS).chunk({"integration": 1, "group": 2, "y": tile[0], "x": tile[1]})
    with dask.config.set(scheduler="threads"):
        a = snowball_flags(whole, group_time=GROUP_TIME, **DEFAULTS).values
        b = snowball_flags(tiled, group_time=GROUP_TIME, **DEFAULTS).values
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, _ours(gdq))
    assert (a != gdq).any()


# ---------------------------------------------------------------------------------------------
# Reference: stcal 1.20
# ---------------------------------------------------------------------------------------------

PARAM_SETS = [
    {},
    {"sat_required_snowball": False},
    {"snowball_time_masked_next_int": 25.0},
    {"edge_size": 0, "expand_factor": 1.5, "min_jump_area": 12},
    {"min_sat_radius_extend": 1.0, "sat_expand": 5, "max_extended_radius": 6, "min_sat_area": 4},
    {"mask_snowball_core_next_int": False, "edge_size": 60},
]


@pytest.mark.reference
@pytest.mark.parametrize("params", PARAM_SETS)
@pytest.mark.parametrize("seed", range(4))
def test_snowballs_match_stcal(seed, params):
    pytest.importorskip("stcal")
    gdq = _gdq(seed, ngroups=5 + seed % 3, ny=90 + 7 * seed, nx=112 - 5 * seed)
    expected = _stcal(gdq, **params)
    assert (expected != gdq).any()
    np.testing.assert_array_equal(_ours(gdq, **params), expected)


# ---------------------------------------------------------------------------------------------
# The step: two-point detection then snowballs, tiled, against stcal's detect_jumps_data
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


def _dataset(sci: np.ndarray, gdq: np.ndarray, pdq: np.ndarray, tile: int, group_time: float) -> xr.Dataset:
    chunks = {"y": tile, "x": tile}
    ds = xr.Dataset({"sci": (DIMS, sci), "groupdq": (DIMS, gdq), "pixeldq": (("y", "x"), pdq)}).chunk(chunks)
    ds.attrs["meta"] = {"exposure": {"ngroups": sci.shape[1], "nints": sci.shape[0], "nframes": 1,
                                     "group_time": group_time, "frame_time": group_time}}
    return ds


def _snowball_ramps(seed: int):
    rng = np.random.default_rng(seed)
    nints, ngroups, ny, nx = 2, 8, 72, 80
    gain = np.full((ny, nx), 2.0, np.float32)
    rn = np.full((ny, nx), 8.0, np.float32)
    rate = rng.uniform(5.0, 40.0, (ny, nx))
    sci = np.cumsum(np.broadcast_to(rate, (nints, ngroups, ny, nx))
                    + rng.normal(0, 4.0, (nints, ngroups, ny, nx)), axis=1)
    gdq = np.zeros(sci.shape, np.uint8)
    for i in range(nints):
        for _ in range(4):
            g, r0, c0 = int(rng.integers(2, ngroups)), rng.uniform(0, ny), rng.uniform(0, nx)
            core = _ellipse(ny, nx, r0, c0, rng.uniform(2.0, 5.0))
            halo = _ellipse(ny, nx, r0, c0, rng.uniform(7.0, 14.0))
            sci[i, g:, halo] += 3000.0
            sci[i, g:, core] += 60000.0
            gdq[i, g:, core] |= SAT
    return sci.astype(np.float32), gdq, np.zeros((ny, nx), np.uint32), rn, gain


@pytest.mark.reference
def test_step_matches_stcal_detect_jumps_on_any_tiling():
    pytest.importorskip("stcal")
    from stcal.jump.jump import detect_jumps_data

    from jwdask.detector1.jump import jump

    sci, gdq, pdq, rn, gain = _snowball_ramps(8)
    jd = _stcal_jump_data({"sat_expand": 3}, gain.copy(), rn.copy())
    jd.init_arrays_from_arrays(sci.copy(), gdq.copy(), pdq.copy())
    jd.nframes, jd.dt_group, jd.n_reads_groupdiff, jd.max_cores = 1, np.ones(1), np.ones(1) * 2, "1"
    expected, _, _, _ = detect_jumps_data(jd)
    assert ((expected & SAT) != (gdq & SAT)).any()
    refs = _Refs(gain=gain, readnoise=rn)
    with dask.config.set(scheduler="threads"):
        for tile in (80, 24):
            ds = _dataset(sci, gdq, pdq, tile, GROUP_TIME)
            out = jump(ds, refs, expand_large_events=True, sat_expand=3)
            np.testing.assert_array_equal(out.groupdq.values, expected)
    assert (jump(ds, refs).groupdq.values != expected).any()
