"""Benchmark: jwdask jump kernel vs stcal's jump detection on a full NIR frame, one core each.

Builds a realistic 2048x2048, 10-group, 1-integration ramp cube (sky and sources, read and
shot noise, cosmic-ray jumps, saturated and dead pixels), stores it in a temporary folder,
then runs each implementation in its own subprocess restricted to one thread:

* jwdask: ``jwdask.kernels.jump.detect_jumps`` on the whole frame (after a warm-up that
  compiles / loads the numba cache);
* stcal: ``stcal.jump.jump.detect_jumps_data`` with the ``JumpData`` that jwst 3.0's
  ``JumpStep`` builds (``_setup_jump_data``, ``maximum_cores='1'``), like ``JumpStep.process``.

Prints the throughput in Mpixel-groups/s, the speed ratio (wall clock, and CPU time, which
is steadier on a shared machine), the peak resident memory of each subprocess (and its
increase over the loaded inputs), and whether the DQ arrays agree.

Usage: ``python benchmarks/jump_kernel.py [--size 2048] [--groups 10] [--seed 1]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _common import emit, run_child, timed


def make_cube(size: int, ngroups: int, seed: int) -> dict[str, np.ndarray]:
    """A NIRCam-like exposure after dark subtraction, in DN, with known jumps."""
    rng = np.random.default_rng(seed)
    shape = (1, ngroups, size, size)
    gain = rng.normal(2.0, 0.1, (size, size)).astype(np.float32)
    readnoise = rng.normal(10.0, 1.0, (size, size)).astype(np.float32)
    rate = rng.gamma(2.0, 2.0, (size, size)).astype(np.float32)  # DN/group sky
    stars = rng.random((size, size)) < 0.002
    rate[stars] *= rng.uniform(20.0, 2000.0, int(stars.sum())).astype(np.float32)
    sci = np.empty(shape, np.float32)
    level = np.zeros((size, size), np.float32)
    for g in range(ngroups):
        shot = rng.standard_normal((size, size), dtype=np.float32) * np.sqrt(rate / gain)
        level += rate + shot
        hits = rng.random((size, size)) < 5e-4  # ~3e-5 events per pixel per second
        level[hits] += rng.exponential(300.0, int(hits.sum())).astype(np.float32)
        sci[0, g] = level + rng.standard_normal((size, size), dtype=np.float32) * readnoise / np.sqrt(2)
    groupdq = np.zeros(shape, np.uint8)
    groupdq[np.logical_or.accumulate(sci > 60000.0, axis=1)] |= 2
    dead = rng.random((size, size)) < 0.005
    groupdq[:, :, dead] |= 1
    pixeldq = np.where(dead, 1 | 1024, 0).astype(np.uint32)
    gain[rng.random((size, size)) < 1e-4] = 0.0
    return {"sci": sci, "groupdq": groupdq, "pixeldq": pixeldq, "readnoise": readnoise, "gain": gain}


def _load(folder: Path) -> dict[str, np.ndarray]:
    return {name: np.load(folder / f"{name}.npy") for name in
            ("sci", "groupdq", "pixeldq", "readnoise", "gain")}


def run_jwdask(folder: Path) -> dict[str, float]:
    """Child: time the jwdask kernel on the whole frame."""
    from jwdask.kernels.jump import detect_jumps

    arrays = _load(folder)
    small = {k: v[..., :16, :16] for k, v in arrays.items()}
    detect_jumps(**small, nframes=1, frame_time=10.737, group_time=10.737)
    result, timing = timed(lambda: detect_jumps(**arrays, nframes=1, frame_time=10.737, group_time=10.737))
    np.save(folder / "jwdask_groupdq.npy", result.groupdq)
    np.save(folder / "jwdask_pixeldq.npy", result.pixeldq)
    return timing


def run_stcal(folder: Path) -> dict[str, float]:
    """Child: time stcal's detect_jumps_data with the JumpData jwst's JumpStep builds."""
    import logging

    from jwst.jump.jump_step import JumpStep
    from stcal.jump.jump import detect_jumps_data
    from stdatamodels.jwst import datamodels

    logging.disable(logging.CRITICAL)
    arrays = _load(folder)
    ny, nx = arrays["gain"].shape
    model = datamodels.RampModel(data=arrays["sci"], groupdq=arrays["groupdq"], pixeldq=arrays["pixeldq"])
    model.meta.exposure.nframes = 1
    model.meta.exposure.group_time = 10.737
    model.meta.exposure.frame_time = 10.737
    refs = {"gain": datamodels.GainModel(data=arrays["gain"]),
            "readnoise": datamodels.ReadnoiseModel(data=arrays["readnoise"])}
    for m in (model, *refs.values()):
        m.meta.instrument.name = "NIRCAM"
        m.meta.subarray.xstart = m.meta.subarray.ystart = 1
        m.meta.subarray.xsize, m.meta.subarray.ysize = nx, ny
    step = JumpStep()
    step.get_reference_file = lambda _model, reftype: refs[reftype]
    jump_data = step._setup_jump_data(model)
    (groupdq, pixeldq, _, _), timing = timed(lambda: detect_jumps_data(jump_data))
    np.save(folder / "stcal_groupdq.npy", groupdq)
    np.save(folder / "stcal_pixeldq.npy", pixeldq)
    return timing


def benchmark(size: int, groups: int, seed: int) -> dict[str, Any]:
    """Build the cube, time both implementations in their own subprocess, compare DQ."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        arrays = make_cube(size, groups, seed)
        for name, arr in arrays.items():
            np.save(folder / f"{name}.npy", arr)
        out: dict[str, Any] = {"samples": arrays["sci"].size, "size": size, "groups": groups,
                               "input_mb": sum(a.nbytes for a in arrays.values()) / 2**20}
        del arrays
        for which in ("jwdask", "stcal"):
            out[which] = run_child(__file__, ["--child", which, "--folder", str(folder)])
        stcal_gdq = np.load(folder / "stcal_groupdq.npy")
        out["same_groupdq"] = np.array_equal(np.load(folder / "jwdask_groupdq.npy"), stcal_gdq)
        out["same_pixeldq"] = np.array_equal(np.load(folder / "jwdask_pixeldq.npy"),
                                             np.load(folder / "stcal_pixeldq.npy"))
        out["jumps"] = int(np.count_nonzero(stcal_gdq & 4))
    return out


