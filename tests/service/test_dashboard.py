"""The dashboard page in a real headless browser (Debian's chromium driven by playwright)
against a live service and a Dask cluster on localhost."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from distributed import LocalCluster

from jwdask.service.api import ServiceConfig, create_app
from jwdask.simulate import Program
from tests.service.conftest import detector1

CHROMIUM = "/usr/bin/chromium"
TOKEN = "dashboard-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_service(tiny_program: Program, tmp_path: Path, local_cluster: LocalCluster) -> Iterator[dict[str, Any]]:
    """The service on a free localhost port, submitting to a LocalCluster's scheduler."""
    root = tmp_path / "data"
    shutil.copytree(tiny_program.out_dir / "uncal", root / "good")
    bad = root / "bad"
    bad.mkdir()
    for uncal in tiny_program.uncal:
        data = uncal.read_bytes()
        (bad / uncal.name).write_bytes(data if uncal == tiny_program.uncal[0] else data[: len(data) // 4])
    (root / "detector1.yaml").write_text(yaml.safe_dump(detector1().to_dict()))
    port = _free_port()
    config = ServiceConfig(data_roots=[root, tiny_program.refs_dir], token=TOKEN,
                           scheduler=local_cluster.scheduler_address,
                           store_url=f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started
    try:
        yield {"url": f"http://127.0.0.1:{port}", "root": root, "cluster": local_cluster,
               "refs": str(tiny_program.refs_dir)}
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def _submit(service: dict[str, Any], folder: str, name: str) -> str:
    body = {"inputs": [folder], "name": name, "refs_dir": service["refs"], "tile": 160,
            "pipelines": {"detector1": "detector1.yaml"}, "stages": ["detector1"]}
    r = httpx.post(f"{service['url']}/api/v1/programs", json=body, headers=AUTH, timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _wait(service: dict[str, Any], pid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        prog = httpx.get(f"{service['url']}/api/v1/programs/{pid}", headers=AUTH, timeout=60).json()
        if prog["status"] in ("done", "failed", "cancelled"):
            return prog
        time.sleep(0.5)
    pytest.fail(f"program {pid} did not finish")


def test_dashboard_in_browser(live_service: dict[str, Any]) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    good = _submit(live_service, "good", "good program")
    bad = _submit(live_service, "bad", "bad program")
    assert _wait(live_service, good)["status"] == "done"
    assert _wait(live_service, bad)["status"] == "failed"

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(live_service["url"] + "/")
        # a wrong token is refused
        page.fill("#token", "wrong")
        page.click("#save-token")
        sync_api.expect(page.locator("#login-error")).to_have_text("the token was refused")
        page.fill("#token", TOKEN)
        page.click("#save-token")
        rows = page.locator("#programs tbody tr")
        sync_api.expect(rows).to_have_count(2)
        good_row = page.locator(f"tr[data-id='{good}']")
        sync_api.expect(good_row.locator("td").nth(1)).to_have_text("done")
        sync_api.expect(page.locator(f"tr[data-id='{bad}'] td").nth(1)).to_have_text("failed")
        bar = good_row.locator(".bar[data-stage='detector1'] .done")
        assert bar.get_attribute("style").replace(" ", "").startswith("left:0%;width:100%")
        sync_api.expect(good_row).to_contain_text("detector1 2/2")
        link = page.locator("#dask-dashboard")
        sync_api.expect(link).to_be_visible()
        assert link.get_attribute("href") == live_service["cluster"].dashboard_link

        good_row.click()
        sync_api.expect(page.locator("#exposures tbody tr")).to_have_count(3)  # 2 exposures + image3
        cells = page.locator("#exposures tbody td.status-done")
        sync_api.expect(cells).to_have_count(2)
        image = page.locator("#quicklooks figure:not([hidden]) img.quicklook").first
        sync_api.expect(image).to_be_visible(timeout=60_000)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        sync_api.expect(page.locator("#products li")).to_have_count(4)
        sync_api.expect(page.locator("#log")).to_contain_text("done")

        page.locator(f"tr[data-id='{bad}']").click()
        errors = page.locator("#errors li")
        sync_api.expect(errors).to_have_count(1)
        sync_api.expect(errors).to_contain_text("_uncal.fits")
        sync_api.expect(page.locator("#exposures tbody td.status-failed")).to_have_count(1)
        sync_api.expect(page.locator("#exposures tbody td.status-done")).to_have_count(1)
        browser.close()
