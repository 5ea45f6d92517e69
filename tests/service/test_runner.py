"""The program runner: same products on every backend, resume by checksum, a bad exposure
fails only its branch, unavailable stages are skipped, cancellation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from distributed import Client, LocalCluster

from jwdask.errors import ParameterError
from jwdask.refs import RefProvider
from jwdask.service.runner import (
    ProgramOptions,
    create_program,
    program_run,
    run_program,
    steps_by_stage,
)
from jwdask.service.store import JobStatus, ProgramStatus, Store, default_url
from jwdask.simulate import Program
from tests.service.conftest import assert_same_products, detector1, importable


def _run(program_dir: Path, out: Path, tiny_program: Program, scheduler: object, **kw: object) -> int:
    kw.setdefault("stages", ["detector1"])
    kw.setdefault("pipelines", {"detector1": detector1()})
    return program_run([program_dir], out, scheduler=scheduler, refs=RefProvider(refs_dir=tiny_program.refs_dir),
                       tile=160, n_workers=2, **kw)


def _jobs(out: Path) -> dict[str, object]:
    store = Store(default_url(out))
    (prog,) = store.programs()
    return {j.key: j for j in prog.jobs}


def test_same_products_on_every_backend(program_dir: Path, tmp_path: Path, tiny_program: Program,
                                        local_cluster: LocalCluster) -> None:
    """Detector1 -> Image2 -> Image3 in process and on a cluster (a scheduler address is
    used by the service tests)."""
    pipelines = {stage: importable(stage) for stage in ("detector1", "image2", "image3")}
    assert _run(program_dir, tmp_path / "sync", tiny_program, "sync", stages=None, pipelines=pipelines) == 0
    with Client(local_cluster) as client:
        assert _run(program_dir, tmp_path / "client", tiny_program, client, stages=None, pipelines=pipelines) == 0
    names = assert_same_products(tmp_path / "sync", tmp_path / "client")
    roots = [p.name.removesuffix("_uncal.fits") for p in tiny_program.uncal]
    product = "jw09001-o001_t001_nircam_clear-f200w-sub160"
    assert set(names) >= {f"{r}_{s}.fits" for r in roots for s in ("rate", "rateints", "cal")} | {
        f"{product}_i2d.fits"}
    catalogs = [Table.read(tmp_path / run / f"{product}_cat.ecsv") for run in ("sync", "client")]
    assert catalogs[0].colnames == catalogs[1].colnames
    for name in catalogs[0].colnames:
        np.testing.assert_array_equal(np.asarray(catalogs[0][name]), np.asarray(catalogs[1][name]), err_msg=name)
    jobs = _jobs(tmp_path / "sync")
    assert {j.stage for j in jobs.values()} == {"detector1", "image2", "image3"}
    assert all(j.status == JobStatus.DONE and j.products for j in jobs.values())
    (image3,) = [j for j in jobs.values() if j.stage == "image3"]
    assert sorted(image3.depends) == [f"image2:{r}" for r in sorted(roots)]
    assert all(len(p["sha256"]) == 64 for j in jobs.values() for p in j.products)


def test_resume_skips_verified_products(program_dir: Path, tmp_path: Path, tiny_program: Program) -> None:
    out = tmp_path / "out"
    assert _run(program_dir, out, tiny_program, "sync") == 0
    first = _jobs(out)
    d1 = sorted(k for k in first if k.startswith("detector1:"))
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.fits")}
    # nothing changed: nothing recomputed
    assert _run(program_dir, out, tiny_program, "sync") == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.fits")} == stamps
    assert all(_jobs(out)[k].attempts == first[k].attempts for k in d1)
    # one product deleted, another corrupted: exactly those two jobs rerun
    lost = Path(first[d1[0]].products[0]["url"])
    lost.unlink()
    changed = Path(first[d1[1]].products[1]["url"])
    with open(changed, "r+b") as f:
        f.seek(-10, 2)
        f.write(b"corrupted!")
    assert _run(program_dir, out, tiny_program, "sync") == 0
    again = _jobs(out)
    assert all(again[k].status == JobStatus.DONE for k in d1)
    assert lost.is_file()
    reference = tmp_path / "reference"
    assert _run(program_dir, reference, tiny_program, "sync") == 0
    assert_same_products(reference, out)


def test_interrupted_run_resumes(program_dir: Path, tmp_path: Path, tiny_program: Program) -> None:
    """A run killed mid-job (job left 'running', a temporary file behind) finishes on rerun."""
    out = tmp_path / "out"
    assert _run(program_dir, out, tiny_program, "sync") == 0
    jobs = _jobs(out)
    key = min(k for k in jobs if k.startswith("detector1:"))
    store = Store(default_url(out))
    store.update_job(jobs[key].id, status=JobStatus.RUNNING, products=[])
    store.update_program(jobs[key].program_id, status=ProgramStatus.RUNNING)
    for p in jobs[key].products:
        Path(p["url"]).unlink()
    (out / ".leftover.fits.tmp-0000").write_bytes(b"partial")
    assert _run(program_dir, out, tiny_program, "sync") == 0
    resumed = _jobs(out)[key]
    assert resumed.status == JobStatus.DONE and resumed.attempts == 1
    assert all(Path(p["url"]).is_file() for p in resumed.products)


def test_bad_exposure_fails_only_its_branch(program_dir: Path, tmp_path: Path, tiny_program: Program) -> None:
    good, bad = sorted(program_dir.glob("*_uncal.fits"))
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])  # truncated file
    out = tmp_path / "out"
    pipelines = {stage: importable(stage) for stage in ("detector1", "image2", "image3")}
    assert _run(program_dir, out, tiny_program, "sync", stages=None, pipelines=pipelines) == 1
    jobs = _jobs(out)
    bad_root = bad.name.removesuffix("_uncal.fits")
    good_root = good.name.removesuffix("_uncal.fits")
    failed = jobs[f"detector1:{bad_root}"]
    assert failed.status == JobStatus.FAILED
    assert failed.error_file == str(bad.resolve()) and failed.error
    assert jobs[f"detector1:{good_root}"].status == JobStatus.DONE
    assert (out / f"{good_root}_rate.fits").is_file()
    assert not (out / f"{bad_root}_rate.fits").exists()
    assert jobs[f"image2:{bad_root}"].status == JobStatus.SKIPPED
    assert jobs[f"image2:{good_root}"].status == JobStatus.DONE
    (image3,) = [j for j in jobs.values() if j.stage == "image3"]
    assert image3.status == JobStatus.DONE and image3.note == f"without failed upstream image2:{bad_root}"
    assert any(p["url"].endswith("_i2d.fits") for p in image3.products)
    assert not list(out.glob(".*tmp*"))
    store = Store(default_url(out))
    (prog,) = store.programs()
    assert prog.status == ProgramStatus.FAILED and bad_root in prog.error


def test_headers_build_associations_when_none_given(program_dir: Path, tmp_path: Path,
                                                    tiny_program: Program) -> None:
    for asn in program_dir.glob("*_asn.json"):
        asn.unlink()
    out = tmp_path / "out"
    assert _run(program_dir, out, tiny_program, "sync", stages=["detector1", "image2"]) == 0
    jobs = _jobs(out)
    roots = sorted(p.name.removesuffix("_uncal.fits") for p in program_dir.glob("*_uncal.fits"))
    assert sorted(k for k in jobs if k.startswith("image2:")) == [f"image2:{r}" for r in roots]
    (image3,) = [j for j in jobs.values() if j.stage == "image3"]
    assert image3.target == "jw09001-o001_t001_nircam_clear-f200w-sub160"
    assert image3.status == JobStatus.SKIPPED and image3.note == "not requested"
    assert sorted(image3.depends) == [f"image2:{r}" for r in roots]


def test_stage_not_available_is_skipped(program_dir: Path, tmp_path: Path, tiny_program: Program,
                                        caplog: pytest.LogCaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    graphs = tmp_path / "graphs"
    graphs.mkdir()
    shutil.copy(Path(__file__).parents[2] / "graphs" / "detector1.yaml", graphs)
    monkeypatch.setattr("jwdask.service.runner.GRAPHS_DIR", graphs)
    out = tmp_path / "out"
    with caplog.at_level("WARNING", logger="jwdask.service.runner"):
        assert _run(program_dir, out, tiny_program, "sync", stages=None) == 0
    jobs = _jobs(out)
    for job in jobs.values():
        if job.stage != "detector1":
            assert job.status == JobStatus.SKIPPED
            assert "not available" in job.note and f"graphs/{job.stage}.yaml" in job.note
    assert "stage image2 not available" in caplog.text
    assert "stage image3 not available" in caplog.text


def test_cancel_requested_in_store(program_dir: Path, tmp_path: Path, tiny_program: Program) -> None:
    store = Store(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    options = ProgramOptions(refs={"refs_dir": str(tiny_program.refs_dir)},
                             pipelines={"detector1": detector1().to_dict()}, tile=160)
    pid = create_program(store, [str(program_dir)], str(tmp_path / "out"), options)
    assert store.request_cancel(pid)
    assert store.program(pid).status == ProgramStatus.CANCELLED
    pid2 = create_program(store, [str(program_dir)], str(tmp_path / "out2"), options)
    store.update_program(pid2, status=ProgramStatus.RUNNING, cancel_requested=True)
    assert run_program(store, pid2) == ProgramStatus.CANCELLED
    assert {j.status for j in store.jobs(pid2)} == {JobStatus.CANCELLED}
    assert not store.request_cancel(pid2)


CTRL_C_SCRIPT = """
import sys
from jwdask.refs import RefProvider
from jwdask.service.runner import program_run
from tests.service.conftest import detector1
pipeline = detector1().with_step("pause", "tests.service.steps:pause", after="dq_init", seconds=1.5)
program_run([sys.argv[1]], sys.argv[2], scheduler="sync", refs=RefProvider(refs_dir=sys.argv[3]),
            pipelines={"detector1": pipeline}, tile=80, stages=["detector1"])
