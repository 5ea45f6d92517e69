"""jwst's official Image3Pipeline accepts jwdask's ``_cal`` products: two dithered ``tiny``
exposures through jwdask Detector1 and Image2, then jwst's Image3 (tweakreg aligned to the
simulator's reference catalog) makes a mosaic and a source catalog."""

from __future__ import annotations

import shutil
from pathlib import Path

import dask
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from jwdask.pipeline import Pipeline
from jwdask.refs import RefProvider
from jwdask.simulate import Program, simulate_program

pytestmark = pytest.mark.reference


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Program:
    pytest.importorskip("jwst")
    return simulate_program("tiny", tmp_path_factory.mktemp("sim"), seed=3)


@pytest.fixture(scope="module")
def cal_asn(prog: Program, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """jwdask ``_cal`` files of both exposures next to a copy of the image3 association."""
    from jwdask.commands import run_pipeline

    out = tmp_path_factory.mktemp("jwdask")
    refs = RefProvider(refs_dir=str(prog.refs_dir))
    with dask.config.set(scheduler="threads"):
        rates = run_pipeline(Pipeline.load("detector1"), [str(u) for u in prog.uncal], str(out), refs, tile=64)
        rates = [u for u in rates if u.endswith("_rate.fits")]
        run_pipeline(Pipeline.load("image2"), rates, str(out), refs, tile=64)
    return Path(shutil.copy(prog.image3_asn, out / prog.image3_asn.name))


@pytest.fixture(scope="module")
def mosaic(prog: Program, cal_asn: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.official import run_official_image3

    with pytest.MonkeyPatch.context() as mp:
        # the tiny subarray holds only a handful of stars: let tweakreg fit with as few as 4
        return run_official_image3(cal_asn, prog.reference_files, tmp_path_factory.mktemp("jwst3"), mp,
                                   refcat=prog.refcat, tweakreg={"minobj": 4, "abs_minobj": 4})


def test_cal_products_exist(prog: Program, cal_asn: Path) -> None:
    import json

    members = json.loads(cal_asn.read_text())["products"][0]["members"]
    assert len(members) == len(prog.uncal) == 2
    for member in members:
        assert (cal_asn.parent / member["expname"]).exists()


def test_mosaic_has_finite_data_where_covered(mosaic: Path) -> None:
    with fits.open(mosaic) as hdul:
        sci, wht = hdul["SCI"].data, hdul["WHT"].data
        assert hdul["SCI"].header["BUNIT"] == "MJy/sr"
    covered = wht > 0
    # SUB160 starts at pixel (1, 1), so (as in jwst) the WCS keeps the distortion reference's
    # full-frame bounding box and the mosaic grid is full-frame sized; the data cover ~160 x 160
    assert covered.sum() > 0.9 * 160 * 160
    assert np.isfinite(sci[covered]).all()
    assert np.nanmax(sci[covered]) > 10 * abs(np.nanmedian(sci[covered]))  # the stars are there


def test_tweakreg_aligned(mosaic: Path) -> None:
    for crf in sorted(mosaic.parent.glob("*_crf.fits")):
        assert fits.getval(crf, "S_TWKREG") == "COMPLETE"


def test_source_catalog_written(mosaic: Path) -> None:
    cat = Table.read(mosaic.with_name(mosaic.name.replace("_i2d.fits", "_cat.ecsv")))
    assert len(cat) > 0
    assert {"sky_centroid", "aper_total_flux"} <= set(cat.colnames)
    assert np.isfinite(cat["aper_total_flux"]).any()
