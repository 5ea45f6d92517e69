"""Memory bound: Detector1 on a 2.7 GB raw exposure with workers limited to 4 GB each.

Simulates the ``large`` preset (one NIRCam full-frame exposure, RAPID, 2 integrations x 160
groups of 2048 x 2048: 2.7 GB of raw uint16, written piece by piece) unless the work folder
already holds it, then runs ``jwdask.commands.run_pipeline(Pipeline.load("detector1"))`` in a
subprocess on a LocalCluster of 2 one-thread workers with ``memory_limit="4GB"``. Reports
completion, wall and CPU time, the peak RSS of every worker process (``ru_maxrss`` asked
from each worker at the end, and the peak seen by sampling every worker process's RSS
during the run, which also covers a worker that was restarted), what the workers spilled to
disk, and a sanity summary of the rate product.

Usage: ``python benchmarks/detector1_memory.py [--workdir DIR] [--tile 256] [--memory-limit 4GB] [--preset large]``
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import emit, machine, peak_rss_mb, run_child, timed

WORKERS = 2


class TreeSampler(threading.Thread):
    """Samples the RSS of every descendant process of this one; keeps each process's peak."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peaks: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._halt.is_set():
            for proc in me.children(recursive=True):
                try:
                    rss = proc.memory_info().rss / 2**20
                    self.names.setdefault(proc.pid, " ".join(proc.cmdline()[-2:]))
                except psutil.Error:
                    continue
                self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0.0), rss)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _worker_report(dask_worker: Any) -> dict[str, Any]:
    """Peak RSS [MB], CPU seconds and spilled bytes of the calling worker process."""
    import os

    usage = resource.getrusage(resource.RUSAGE_SELF)
    spilled = sum(value for key, value in getattr(dask_worker, "digests_total", {}).items()
                  if "disk-write" in str(key) and "bytes" in str(key))
    return {"pid": os.getpid(), "peak_rss_mb": peak_rss_mb(), "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "spilled_bytes": spilled}


def run_jwdask(folder: Path, tile: int, memory_limit: str) -> dict[str, Any]:
    """Child: Detector1 on the exposure on a memory-limited LocalCluster."""
    from jwdask import cluster
    from jwdask.commands import run_pipeline
    from jwdask.pipeline import Pipeline
    from jwdask.refs import RefProvider

    job = json.loads((folder / "job.json").read_text())
    out = folder / "products"
    out.mkdir(exist_ok=True)
    sampler = TreeSampler()
    sampler.start()
    with cluster.client(None, n_workers=WORKERS, memory_limit=memory_limit, dashboard=False) as client:
        before = set(client.scheduler_info()["workers"])
        refs = RefProvider(refs_dir=job["refs_dir"])
        urls, timing = timed(lambda: run_pipeline(Pipeline.load("detector1"), [job["uncal"]], str(out), refs,
                                                  tile=tile))
        workers = list(client.run(_worker_report).values())
        after = set(client.scheduler_info()["workers"])
    sampler.stop()
    worker_pids = {w["pid"] for w in workers}
    sampled = [{"pid": pid, "peak_rss_mb": peak, "current_worker": pid in worker_pids}
               for pid, peak in sampler.peaks.items() if "spawn_main" in sampler.names.get(pid, "")
               or pid in worker_pids]
    timing.update({"urls": urls, "workers": workers, "sampled": sampled,
                   "restarted": before != after})
    return timing


def simulate(workdir: Path, preset: str, seed: int) -> dict[str, Any]:
    """The ``preset`` program in ``workdir/<preset>`` (reused when already there)."""
    from jwdask.simulate import simulate_program

    job_file = workdir / f"{preset}_job.json"
    if job_file.exists():
        print(f"reusing the simulated exposure in {workdir / preset}")
        return json.loads(job_file.read_text())
    start = time.perf_counter()
    prog = simulate_program(preset, workdir / preset, seed=seed)
    job = {"uncal": str(prog.uncal[0]), "refs_dir": str(prog.refs_dir)}
    job_file.write_text(json.dumps(job))
    print(f"simulated the {preset!r} preset in {time.perf_counter() - start:.0f} s")
    return job


def summary(rate_url: str) -> str:
    """Finite fraction and median of the rate product's SCI [DN/s]."""
    from astropy.io import fits

    with fits.open(rate_url) as hdul:
        sci = hdul["SCI"].data
        finite = np.isfinite(sci)
        return f"{sci.shape}, {finite.mean():.1%} finite, median {np.median(sci[finite]):.3f} DN/s"


def measure(workdir: Path, preset: str, tile: int, memory_limit: str, seed: int) -> None:
    """Simulate (or reuse) the exposure, run the child, print the report."""
    from jwdask.io.uncal import open_uncal

    job = simulate(workdir, preset, seed)
    sci = open_uncal(job["uncal"]).sci
    raw_gb = sci.size * sci.dtype.itemsize / 1e9
    nints, ngroups, ny, nx = sci.shape
    ramp_mb = nints * ngroups * tile * tile * 4 / 2**20
    print(f"exposure: {nints} integrations x {ngroups} groups x {ny} x {nx} uint16 = {raw_gb:.2f} GB raw "
          f"({Path(job['uncal']).stat().st_size / 1e9:.2f} GB file); tile {tile} x {tile}: {ramp_mb:.0f} MB of "
          f"float32 ramps per tile")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        folder = Path(tmp)
        (folder / "job.json").write_text(json.dumps(job))
        try:
            result = run_child(__file__, ["--child", "--folder", tmp, "--tile", str(tile), "--memory-limit",
                                          memory_limit])
        except RuntimeError as exc:
            print(f"FAILED: {exc}")
            return
        rate = next(u for u in result["urls"] if u.endswith("_rate.fits"))
        print(f"completed: {len(result['urls'])} products written; rate {summary(rate)}")
    print(f"wall {result['seconds']:.0f} s, client/scheduler process peak RSS {result['peak_rss_mb']:.0f} MB"
          f"{'; a worker was RESTARTED' if result['restarted'] else '; no worker restarted'}")
    for w in result["workers"]:
        print(f"worker pid {w['pid']}: peak RSS {w['peak_rss_mb']:.0f} MB (limit {memory_limit}), "
              f"CPU {w['cpu_seconds']:.0f} s, spilled {w['spilled_bytes'] / 2**20:.0f} MB to disk")
    for s in result["sampled"]:
        state = "worker at the end" if s["current_worker"] else "process that ended during the run"
        print(f"sampled pid {s['pid']} ({state}): peak RSS {s['peak_rss_mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="where the simulated exposure is kept (default: temporary)")
    parser.add_argument("--tile", type=int, default=256, help="jwdask (y, x) tile [pixels] (default 256)")
    parser.add_argument("--memory-limit", default="4GB", help="per-worker memory limit (default 4GB)")
    parser.add_argument("--preset", default="large", help="simulator preset (default large; 'full' for a quick try)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.child:
        emit(run_jwdask(args.folder, args.tile, args.memory_limit))
        return
    print(f"machine: {machine()}")
    if args.workdir is None:
        with tempfile.TemporaryDirectory() as tmp:
            measure(Path(tmp), args.preset, args.tile, args.memory_limit, args.seed)
    else:
        args.workdir.mkdir(parents=True, exist_ok=True)
        measure(args.workdir, args.preset, args.tile, args.memory_limit, args.seed)


if __name__ == "__main__":
    main()
