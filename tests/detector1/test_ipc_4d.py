"""ipc with a per-pixel (4-D, NIRSpec-style) kernel reference: tiles with halos against the
whole-frame kernel, equality with jwst's IPCStep on the same ramp and reference file (a
full-frame CRDS IPCModel, and a window placed by SUBSTRT keywords), and bad references."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from astropy.io import fits

from jwdask import dqflags
from jwdask.detector1.ipc import ipc
from jwdask.errors import ReferenceFileError
from jwdask.io.uncal import open_uncal
from jwdask.kernels.ipc import correct_ipc, reference_pixel_mask
from jwdask.refs import RefProvider
from tests.conftest import write_uncal

NINTS, NGROUPS, NY, NX = 2, 3, 40, 56
TILE = (16, 24)
NIRSPEC = {"INSTRUME": "NIRSPEC", "DETECTOR": "NRS1", "EXP_TYPE": "NRS_FIXEDSLIT", "FILTER": "CLEAR",
           "GRATING": "PRISM", "PUPIL": None, "MODULE": None, "CHANNEL": None, "READPATT": "NRSRAPID",
           "SUBARRAY": "SUB32", "FASTAXIS": 2, "SLOWAXIS": 1, "NOUTPUTS": 1,
           "FILENAME": "jw01234001001_01101_00001_nrs1_uncal.fits"}


def write_ipc_reference(path: Path, kernel: np.ndarray, window: tuple[int, int] | None = None) -> Path:
    """A NIRSpec NRS1 IPC reference in the CRDS IPCModel FITS layout: PRIMARY keywords, SCI
    ``(ky, kx, y, x)`` float32. ``window`` ``(SUBSTRT1, SUBSTRT2)`` places a kernel smaller
    than the full frame (SUBARRAY GENERIC); None writes it as full frame."""
    header = fits.Header({"TELESCOP": "JWST", "INSTRUME": "NIRSPEC", "DETECTOR": "NRS1", "REFTYPE": "IPC",
                          "DATAMODL": "IPCModel", "AUTHOR": "jwdask tests", "PEDIGREE": "DUMMY",
                          "DESCRIP": "synthetic per-pixel IPC deconvolution kernel",
                          "USEAFTER": "2020-01-01T00:00:00", "SUBARRAY": "FULL" if window is None else "GENERIC"})
    if window is not None:
        header.update({"SUBSTRT1": window[0], "SUBSTRT2": window[1], "SUBSIZE1": kernel.shape[-1],
                       "SUBSIZE2": kernel.shape[-2]})
    fits.HDUList([fits.PrimaryHDU(header=header), fits.ImageHDU(kernel, name="SCI")]).writeto(path, overwrite=True)
    return path


def _kernel_values(rng: np.random.Generator, ky: int, kx: int, ny: int, nx: int) -> np.ndarray:
    """A deconvolution-like per-pixel kernel: ~1 in the middle, small negative wings."""
    k = rng.normal(-0.006, 0.002, (ky, kx, ny, nx)).astype(np.float32)
    k[ky // 2, kx // 2] = rng.normal(1.04, 0.005, (ny, nx)).astype(np.float32)
    return k


@dataclass
class Case:
    ramp: xr.Dataset
    ramp_path: Path
    ref: Path
    kernel: np.ndarray
    """The per-pixel kernel over the exposure's pixels ``(ky, kx, NY, NX)``."""


def _case(tmp: Path, *, xstart: int, ystart: int, ref: Path, kernel: np.ndarray, seed: int) -> Case:
    uncal = tmp / NIRSPEC["FILENAME"]
    write_uncal(uncal, nints=NINTS, ngroups=NGROUPS, ny=NY, nx=NX, xstart=xstart, ystart=ystart, primary=NIRSPEC,
                sci=np.zeros((NINTS, NGROUPS, NY, NX), np.uint16))
    ds = open_uncal(str(uncal), tile=TILE)
    rng = np.random.default_rng(seed)
    sci = (1000.0 + rng.normal(0, 30, (NINTS, NGROUPS, NY, NX))
           + 200.0 * np.arange(NGROUPS)[:, None, None]).astype(np.float32)
    sci[0, 1, 20, 30] = 40000.0
    gdq = np.zeros(sci.shape, np.uint8)
    gdq[1, 2, 5:9, 10:12] = dqflags.SATURATED
    pdq = np.zeros((NY, NX), np.uint32)
    pdq[7, 8] = dqflags.HOT
    chunks = ds.sci.data.chunks
    ramp = ds.assign(sci=(ds.sci.dims, da.from_array(sci, chunks=chunks)),
                     groupdq=(ds.sci.dims, da.from_array(gdq, chunks=chunks)),
                     pixeldq=(("y", "x"), da.from_array(pdq, chunks=chunks[2:])))
    # the minimal GROUP table of the test uncal does not follow the jwst schema: leave it out
    ramp = ramp.drop_vars([v for v in ramp.data_vars if str(v).startswith("group.")])
    ramp.attrs["tables"] = {k: v for k, v in ramp.attrs.get("tables", {}).items() if k != "group"}
    return Case(ramp, tmp / NIRSPEC["FILENAME"].replace("_uncal", "_ramp"), ref, kernel)


