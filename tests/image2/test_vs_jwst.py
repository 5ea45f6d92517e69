"""Image2 through jwdask and through jwst's Image2Pipeline on the same rate file."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
from astropy.io import fits

from jwdask.io.products import open_product
from jwdask.pipeline import Pipeline
from jwdask.refs import RefProvider
from jwdask.simulate import Program, simulate_program

pytestmark = pytest.mark.reference

ARRAYS = ("SCI", "ERR", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Program:
    return simulate_program("tiny", tmp_path_factory.mktemp("sim"), seed=21)


@pytest.fixture(scope="module")
def rate(prog: Program, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The official Detector1 rate: both Image2 runs start from the same file."""
    pytest.importorskip("jwst")
    from tests.official import run_official_detector1

    with pytest.MonkeyPatch.context() as mp:
        return run_official_detector1(prog.uncal[0], prog.reference_files, tmp_path_factory.mktemp("d1"), mp)


@pytest.fixture(scope="module")
def official(prog: Program, rate: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.official import run_official_image2

    with pytest.MonkeyPatch.context() as mp:
        return run_official_image2(rate, prog.reference_files, tmp_path_factory.mktemp("jwst2"), mp)


@pytest.fixture(scope="module")
def ours(prog: Program, rate: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jwdask.commands import run_pipeline

    out = tmp_path_factory.mktemp("jwdask2")
    with dask.config.set(scheduler="threads"):
        urls = run_pipeline(Pipeline.load("image2"), [str(rate)], str(out), RefProvider(refs_dir=str(prog.refs_dir)),
                            tile=64)
    return Path(next(u for u in urls if u.endswith("_cal.fits")))


def test_cal_equals_jwst(ours: Path, official: Path) -> None:
    with fits.open(ours) as a, fits.open(official) as b:
        np.testing.assert_array_equal(a["DQ"].data, b["DQ"].data)
        for name in ARRAYS:
            x, y = a[name].data, b[name].data
            np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=name)
            ok = ~np.isnan(x)
            np.testing.assert_allclose(x[ok], y[ok], rtol=1e-5, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(a["AREA"].data, b["AREA"].data, rtol=1e-6)
        for key in ("BUNIT",):
            assert a["SCI"].header[key] == b["SCI"].header[key]
        for key in ("PHOTMJSR", "PHOTUJA2", "PIXAR_SR", "PIXAR_A2"):
            assert a["SCI"].header[key] == pytest.approx(b["SCI"].header[key], rel=1e-7)
        for key in ("S_WCS", "S_FLAT", "S_PHOTOM"):
            assert a[0].header[key] == b[0].header[key]


def test_wcs_equals_jwst(ours: Path, official: Path) -> None:
    from stdatamodels.jwst import datamodels

    with datamodels.open(str(ours)) as a, datamodels.open(str(official)) as b:
        ny, nx = a.data.shape
        y, x = np.mgrid[0:ny:7j, 0:nx:7j]
        ra1, dec1 = a.meta.wcs(x, y)
        ra2, dec2 = b.meta.wcs(x, y)
        x2, y2 = b.meta.wcs.invert(ra1, dec1)
    np.testing.assert_allclose(x2, x, atol=0.01)
    np.testing.assert_allclose(y2, y, atol=0.01)
    assert np.max(np.hypot((ra1 - ra2) * np.cos(np.deg2rad(dec1)), dec1 - dec2)) * 3600 < 0.0003


def test_surface_brightness_against_truth(prog: Program, ours: Path) -> None:
    """Calibrated MJy/sr of the sources = truth rate [DN/s] x PHOTMJSR (the simulator's photom)."""
    cal = open_product(str(ours))
    truth = fits.getdata(prog.truth_rate[0]).astype(np.float64)
    sci = cal.sci.values.astype(np.float64)
    good = (cal.dq.values == 0) & (truth > 50)
    photmjsr = float(cal.attrs["meta"]["photometry"]["conversion_megajanskys"])
    flat = np.ones_like(sci)
    ratio = sci[good] / (truth[good] * photmjsr / flat[good])
    assert abs(np.median(ratio) - 1) < 0.01
