"""Cal-like exposures with real gwcs objects for the resample tests.

A ``tiny`` simulated program with three dithered SUB160 exposures; each uncal header becomes
an ImageModel with synthetic calibrated arrays (sky + stars + noise, a few DO_NOT_USE pixels),
jwst's AssignWcsStep attaches the GWCS from the simulator's distortion reference, the WCS
bounding box is set to the subarray (the simulator's SUB160 starts at pixel 1, so jwst would
keep the full-frame box and a 2048-pixel S_REGION), and the model is written as a ``_cal``
file that jwdask opens with ``open_product``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits


@pytest.fixture(scope="session")
def cal_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three cal files (jwst-written, with GWCS and S_REGION)."""
    pytest.importorskip("jwst")
    from jwst.assign_wcs import AssignWcsStep
    from jwst.assign_wcs.util import update_s_region_imaging
    from stdatamodels.jwst import datamodels

    from jwdask.refs import crds_environment, write_crds_cache
    from jwdask.simulate import PRESETS, simulate_program

    root = tmp_path_factory.mktemp("resample")
    preset = dataclasses.replace(PRESETS["tiny"], dithers=((0.0, 0.0), (0.35, 0.28), (-0.6, 0.9)),
                                 ngroups=3, nints=1)
    program = simulate_program(preset, root / "sim", seed=3)
    cache = write_crds_cache(sorted(program.reference_files.values()), root / "crds")
    overrides: dict[str, Any] = {f"override_{rt}": "N/A" for rt in AssignWcsStep.reference_file_types}
    overrides["override_distortion"] = str(program.reference_files["distortion"])
    overrides["override_filteroffset"] = str(program.reference_files["filteroffset"])
    rng = np.random.default_rng(7)
    out = []
    with crds_environment(cache):
        for k, uncal in enumerate(program.uncal):
            with datamodels.open(str(uncal)) as raw:
                ny, nx = raw.data.shape[-2:]
                model = datamodels.ImageModel((ny, nx))
                model.update(raw)
            _fill_arrays(model, fits.getdata(program.truth_rate[k]).astype(np.float32), rng)
            name = Path(uncal).name.replace("_uncal.fits", "_cal.fits")
            model.meta.filename = name
            model.meta.exposure.measurement_time = 30.0 + 2 * k
            result = AssignWcsStep(**overrides).run(model)
            result.meta.wcs.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
            update_s_region_imaging(result)
            path = root / name
            result.save(str(path))
            out.append(path)
    return out


def _fill_arrays(model: Any, truth: np.ndarray, rng: np.random.Generator) -> None:
    """Calibrated-looking arrays [MJy/sr]: scaled truth rate + noise, variances, bad pixels."""
    ny, nx = truth.shape
    scale = np.float32(0.02)
    rnoise = np.full((ny, nx), 1e-4, dtype=np.float32) * (1 + 0.3 * rng.random((ny, nx), dtype=np.float32))
    signal = truth * scale
    poisson = np.abs(signal).astype(np.float32) * np.float32(2e-3) + np.float32(1e-6)
    flat = (signal * np.float32(0.01)) ** 2
    model.data = (signal + rng.normal(0, 1, (ny, nx)).astype(np.float32) * np.sqrt(rnoise + poisson)).astype(np.float32)
    model.var_rnoise = rnoise
    model.var_poisson = poisson
    model.var_flat = flat.astype(np.float32)
    model.err = np.sqrt(rnoise + poisson + flat).astype(np.float32)
    dq = np.zeros((ny, nx), dtype=np.uint32)
    bad = rng.integers(0, ny * nx, 40)
    dq.flat[bad[:20]] = 1
    dq.flat[bad[20:30]] = 4
    model.dq = dq
    model.data[np.unravel_index(bad[30:35], (ny, nx))] = np.nan
    model.meta.bunit_data = "MJy/sr"
    model.meta.bunit_err = "MJy/sr"
    model.meta.background.level = 0.01
    model.meta.background.subtracted = False


@pytest.fixture(scope="session")
def cal_datasets(cal_files: list[Path]) -> list[Any]:
    """The cal files as jwdask Datasets, in 64x64 tiles."""
    from jwdask.io.products import open_product

    return [open_product(str(p), tile=(64, 64)) for p in cal_files]
