"""Shared machinery of the benchmarks: one fresh subprocess per measured implementation.

A benchmark script re-runs itself as ``python <script> --child <name> --folder <dir>``; the
child loads its inputs from ``<dir>``, times the work (wall and CPU seconds), writes its
outputs there and prints one JSON line. :func:`run_child` starts it (one thread per process
unless told otherwise), reads that line and adds the child's peak resident memory.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

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
