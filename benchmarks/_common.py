"""Shared machinery of the benchmarks: one fresh subprocess per measured implementation.

A benchmark script re-runs itself as ``python <script> --child <name> --folder <dir>``; the
child loads its inputs from ``<dir>``, times the work (wall and CPU seconds), writes its
outputs there and prints one JSON line. :func:`run_child` starts it (one thread per process
unless told otherwise), reads that line and adds the child's peak resident memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
"""The repository root (``tests.official`` runs the jwst pipelines)."""

ONE_THREAD = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1"}
"""Environment that keeps numba, OpenMP and BLAS on one thread."""


def rss_mb() -> float:
    """Current resident memory of this process [MB]."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far [MB] (``VmHWM``).

    Unlike ``ru_maxrss``, which a child started by fork/vfork + exec inherits from its
    parent's address space, ``VmHWM`` only covers this process's own image.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(work: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """``work()`` and its ``{"seconds", "cpu_seconds", "rss_before_mb"}`` (this process)."""
    before = rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                    "rss_before_mb": before}


def run_child(script: str, args: Sequence[str], *, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python script *args`` in a fresh interpreter; its last stdout line is JSON.

    Returns that JSON (whose ``peak_rss_mb``, added by :func:`emit`, is the child's own peak
    RSS [MB]) with ``child_cpu_seconds`` (user + system CPU of the child and the descendants
    it waited for).
    """
    environment = {**os.environ, **(ONE_THREAD if env is None else env)}
    proc = subprocess.Popen([sys.executable, script, *args], stdout=subprocess.PIPE, env=environment, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        msg = f"{' '.join(args)}: child failed with exit code {code}"
        raise RuntimeError(msg)
    result = json.loads(out.strip().splitlines()[-1])
    result["child_cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return result


def emit(result: dict[str, Any]) -> None:
    """Print a child's result, with its ``peak_rss_mb``, as the JSON line :func:`run_child` reads."""
    print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}), flush=True)


def machine() -> str:
    """One line describing the machine: cores, RAM, CPU model, Python."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores ({model}), {ram:.0f} GiB RAM, load average {load}, "
            f"Python {platform.python_version()}")


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and all its live descendants (the workers)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in (me, *me.children(recursive=True)):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def worker_usage() -> dict[str, float]:
    """Peak RSS [MB] and CPU seconds of the calling (worker) process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"peak_rss_mb": peak_rss_mb(), "cpu_seconds": usage.ru_utime + usage.ru_stime}


@contextlib.contextmanager
def workdir_or_temporary(given: Path | None) -> Iterator[Path]:
    """The benchmark's work folder: ``given`` (created if missing, kept), else a temporary
    folder removed on exit."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def read_job(folder: Path) -> dict[str, Any]:
    """The job description (``job.json``) the parent wrote into a child's folder."""
    return json.loads((folder / "job.json").read_text())


@dataclass(frozen=True)
class JwstChild:
    """What a child running jwst works with (see :func:`jwst_child`)."""

    job: dict[str, Any]
    """The job description (``job.json``)."""
    out: Path
    """The child's output folder."""
    reference_files: dict[str, Path]
    """The simulator's reference files by type (the job's ``reference_files``)."""
    monkeypatch: Any
    """The ``pytest.MonkeyPatch`` holding the offline CRDS environment (``tests.official``)."""


@contextlib.contextmanager
def jwst_child(folder: Path, out_name: str) -> Iterator[JwstChild]:
    """The prelude of a child that runs jwst: the job from ``folder``, the output folder
    ``folder/out_name``, INFO logging off, ``tests.official`` importable and CRDS pointed at
    an empty offline cache under the output folder until the block ends."""
    import pytest

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.official import offline_crds

    job = read_job(folder)
    out = folder / out_name
    out.mkdir(exist_ok=True)
    logging.disable(logging.INFO)
    refs = {k: Path(v) for k, v in job.get("reference_files", {}).items()}
    with pytest.MonkeyPatch.context() as mp:
        offline_crds(out, mp)
        yield JwstChild(job, out, refs, mp)
