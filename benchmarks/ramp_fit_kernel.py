"""Benchmark: jwdask's OLS_C ramp-fit kernel against stcal 1.20 on one core, same inputs.

Builds a realistic NIRCam-like exposure (default 2048 x 2048 pixels, 10 groups, NINTS = 1):
sky plus sources with Poisson noise in electrons, read noise, cosmic-ray jumps flagged
JUMP_DET, saturation that propagates forward, reference-pixel border and a few bad pixels.
Times :func:`jwdask.kernels.ramp_fit.fit_ramps` (after compiling on a small cube) and
``stcal.ramp_fitting.ramp_fit.ramp_fit`` called the way jwst 3.0's RampFitStep calls it
(RampModel, OLS_C, optimal weighting, ``maximum_cores='1'``), each in its own one-thread
subprocess, checks that both agree, and prints Mpixel-groups/s per core (CPU time, steadier
on a shared machine), the speed ratios (wall and CPU) and the peak memory of each process.

Usage: ``python benchmarks/ramp_fit_kernel.py [--size 2048] [--ngroups 10] [--repeat 3] [--stcal-repeat 2]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _common import emit, run_child, timed

from jwdask import dqflags
from jwdask.kernels.ramp_fit import RampFitResult, fit_ramps

FRAME_TIME = 10.737
"""NIRCam full-frame TFRAME [s]; RAPID readout, so TGROUP = TFRAME and NFRAMES = 1."""


def make_exposure(size: int, ngroups: int, seed: int) -> tuple[np.ndarray, ...]:
    """``(sci, groupdq, pixeldq, readnoise, gain)`` of a simulated exposure [DN, e-/DN]."""
    rng = np.random.default_rng(seed)
    gain = rng.normal(2.0, 0.1, (size, size)).astype(np.float32)
    readnoise = rng.uniform(9.0, 14.0, (size, size)).astype(np.float32)
    rate = 0.5 + rng.gamma(0.6, 8.0, (size, size))  # DN/s: sky plus faint sources
    bright = rng.random((size, size)) < 0.01
    rate[bright] *= rng.uniform(50.0, 400.0, bright.sum())  # stars, some of which saturate
    electrons = np.cumsum(rng.poisson((rate * gain * FRAME_TIME)[None], (ngroups, size, size)), axis=0)
    sci = electrons / gain + 12000.0 + rng.normal(0.0, 1.0, (ngroups, size, size)) * (readnoise / np.sqrt(2))
    gdq = np.zeros((ngroups, size, size), np.uint8)
    hits = rng.random((ngroups, size, size)) < 0.008  # cosmic rays between groups
    hits[0] = False
    sci += np.cumsum(hits * rng.uniform(50.0, 3000.0, hits.shape), axis=0)
    gdq[hits] |= dqflags.JUMP_DET
    gdq[np.maximum.accumulate(sci > 62000.0, axis=0)] |= dqflags.SATURATED
    pixeldq = np.zeros((size, size), np.uint32)
    pixeldq[rng.random((size, size)) < 0.002] |= dqflags.DO_NOT_USE | dqflags.HOT
    border = np.ones((size, size), bool)
    border[4:-4, 4:-4] = False
    pixeldq[border] |= dqflags.REFERENCE_PIXEL | dqflags.DO_NOT_USE
    gdq |= (pixeldq & dqflags.DO_NOT_USE).astype(np.uint8)[None]
    return sci[None].astype(np.float32), gdq[None], pixeldq, readnoise, gain


def run_jwdask(exposure: tuple[np.ndarray, ...]) -> RampFitResult:
    """The jwdask kernel on the whole exposure as one tile."""
    return fit_ramps(*exposure, frame_time=FRAME_TIME, group_time=FRAME_TIME, nframes=1, groupgap=0)


def run_stcal(exposure: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
    """stcal's OLS_C as jwst's RampFitStep calls it; returns the rate arrays."""
    from stcal.ramp_fitting import ramp_fit
    from stdatamodels.jwst import datamodels
    from stdatamodels.jwst.datamodels import dqflags as jwst_dqflags

    sci, gdq, pixeldq, readnoise, gain = exposure
    model = datamodels.RampModel(data=sci.copy(), groupdq=gdq.copy(), pixeldq=pixeldq.copy())
    model.meta.instrument.name = "NIRCAM"
    model.meta.exposure.frame_time = FRAME_TIME
    model.meta.exposure.group_time = FRAME_TIME
    model.meta.exposure.nframes = 1
    model.meta.exposure.groupgap = 0
    model.meta.exposure.drop_frames1 = 0
    readnoise_2d = readnoise.copy()  # stcal scales it in place
    image, _, _ = ramp_fit.ramp_fit(model, False, readnoise_2d, gain, "OLS_C", "optimal", "1", jwst_dqflags.pixel,
                                    suppress_one_group=True)
    return image


NAMES = ("sci", "groupdq", "pixeldq", "readnoise", "gain")
OUTPUTS = ("slope", "dq", "err", "var_poisson", "var_rnoise")


def _load(folder: Path) -> tuple[np.ndarray, ...]:
    return tuple(np.load(folder / f"{name}.npy") for name in NAMES)


def child(which: str, folder: Path, repeat: int) -> dict[str, Any]:
    """Child: best of ``repeat`` timings of one implementation; its outputs saved in ``folder``."""
    exposure = _load(folder)
    if which == "jwdask":
        run_jwdask(make_exposure(16, exposure[0].shape[1], 1))  # compile (or load the numba cache)

    def work() -> dict[str, np.ndarray]:
        return run_jwdask(exposure)._asdict() if which == "jwdask" else run_stcal(exposure)

    best: dict[str, Any] = {}
    times = []
    for _ in range(repeat):
        result, timing = timed(work)
        times.append(timing["seconds"])
        if not best or timing["cpu_seconds"] < best["cpu_seconds"]:
            best = timing
    for name in OUTPUTS:
        np.save(folder / f"{which}_{name}.npy", result[name])
    return {**best, "times": times}


def benchmark(size: int, ngroups: int, seed: int, repeat: int, stcal_repeat: int) -> dict[str, Any]:
    """Build the exposure, time both implementations in their own subprocess, compare."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        exposure = make_exposure(size, ngroups, seed)
        for name, arr in zip(NAMES, exposure, strict=True):
            np.save(folder / f"{name}.npy", arr)
        sci, gdq, pixeldq = exposure[:3]
        clean = ~(gdq != 0).any(axis=(0, 1)) & ((pixeldq & (dqflags.DO_NOT_USE | dqflags.SATURATED)) == 0)
        out: dict[str, Any] = {
            "size": size, "ngroups": ngroups, "samples": sci.size,
            "jump_fraction": float((gdq & dqflags.JUMP_DET).any(axis=(0, 1)).mean()),
            "saturated_fraction": float((gdq & dqflags.SATURATED).any(axis=(0, 1)).mean()),
            "clean_fraction": float(clean.mean())}
        del exposure, sci, gdq, pixeldq
        out["jwdask"] = run_child(__file__, ["--child", "jwdask", "--folder", tmp, "--repeat", str(repeat)])
        out["stcal"] = run_child(__file__, ["--child", "stcal", "--folder", tmp, "--repeat", str(stcal_repeat)])
        ours = {name: np.load(folder / f"jwdask_{name}.npy") for name in OUTPUTS}
        image = {name: np.load(folder / f"stcal_{name}.npy") for name in OUTPUTS}
    out["same_nan"] = np.array_equal(np.isnan(ours["slope"]), np.isnan(image["slope"]))
    out["same_dq"] = np.array_equal(ours["dq"], image["dq"])
    finite = np.isfinite(image["slope"])
    worst = 0.0
    for name in ("slope", "err", "var_poisson", "var_rnoise"):
        want = image[name][finite]
        diff = np.abs(ours[name][finite] - want) / np.maximum(np.abs(want), 1e-30)
        worst = max(worst, float(diff.max(initial=0.0)))
    out["max_relative_difference"] = worst
    return out


