"""The job service's REST API: auth, path confinement, submit/list/status/logs/products/
quick look, cancel, and resuming after a restart (state in the store)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from jwdask.service.api import ServiceConfig, create_app, read_token
from jwdask.service.store import Store
from jwdask.simulate import Program
from tests.service.conftest import detector1

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def config(tiny_program: Program, tmp_path: Path) -> ServiceConfig:
    return ServiceConfig(data_roots=[tiny_program.out_dir], token=TOKEN, scheduler="sync",
                         store_url=f"sqlite:///{tmp_path / 'service.sqlite'}", max_programs=1,
                         step_modules=("jwdask.", "tests.service."))


@pytest.fixture
def client(config: ServiceConfig) -> Iterator[TestClient]:
    with TestClient(create_app(config)) as c:
        yield c


def _pipeline(root: Path, pause: float = 0.0) -> str:
    """A Detector1 YAML under the data root (with a slow step when ``pause`` > 0)."""
    p = detector1()
    if pause:
        p = p.with_step("pause", "tests.service.steps:pause", after="dq_init", seconds=pause)
    path = root / "pipelines" / f"{uuid.uuid4().hex}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(p.to_dict()))
    return str(path.relative_to(root))


def _submit(client: TestClient, root: Path, pause: float = 0.0, **extra: Any) -> dict[str, Any]:
    body = {"inputs": ["uncal"], "refs_dir": "refs", "pipelines": {"detector1": _pipeline(root, pause)},
            "stages": ["detector1"], "tile": 80 if pause else 160, **extra}
    r = client.post("/api/v1/programs", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    return r.json()


def _wait(client: TestClient, pid: str, states: tuple[str, ...], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        prog = client.get(f"/api/v1/programs/{pid}", headers=AUTH).json()
        if prog["status"] in states:
            return prog
        time.sleep(0.2)
    pytest.fail(f"program {pid} never reached {states}: {prog['status']}")


def test_every_api_route_needs_the_token(client: TestClient) -> None:
    routes = [("get", "/api/v1/programs"), ("post", "/api/v1/programs"), ("get", "/api/v1/programs/x"),
              ("post", "/api/v1/programs/x/cancel"), ("get", "/api/v1/programs/x/logs"),
              ("get", "/api/v1/programs/x/products"), ("get", "/api/v1/programs/x/products/1/a.fits"),
              ("get", "/api/v1/programs/x/quicklook/1.png"), ("get", "/api/v1/cluster")]
    api_routes = {r.path for r in client.app.routes if getattr(r, "path", "").startswith("/api/")}
    assert api_routes == {"/api/v1/programs", "/api/v1/programs/{program_id}",
                          "/api/v1/programs/{program_id}/cancel", "/api/v1/programs/{program_id}/logs",
                          "/api/v1/programs/{program_id}/products",
                          "/api/v1/programs/{program_id}/products/{job_id}/{name}",
                          "/api/v1/programs/{program_id}/quicklook/{job_id}.png", "/api/v1/cluster"}
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            r = getattr(client, method)(path, headers=headers)
            assert r.status_code == 401, (method, path, headers)
            assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/").status_code == 200
    assert client.get("/api/v1/programs", headers=AUTH).json() == []


def test_paths_outside_the_data_roots_are_rejected(client: TestClient, tiny_program: Program,
                                                   tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tiny_program.out_dir / "escape").symlink_to(outside)
    try:
        for body in ({"inputs": ["../"]}, {"inputs": ["uncal/../../"]}, {"inputs": ["/etc"]},
                     {"inputs": ["escape"]}, {"inputs": ["uncal"], "out": "/tmp"},
                     {"inputs": ["uncal"], "refs_dir": "../../"},
                     {"inputs": ["uncal"], "pipelines": {"detector1": "/etc/passwd"}}):
            r = client.post("/api/v1/programs", json=body, headers=AUTH)
            assert r.status_code == 400, body
            assert "outside the service's data roots" in r.json()["detail"]
    finally:
        (tiny_program.out_dir / "escape").unlink()
    assert client.post("/api/v1/programs", json={"inputs": []}, headers=AUTH).status_code == 422
    r = client.post("/api/v1/programs", json={"inputs": ["nope"]}, headers=AUTH)
    assert r.status_code == 400 and "does not exist" in r.json()["detail"]
    assert client.get("/api/v1/programs", headers=AUTH).json() == []


def test_pipeline_steps_limited_to_allowed_modules(client: TestClient, tiny_program: Program) -> None:
    path = tiny_program.out_dir / "pipelines" / "evil.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({"name": "detector1", "steps": [{"name": "x", "function": "os:system"}]}))
    r = client.post("/api/v1/programs", json={"inputs": ["uncal"], "pipelines": {"detector1": str(path)}},
                    headers=AUTH)
    assert r.status_code == 400 and "os:system" in r.json()["detail"]


def test_submit_status_logs_products(client: TestClient, tiny_program: Program) -> None:
    root = tiny_program.out_dir
    submitted = _submit(client, root, name="tiny test")
    pid = submitted["id"]
    assert submitted["name"] == "tiny test" and submitted["status"] in ("queued", "running")
    prog = _wait(client, pid, ("done", "failed"))
    assert prog["status"] == "done", prog
    stages = prog["stages"]
    assert stages["detector1"] == {"total": 2, "done": 2}
    assert stages["image2"]["skipped"] == 2 and stages["image3"]["skipped"] == 1
    roots = sorted(p.name.removesuffix("_uncal.fits") for p in tiny_program.uncal)
    assert sorted(j["target"] for j in prog["jobs"] if j["stage"] == "detector1") == roots
    assert [p["id"] for p in client.get("/api/v1/programs", headers=AUTH).json()] == [pid]
    logs = client.get(f"/api/v1/programs/{pid}/logs", headers=AUTH).json()
    assert any("done" in line["message"] for line in logs)
    after = client.get(f"/api/v1/programs/{pid}/logs", params={"after": logs[-1]["id"]}, headers=AUTH).json()
    assert after == []
    products = client.get(f"/api/v1/programs/{pid}/products", headers=AUTH).json()
    assert sorted(p["name"] for p in products) == sorted(f"{r}_{s}.fits" for r in roots for s in ("rate", "rateints"))
    rate = next(p for p in products if p["name"].endswith("_rate.fits"))
    body = client.get(rate["url"], headers=AUTH).content
    assert body == (Path(prog["out_dir"]) / rate["name"]).read_bytes()
    png = client.get(rate["quicklook"], headers=AUTH)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/api/v1/programs/{pid}/products/{rate['job']}/../../x", headers=AUTH).status_code == 404
    assert client.post(f"/api/v1/programs/{pid}/cancel", headers=AUTH).status_code == 409
    assert client.get("/api/v1/programs/nope", headers=AUTH).status_code == 404


def test_cancel(client: TestClient, tiny_program: Program) -> None:
    pid = _submit(client, tiny_program.out_dir, pause=1.0)["id"]
    _wait(client, pid, ("running",))
    r = client.post(f"/api/v1/programs/{pid}/cancel", headers=AUTH)
    assert r.status_code == 202
    prog = _wait(client, pid, ("cancelled", "done", "failed"))
    assert prog["status"] == "cancelled"
    assert any(j["status"] == "cancelled" for j in prog["jobs"])


def test_service_restart_resumes_programs(config: ServiceConfig, tiny_program: Program) -> None:
    with TestClient(create_app(config)) as first:
        pid = _submit(first, tiny_program.out_dir, pause=0.5)["id"]
        _wait(first, pid, ("running",))
    # the first service stopped mid-program; its state is in the store
    stopped = Store(config.store_url).program(pid)
    assert stopped.status == "running"
    assert any(j.status != "done" for j in stopped.jobs if j.stage == "detector1")
    with TestClient(create_app(config)) as second:
        prog = _wait(second, pid, ("done", "failed", "cancelled"))
        assert prog["status"] == "done"
        logs = [line["message"] for line in second.get(f"/api/v1/programs/{pid}/logs", headers=AUTH).json()]
        assert any(line.startswith("service ") and line.endswith(": resuming") for line in logs)


def test_token_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "token"
    path.write_text("abc\n")
    assert read_token(path) == "abc"
    monkeypatch.setenv("JWDASK_TOKEN", "xyz")
    assert read_token() == "xyz"
    monkeypatch.delenv("JWDASK_TOKEN")
    with pytest.raises(Exception, match="JWDASK_TOKEN"):
        read_token()