def report(r: dict[str, Any]) -> None:
    """Print a :func:`benchmark` result."""
    ours, ref = r["jwdask"], r["stcal"]
    print(f"cube: 1 x {r['groups']} x {r['size']} x {r['size']} float32 ({r['input_mb']:.0f} MB of inputs), "
          f"{r['jumps']} JUMP_DET group flags")
    for name, t in (("jwdask", ours), ("stcal", ref)):
        rate = r["samples"] / t["cpu_seconds"] / 1e6
        print(f"{name:>7}: {t['seconds']:7.3f} s ({t['cpu_seconds']:.3f} s CPU)  {rate:8.1f} Mpixel-groups/s "
              f"per core (CPU)  peak RSS {t['peak_rss_mb']:7.0f} MB (+{t['peak_rss_mb'] - t['rss_before_mb']:.0f} "
              f"MB over the loaded inputs)")
    print(f"speed-up jwdask/stcal: {ref['seconds'] / ours['seconds']:.1f}x wall, "
          f"{ref['cpu_seconds'] / ours['cpu_seconds']:.1f}x CPU (one core each)")
    print(f"GROUPDQ identical: {r['same_groupdq']}  PIXELDQ identical: {r['same_pixeldq']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", choices=("jwdask", "stcal"))
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.child:
        runner = run_jwdask if args.child == "jwdask" else run_stcal
        emit(runner(args.folder))
        return
    report(benchmark(args.size, args.groups, args.seed))


if __name__ == "__main__":
    main()
