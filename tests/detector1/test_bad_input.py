"""Detector1 on bad or extreme input: clear errors or the documented DQ flags, never a crash."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dask
import numpy as np
import pytest
from astropy.io import fits

from jwdask import dqflags
from jwdask.errors import InputError, ReferenceFileError
from jwdask.io.uncal import open_uncal
from jwdask.pipeline import Pipeline
from jwdask.refs import RefProvider
from jwdask.simulate import Program, simulate_program
from jwdask.simulate.presets import PRESETS


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Program:
    return simulate_program("tiny", tmp_path_factory.mktemp("sim"), seed=11)


def _run(uncal: Path, refs: RefProvider, out: Path, pipeline: Pipeline | None = None) -> list[str]:
    from jwdask.commands import run_pipeline

    with dask.config.set(scheduler="sync"):
        return run_pipeline(pipeline or Pipeline.load("detector1"), [str(uncal)], str(out), refs, tile=64)


def _edited(prog: Program, tmp_path: Path, edit) -> Path:
    path = tmp_path / prog.uncal[0].name
    with fits.open(prog.uncal[0]) as hdul:
        edit(hdul)
        hdul.writeto(path)
    return path


def test_all_saturated_exposure_makes_no_product(prog: Program, tmp_path: Path) -> None:
    def saturate(hdul: fits.HDUList) -> None:
        hdul["SCI"].data = np.full_like(hdul["SCI"].data, 65535)

    uncal = _edited(prog, tmp_path, saturate)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="saturated"):
        _run(uncal, RefProvider(refs_dir=str(prog.refs_dir)), out)
    assert not out.exists() or not list(out.glob("*.fits"))


def test_reference_of_wrong_window(prog: Program, tmp_path: Path) -> None:
    small = tmp_path / "jwst_nircam_saturation_small.fits"
    with fits.open(prog.reference_files["saturation"]) as hdul:
        for name in ("SCI", "DQ"):
            hdul[name].data = hdul[name].data[:100, :100]
        hdul[0].header["SUBSIZE1"] = hdul[0].header["SUBSIZE2"] = 100
        hdul[0].header["SUBARRAY"] = "GENERIC"
        hdul.writeto(small)
    refs = RefProvider(overrides={"saturation": str(small)}, refs_dir=str(prog.refs_dir))
    with pytest.raises(ReferenceFileError, match="saturation"):
        _run(prog.uncal[0], refs, tmp_path / "out")


def test_reference_of_wrong_type(prog: Program, tmp_path: Path) -> None:
    refs = RefProvider(overrides={"saturation": str(prog.reference_files["gain"])}, refs_dir=str(prog.refs_dir))
    with pytest.raises(ReferenceFileError, match=r"saturation.*GAIN|REFTYPE"):
        _run(prog.uncal[0], refs, tmp_path / "out")


def test_nan_gain_pixels_are_flagged(prog: Program, tmp_path: Path) -> None:
    gain = tmp_path / "jwst_nircam_gain_nan.fits"
    ds = open_uncal(str(prog.uncal[0]))
    y0, x0 = int(ds.y[0]), int(ds.x[0])
    with fits.open(prog.reference_files["gain"]) as hdul:
        hdul["SCI"].data[y0 + 10, x0 + 10] = np.nan
        hdul["SCI"].data[y0 + 20, x0 + 30] = 0.0
        hdul.writeto(gain)
    refs = RefProvider(overrides={"gain": str(gain)}, refs_dir=str(prog.refs_dir))
    urls = _run(prog.uncal[0], refs, tmp_path / "out")
    with fits.open(next(u for u in urls if u.endswith("_rate.fits"))) as hdul:
        dq, sci = hdul["DQ"].data, hdul["SCI"].data
    for y, x in ((10, 10), (20, 30)):
        assert dq[y, x] & dqflags.NO_GAIN_VALUE and dq[y, x] & dqflags.DO_NOT_USE
        assert np.isnan(sci[y, x])


@pytest.mark.parametrize("ngroups", [1, 2])
def test_few_groups(tmp_path: Path, ngroups: int) -> None:
    """NGROUPS 1 and 2: jump skips itself as jwst does, ramp_fit still makes rates."""
    preset = dataclasses.replace(PRESETS["tiny"], ngroups=ngroups, nints=1, dithers=((0.0, 0.0),))
    prog = simulate_program(preset, tmp_path / "sim", seed=2)
    urls = _run(prog.uncal[0], RefProvider(refs_dir=str(prog.refs_dir)), tmp_path / "out")
    with fits.open(next(u for u in urls if u.endswith("_rate.fits"))) as hdul:
        assert hdul[0].header["S_JUMP"] == "SKIPPED"
        assert np.isfinite(hdul["SCI"].data).mean() > 0.9
