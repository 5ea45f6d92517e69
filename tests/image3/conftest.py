"""Session fixtures for stage-3 tests: a simulated 4-exposure program reduced to cal files by
jwst's own Detector1 + Image2 (fed only the simulator's references through an offline CRDS
cache), plus jwst's TweakRegStep / ResampleStep / SourceCatalogStep results on them."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jwdask.simulate import Program, simulate_program
from tests.official import detector1_overrides

NOT_APPLICABLE = ["refpix", "sirskernel", "persat", "trapdensity", "trappars", "pastasoss", "specwcs",
                  "regions", "wavelengthrange", "camera", "chromcorr", "collimator", "disperser", "fore",
                  "fpa", "msa", "ote", "ifupost", "ifufore", "ifuslicer", "fflat", "sflat", "dflat", "bkg",
                  "emicorr", "pictureframe"]


@dataclass(frozen=True)
class Reduced:
    """A simulated program with jwst-made cal files and jwst stage-3 results."""

    program: Program
    cal: list[Path]
    crds: Path
    tweaked_abs: list[Path]
    tweaked_rel: list[Path]
    i2d: Path
    catalog: Path
    segm: Path


@pytest.fixture(scope="session")
def reduced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reduced]:
    """The ``small`` preset (4 dithered SUB400P exposures, 40 stars, 5 galaxies) reduced by jwst."""
    pytest.importorskip("jwst")
    from jwdask.refs import crds_environment, write_crds_cache

    root = tmp_path_factory.mktemp("image3")
    prog = simulate_program("small", root / "sim", seed=1)
    red = root / "red"
    red.mkdir()
    cache = write_crds_cache(sorted(prog.refs_dir.iterdir()), root / "crds",
                             not_applicable={"nircam": NOT_APPLICABLE})
    quiet = {name: logging.getLogger(name).level for name in ("stpipe", "jwst", "stcal", "tweakwcs", "crds")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    saved = os.environ.get("STPIPE_DISABLE_CRDS_STEPPARS")
    os.environ["STPIPE_DISABLE_CRDS_STEPPARS"] = "True"
    try:
        with crds_environment(cache, "jwst_9001.pmap"):
            from jwst.pipeline import Detector1Pipeline, Image2Pipeline
            from jwst.resample import ResampleStep
            from jwst.source_catalog import SourceCatalogStep
            from jwst.tweakreg import TweakRegStep

            det1 = detector1_overrides(prog.reference_files)
            for uncal in prog.uncal:
                pipe = Detector1Pipeline(steps=det1, output_dir=str(red), save_results=True)
                pipe.prefetch_references = False
                pipe.run(str(uncal))
            im2 = {"resample": {"skip": True}, "bkg_subtract": {"skip": True}}
            for rate in sorted(red.glob("*_rate.fits")):
                Image2Pipeline(steps=im2, output_dir=str(red), save_results=True).run(str(rate))
            cal = sorted(red.glob("*_cal.fits"))
            tweaked = {}
            for kind, kwargs in (("abs", {"abs_refcat": str(prog.refcat)}), ("rel", {})):
                lib = TweakRegStep.call([str(c) for c in cal], **kwargs)
                paths = []
                with lib:
                    for i, model in enumerate(lib):
                        path = red / Path(model.meta.filename).name.replace("_cal", f"_twk{kind}")
                        model.save(str(path))
                        paths.append(path)
                        lib.shelve(model, i, modify=False)
                tweaked[kind] = (lib, paths)
            i2d = ResampleStep.call(tweaked["abs"][0])
            i2d_path = red / "mosaic_i2d.fits"
            i2d.save(str(i2d_path))
            SourceCatalogStep.call(i2d, save_results=True, output_dir=str(red))
    finally:
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
        if saved is None:
            os.environ.pop("STPIPE_DISABLE_CRDS_STEPPARS", None)
        else:
            os.environ["STPIPE_DISABLE_CRDS_STEPPARS"] = saved
    yield Reduced(program=prog, cal=cal, crds=cache, tweaked_abs=tweaked["abs"][1],
                  tweaked_rel=tweaked["rel"][1], i2d=i2d_path, catalog=red / "mosaic_cat.ecsv",
                  segm=red / "mosaic_segm.fits")
