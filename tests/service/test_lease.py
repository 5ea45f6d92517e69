"""Two runners or service replicas on one shared store never run the same program: a
program is claimed with a lease, and taken over only once its holder's lease expired."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from jwdask.service.api import ServiceConfig, create_app
from jwdask.service.lease import Lease, ProgramBusy
from jwdask.service.runner import ProgramOptions, create_program, program_run
from jwdask.service.store import ProgramStatus, Store
from jwdask.simulate import Program
from tests.service.conftest import detector1
from tests.service.test_api import AUTH, TOKEN, _submit, _wait


def _program(store: Store, tmp_path: Path, tiny_program: Program) -> str:
    options = ProgramOptions(refs={"refs_dir": str(tiny_program.refs_dir)},
                             pipelines={"detector1": detector1().to_dict()}, stages=["detector1"], tile=160)
    return create_program(store, [str(tiny_program.out_dir / "uncal")], str(tmp_path / "out"), options)


def test_claim_is_exclusive_until_the_lease_expires(tmp_path: Path, tiny_program: Program) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    a, b = Store(url), Store(url)  # two replicas' stores on one database
    pid = _program(a, tmp_path, tiny_program)
    assert b.claimable() == [pid]
    assert a.claim(pid, "replica-a", 0.8)
    assert not b.claim(pid, "replica-b", 0.8)
    assert b.claimable() == []
    assert a.renew(pid, "replica-a", 0.8)
    assert b.program(pid).owner == "replica-a"
    time.sleep(1.0)  # replica a died: its lease runs out
    assert b.claimable() == [pid]
    assert b.claim(pid, "replica-b", 60)
    assert not a.renew(pid, "replica-a", 0.8)  # a, back, learns it lost the program
    assert not a.release(pid, "replica-a")
    assert b.program(pid).owner == "replica-b"
    assert b.release(pid, "replica-b")
    assert a.program(pid).owner is None
    b.update_program(pid, status=ProgramStatus.DONE)
    assert not b.claim(pid, "replica-b", 60, unfinished_only=True)
    assert b.claim(pid, "replica-b", 60)  # a CLI rerun of a finished program


def test_lease_renewed_while_held(tmp_path: Path, tiny_program: Program) -> None:
    store = Store(f"sqlite:///{tmp_path / 'shared.sqlite'}")
    pid = _program(store, tmp_path, tiny_program)
    with Lease(store, pid, "runner-1", seconds=0.6) as lease:
        time.sleep(1.2)  # two lease lengths: kept alive by renewals
        assert not store.claim(pid, "runner-2", 0.6)
        with pytest.raises(ProgramBusy, match="held by runner runner-1"):
            Lease(store, pid, "runner-2").__enter__()
        assert not lease.lost.is_set()
    assert store.program(pid).owner is None
    assert store.claim(pid, "runner-2", 0.6)


def test_program_run_refuses_a_held_program(tmp_path: Path, tiny_program: Program) -> None:
    out = tmp_path / "out"
    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    store = Store(url)
    pid = _program(store, tmp_path, tiny_program)
    assert store.claim(pid, "other-host:123:abc", 60)
    with pytest.raises(ProgramBusy, match="other-host:123:abc"):
        program_run([tiny_program.out_dir / "uncal"], out, scheduler="sync", store_url=url,
                    pipelines={"detector1": detector1()}, stages=["detector1"], tile=160)
    assert store.program(pid).status == ProgramStatus.QUEUED


def test_store_of_an_older_version_gains_the_lease_columns(tmp_path: Path, tiny_program: Program) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    old = Store(url)
    pid = _program(old, tmp_path, tiny_program)
    with old.engine.begin() as conn:
        conn.execute(text("ALTER TABLE programs DROP COLUMN owner"))
        conn.execute(text("ALTER TABLE programs DROP COLUMN lease_until"))
    new = Store(url)
    assert new.claim(pid, "runner", 10)
    assert new.program(pid).owner == "runner"


def test_two_service_replicas_share_one_store(tiny_program: Program, tmp_path: Path) -> None:
    """Only the replica that claims a program runs it; a program held by a replica that
    died is taken over by the other once its lease has expired."""
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    def app() -> FastAPI:
        return create_app(ServiceConfig(data_roots=[tiny_program.out_dir], token=TOKEN, scheduler="sync",
                                        store_url=url, max_programs=1, step_modules=("jwdask.", "tests.service."),
                                        lease_seconds=1.0))

    with TestClient(app()) as first, TestClient(app()) as second:
        owners = {c.app.state.manager.owner for c in (first, second)}
        assert len(owners) == 2
        pid = _submit(first, tiny_program.out_dir, pause=0.3)["id"]
        prog = _wait(second, pid, ("done", "failed", "cancelled"))
        assert prog["status"] == "done"
        (runner,) = _runner_lines(second, pid)  # both replicas looked for it; one ran it, once
        assert runner.removeprefix("runner ") in owners
        # a program held by a replica that died, its lease running out in 2 s
        store = Store(url)
        dead = _program(store, tmp_path, tiny_program)
        assert store.claim(dead, "dead-replica", 2.0)
        claimed = time.monotonic()
        while store.program(dead).status == ProgramStatus.QUEUED:
            assert time.monotonic() - claimed < 60
            time.sleep(0.1)
        assert time.monotonic() - claimed >= 2.0  # not before the lease expired
        prog = _wait(first, dead, ("done", "failed", "cancelled"))
        assert prog["status"] == "done"
        (runner,) = _runner_lines(first, dead)
        assert runner.removeprefix("runner ") in owners
        assert store.program(dead).owner is None


def _runner_lines(client: TestClient, pid: str) -> list[str]:
    """``runner <owner>`` of every run of the program, from its log."""
    logs = client.get(f"/api/v1/programs/{pid}/logs", headers=AUTH).json()
    return [line["message"].rsplit("(", 1)[1].rstrip(")") for line in logs
            if line["message"].startswith("program ") and "(runner " in line["message"]]