def report(r: dict[str, Any]) -> None:
    """Print a :func:`benchmark` result."""
    mpg = r["samples"] / 1e6
    print(f"exposure: {r['size']} x {r['size']} pixels x {r['ngroups']} groups, NINTS = 1 ({mpg:.1f} Mpixel-groups); "
          f"{r['jump_fraction']:.1%} of pixels with a jump, {r['saturated_fraction']:.1%} saturating, "
          f"{r['clean_fraction']:.1%} unflagged")
    for name, label in (("jwdask", "jwdask fit_ramps"), ("stcal", "stcal OLS_C")):
        t = r[name]
        print(f"{label:<17}: {t['seconds']:7.3f} s ({t['cpu_seconds']:.3f} s CPU)  "
              f"{mpg / t['cpu_seconds']:7.1f} Mpixel-groups/s per core (CPU)  peak RSS {t['peak_rss_mb']:6.0f} MB  "
              f"(1 thread; best CPU of {len(t['times'])}, wall {', '.join(f'{x:.3f}' for x in t['times'])})")
    ours, ref = r["jwdask"], r["stcal"]
    print(f"speed-up jwdask/stcal: {ref['seconds'] / ours['seconds']:.1f}x wall, "
          f"{ref['cpu_seconds'] / ours['cpu_seconds']:.1f}x CPU (one core each)")
    print(f"agreement: DQ identical {r['same_dq']}, NaN identical {r['same_nan']}, "
          f"max relative difference {r['max_relative_difference']:.1e}")


def main() -> None:
    """Build the exposure, time both implementations, print rates, ratio and agreement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="pixels per side (default 2048)")
    parser.add_argument("--ngroups", type=int, default=10, help="groups per integration (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="jwdask timings, best kept (default 3)")
    parser.add_argument("--stcal-repeat", type=int, default=2, help="stcal timings, best kept (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=("jwdask", "stcal"))
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.child:
        emit(child(args.child, args.folder, args.repeat))
        return
    report(benchmark(args.size, args.ngroups, args.seed, args.repeat, args.stcal_repeat))


if __name__ == "__main__":
    main()
