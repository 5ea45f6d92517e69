"""A worker process killed in the middle of a program: the program completes, and its
products are identical to an undisturbed run."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from jwdask.refs import RefProvider
from jwdask.service.runner import program_run
from jwdask.service.store import JobStatus, Store, default_url
from jwdask.simulate import Program
from tests.service.conftest import assert_same_products, detector1


def _pipeline(seconds: float) -> object:
    return detector1().with_step("pause", "tests.service.steps:pause", after="dq_init", seconds=seconds)


def _busy_worker(client: Client, deadline: float) -> str:
    """The address of a worker that is running a pause task (waits for one)."""
    while time.monotonic() < deadline:
        for worker, keys in client.processing().items():
            if any("_pause" in str(k) for k in keys):
                return worker
        time.sleep(0.05)
    pytest.fail("no worker ever ran a pause task")


def test_killed_worker_mid_program(program_dir: Path, tmp_path: Path, tiny_program: Program,
                                   local_cluster: LocalCluster) -> None:
    refs = RefProvider(refs_dir=tiny_program.refs_dir)
    reference = tmp_path / "reference"
    assert program_run([program_dir], reference, scheduler="sync", refs=refs,
                       pipelines={"detector1": _pipeline(0.0)}, tile=80, stages=["detector1"]) == 0
    out = tmp_path / "disturbed"
    result: dict[str, int] = {}
    with Client(local_cluster) as client:
        def run() -> None:
            result["rc"] = program_run([program_dir], out, scheduler=client, refs=refs,
                                       pipelines={"detector1": _pipeline(1.0)}, tile=80, stages=["detector1"])

        thread = threading.Thread(target=run)
        thread.start()
        victim = _busy_worker(client, time.monotonic() + 120)
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=300)
        assert not thread.is_alive()
        assert victim not in client.scheduler_info()["workers"]
        client.wait_for_workers(2, timeout=120)  # the nanny restarted it
    assert result["rc"] == 0
    (prog,) = Store(default_url(out)).programs()
    assert all(j.status == JobStatus.DONE for j in prog.jobs if j.stage == "detector1")
    assert_same_products(reference, out)
