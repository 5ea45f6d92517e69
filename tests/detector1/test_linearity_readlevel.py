"""linearity's read-level path (INV_COEFFS, NFRAMES > 1): tiles against the whole-window kernel,
equality with jwst's LinearityStep on the same ramp and CRDS-format LinearityModel reference,
the conditions that select it (as jwst 3.0: INV_COEFFS, NFRAMES > 1, no read_times), and bad
INV_COEFFS."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.table import Table

from jwdask import dqflags
from jwdask.detector1.linearity import linearity
from jwdask.errors import InputError, ReferenceFileError
from jwdask.io.uncal import open_uncal
from jwdask.kernels.linearity import correct_linearity
from jwdask.refs import RefProvider
from tests.conftest import PRIMARY, write_uncal

NINTS, NGROUPS, NY, NX = 2, 5, 40, 56
XSTART, YSTART = 101, 201
TILE = (16, 24)
NFRAMES = 4
WINDOW = (91, 191, 80, 64)
"""The reference's SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2 (it covers the exposure)."""
SHALLOW4 = {"READPATT": "SHALLOW4", "NFRAMES": NFRAMES, "GROUPGAP": 1, "TFRAME": 10.7, "TGROUP": 53.7}
SAT_LEVEL = 30000.0
"""Raw counts [DN] above which the synthetic ramps are flagged SATURATED."""


def write_linearity_reference(path: Path, coeffs: np.ndarray, dq: np.ndarray, inv_coeffs: np.ndarray | None) -> Path:
    """A NIRCam NRCB1 linearity reference in the CRDS LinearityModel FITS layout: PRIMARY keywords
    (a GENERIC window placed by SUBSTRT/SUBSIZE), COEFFS, DQ, INV_COEFFS and DQ_DEF."""
    header = fits.Header({"TELESCOP": "JWST", "INSTRUME": "NIRCAM", "DETECTOR": "NRCB1", "REFTYPE": "LINEARITY",
                          "DATAMODL": "LinearityModel", "AUTHOR": "jwdask tests", "PEDIGREE": "DUMMY",
                          "DESCRIP": "synthetic linearity with inverse coefficients",
                          "USEAFTER": "2020-01-01T00:00:00", "SUBARRAY": "GENERIC",
                          "SUBSTRT1": WINDOW[0], "SUBSTRT2": WINDOW[1], "SUBSIZE1": WINDOW[2],
                          "SUBSIZE2": WINDOW[3]})
    names = ["DO_NOT_USE", "NONLINEAR", "NO_LIN_CORR"]
    values = np.array([dqflags.PIXEL[n] for n in names], np.uint32)
    dq_def = Table({"BIT": np.array([int(v).bit_length() - 1 for v in values], np.int32), "VALUE": values,
                    "NAME": np.array(names, "S40"), "DESCRIPTION": np.array(names, "S80")})
    hdus = [fits.PrimaryHDU(header=header), fits.ImageHDU(coeffs, name="COEFFS"), fits.ImageHDU(dq, name="DQ")]
    if inv_coeffs is not None:
        hdus.append(fits.ImageHDU(inv_coeffs, name="INV_COEFFS"))
    hdus.append(fits.BinTableHDU(dq_def, name="DQ_DEF"))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


@dataclass
class Case:
    ramp: xr.Dataset
    ramp_path: Path
    ref: Path
    coeffs: np.ndarray
    inv_coeffs: np.ndarray
    lin_dq: np.ndarray
    """Reference arrays over the exposure's pixels."""

    def refs(self) -> RefProvider:
        return RefProvider(overrides={"linearity": str(self.ref)})


