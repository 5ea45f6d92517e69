"""Benchmark: jwdask's OLS_C ramp-fit kernel against stcal 1.20 on one core, same inputs.

Builds a realistic NIRCam-like exposure (default 2048 x 2048 pixels, 10 groups, NINTS = 1):
sky plus sources with Poisson noise in electrons, read noise, cosmic-ray jumps flagged
JUMP_DET, saturation that propagates forward, reference-pixel border and a few bad pixels.
Times :func:`jwdask.kernels.ramp_fit.fit_ramps` (one thread, after compiling on a small cube)
and ``stcal.ramp_fitting.ramp_fit.ramp_fit`` called the way jwst 3.0's RampFitStep calls it
(RampModel, OLS_C, optimal weighting, ``maximum_cores='1'``), checks that both agree, and
prints Mpixel-groups/s and the speed ratio.

Usage: ``python benchmarks/ramp_fit_kernel.py [--size 2048] [--ngroups 10] [--repeat 3] [--stcal-repeat 2]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

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


def run_stcal(exposure: tuple[np.ndarray, ...]) -> tuple[float, dict[str, np.ndarray]]:
    """stcal's OLS_C as jwst's RampFitStep calls it; returns (seconds in ``ramp_fit``, rate)."""
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
    start = time.perf_counter()
    image, _, _ = ramp_fit.ramp_fit(model, False, readnoise_2d, gain, "OLS_C", "optimal", "1", jwst_dqflags.pixel,
                                    suppress_one_group=True)
    return time.perf_counter() - start, image


def main() -> None:
    """Build the exposure, time both implementations, print rates, ratio and agreement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="pixels per side (default 2048)")
    parser.add_argument("--ngroups", type=int, default=10, help="groups per integration (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="jwdask timings, best kept (default 3)")
    parser.add_argument("--stcal-repeat", type=int, default=2, help="stcal timings, best kept (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    exposure = make_exposure(args.size, args.ngroups, args.seed)
    sci, gdq, pixeldq = exposure[:3]
    clean = ~(gdq != 0).any(axis=(0, 1)) & ((pixeldq & (dqflags.DO_NOT_USE | dqflags.SATURATED)) == 0)
    mpg = sci.size / 1e6
    print(f"exposure: {args.size} x {args.size} pixels x {args.ngroups} groups, NINTS = 1 ({mpg:.1f} Mpixel-groups); "
          f"{(gdq & dqflags.JUMP_DET).any(axis=(0, 1)).mean():.1%} of pixels with a jump, "
          f"{(gdq & dqflags.SATURATED).any(axis=(0, 1)).mean():.1%} saturating, {clean.mean():.1%} unflagged")

    run_jwdask(make_exposure(16, args.ngroups, args.seed + 1))  # compile (or load the numba cache)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        ours = run_jwdask(exposure)
        times.append(time.perf_counter() - start)
    best = min(times)
    print(f"jwdask fit_ramps : {best:7.3f} s  {mpg / best:7.1f} Mpixel-groups/s  "
          f"(1 thread, best of {args.repeat}: {', '.join(f'{t:.3f}' for t in times)})")

    stcal_times = []
    for _ in range(args.stcal_repeat):
        elapsed, image = run_stcal(exposure)
        stcal_times.append(elapsed)
    elapsed = min(stcal_times)
    print(f"stcal OLS_C      : {elapsed:7.3f} s  {mpg / elapsed:7.1f} Mpixel-groups/s  (ramp_fit.ramp_fit, "
          f"max_cores='1', best of {args.stcal_repeat}: {', '.join(f'{t:.3f}' for t in stcal_times)})")
    print(f"speed-up         : {elapsed / best:7.1f} x")

    same_nan = np.array_equal(np.isnan(ours.slope), np.isnan(image["slope"]))
    finite = np.isfinite(image["slope"])
    worst = 0.0
    for name in ("slope", "err", "var_poisson", "var_rnoise"):
        want = image[name][finite]
        diff = np.abs(getattr(ours, name)[finite] - want) / np.maximum(np.abs(want), 1e-30)
        worst = max(worst, float(diff.max(initial=0.0)))
    print(f"agreement        : DQ identical {np.array_equal(ours.dq, image['dq'])}, NaN identical {same_nan}, "
          f"max relative difference {worst:.1e}")


if __name__ == "__main__":
    main()
