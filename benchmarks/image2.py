"""Benchmark: jwdask Image2 against jwst's Image2Pipeline on the same simulated rate files.

The simulator's ``full`` preset (two dithered 2048 x 2048 NIRCam exposures) is turned into
rate files once with jwdask's Detector1 (kept in ``--workdir`` for later runs). Then, each
in its own subprocess tree with one thread per worker: ``jwdask.commands.run_pipeline(
Pipeline.load("image2"))`` on a 2-worker LocalCluster (run twice: cold, then on the same warm
workers), once with thread workers in one process (``cluster.client(processes=False)``, the
``jwdask run`` default) and once with worker processes, and jwst's ``Image2Pipeline`` with
the simulator's reference files (``tests/official.py``), all writing the ``_cal`` and ``_i2d``
products of both exposures. Reports wall and CPU time (CPU of the whole process tree;
steadier on a shared machine), the peak RSS of each process tree (jwdask with worker
processes: the client/scheduler process's peak plus each worker's; with thread workers: the
one process's; also the summed RSS of the tree sampled with psutil every 0.1 s), the jwdask
task durations by kind, and whether the ``_cal`` products agree (DQ, NaN pattern, SCI within
rtol 1e-5).
Target: >= 2x faster than jwst (wall).

Usage: ``python benchmarks/image2.py [--workdir DIR] [--tile 2048] [--resample-tile 4096]``
(``--workdir`` keeps the simulated program and its rate files for later runs).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

import numpy as np
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
from detector1 import task_profile

SPEED_TARGET = 2.0
WORKERS = 2
ARRAYS = ("SCI", "ERR", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")


class TreePeakRSS:
    """Peak of the summed RSS of a process and its descendants [MB], sampled every
    ``interval`` seconds with psutil in a background thread (``with TreePeakRSS() as m: ...;
    m.peak_mb``); each process's own peak is kept in ``m.per_process``."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self.per_process: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        total = 0.0
        for proc in (me, *me.children(recursive=True)):
            try:
                rss = proc.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                continue
            total += rss
            self.per_process[proc.pid] = max(self.per_process.get(proc.pid, 0.0), rss)
        self.peak_mb = max(self.peak_mb, total)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> Self:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def simulate(workdir: Path, seed: int) -> dict[str, Any]:
    """The ``full`` program in ``workdir/full`` (reused when already there): job description."""
    from jwdask.simulate import simulate_program

    job_file = workdir / "full_job.json"
    if job_file.exists():
        print(f"reusing the simulated program in {workdir / 'full'}")
        return json.loads(job_file.read_text())
    start = time.perf_counter()
    prog = simulate_program("full", workdir / "full", seed=seed)
    job = {"uncal": [str(p) for p in prog.uncal], "refs_dir": str(prog.refs_dir),
           "reference_files": {k: str(v) for k, v in prog.reference_files.items()},
           "refcat": str(prog.refcat)}
    job_file.write_text(json.dumps(job))
    print(f"simulated the 'full' preset in {time.perf_counter() - start:.0f} s")
    return job


def make_rates(workdir: Path, job: dict[str, Any], tile: int) -> list[str]:
    """Rate files of the job's exposures by jwdask Detector1 in ``workdir/rates`` (made once)."""
    from jwdask import cluster
    from jwdask.commands import run_pipeline
    from jwdask.pipeline import Pipeline
    from jwdask.refs import RefProvider

    folder = workdir / "rates"
    rates = [str(folder / Path(u).name.replace("_uncal", "_rate")) for u in job["uncal"]]
    if all(Path(r).exists() for r in rates):
        print(f"reusing the rate files in {folder}")
        return rates
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with cluster.client(None, n_workers=WORKERS, dashboard=False):
        run_pipeline(Pipeline.load("detector1"), job["uncal"], str(folder), RefProvider(refs_dir=job["refs_dir"]),
                     tile=tile)
    print(f"made the rate files with jwdask Detector1 in {time.perf_counter() - start:.0f} s")
    return rates