def _reference_arrays(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COEFFS ``F + c2 F^2 + c3 F^3`` and INV_COEFFS (its series inverse to third order) over
    the reference window, with unusable pixels of every kind."""
    shape = (WINDOW[3], WINDOW[2])
    c2 = rng.normal(3e-6, 3e-7, shape)
    c3 = rng.normal(2e-11, 2e-12, shape)
    coeffs = np.stack([rng.normal(0, 2, shape), rng.normal(1, 0.005, shape), c2, c3]).astype(np.float32)
    inv = np.stack([-coeffs[0], 2 - coeffs[1], -c2, 2 * c2**2 - c3]).astype(np.float32)
    dq = np.zeros(shape, np.uint32)
    y, x = YSTART - WINDOW[1], XSTART - WINDOW[0]  # exposure origin in the window
    coeffs[2, y + 3, x + 4] = np.nan
    coeffs[1, y + 5, x + 6] = 0.0
    inv[3, y + 7, x + 8] = np.nan
    inv[1, y + 9, x + 10] = 0.0
    dq[y + 11, x + 12] = dqflags.NO_LIN_CORR
    dq[y + 13, x + 14] = dqflags.NONLINEAR
    return coeffs, inv, dq


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    tmp = tmp_path_factory.mktemp("lin_readlevel")
    rng = np.random.default_rng(31)
    uncal = tmp / PRIMARY["FILENAME"]
    write_uncal(uncal, nints=NINTS, ngroups=NGROUPS, ny=NY, nx=NX, xstart=XSTART, ystart=YSTART, zeroframe=True,
                primary=SHALLOW4, sci=np.zeros((NINTS, NGROUPS, NY, NX), np.uint16))
    ds = open_uncal(str(uncal), tile=TILE)
    # bias-subtracted raw ramps [DN]: a flux per pixel, mildly non-linear, some saturating
    flux = rng.uniform(100, 9000, (NINTS, 1, NY, NX))
    t = np.arange(1, NGROUPS + 1)[None, :, None, None]
    linear = flux * t + rng.normal(0, 5, (NINTS, NGROUPS, NY, NX))
    sci = (linear - 2.5e-6 * linear**2).astype(np.float32)
    gdq = np.zeros(sci.shape, np.uint8)
    gdq[np.maximum.accumulate(sci > SAT_LEVEL, axis=1)] = dqflags.SATURATED
    gdq[rng.random(sci.shape) < 0.03] |= dqflags.JUMP_DET
    pdq = np.where(rng.random((NY, NX)) < 0.03, dqflags.HOT, 0).astype(np.uint32)
    zeroframe = (sci[:, 0] * np.float32(1 / NFRAMES)).astype(np.float32)
    zeroframe[:, 2, :5] = 0.0
    chunks = ds.sci.data.chunks
    ramp = ds.assign(sci=(ds.sci.dims, da.from_array(sci, chunks=chunks)),
                     groupdq=(ds.sci.dims, da.from_array(gdq, chunks=chunks)),
                     pixeldq=(("y", "x"), da.from_array(pdq, chunks=chunks[2:])),
                     zeroframe=(ds.zeroframe.dims, da.from_array(zeroframe, chunks=ds.zeroframe.data.chunks)))
    # the minimal GROUP table of the test uncal does not follow the jwst schema: leave it out
    ramp = ramp.drop_vars([v for v in ramp.data_vars if str(v).startswith("group.")])
    ramp.attrs["tables"] = {k: v for k, v in ramp.attrs.get("tables", {}).items() if k != "group"}
    coeffs, inv, dq = _reference_arrays(rng)
    ref = write_linearity_reference(tmp / "jwst_nircam_linearity_inv.fits", coeffs, dq, inv)
    ys, xs = slice(YSTART - WINDOW[1], YSTART - WINDOW[1] + NY), slice(XSTART - WINDOW[0], XSTART - WINDOW[0] + NX)
    return Case(ramp, tmp / PRIMARY["FILENAME"].replace("_uncal", "_ramp"), ref,
                coeffs[:, ys, xs], inv[:, ys, xs], dq[ys, xs])


def _with_meta(ds: xr.Dataset, **exposure: object) -> xr.Dataset:
    meta = copy.deepcopy(ds.attrs["meta"])
    meta["exposure"].update(exposure)
    out = ds.copy()
    out.attrs = {**ds.attrs, "meta": meta}
    return out


def _compute(ds: xr.Dataset) -> xr.Dataset:
    with dask.config.set(scheduler="threads", num_workers=2):
        return ds.compute()


def test_tiles_equal_whole_window_kernel(case: Case) -> None:
    """The tiled step equals the kernel's read-level path on the whole window, and differs from
    the group-level correction where pixels are not saturated."""
    out = linearity(case.ramp, case.refs())
    assert isinstance(out.sci.data, da.Array)
    assert out.sci.data.chunks == case.ramp.sci.data.chunks
    assert out.attrs["meta"]["cal_step"]["linearity"] == "COMPLETE"
    ours = _compute(out)
    r = case.ramp
    whole = correct_linearity(r.sci.values, r.groupdq.values, r.pixeldq.values, case.coeffs, case.lin_dq,
                              zeroframe=r.zeroframe.values, inv_coeffs=case.inv_coeffs, nframes=NFRAMES)
    np.testing.assert_array_equal(ours.sci.values, whole.sci)
    np.testing.assert_array_equal(ours.pixeldq.values, whole.pixeldq)
    np.testing.assert_array_equal(ours.zeroframe.values, whole.zeroframe)
    np.testing.assert_array_equal(ours.groupdq.values, r.groupdq.values)
    classic = correct_linearity(r.sci.values, r.groupdq.values, r.pixeldq.values, case.coeffs, case.lin_dq)
    unsat = (r.groupdq.values & dqflags.SATURATED) == 0
    assert (ours.sci.values[unsat] != classic.sci[unsat]).mean() > 0.5
    sat = ~unsat
    assert sat.any()
    np.testing.assert_array_equal(ours.sci.values[sat], r.sci.values[sat])
    flagged = ours.pixeldq.values & dqflags.NO_LIN_CORR
    assert [tuple(p) for p in np.argwhere(flagged)] == [(3, 4), (5, 6), (7, 8), (9, 10), (11, 12)]


def test_read_level_only_when_jwst_uses_it(case: Case) -> None:
    """NFRAMES = 1, explicit read_times, or no INV_COEFFS: the group-level correction."""
    r = case.ramp
    classic = correct_linearity(r.sci.values, r.groupdq.values, r.pixeldq.values, case.coeffs, case.lin_dq,
                                zeroframe=r.zeroframe.values)
    times = [[10.7 * (g * NFRAMES + f + 1) for f in range(NFRAMES)] for g in range(NGROUPS)]
    for ds in (_with_meta(r, nframes=1), _with_meta(r, read_times=times)):
        np.testing.assert_array_equal(_compute(linearity(ds, case.refs())).sci.values, classic.sci)
    no_inv = case.ref.with_name("jwst_nircam_linearity_noinv.fits")
    with fits.open(case.ref) as hdul:
        fits.HDUList([h.copy() for h in hdul if h.name != "INV_COEFFS"]).writeto(no_inv, overwrite=True)
    out = _compute(linearity(r, RefProvider(overrides={"linearity": str(no_inv)})))
    np.testing.assert_array_equal(out.sci.values, classic.sci)
    # the group-level path ignores INV_COEFFS, so it does not flag their unusable pixels
    assert not classic.pixeldq[7, 8] & dqflags.NO_LIN_CORR


@pytest.mark.reference
@pytest.mark.parametrize("read_times", [False, True], ids=["read-level", "read-times-set"])
def test_equals_jwst(case: Case, read_times: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("jwst")
    from jwst.linearity import LinearityStep
    from stdatamodels.jwst.datamodels import RampModel

    from jwdask.io.products import write_product
    from tests.official import offline_crds

    offline_crds(tmp_path, monkeypatch)
    ramp_path = tmp_path / case.ramp_path.name
    write_product(case.ramp, str(ramp_path), "ramp")
    ds = case.ramp
    with RampModel(str(ramp_path)) as model:
        assert model.meta.exposure.nframes == NFRAMES and model.meta.exposure.zero_frame
        if read_times:
            times = [[10.7 * (g * NFRAMES + f + 1) for f in range(NFRAMES)] for g in range(NGROUPS)]
            model.meta.exposure.read_times = times
            ds = _with_meta(ds, read_times=times)
        result = LinearityStep.call(model, override_linearity=str(case.ref))
    assert result.meta.cal_step.linearity == "COMPLETE"
    ours = _compute(linearity(ds, case.refs()))
    np.testing.assert_allclose(ours.sci.values, result.data, rtol=1e-5, atol=0)
    assert np.mean(ours.sci.values == result.data) > 0.999
    np.testing.assert_array_equal(ours.pixeldq.values, result.pixeldq)
    np.testing.assert_array_equal(ours.groupdq.values, result.groupdq)
    np.testing.assert_allclose(ours.zeroframe.values, result.zeroframe, rtol=1e-5, atol=0)
    assert (ours.sci.values != case.ramp.sci.values).mean() > 0.5


def test_bad_inv_coeffs(case: Case, tmp_path: Path) -> None:
    """INV_COEFFS of the wrong shape is a ReferenceFileError naming the file and the HDU."""
    coeffs, inv, dq = _reference_arrays(np.random.default_rng(32))
    plane = write_linearity_reference(tmp_path / "jwst_nircam_linearity_plane.fits", coeffs, dq, inv[1])
    with pytest.raises(ReferenceFileError, match=r"jwst_nircam_linearity_plane\.fits: INV_COEFFS has shape"):
        linearity(case.ramp, RefProvider(overrides={"linearity": str(plane)}))
    one = write_linearity_reference(tmp_path / "jwst_nircam_linearity_one.fits", coeffs, dq, inv[:1])
    with pytest.raises(ReferenceFileError, match=r"jwst_nircam_linearity_one\.fits: INV_COEFFS has shape"):
        linearity(case.ramp, RefProvider(overrides={"linearity": str(one)}))
    cut = write_linearity_reference(tmp_path / "jwst_nircam_linearity_cut.fits", coeffs, dq, inv[:, :-8])
    with pytest.raises(ReferenceFileError, match=r"jwst_nircam_linearity_cut\.fits.*INV_COEFFS"):
        linearity(case.ramp, RefProvider(overrides={"linearity": str(cut)}))
    cube = write_linearity_reference(tmp_path / "jwst_nircam_linearity_4d.fits", coeffs, dq, inv[None])
    with pytest.raises(ReferenceFileError, match=r"jwst_nircam_linearity_4d\.fits: INV_COEFFS has shape"):
        linearity(case.ramp, RefProvider(overrides={"linearity": str(cube)}))
    fewer = write_linearity_reference(tmp_path / "jwst_nircam_linearity_three.fits", coeffs, dq, inv[:3])
    corrected = linearity(case.ramp, RefProvider(overrides={"linearity": str(fewer)}))  # counts may differ
    assert np.isfinite(corrected.sci.values).all()
    one_group = case.ramp.isel(group=slice(0, 1))
    with pytest.raises(InputError, match="at least 2 groups"):
        linearity(one_group, case.refs())