@pytest.fixture(scope="module")
def full_frame(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """A 40 x 56 window in the top-right corner (reference rows and columns inside it) and a
    full-frame 3 x 3 x 2048 x 2048 kernel reference."""
    tmp = tmp_path_factory.mktemp("ipc4d_full")
    rng = np.random.default_rng(21)
    xstart, ystart = 2048 - NX + 1, 2048 - NY + 1
    kernel = np.empty((3, 3, 2048, 2048), np.float32)
    kernel[:] = np.array([[-0.005, -0.01, -0.005], [-0.01, 1.06, -0.01], [-0.005, -0.01, -0.005]],
                         np.float32)[:, :, None, None]
    window = (slice(ystart - 1, None), slice(xstart - 1, None))
    kernel[:, :, window[0], window[1]] = _kernel_values(rng, 3, 3, NY, NX)
    ref = write_ipc_reference(tmp / "jwst_nirspec_ipc_4d.fits", kernel)
    return _case(tmp, xstart=xstart, ystart=ystart, ref=ref, kernel=kernel[:, :, window[0], window[1]].copy(),
                 seed=22)


@pytest.fixture(scope="module")
def windowed(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """A 5 x 5 per-pixel kernel on a 48 x 64 window at the detector origin (SUBSTRT keywords),
    the exposure 40 x 56 at (SUBSTRT1, SUBSTRT2) = (3, 2): bottom reference rows, left columns."""
    tmp = tmp_path_factory.mktemp("ipc4d_window")
    rng = np.random.default_rng(23)
    kernel = _kernel_values(rng, 5, 5, 48, 64)
    ref = write_ipc_reference(tmp / "jwst_nirspec_ipc_window.fits", kernel, window=(1, 1))
    return _case(tmp, xstart=3, ystart=2, ref=ref, kernel=kernel[:, :, 1:1 + NY, 2:2 + NX].copy(), seed=24)


def _ours(case: Case) -> xr.Dataset:
    out = ipc(case.ramp, RefProvider(overrides={"ipc": str(case.ref)}))
    with dask.config.set(scheduler="threads", num_workers=2):
        return out.compute()


@pytest.mark.parametrize("name", ["full_frame", "windowed"])
def test_tiles_equal_whole_frame_kernel(name: str, request: pytest.FixtureRequest) -> None:
    """The tiled step (halo, reference read per tile) equals the kernel on the whole window;
    reference pixels keep their values; the graph stays lazy."""
    case: Case = request.getfixturevalue(name)
    out = ipc(case.ramp, RefProvider(overrides={"ipc": str(case.ref)}))
    assert isinstance(out.sci.data, da.Array)
    assert out.sci.data.chunks == case.ramp.sci.data.chunks
    assert out.attrs["meta"]["cal_step"]["ipc"] == "COMPLETE"
    assert out.attrs["meta"]["ref_file"]["ipc"]["name"] == str(case.ref)
    sci = case.ramp.sci.values
    refmask = reference_pixel_mask(case.ramp.y.values, case.ramp.x.values)
    whole = correct_ipc(sci, case.kernel, refmask).sci
    with dask.config.set(scheduler="threads", num_workers=2):
        ours = out.sci.values
    np.testing.assert_array_equal(ours, whole)
    np.testing.assert_array_equal(ours[..., refmask], sci[..., refmask])
    assert refmask.any() and (ours[..., ~refmask] != sci[..., ~refmask]).mean() > 0.9


def test_reference_is_read_per_tile(full_frame: Case) -> None:
    """The 151 MB full-frame reference enters the graph as reads of the few tile-sized blocks
    (all ky, kx planes) under the exposure's window, never whole."""
    out = ipc(full_frame.ramp, RefProvider(overrides={"ipc": str(full_frame.ref)}))
    culled = out.sci.data.__dask_graph__().cull(set(dask.core.flatten(out.sci.data.__dask_keys__())))
    reads = [k for k in culled if isinstance(k, tuple) and str(k[0]).startswith("ref-ipc-sci")]
    assert 0 < len(reads) <= (-(-NY // TILE[0]) + 1) * (-(-NX // TILE[1]) + 1)
    assert all(k[1:3] == (0, 0) for k in reads)
    assert {k[3] for k in reads} <= set(range((2048 - NY) // TILE[0], 2048 // TILE[0] + 1))


@pytest.mark.reference
@pytest.mark.parametrize("name", ["full_frame", "windowed"])
def test_equals_jwst(name: str, request: pytest.FixtureRequest, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("jwst")
    from jwst.ipc import IPCStep

    from jwdask.io.products import write_product
    from tests.official import offline_crds

    case: Case = request.getfixturevalue(name)
    offline_crds(tmp_path, monkeypatch)
    write_product(case.ramp, str(case.ramp_path), "ramp")
    result = IPCStep.call(str(case.ramp_path), override_ipc=str(case.ref))
    assert result.meta.cal_step.ipc == "COMPLETE"
    ours = _ours(case)
    np.testing.assert_array_equal(ours.sci.values, result.data)  # same float32 sums in the same order
    assert (ours.sci.values != case.ramp.sci.values).mean() > 0.5
    np.testing.assert_array_equal(ours.groupdq.values, result.groupdq)
    np.testing.assert_array_equal(ours.pixeldq.values, result.pixeldq)


@pytest.mark.filterwarnings("ignore:Duplicate dimension names")
def test_bad_references(windowed: Case, tmp_path: Path) -> None:
    def run(path: Path) -> None:
        ipc(windowed.ramp, RefProvider(overrides={"ipc": str(path)}))

    rng = np.random.default_rng(25)
    small = write_ipc_reference(tmp_path / "jwst_nirspec_ipc_small.fits", _kernel_values(rng, 3, 3, 20, 20),
                                window=(1, 1))
    with pytest.raises(ReferenceFileError, match="jwst_nirspec_ipc_small.fits covers"):
        run(small)
    unplaced = tmp_path / "jwst_nirspec_ipc_unplaced.fits"
    write_ipc_reference(unplaced, _kernel_values(rng, 3, 3, 48, 64))
    with pytest.raises(ReferenceFileError, match="jwst_nirspec_ipc_unplaced.fits.*SUBSTRT1/2"):
        run(unplaced)
    cube = write_ipc_reference(tmp_path / "jwst_nirspec_ipc_cube.fits", rng.normal(size=(3, 3, 3)).astype(np.float32))
    with pytest.raises(ReferenceFileError, match="jwst_nirspec_ipc_cube.fits: SCI has shape"):
        run(cube)
    huge = write_ipc_reference(tmp_path / "jwst_nirspec_ipc_huge.fits", _kernel_values(rng, 11, 11, 48, 64),
                               window=(1, 1))
    with pytest.raises(ReferenceFileError, match="jwst_nirspec_ipc_huge.fits: kernel shape"):
        run(huge)


def test_irs2_is_not_implemented(windowed: Case) -> None:
    """IRS2-format frames (an axis longer than 2048, as jwst decides) raise NotImplementedError."""
    ny, nx = 8, 3200
    shape = (1, 2, ny, nx)
    irs2 = xr.Dataset(
        {"sci": (("integration", "group", "y", "x"), da.zeros(shape, np.float32, chunks=(1, 2, 8, 800))),
         "groupdq": (("integration", "group", "y", "x"), da.zeros(shape, np.uint8, chunks=(1, 2, 8, 800))),
         "pixeldq": (("y", "x"), da.zeros((ny, nx), np.uint32, chunks=(8, 800)))},
        coords={"y": np.arange(ny), "x": np.arange(nx)}, attrs=dict(windowed.ramp.attrs))
    with pytest.raises(NotImplementedError, match="IRS2"):
        ipc(irs2, RefProvider(overrides={"ipc": str(windowed.ref)}))
