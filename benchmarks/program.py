"""Benchmark: the program runner over a whole simulated program on 1 and 2 workers.

A program of ``--exposures`` (default 16) ``tiny``-preset exposures (SUB160, 2 x 5 groups),
dithered on a small grid, is simulated once and kept in ``--workdir``. Then, each in a fresh
subprocess with one thread per process, ``jwdask.service.runner.program_run`` runs the whole
program (Detector1 -> Image2 -> Image3, tweakreg aligned to the simulator's reference catalog)
on a LocalCluster of 1 and then of 2 workers, each into a fresh output folder.

Reports per run: wall seconds of ``program_run`` (cluster already started; its start-up is
reported apart), CPU seconds of the whole process tree (client, scheduler and workers) over
the run, exposures per minute, the 2-vs-1-worker speed-up, and the job store's overhead per
job. The store overhead is measured by wrapping every public method of
:class:`jwdask.service.store.Store` with a timer in the client process (the only process that
talks to the store) and dividing the summed seconds by the number of jobs; the products'
SHA-256 checksums the runner records are timed apart the same way.

Usage: ``python benchmarks/program.py [--workdir DIR] [--exposures 16] [--workers 1,2]
[--stages detector1] [--tile 512]``; ``--stages detector1`` is the quick run.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import emit, machine, run_child, tree_cpu_seconds

REPO = Path(__file__).resolve().parent.parent
STAGE_NAMES = ("detector1", "image2", "image3")
STEP = (0.35, 0.28)
"""Dither grid spacing (x, y) [arcsec] (the ``tiny`` preset's own offset)."""


def dithers(n: int) -> tuple[tuple[float, float], ...]:
    """``n`` offsets [arcsec] on a square grid of spacing :data:`STEP`, centred on 0."""
    side = int(n ** 0.5 + 0.999999)
    half = (side - 1) / 2
    grid = [((i % side - half) * STEP[0], (i // side - half) * STEP[1]) for i in range(n)]
    return tuple((round(x, 4), round(y, 4)) for x, y in grid)


def prepare(workdir: Path, n_exposures: int, seed: int) -> dict[str, Any]:
    """Simulate the program once (reused from ``workdir``); return what the children read."""
    job_file = workdir / f"tiny{n_exposures}_program.json"
    if job_file.exists():
        print(f"reusing the simulated program in {workdir}")
        return json.loads(job_file.read_text())
    from jwdask.simulate import PRESETS, simulate_program

    preset = dataclasses.replace(PRESETS["tiny"], name=f"tiny{n_exposures}", dithers=dithers(n_exposures))
    start = time.perf_counter()
    prog = simulate_program(preset, workdir / f"tiny{n_exposures}", seed=seed)
    print(f"simulated {len(prog.uncal)} SUB160 exposures in {time.perf_counter() - start:.0f} s")
    job = {"inputs": str(prog.out_dir / "uncal"), "refs_dir": str(prog.refs_dir), "refcat": str(prog.refcat),
           "n_exposures": len(prog.uncal)}
    job_file.write_text(json.dumps(job, indent=2))
    return job


# ------------------------------------------------------------------------------ child

class Timers:
    """Summed seconds and calls of wrapped functions, by name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
                self.calls[name] = self.calls.get(name, 0) + 1

        return timed


def instrument_store(timers: Timers, checksums: Timers) -> None:
    """Time every public Store method, and the runner's product checksums (this process)."""
    from jwdask.service import runner
    from jwdask.service.store import Store

    for name, fn in list(vars(Store).items()):
        if callable(fn) and not name.startswith("_") and name != "session":
            setattr(Store, name, timers.wrap(name, fn))
    runner.sha256 = checksums.wrap("sha256", runner.sha256)


def child(job: dict[str, Any], out: Path, n_workers: int, stages: list[str], tile: int) -> dict[str, Any]:
    """Run the program on ``n_workers`` LocalCluster workers; return times and job counts."""
    from rich.console import Console

    from jwdask import cluster
    from jwdask.refs import RefProvider
    from jwdask.service.runner import program_run
    from jwdask.service.store import Store, default_url

    store_timers, checksum_timers = Timers(), Timers()
    instrument_store(store_timers, checksum_timers)
    steps = {"image3": {"tweakreg": {"abs_refcat": job["refcat"]}}} if "image3" in stages else None
    start = time.perf_counter()
    with cluster.client(None, n_workers=n_workers, memory_limit="auto", dashboard=False) as c:
        c.wait_for_workers(n_workers)
        startup = time.perf_counter() - start
        cpu0, own0, wall0 = tree_cpu_seconds(), time.process_time(), time.perf_counter()
        code = program_run([job["inputs"]], out, scheduler=c, refs=RefProvider(refs_dir=job["refs_dir"]),
                           steps=steps, stages=stages, tile=tile, console=Console(stderr=True))
        wall, cpu = time.perf_counter() - wall0, tree_cpu_seconds() - cpu0
        client_cpu = time.process_time() - own0
    (prog,) = Store(default_url(out)).programs()
    jobs = prog.jobs
    by_status: dict[str, int] = {}
    for j in jobs:
        by_status[j.status] = by_status.get(j.status, 0) + 1
    stage_span = {}
    for stage in stages:
        ran = [j for j in jobs if j.stage == stage and j.started is not None and j.finished is not None]
        if ran:
            stage_span[stage] = (max(j.finished for j in ran) - min(j.started for j in ran)).total_seconds()
    return {"exit_code": code, "stage_span_seconds": stage_span, "workers": n_workers, "seconds": wall, "cpu_seconds": cpu,
            "client_cpu_seconds": client_cpu, "startup_seconds": startup, "jobs": len(jobs),
            "run_jobs": sum(j.attempts > 0 for j in jobs),
            "by_status": by_status,
            "failed": [f"{j.key}: {j.error_file}: {j.error}" for j in jobs if j.status == "failed"],
            "store_seconds": sum(store_timers.seconds.values()), "store_calls": store_timers.calls,
            "store_by_method": store_timers.seconds,
            "checksum_seconds": sum(checksum_timers.seconds.values()),
            "checksum_calls": sum(checksum_timers.calls.values())}


# ------------------------------------------------------------------------------ parent

def report(job: dict[str, Any], runs: list[dict[str, Any]], stages: list[str]) -> None:
    n = job["n_exposures"]
    print(f"\nprogram: {n} tiny (SUB160, 2 x 5 groups) exposures; stages {' -> '.join(stages)}")
    print(f"{'workers':>7} {'wall [s]':>9} {'CPU [s]':>8} {'exp/min':>8} {'start [s]':>9} {'jobs':>5} "
          f"{'client CPU':>10} {'store [s]':>9} {'store/job [ms]':>14} {'sha256 [s]':>10} {'exit':>4}")
    for r in runs:
        per_job = 1e3 * r["store_seconds"] / max(r["run_jobs"], 1)
        print(f"{r['workers']:>7} {r['seconds']:>9.1f} {r['cpu_seconds']:>8.1f} {60 * n / r['seconds']:>8.2f} "
              f"{r['startup_seconds']:>9.1f} {r['run_jobs']:>5} {r['client_cpu_seconds']:>10.1f} "
              f"{r['store_seconds']:>9.3f} {per_job:>14.1f} "
              f"{r['checksum_seconds']:>10.3f} {r['exit_code']:>4}")
    for r in runs:
        calls = ", ".join(f"{k} {r['store_calls'][k]}x {1e3 * v / r['store_calls'][k]:.1f} ms"
                          for k, v in sorted(r["store_by_method"].items(), key=lambda kv: -kv[1]))
        spans = ", ".join(f"{k} {v:.1f} s" for k, v in r["stage_span_seconds"].items())
        print(f"  {r['workers']} worker(s): job states {r['by_status']}; stage spans (first start to last "
              f"finish, stages overlap): {spans}")
        print(f"    store calls: {calls}")
        for line in r["failed"]:
            print(f"    FAILED {line}")
    by_workers = {r["workers"]: r for r in runs}
    if 1 in by_workers and 2 in by_workers:
        speedup = by_workers[1]["seconds"] / by_workers[2]["seconds"]
        print(f"speed-up 2 vs 1 worker (wall): {speedup:.2f}x (linear: 2.00x)")
    print("wall: program_run with the LocalCluster already up; CPU: client + scheduler + workers "
          "(psutil, process tree) over the same interval; client CPU: the client process alone "
          "(graph building, scheduler, store, checksums).")
    print("store overhead: every public jwdask.service.store.Store method wrapped with a timer in the "
          "client process; summed seconds / jobs run (skipped "
          "jobs' records included in the sum; sqlite in the output folder). sha256: the "
          "runner's product checksums, timed the same way, not included in the store figure.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "jwdask-bench-program")
    parser.add_argument("--exposures", type=int, default=16)
    parser.add_argument("--workers", default="1,2", help="comma-separated LocalCluster sizes, run in order")
    parser.add_argument("--stages", default=",".join(STAGE_NAMES),
                        help="comma-separated subset of detector1,image2,image3 (detector1: quick run)")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages) - set(STAGE_NAMES)
    if unknown:
        parser.error(f"unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGE_NAMES)}")
    if args.exposures < 1:
        parser.error("--exposures must be >= 1")
    workers = [int(w) for w in args.workers.split(",")]
    args.workdir.mkdir(parents=True, exist_ok=True)
    job = prepare(args.workdir, args.exposures, args.seed)
    if args.child:
        emit(child(job, args.out, workers[0], stages, args.tile))
        return 0
    print(machine())
    runs = []
    for n in workers:
        out = args.workdir / f"out-{'-'.join(stages)}-{n}w"
        shutil.rmtree(out, ignore_errors=True)
        print(f"running the program on {n} worker(s) into {out} ...", flush=True)
        runs.append(run_child(__file__, ["--child", "--workdir", str(args.workdir), "--exposures",
                                         str(args.exposures), "--workers", str(n), "--stages", ",".join(stages),
                                         "--tile", str(args.tile), "--seed", str(args.seed), "--out", str(out)]))
    report(job, runs, stages)
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