def child_jwdask(folder: Path, tile: int, resample_tile: int, processes: bool) -> dict[str, Any]:
    """Child: Image2 with jwdask on a 2-worker LocalCluster (worker processes or threads);
    times, memory, task profile."""
    from distributed import get_task_stream

    from jwdask import cluster
    from jwdask.commands import run_pipeline
    from jwdask.pipeline import Pipeline
    from jwdask.refs import RefProvider

    job = read_job(folder)
    pipeline = Pipeline.load("image2").with_params(resample={"tile": resample_tile})
    start = time.perf_counter()
    cpu = tree_cpu_seconds()
    runs = []
    kind = "processes" if processes else "threads"
    with TreePeakRSS() as rss, cluster.client(None, n_workers=WORKERS, dashboard=False,
                                              processes=processes) as client:
        ready = time.perf_counter()
        for attempt in ("cold", "warm"):
            out = folder / f"jwdask-{kind}-{attempt}"
            out.mkdir(exist_ok=True)
            refs = RefProvider(refs_dir=job["refs_dir"])
            run_cpu = tree_cpu_seconds()
            with get_task_stream(client) as stream:
                urls, timing = timed(lambda: run_pipeline(pipeline, job["rates"], str(out), refs,  # noqa: B023
                                                          tile=tile))
            timing.update({"cpu_seconds": tree_cpu_seconds() - run_cpu, "profile": task_profile(stream.data),
                           "ntasks": len(stream.data), "cal": sorted(u for u in urls if u.endswith("_cal.fits"))})
            runs.append(timing)
            if attempt == "cold":
                cold_total = {"total_seconds": time.perf_counter() - start, "total_cpu_seconds": tree_cpu_seconds() - cpu}
        workers = list(client.run(worker_usage).values()) if processes else []
    cold, warm = runs
    cold.update({"startup_seconds": ready - start, **cold_total, "warm": warm, "workers": workers,
                 "tree_peak_rss_mb": rss.peak_mb, "client": worker_usage(),
                 "process_peaks_mb": sorted(rss.per_process.values(), reverse=True)})
    return cold


def child_jwst(folder: Path) -> dict[str, Any]:
    """Child: jwst's Image2Pipeline (with resample, as jwdask) on each rate file in turn."""
    with TreePeakRSS() as rss, jwst_child(folder, "jwst") as child:
        from tests.official import run_official_image2

        cals, timing = timed(lambda: [str(run_official_image2(Path(r), child.reference_files, child.out,
                                                              child.monkeypatch, resample={"skip": False}))
                                      for r in child.job["rates"]])
    timing.update({"cal": sorted(cals), "tree_peak_rss_mb": rss.peak_mb})
    return timing


def compare_cals(ours: list[str], theirs: list[str]) -> dict[str, Any]:
    """DQ and NaN equality and the largest relative differences of the ``_cal`` arrays."""
    from astropy.io import fits

    worst: dict[str, float] = dict.fromkeys(ARRAYS, 0.0)
    dq_same = nan_same = True
    beyond = 0
    for a_path, b_path in zip(ours, theirs, strict=True):
        with fits.open(a_path) as a, fits.open(b_path) as b:
            dq_same &= bool(np.array_equal(a["DQ"].data, b["DQ"].data))
            for name in ARRAYS:
                x, y = a[name].data, b[name].data
                nan_same &= bool(np.array_equal(np.isnan(x), np.isnan(y)))
                ok = ~np.isnan(x) & ~np.isnan(y)
                diff = np.abs(x[ok].astype(np.float64) - y[ok]) / np.maximum(np.abs(y[ok]), 1e-30)
                worst[name] = max(worst[name], float(diff.max(initial=0.0)))
                if name == "SCI":
                    beyond += int(np.count_nonzero(~np.isclose(x[ok], y[ok], rtol=1e-5, atol=0)))
    return {"dq_identical": dq_same, "nan_identical": nan_same, "max_relative_difference": worst,
            "sci_beyond_rtol_1e-5": beyond}


def by_kind(profile: dict[str, float]) -> dict[str, float]:
    """:func:`task_profile` seconds merged over dask's graph tokens (``photom-<hex>`` -> ``photom``)."""
    merged: dict[str, float] = {}
    for key, seconds in profile.items():
        kind = re.sub(r"-[0-9a-f]{32}$", "", key).removesuffix("-finalize-hlgfinalizecompute")
        merged[kind] = merged.get(kind, 0.0) + seconds
    return dict(sorted(merged.items(), key=lambda kv: -kv[1]))


KINDS = {"threads": "thread workers", "processes": "worker processes"}
"""The two jwdask LocalCluster configurations: ``processes=False`` (the ``jwdask run``
default) and ``processes=True``."""


def stage(workdir: Path, tile: int, resample_tile: int, seed: int, d1_tile: int) -> None:
    """Both Image2 implementations on the same rate files (jwdask with thread workers and
    with worker processes); print the comparison."""
    print(f"== whole Image2 stage (bkg_subtract, assign_wcs, flat_field, photom, resample), 'full' preset: "
          f"two 2048 x 2048 exposures; jwdask tile {tile}, resample output tile {resample_tile} ==")
    job = simulate(workdir, seed)
    job["rates"] = make_rates(workdir, job, d1_tile)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        folder = Path(tmp)
        (folder / "job.json").write_text(json.dumps(job))
        runs = {kind: run_child(__file__, ["--child", "jwdask", "--folder", tmp, "--tile", str(tile),
                                           "--resample-tile", str(resample_tile),
                                           *(["--processes"] if kind == "processes" else [])])
                for kind in KINDS}
        ref = run_child(__file__, ["--child", "jwst", "--folder", tmp])
        agreement = {kind: compare_cals(ours["cal"], ref["cal"]) for kind, ours in runs.items()}
    print(f"jwst  : {ref['seconds']:7.1f} s wall, {ref['cpu_seconds']:.1f} s CPU; peak RSS {ref['peak_rss_mb']:.0f} MB "
          f"(psutil-sampled {ref['tree_peak_rss_mb']:.0f} MB)")
    for kind, ours in runs.items():
        report_jwdask(kind, ours, ref, agreement[kind])


