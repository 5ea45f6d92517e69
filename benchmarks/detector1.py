"""Benchmark: jwdask Detector1 against jwst/stcal — the two ramp kernels and the whole stage.

(a) Kernels, one core each, on a 2048 x 2048 x 10-group cube: the ramp-fit and jump kernels
    against stcal, through :mod:`ramp_fit_kernel` and :mod:`jump_kernel` (each implementation
    in its own one-thread subprocess). Target: >= 5x stcal per core.
(b) The whole stage on one exposure of the simulator's ``full`` preset (2048 x 2048, BRIGHT2,
    10 groups): ``jwdask.commands.run_pipeline(Pipeline.load("detector1"))`` on a 2-worker
    LocalCluster (one thread per worker) against jwst's ``Detector1Pipeline`` with the
    simulator's reference files (``tests/official.py``), each in its own subprocess tree with
    one thread per process. Reports wall and CPU time (CPU time of the whole process tree;
    steadier on a shared machine), the peak RSS of each process (jwdask: the sum of the
    peaks of the client/scheduler process and of each worker), the jwdask tasks that took
    the most time, and whether the two rate products agree. Targets: >= 3x faster than jwst
    with <= 0.5x its peak memory.

Usage: ``python benchmarks/detector1.py [--workdir DIR] [--tile 1024] [--skip-kernels] [--skip-stage]``
(``--workdir`` keeps the simulated exposure for later runs).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import jump_kernel
import numpy as np
import ramp_fit_kernel
from _common import (
    emit,
    jwst_child,
    machine,
    read_job,
    run_child,
    timed,
    tree_cpu_seconds,
    workdir_or_temporary,
    worker_usage,
)

KERNEL_TARGET = 5.0
STAGE_SPEED_TARGET = 3.0
STAGE_MEMORY_TARGET = 0.5
WORKERS = 2


def task_profile(events: list[dict[str, Any]]) -> dict[str, float]:
    """Compute seconds per task-name prefix (``ramp_fit``, ``jump``...) of a task stream."""
    seconds: dict[str, float] = defaultdict(float)
    for event in events:
        key = event["key"]
        name = key[0] if isinstance(key, tuple) else key
        prefix = str(name).strip("('").rsplit("-", 1)[0]
        for ss in event["startstops"]:
            if ss["action"] == "compute":
                seconds[prefix] += ss["stop"] - ss["start"]
    return dict(sorted(seconds.items(), key=lambda kv: -kv[1]))


def stage_jwdask(folder: Path, tile: int, processes: bool) -> dict[str, Any]:
    """Child: Detector1 with jwdask on a 2-worker LocalCluster (thread or process workers);
    returns times and memory."""
    from distributed import get_task_stream

    from jwdask import cluster
    from jwdask.commands import run_pipeline
    from jwdask.pipeline import Pipeline
    from jwdask.refs import RefProvider

    job = read_job(folder)
    start = time.perf_counter()
    with cluster.client(None, n_workers=WORKERS, dashboard=False, processes=processes) as client:
        ready = time.perf_counter()
        runs = []
        for attempt in ("cold", "warm"):
            out = folder / f"jwdask-{attempt}"
            out.mkdir(exist_ok=True)
            cpu = tree_cpu_seconds()
            refs = RefProvider(refs_dir=job["refs_dir"])
            with get_task_stream(client) as stream:
                urls, timing = timed(partial(run_pipeline, Pipeline.load("detector1"), [job["uncal"]], str(out), refs,
                                             tile=tile))
            timing.update({"cpu_seconds": tree_cpu_seconds() - cpu, "profile": task_profile(stream.data),
                           "ntasks": len(stream.data), "rate": next(u for u in urls if u.endswith("_rate.fits")),
                           "workers": list(client.run(worker_usage).values()) if processes else []})
            runs.append(timing)
    cold, warm = runs
    cold.update({"startup_seconds": ready - start, "warm": warm})
    return cold


def stage_jwst(folder: Path) -> dict[str, Any]:
    """Child: jwst's Detector1Pipeline with the simulator's references (tests/official.py)."""
    with jwst_child(folder, "jwst") as child:
        from tests.official import run_official_detector1

        rate, timing = timed(lambda: run_official_detector1(Path(child.job["uncal"]), child.reference_files,
                                                            child.out, child.monkeypatch))
    timing["rate"] = str(rate)
    return timing


def compare_rates(ours: str, theirs: str) -> dict[str, Any]:
    """DQ and NaN equality and the largest relative difference of the rate arrays."""
    from astropy.io import fits

    result: dict[str, Any] = {}
    with fits.open(ours) as a, fits.open(theirs) as b:
        result["dq_identical"] = bool(np.array_equal(a["DQ"].data, b["DQ"].data))
        worst, nan_same, beyond = 0.0, True, 0
        for name in ("SCI", "ERR", "VAR_POISSON", "VAR_RNOISE"):
            x, y = a[name].data, b[name].data
            nan_same &= bool(np.array_equal(np.isnan(x), np.isnan(y)))
            ok = ~np.isnan(x) & ~np.isnan(y)
            diff = np.abs(x[ok].astype(np.float64) - y[ok]) / np.maximum(np.abs(y[ok]), 1e-30)
            worst = max(worst, float(diff.max(initial=0.0)))
            beyond += int(np.count_nonzero(~np.isclose(x[ok], y[ok], rtol=1e-5, atol=1e-7)))
        result.update({"nan_identical": nan_same, "max_relative_difference": worst,
                       "values_beyond_rtol_1e-5": beyond})
    return result


def simulate(workdir: Path, seed: int) -> dict[str, Any]:
    """The ``full`` program in ``workdir/full`` (reused when already there): job description."""
    from jwdask.simulate import simulate_program

    job_file = workdir / "full_job.json"
    if job_file.exists():
        print(f"reusing the simulated exposure in {workdir / 'full'}")
        return json.loads(job_file.read_text())
    start = time.perf_counter()
    prog = simulate_program("full", workdir / "full", seed=seed)
    job = {"uncal": str(prog.uncal[0]), "refs_dir": str(prog.refs_dir),
           "reference_files": {k: str(v) for k, v in prog.reference_files.items()}}
    job_file.write_text(json.dumps(job))
    print(f"simulated the 'full' preset in {time.perf_counter() - start:.0f} s")
    return job


def warm_numba_cache(workdir: Path) -> None:
    """Run Detector1 once on the ``tiny`` preset in-process, so that every numba kernel is
    compiled into its on-disk cache (as after any first use) before anything is timed."""
    import dask

    from jwdask.commands import run_pipeline
    from jwdask.pipeline import Pipeline
    from jwdask.refs import RefProvider
    from jwdask.simulate import simulate_program

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        prog = simulate_program("tiny", Path(tmp) / "sim", seed=0)
        with dask.config.set(scheduler="sync"):
            run_pipeline(Pipeline.load("detector1"), [str(prog.uncal[0])], str(Path(tmp) / "out"),
                         RefProvider(refs_dir=str(prog.refs_dir)), tile=48)
    print(f"numba cache warmed on the 'tiny' preset in {time.perf_counter() - start:.0f} s")


def kernels() -> None:
    """Part (a): the two kernel benchmarks and their targets."""
    print("== (a) kernels, 2048 x 2048 x 10 groups, one thread each ==")
    print("-- ramp_fit (OLS_C) --")
    ramp = ramp_fit_kernel.benchmark(2048, 10, 0, repeat=2, stcal_repeat=1)
    ramp_fit_kernel.report(ramp)
    print("-- jump (two-point difference) --")
    jump = jump_kernel.benchmark(2048, 10, 1)
    jump_kernel.report(jump)
    for name, r in (("ramp_fit", ramp), ("jump", jump)):
        ratio = r["stcal"]["cpu_seconds"] / r["jwdask"]["cpu_seconds"]
        rate = r["samples"] / r["jwdask"]["cpu_seconds"] / 1e6
        verdict = "met" if ratio >= KERNEL_TARGET else "MISSED"
        print(f"target {name}: >= {KERNEL_TARGET:.0f}x stcal per core -> {ratio:.1f}x CPU "
              f"({rate:.0f} Mpixel-groups/s per core): {verdict}")


def stage(workdir: Path, tile: int, seed: int) -> None:
    """Part (b): the whole stage, jwdask vs jwst, and its targets."""
    print(f"== (b) whole Detector1 stage, 'full' preset (one 2048 x 2048 x 10-group exposure), "
          f"jwdask tile {tile} ==")
    job = simulate(workdir, seed)
    warm_numba_cache(workdir)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        folder = Path(tmp)
        (folder / "job.json").write_text(json.dumps(job))
        runs = {kind: run_child(__file__, ["--child", "stage-jwdask", "--folder", tmp, "--tile", str(tile),
                                           *(["--processes"] if kind == "processes" else [])])
                for kind in ("threads", "processes")}
        ref = run_child(__file__, ["--child", "stage-jwst", "--folder", tmp])
        agreement = {kind: compare_rates(r["rate"], ref["rate"]) for kind, r in runs.items()}
    print(f"jwst  : {ref['seconds']:7.1f} s wall ({ref['cpu_seconds']:.1f} s CPU); peak RSS {ref['peak_rss_mb']:.0f} MB")
    for kind, ours in runs.items():
        report_jwdask(kind, ours, ref, agreement[kind])


def report_jwdask(kind: str, ours: dict[str, Any], ref: dict[str, Any], agreement: dict[str, Any]) -> None:
    """Print one jwdask configuration's figures and its target verdicts against jwst."""
    worker_peaks = [w["peak_rss_mb"] for w in ours["workers"]]
    ours_peak = ours["peak_rss_mb"] + sum(worker_peaks)
    memory_parts = (f" = client/scheduler {ours['peak_rss_mb']:.0f} + workers "
                    f"{' + '.join(f'{p:.0f}' for p in worker_peaks)} MB" if worker_peaks else " (one process)")
    print(f"-- jwdask, LocalCluster of {WORKERS} {kind[:-2] if kind == 'processes' else 'thread'} workers "
          f"({'cluster.client(processes=True)' if kind == 'processes' else 'the jwdask run default'}) --")
    print(f"jwdask: {ours['seconds']:7.1f} s wall ({ours['cpu_seconds']:.1f} s CPU of the process tree; "
          f"+{ours['startup_seconds']:.1f} s LocalCluster start-up), {ours['ntasks']} tasks; peak RSS "
          f"{ours_peak:.0f} MB{memory_parts}")
    warm = ours["warm"]
    print(f"jwdask, second run on the same (warm) workers: {warm['seconds']:7.1f} s wall "
          f"({warm['cpu_seconds']:.1f} s CPU of the process tree)")
    top = ", ".join(f"{k.split('-')[0]} {v:.1f}" for k, v in list(warm["profile"].items())[:10])
    print(f"jwdask task durations by kind (warm run, summed over tasks, wall seconds): {top}")
    speed_wall = ref["seconds"] / ours["seconds"]
    speed_cpu = ref["cpu_seconds"] / ours["cpu_seconds"]
    memory = ours_peak / ref["peak_rss_mb"]
    print(f"target speed: >= {STAGE_SPEED_TARGET:.0f}x jwst -> {speed_wall:.2f}x wall ({WORKERS} workers vs 1 process), "
          f"{speed_cpu:.2f}x CPU time: {'met' if speed_wall >= STAGE_SPEED_TARGET else 'MISSED'} (wall), "
          f"{'met' if speed_cpu >= STAGE_SPEED_TARGET else 'MISSED'} (CPU); warm workers: "
          f"{ref['seconds'] / warm['seconds']:.2f}x wall, {ref['cpu_seconds'] / warm['cpu_seconds']:.2f}x CPU")
    print(f"target memory: <= {STAGE_MEMORY_TARGET}x jwst peak -> {memory:.2f}x: "
          f"{'met' if memory <= STAGE_MEMORY_TARGET else 'MISSED'}")
    print(f"rate products: DQ identical {agreement['dq_identical']}, NaN identical {agreement['nan_identical']}, "
          f"max relative difference {agreement['max_relative_difference']:.1e} "
          f"({agreement['values_beyond_rtol_1e-5']} values beyond rtol 1e-5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="where the simulated exposure is kept (default: temporary)")
    parser.add_argument("--tile", type=int, default=1024,
                        help="jwdask (y, x) tile [pixels] (default 1024: 4 tiles, the fewest tasks for 2 workers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-kernels", action="store_true", help="only the whole-stage comparison")
    parser.add_argument("--skip-stage", action="store_true", help="only the kernel comparison")
    parser.add_argument("--child", choices=("stage-jwdask", "stage-jwst"))
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--processes", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "stage-jwdask":
        emit(stage_jwdask(args.folder, args.tile, args.processes))
        return
    if args.child == "stage-jwst":
        emit(stage_jwst(args.folder))
        return
    print(f"machine: {machine()}")
    if not args.skip_kernels:
        kernels()
    if not args.skip_stage:
        with workdir_or_temporary(args.workdir) as folder:
            stage(folder, args.tile, args.seed)


if __name__ == "__main__":
    main()
