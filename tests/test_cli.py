"""The jwdask command line: info, exit codes on bad input, help."""

from __future__ import annotations

import subprocess
import sys

from jwdask.cli import main


def test_info_uncal(uncal_file, capsys):
    path, _ = uncal_file
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "NRCB1" in out and "NGROUPS=3" in out and "sci" in out


def test_info_bad_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad_uncal.fits"
    bad.write_bytes(b"garbage" * 100)
    assert main(["info", str(bad)]) == 2
    assert "not a FITS file" in capsys.readouterr().err


def test_unknown_stage_exits_2(uncal_file, tmp_path, capsys):
    path, _ = uncal_file
    assert main(["run", "nostage", str(path), "--out", str(tmp_path / "o"), "--scheduler", "sync"]) == 2
    assert "no pipeline 'nostage'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_serve_without_token_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("JWDASK_TOKEN", raising=False)
    assert main(["serve", "--data-root", str(tmp_path)]) == 2
    assert "no token" in capsys.readouterr().err


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "jwdask", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for command in ("simulate", "info", "run", "program", "serve", "demo"):
        assert command in result.stdout