"""


def test_ctrl_c_then_rerun_finishes(program_dir: Path, tmp_path: Path, tiny_program: Program) -> None:
    """SIGINT while the second exposure computes; the rerun keeps the first, does the second."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C_SCRIPT, str(program_dir), str(out),
                             str(tiny_program.refs_dir)], cwd=Path(__file__).parents[2],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    store: Store | None = None
    while time.monotonic() < deadline and proc.poll() is None:
        if store is None and (out / "jwdask-jobs.sqlite").exists():
            store = Store(default_url(out))
        programs = store.programs() if store is not None else []
        if programs and sorted(j.status for j in programs[0].jobs if j.stage == "detector1") == [
                JobStatus.DONE, JobStatus.RUNNING]:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err, err.decode()[-3000:]
    jobs = _jobs(out)
    done = [k for k, j in jobs.items() if j.stage == "detector1" and j.status == JobStatus.DONE]
    interrupted = [k for k, j in jobs.items() if j.stage == "detector1" and j.status == JobStatus.PENDING]
    assert len(done) == 1 and len(interrupted) == 1 and jobs[interrupted[0]].note == "interrupted", err.decode()[-3000:]
    assert not list(out.glob(".*.tmp-*"))
    kept = {p["url"]: Path(p["url"]).stat().st_mtime_ns for p in jobs[done[0]].products}
    assert _run(program_dir, out, tiny_program, "sync") == 0
    assert {u: Path(u).stat().st_mtime_ns for u in kept} == kept
    assert all(j.status == JobStatus.DONE for j in _jobs(out).values() if j.stage == "detector1")


def test_step_overrides_split_by_stage() -> None:
    split = steps_by_stage({"jump": {"rejection_threshold": 5.0}, "flat_field": {"skip": True}})
    assert split == {"detector1": {"jump": {"rejection_threshold": 5.0}}, "image2": {"flat_field": {"skip": True}}}
    assert steps_by_stage({"jump": {"rejection_threshold": 5.0}}, stages=["detector1"]) == {
        "detector1": {"jump": {"rejection_threshold": 5.0}}}
    with pytest.raises(ParameterError, match="no stage of the program has a step 'jump'"):
        steps_by_stage({"jump": {}}, stages=["image2"])
