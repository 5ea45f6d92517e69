"""The command line end to end on a simulated exposure: simulate, run detector1, demo, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from jwdask.cli import main


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "sim"
    assert main(["simulate", "--preset", "tiny", "--out", str(out), "--seed", "3"]) == 0
    return out


def _uncal(sim: Path) -> list[Path]:
    return sorted((sim / "uncal").glob("*_uncal.fits"))


def test_simulate_writes_program(sim: Path) -> None:
    assert len(_uncal(sim)) == 2
    assert (sim / "refcat.ecsv").exists()
    assert len(list((sim / "refs").glob("jwst_nircam_*"))) >= 15


def test_run_detector1_with_overrides_and_intermediates(sim: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["run", "detector1", str(_uncal(sim)[0]), "--out", str(out), "--refs-dir", str(sim / "refs"),
                 "--scheduler", "sync", "--tile", "64", "--steps.jump.rejection_threshold=5",
                 "--steps.persistence.skip=false", "--steps.persistence.persistence_time=300",
                 "--save-intermediates", "jump", "--zarr"])
    assert code == 0
    root = _uncal(sim)[0].name.replace("_uncal.fits", "")
    with fits.open(out / f"{root}_rate.fits") as hdul:
        assert hdul[0].header["S_JUMP"] == "COMPLETE"
        assert hdul[0].header["S_PERSIS"] == "COMPLETE"
        assert hdul["SCI"].data.shape == (160, 160)
    assert (out / f"{root}_rateints.fits").exists()
    assert (out / f"{root}_jump.zarr").is_dir()
    with fits.open(out / f"{root}_ramp.fits") as hdul:
        assert hdul[0].header["DATAMODL"] == "RampModel"
        assert hdul["GROUPDQ"].data.shape == (2, 5, 160, 160)
    assert (out / f"{root}_rate.zarr").is_dir()


def test_run_truncated_input_exits_2_and_writes_nothing(sim: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "jw09001001001_02101_00001_nrcb1_uncal.fits"
    data = _uncal(sim)[0].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    code = main(["run", "detector1", str(bad), "--out", str(out), "--refs-dir", str(sim / "refs"),
                 "--scheduler", "sync"])
    assert code == 2
    assert str(bad) in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_run_missing_reference_exits_2(sim: Path, tmp_path: Path, capsys) -> None:
    refs = tmp_path / "refs"
    shutil.copytree(sim / "refs", refs)
    for path in refs.glob("*_gain_*"):
        path.unlink()
    out = tmp_path / "out"
    code = main(["run", "detector1", str(_uncal(sim)[0]), "--out", str(out), "--refs-dir", str(refs),
                 "--scheduler", "sync"])
    assert code == 2
    err = capsys.readouterr().err
    assert "gain" in err and "NRCB1" in err
    assert not out.exists() or not any(out.iterdir())


def test_run_bad_parameter_exits_2(sim: Path, tmp_path: Path, capsys) -> None:
    code = main(["run", "detector1", str(_uncal(sim)[0]), "--out", str(tmp_path / "o"),
                 "--refs-dir", str(sim / "refs"), "--scheduler", "sync", "--steps.jump.no_such_param=1"])
    assert code == 2
    assert "no_such_param" in capsys.readouterr().err


def test_demo_tiny(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--preset", "tiny", "--out", str(out), "--scheduler", "threads"]) == 0
    assert (out / "quicklook.png").stat().st_size > 1000
    assert len(list((out / "products").glob("*_rate.fits"))) == 2


def test_unreachable_scheduler_exits_2(sim: Path, tmp_path: Path, capsys) -> None:
    code = main(["run", "detector1", str(_uncal(sim)[0]), "--out", str(tmp_path / "o"),
                 "--refs-dir", str(sim / "refs"), "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_full_disk_during_write_leaves_nothing(sim: Path, tmp_path: Path, capsys,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from jwdask.io import products

    def full(self, key, value):
        raise OSError(errno.ENOSPC, "No space left on device", self.path)

    monkeypatch.setattr(products.FitsBlockTarget, "__setitem__", full)
    out = tmp_path / "out"
    code = main(["run", "detector1", str(_uncal(sim)[0]), "--out", str(out), "--refs-dir", str(sim / "refs"),
                 "--scheduler", "sync"])
    assert code == 2
    assert "No space left on device" in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())


def test_localcluster_threads_and_processes_give_identical_rates(sim: Path, tmp_path: Path) -> None:
    """The default LocalCluster (thread workers) and ``--processes`` write the same rates."""
    root = _uncal(sim)[0].name.replace("_uncal.fits", "")
    data = {}
    for kind in ("threads", "processes"):
        out = tmp_path / kind
        args = ["run", "detector1", str(_uncal(sim)[0]), "--out", str(out), "--refs-dir", str(sim / "refs"),
                "--tile", "80", "--workers", "2"]
        assert main([*args, "--processes"] if kind == "processes" else args) == 0
        with fits.open(out / f"{root}_rate.fits") as hdul:
            data[kind] = {name: hdul[name].data.copy() for name in ("SCI", "ERR", "DQ")}
    for name in ("SCI", "ERR", "DQ"):
        np.testing.assert_array_equal(data["threads"][name], data["processes"][name])
