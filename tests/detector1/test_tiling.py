"""Detector1 results do not depend on the (y, x) tile size."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
from astropy.io import fits

from jwdask.commands import run_pipeline
from jwdask.pipeline import Pipeline
from jwdask.refs import RefProvider
from jwdask.simulate import Program, simulate_program

TILES = (32, 48, 160)
EXTENSIONS = ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE")


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Program:
    return simulate_program("tiny", tmp_path_factory.mktemp("sim"), seed=11)


@pytest.fixture(scope="module")
def rates(prog: Program, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    refs = RefProvider(refs_dir=str(prog.refs_dir))
    out = {}
    with dask.config.set(scheduler="threads"):
        for tile in TILES:
            folder = tmp_path_factory.mktemp(f"tile{tile}")
            urls = run_pipeline(Pipeline.load("detector1"), [str(prog.uncal[0])], str(folder), refs, tile=tile)
            out[tile] = Path(next(u for u in urls if u.endswith("_rate.fits")))
    return out


@pytest.mark.parametrize("suffix", ["rate", "rateints"])
@pytest.mark.parametrize("tile", TILES[1:])
def test_products_bitwise_equal_across_tiles(rates: dict[int, Path], tile: int, suffix: str) -> None:
    first = str(rates[TILES[0]]).replace("_rate.fits", f"_{suffix}.fits")
    other = str(rates[tile]).replace("_rate.fits", f"_{suffix}.fits")
    with fits.open(first) as a, fits.open(other) as b:
        for name in EXTENSIONS:
            x, y = a[name].data, b[name].data
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert np.array_equal(x.view(np.uint8), y.view(np.uint8)), f"{name} differs for tile {tile}"


def test_refpix_amplifier_mode_tiles_equal_whole_planes() -> None:
    """A 4-output window: statistics from the border strips, subtraction per tile, bitwise
    equal to the whole-plane kernel (two integrations, side pixels, jwst's float32 quirk)."""
    import xarray as xr

    from jwdask import dqflags
    from jwdask.detector1.refpix import refpix
    from jwdask.io import keywords
    from jwdask.kernels.refpix import correct_nir

    rng = np.random.default_rng(3)
    ny, nx, y0 = 64, 2048, 2048 - 64
    sci = (12000 + 30 * rng.standard_normal((2, 3, ny, nx))).astype(np.float32)
    pixeldq = np.zeros((ny, nx), np.uint32)
    pixeldq[:, :4] = pixeldq[:, -4:] = pixeldq[-4:, :] = dqflags.REFERENCE_PIXEL
    pixeldq[10, 2] |= dqflags.DO_NOT_USE
    meta: dict = {}
    for path, value in {"subarray.fastaxis": -1, "subarray.slowaxis": 2, "exposure.noutputs": 4,
                        "subarray.name": "SUBGRISM64", "instrument.name": "NIRCAM"}.items():
        keywords.put(meta, path, value)
    ds = xr.Dataset({"sci": (("integration", "group", "y", "x"), sci), "pixeldq": (("y", "x"), pixeldq),
                     "groupdq": (("integration", "group", "y", "x"), np.zeros(sci.shape, np.uint8))},
                    coords={"y": np.arange(y0, y0 + ny), "x": np.arange(nx)}, attrs={"meta": meta})
    ds = ds.chunk({"integration": -1, "group": -1, "y": 24, "x": 512})
    out = refpix(ds, None)
    assert out.chunks["integration"] == (2,) and out.chunks["x"] == (512,) * 4
    with dask.config.set(scheduler="sync"):
        ours = out.sci.values
    want = correct_nir(sci, pixeldq, fastaxis=-1, slowaxis=2, origin=(y0, 0), noutputs=4,
                       subarray="SUBGRISM64").sci
    assert np.array_equal(ours.view(np.uint32), want.view(np.uint32))
