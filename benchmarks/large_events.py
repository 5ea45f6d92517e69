"""Benchmark: jwdask snowball (and MIRI shower) flagging vs stcal 1.20, one core each.

Snowballs: a 2048x2048, 10-group GROUPDQ after two-point detection with many snowballs
(saturated cores from group g or g+1 inside jump halos, some off the frame edge), cosmic
rays with their four neighbours in every group, and saturating stars.

* jwdask: :func:`jwdask.detector1.jump.snowball_flags` on 512x512 tiles, computed with the
  synchronous dask scheduler (after a warm-up on a small frame that loads the numba cache);
* stcal: ``stcal.jump.jump.flag_large_events`` with the JumpData jwst 3.0's JumpStep builds
  (``sat_expand`` and ``max_extended_radius`` doubled, core masking for 4000 s).

Showers (``--case showers`` or ``both``): a MIRI-like 2-integration, 10-group, 1024x1032
ramp with faint extended steps; jwdask :func:`jwdask.detector1.jump.shower_flags` vs stcal's
``find_faint_extended``.

Each implementation runs in its own subprocess restricted to one thread. Prints wall and
CPU seconds, the speed ratio and whether the GROUPDQ arrays are identical.

Usage: ``python benchmarks/large_events.py [--case snowballs|showers|both] [--seed 1]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _common import emit, run_child, timed

SAT, JUMP, DNU = 2, 4, 1
GROUP_TIME = 10.737
MIRI_GROUP_TIME = 2.775
SNOWBALL_PARAMS = {"min_jump_area": 5.0, "min_sat_area": 1.0, "expand_factor": 2.0,
                   "sat_required_snowball": True, "min_sat_radius_extend": 2.5, "sat_expand": 2,
                   "edge_size": 25, "max_extended_radius": 200, "mask_snowball_core_next_int": True,
                   "snowball_time_masked_next_int": 4000}
SHOWER_PARAMS = {"extend_snr_threshold": 1.2, "extend_min_area": 90, "extend_inner_radius": 1.0,
                 "extend_outer_radius": 2.6, "extend_ellipse_expand_ratio": 1.1,
                 "time_masked_after_shower": 15.0, "max_extended_radius": 200}


def _ellipse(shape: tuple[int, int], r0: float, c0: float, rad: float, ratio: float, angle: float):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    dy, dx = yy - r0, xx - c0
    u = dy * np.cos(angle) + dx * np.sin(angle)
    v = -dy * np.sin(angle) + dx * np.cos(angle)
    return (u / rad) ** 2 + (v / (rad * ratio)) ** 2 <= 1


def make_snowball_dq(size: int, ngroups: int, seed: int, *, snowballs: int = 400, rays: int = 1500,
                     stars: int = 3000) -> np.ndarray:
    """GROUPDQ ``(1, ngroups, size, size)`` after two-point detection."""
    rng = np.random.default_rng(seed)
    gdq = np.zeros((1, ngroups, size, size), np.uint8)
    for _ in range(snowballs):
        g = int(rng.integers(1, ngroups))
        r0, c0 = rng.uniform(-5, size + 5), rng.uniform(-5, size + 5)
        rs = rng.uniform(1.0, 8.0)
        rj = rs + rng.uniform(3.0, 25.0)
        ratio, angle = rng.uniform(0.6, 1.0), rng.uniform(0, np.pi)
        r_lo, r_hi = max(int(r0 - rj - 3), 0), min(int(r0 + rj + 4), size)
        c_lo, c_hi = max(int(c0 - rj - 3), 0), min(int(c0 + rj + 4), size)
        if r_hi <= r_lo or c_hi <= c_lo:
            continue
        box = (r_hi - r_lo, c_hi - c_lo)
        core = _ellipse(box, r0 - r_lo, c0 - c_lo, rs, ratio, angle)
        halo = _ellipse(box, r0 - r_lo + rng.normal(0, 1), c0 - c_lo + rng.normal(0, 1), rj, ratio, angle)
        gs = min(g + int(rng.integers(0, 2)), ngroups - 1)
        gdq[0, gs:, r_lo:r_hi, c_lo:c_hi][:, core] |= SAT
        gdq[0, g, r_lo:r_hi, c_lo:c_hi][halo & ~core] |= JUMP
    for g in range(1, ngroups):
        r = rng.integers(1, size - 1, rays)
        c = rng.integers(1, size - 1, rays)
        for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
            gdq[0, g, r + dr, c + dc] |= JUMP
    r = rng.integers(3, size - 3, stars)
    c = rng.integers(3, size - 3, stars)
    first = rng.integers(0, ngroups, stars)
    half = rng.integers(0, 3, stars)
    for k in range(stars):
        gdq[0, first[k]:, r[k] - half[k]:r[k] + half[k] + 1, c[k] - half[k]:c[k] + half[k] + 1] |= SAT
    gdq[(gdq & (SAT | DNU)) != 0] &= np.uint8(0xFF ^ JUMP)
    return gdq


def make_miri_ramp(nints: int, ny: int, nx: int, ngroups: int, seed: int,
                   showers: int = 40) -> dict[str, np.ndarray]:
    """MIRI-like ramps [DN] with faint extended steps, jumps, saturation, reference pixels."""
    rng = np.random.default_rng(seed)
    gain = rng.uniform(3.5, 4.5, (ny, nx)).astype(np.float32)
    rn = rng.uniform(5.0, 8.0, (ny, nx)).astype(np.float32)
    rate = rng.gamma(2.0, 5.0, (ny, nx)).astype(np.float32)
    shape = (nints, ngroups, ny, nx)
    step = rate + rng.standard_normal(shape, dtype=np.float32) * np.sqrt(rate / gain + (rn / gain) ** 2)
    for _ in range(showers * nints):
        g, r0, c0 = int(rng.integers(1, ngroups)), rng.uniform(0, ny), rng.uniform(0, nx)
        rad = rng.uniform(8, 40)
        r_lo, r_hi = max(int(r0 - rad - 1), 0), min(int(r0 + rad + 2), ny)
        c_lo, c_hi = max(int(c0 - rad - 1), 0), min(int(c0 + rad + 2), nx)
        region = _ellipse((r_hi - r_lo, c_hi - c_lo), r0 - r_lo, c0 - c_lo, rad, rng.uniform(0.5, 1), rng.uniform(0, np.pi))
        step[int(rng.integers(0, nints)), g, r_lo:r_hi, c_lo:c_hi][region] += rng.uniform(5, 20)
    sci = np.cumsum(step, axis=1, dtype=np.float32)
    gdq = np.zeros(sci.shape, np.uint8)
    gdq[rng.random(sci.shape) < 0.002] |= JUMP
    gdq[np.logical_or.accumulate(rng.random(sci.shape) < 0.001, axis=1)] |= SAT
    pdq = np.zeros((ny, nx), np.uint32)
    pdq[:, :4] = pdq[:, -4:] = 1 << 31
    return {"sci": sci, "groupdq": gdq, "pixeldq": pdq, "readnoise": rn, "gain": gain}


def _stcal_jump_data(case: str, arrays: dict[str, np.ndarray]) -> Any:
    from stcal.jump.jump_class import JumpData
    from stdatamodels.jwst.datamodels import dqflags

    jd = JumpData(gain2d=arrays.get("gain"), rnoise2d=arrays.get("readnoise"), dqflags=dqflags.pixel)
    jd.nframes = 1
    if case == "snowballs":
        p = SNOWBALL_PARAMS
        jd.set_snowball_info(True, p["min_jump_area"], p["min_sat_area"], p["expand_factor"],
                             p["sat_required_snowball"], p["min_sat_radius_extend"], p["sat_expand"] * 2,
                             p["edge_size"])
        jd.max_extended_width = p["max_extended_radius"] * 2
        jd.mask_persist_grps_next_int = p["mask_snowball_core_next_int"]
        jd.persist_grps_flagged = int(p["snowball_time_masked_next_int"] // GROUP_TIME)
    else:
        p = SHOWER_PARAMS
        jd.set_shower_info(True, p["extend_snr_threshold"], p["extend_min_area"], p["extend_inner_radius"],
                           p["extend_outer_radius"], p["extend_ellipse_expand_ratio"], 10,
                           p["max_extended_radius"] * 2)
        jd.grps_masked_after_shower = int(p["time_masked_after_shower"] // MIRI_GROUP_TIME)
        jd.max_shower_amplitude = jd.max_shower_amplitude * MIRI_GROUP_TIME
    return jd


def _load(folder: Path) -> dict[str, np.ndarray]:
    return {p.stem[3:]: np.load(p) for p in folder.glob("in_*.npy")}


def run_jwdask(folder: Path, case: str) -> dict[str, float]:
    """Child: the jwdask graph on 512x512 tiles, synchronous scheduler (one core)."""
    import dask
    import xarray as xr

    from jwdask.detector1.jump import shower_flags, snowball_flags

    arrays = _load(folder)
    dims = ("integration", "group", "y", "x")

    def graph(a: dict[str, np.ndarray], tile: int) -> xr.DataArray:
        gdq = xr.DataArray(a["groupdq"], dims=dims).chunk({"y": tile, "x": tile})
        if case == "snowballs":
            return snowball_flags(gdq, group_time=GROUP_TIME, **SNOWBALL_PARAMS)
        sci = xr.DataArray(a["sci"], dims=dims).chunk({"y": tile, "x": tile})
        two = {k: xr.DataArray(a[k], dims=("y", "x")) for k in ("pixeldq", "readnoise", "gain")}
        return shower_flags(sci, gdq, two["pixeldq"], two["readnoise"], two["gain"], nframes=1,
                            group_time=MIRI_GROUP_TIME, **SHOWER_PARAMS)

    with dask.config.set(scheduler="sync"):
        graph({k: v[..., :64, :64] for k, v in arrays.items()}, 32).compute()
        result, timing = timed(lambda: graph(arrays, 512).values)
    np.save(folder / "jwdask_groupdq.npy", result)
    return timing


def run_stcal(folder: Path, case: str) -> dict[str, float]:
    """Child: stcal's flag_large_events / find_faint_extended as jwst's JumpStep calls them."""
    import logging

    from stcal.jump.jump import find_faint_extended, flag_large_events

    logging.disable(logging.CRITICAL)
    arrays = _load(folder)
    jd = _stcal_jump_data(case, arrays)
    if case == "snowballs":
        (result, _), timing = timed(lambda: flag_large_events(arrays["groupdq"].copy(), JUMP, SAT, jd))
    else:
        data = arrays["sci"] * arrays["gain"]
        rn = arrays["readnoise"] * arrays["gain"]
        (result, _), timing = timed(lambda: find_faint_extended(data, arrays["groupdq"].copy(),
                                                                arrays["pixeldq"].copy(), rn, jd))
    np.save(folder / "stcal_groupdq.npy", result)
    return timing


def benchmark(case: str, seed: int) -> dict[str, Any]:
    """Build the inputs, time both implementations in their own subprocess, compare GROUPDQ."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if case == "snowballs":
            arrays = {"groupdq": make_snowball_dq(2048, 10, seed)}
        else:
            arrays = make_miri_ramp(2, 1024, 1032, 10, seed)
        for name, arr in arrays.items():
            np.save(folder / f"in_{name}.npy", arr)
        out: dict[str, Any] = {"case": case, "shape": arrays["groupdq"].shape}
        gdq = arrays["groupdq"]
        del arrays
        for which in ("jwdask", "stcal"):
            out[which] = run_child(__file__, ["--child", which, "--case", case, "--folder", str(folder)])
        ours, theirs = np.load(folder / "jwdask_groupdq.npy"), np.load(folder / "stcal_groupdq.npy")
        out["identical"] = np.array_equal(ours, theirs)
        out["differing"] = int(np.count_nonzero(ours != theirs))
        out["changed"] = int(np.count_nonzero(theirs != gdq))
    return out


def report(r: dict[str, Any]) -> None:
    """Print a :func:`benchmark` result."""
    ours, ref = r["jwdask"], r["stcal"]
    print(f"{r['case']}: GROUPDQ {' x '.join(map(str, r['shape']))}, {r['changed']} group flags changed by stcal")
    for name, t in (("jwdask", ours), ("stcal", ref)):
        print(f"{name:>7}: {t['seconds']:8.2f} s wall  {t['cpu_seconds']:8.2f} s CPU  peak RSS {t['peak_rss_mb']:6.0f} MB")
    print(f"speed-up jwdask/stcal: {ref['seconds'] / ours['seconds']:.1f}x wall, "
          f"{ref['cpu_seconds'] / ours['cpu_seconds']:.1f}x CPU (one core each)")
    print(f"GROUPDQ identical: {r['identical']} ({r['differing']} differing values)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("snowballs", "showers", "both"), default="snowballs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", choices=("jwdask", "stcal"))
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.child:
        runner = run_jwdask if args.child == "jwdask" else run_stcal
        emit(runner(args.folder, args.case))
        return
    for case in ("snowballs", "showers") if args.case == "both" else (args.case,):
        report(benchmark(case, args.seed))


if __name__ == "__main__":
    main()