def report_jwdask(kind: str, ours: dict[str, Any], ref: dict[str, Any], agreement: dict[str, Any]) -> None:
    """Print one jwdask configuration's figures and its target verdict against jwst."""
    print(f"-- jwdask, LocalCluster of {WORKERS} {KINDS[kind]} "
          f"({'the jwdask run default' if kind == 'threads' else 'cluster.client(processes=True)'}) --")
    worker_peaks = [w["peak_rss_mb"] for w in ours["workers"]]
    client_peak = ours["client"]["peak_rss_mb"]
    ours_peak = client_peak + sum(worker_peaks)
    lifetime = f"client/scheduler {ours['client']['cpu_seconds']:.1f} s"
    parts = " (one process)"
    if worker_peaks:
        worker_cpu = " + ".join(f"{w['cpu_seconds']:.1f}" for w in ours["workers"])
        lifetime += f", workers {worker_cpu} s"
        parts = f" = client/scheduler {client_peak:.0f} + workers {' + '.join(f'{p:.0f}' for p in worker_peaks)} MB"
    print(f"jwdask: {ours['seconds']:7.1f} s wall, {ours['cpu_seconds']:.1f} s CPU of the process tree "
          f"(+{ours['startup_seconds']:.1f} s LocalCluster start-up; {ours['total_seconds']:.1f} s wall, "
          f"{ours['total_cpu_seconds']:.1f} s CPU in all), {ours['ntasks']} tasks; lifetime CPU: {lifetime}")
    print(f"        peak RSS {ours_peak:.0f} MB{parts} (VmHWM); psutil-sampled: summed tree "
          f"{ours['tree_peak_rss_mb']:.0f} MB at its peak, per-process peaks "
          f"{', '.join(f'{p:.0f}' for p in ours['process_peaks_mb'])} MB")
    warm = ours["warm"]
    print(f"jwdask, second run on the same (warm) workers: {warm['seconds']:7.1f} s wall, "
          f"{warm['cpu_seconds']:.1f} s CPU of the process tree")
    for label, run in (("cold", ours), ("warm", warm)):
        top = ", ".join(f"{k} {v:.1f}" for k, v in list(by_kind(run["profile"]).items())[:10])
        print(f"jwdask task durations by kind ({label} run, summed over tasks, wall seconds): {top}")
    speed_wall = ref["seconds"] / ours["seconds"]
    speed_cpu = ref["cpu_seconds"] / ours["cpu_seconds"]
    with_startup = ref["seconds"] / ours["total_seconds"]
    print(f"target speed: >= {SPEED_TARGET:.0f}x jwst -> {speed_wall:.2f}x wall ({WORKERS} workers vs 1 process; "
          f"{with_startup:.2f}x counting the cluster start-up), {speed_cpu:.2f}x CPU time: "
          f"{'met' if speed_wall >= SPEED_TARGET else 'MISSED'} (wall), "
          f"{'met' if speed_cpu >= SPEED_TARGET else 'MISSED'} (CPU); warm workers: "
          f"{ref['seconds'] / warm['seconds']:.2f}x wall, {ref['cpu_seconds'] / warm['cpu_seconds']:.2f}x CPU")
    print(f"memory: jwdask {ours_peak:.0f} MB / jwst {ref['peak_rss_mb']:.0f} MB = {ours_peak / ref['peak_rss_mb']:.2f}x")
    worst = ", ".join(f"{k} {v:.1e}" for k, v in agreement["max_relative_difference"].items())
    print(f"_cal products: DQ identical {agreement['dq_identical']}, NaN identical {agreement['nan_identical']}, "
          f"max relative difference {worst}; SCI values beyond rtol 1e-5: {agreement['sci_beyond_rtol_1e-5']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="where the simulated program and rates are kept (default: temporary)")
    parser.add_argument("--tile", type=int, default=2048,
                        help="jwdask Image2 (y, x) tile [pixels] (default 2048: one per exposure)")
    parser.add_argument("--resample-tile", type=int, default=4096,
                        help="jwdask resample output tile [pixels] (default 4096: one tile per i2d)")
    parser.add_argument("--detector1-tile", type=int, default=512, help="tile of the Detector1 run making the rates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=("jwdask", "jwst"))
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--processes", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "jwdask":
        emit(child_jwdask(args.folder, args.tile, args.resample_tile, args.processes))
        return
    if args.child == "jwst":
        emit(child_jwst(args.folder))
        return
    print(f"machine: {machine()}")
    with workdir_or_temporary(args.workdir) as folder:
        stage(folder, args.tile, args.resample_tile, args.seed, args.detector1_tile)


if __name__ == "__main__":
    main()
