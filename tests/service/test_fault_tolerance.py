"""A worker process killed in the middle of a program: the program completes, and its
products are identical to an undisturbed run. A program cancelled on a cluster stops its
jobs' tasks on the workers."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from jwdask.refs import RefProvider
from jwdask.service.runner import (
    ProgramOptions,
    create_program,
    program_run,
    run_program,
)
from jwdask.service.store import JobStatus, ProgramStatus, Store, default_url
from jwdask.simulate import Program
from tests.service.conftest import assert_same_products, detector1


def _pipeline(seconds: float) -> object:
    return detector1().with_step("pause", "tests.service.steps:pause", after="dq_init", seconds=seconds)


def _busy_worker(client: Client, deadline: float, busy: str) -> str:
    """The address of a worker that is running a task whose key holds ``busy`` (waits for one)."""
    while time.monotonic() < deadline:
        for worker, keys in client.processing().items():
            if any(busy in str(k) for k in keys):
                return worker
        time.sleep(0.05)
    pytest.fail(f"no worker ever ran a {busy} task")


@pytest.mark.parametrize(("local_tasks", "busy"), [(0, "_pause"), (10_000, "jwdask-job-detector1")],
                         ids=["tiles-across-workers", "job-on-one-worker"])
def test_killed_worker_mid_program(program_dir: Path, tmp_path: Path, tiny_program: Program,
                                   local_cluster: LocalCluster, local_tasks: int, busy: str) -> None:
    """The worker killed runs a tile of a job spread over the cluster, or a whole job."""
    refs = RefProvider(refs_dir=tiny_program.refs_dir)
    reference = tmp_path / "reference"
    assert program_run([program_dir], reference, scheduler="sync", refs=refs,
                       pipelines={"detector1": _pipeline(0.0)}, tile=80, stages=["detector1"]) == 0
    out = tmp_path / "disturbed"
    result: dict[str, int] = {}
    with Client(local_cluster) as client:
        def run() -> None:
            result["rc"] = program_run([program_dir], out, scheduler=client, refs=refs,
                                       pipelines={"detector1": _pipeline(1.0)}, tile=80, stages=["detector1"],
                                       local_tasks=local_tasks)

        thread = threading.Thread(target=run)
        thread.start()
        victim = _busy_worker(client, time.monotonic() + 120, busy)
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
    assert not list(out.glob(".*.tmp-*"))


@pytest.mark.parametrize("local_tasks", [0, 10_000], ids=["tiles-across-workers", "job-on-one-worker"])
def test_cancel_stops_jobs_on_the_workers(program_dir: Path, tmp_path: Path, tiny_program: Program,
                                          local_cluster: LocalCluster, local_tasks: int) -> None:
    """A cancelled program's jobs stop on the workers and leave no product or temporary file."""
    out = tmp_path / "out"
    store = Store(default_url(out))
    options = ProgramOptions(refs={"refs_dir": str(tiny_program.refs_dir)},
                             pipelines={"detector1": _pipeline(1.0).to_dict()}, stages=["detector1"], tile=80,
                             local_tasks=local_tasks)
    pid = create_program(store, [str(program_dir)], str(out), options)
    result: dict[str, str] = {}
    with Client(local_cluster) as client:
        thread = threading.Thread(target=lambda: result.setdefault("status", run_program(store, pid, client)))
        thread.start()
        deadline = time.monotonic() + 120
        while not list(out.glob(".*.tmp-*")):  # a job is computing its products
            assert time.monotonic() < deadline, "no job ever started writing"
            time.sleep(0.05)
        assert store.request_cancel(pid)
        thread.join(timeout=120)
        assert result["status"] == ProgramStatus.CANCELLED
        deadline = time.monotonic() + 60
        while list(out.glob(".*.tmp-*")) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not list(out.glob(".*.tmp-*"))
    assert not list(out.glob("*.fits"))
    assert {j.status for j in store.jobs(pid)} == {JobStatus.CANCELLED}
