"""refpix on NIRSpec IRS2 frames (3200 x 2048): against jwst's RefPixStep on the same ramp and the
same synthetic ``refpix`` (IRS2Model) reference; bad references and unsupported options."""

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
from jwdask.detector1.refpix import refpix
from jwdask.errors import InputError, ReferenceFileError
from jwdask.io import keywords
from jwdask.io.uncal import open_uncal
from jwdask.kernels.refpix_irs2 import interleaved_positions, irs2_layout, to_dms
from jwdask.refs import RefProvider
from jwdask.simulate.irs2 import write_irs2_refpix
from tests.conftest import write_uncal

ROWS, WIDTH, SECTOR = 2048, 3200, 640
BAD_ROW = 1500
"""A DMS row (interleaved reference pixel of NRS1 amplifier 2) marked BAD_REF_PIXEL in the mask."""
NOISY = 640 + 8 + 20 * 5
"""Detector column of an interleaved reference pair given extra noise (found by the flagging)."""


@dataclass
class Case:
    ramp: xr.Dataset
    detector: str
    name: str


def _frame(rng: np.random.Generator, nints: int, ngroups: int) -> np.ndarray:
    """float32 ``(integration, group, 2048, 3200)`` detector-orientation IRS2 ramps: a bias per
    sector, a drift common to every sector in readout time (what the reference output and the
    interleaved pixels see), white noise, a source and one noisy interleaved pair."""
    out = np.empty((nints, ngroups, ROWS, WIDTH), np.float32)
    for i in range(nints):
        drift = np.cumsum(rng.normal(0, 0.05, (ngroups, ROWS * 712)), axis=1).reshape(ngroups, ROWS, 712)
        for s in range(5):
            sector = drift[..., :SECTOR] + 1e4 + rng.uniform(-200, 200) + rng.normal(0, 6, (ngroups, ROWS, SECTOR))
            out[i, :, :, s * SECTOR:(s + 1) * SECTOR] = sector if s % 2 else sector[..., ::-1]
        out[i] += (40.0 * np.arange(ngroups))[:, None, None]
        out[i, :, 900:960, 1700:1760] += (300.0 * np.arange(ngroups))[:, None, None]
    out[..., NOISY:NOISY + 2] += rng.normal(0, 300, (*out.shape[:-1], 2)).astype(np.float32)
    return out


def _build(tmp: Path, detector: str, nints: int, ngroups: int) -> Case:
    rng = np.random.default_rng(7 if detector == "NRS1" else 8)
    name = f"jw01234001001_01101_00001_{detector.lower()}_uncal.fits"
    keys = {"INSTRUME": "NIRSPEC", "DETECTOR": detector, "EXP_TYPE": "NRS_FIXEDSLIT", "FILTER": "CLEAR",
            "GRATING": "PRISM", "PUPIL": None, "MODULE": None, "CHANNEL": None, "READPATT": "NRSIRS2RAPID",
            "SUBARRAY": "FULL", "FASTAXIS": 2 if detector == "NRS1" else -2, "SLOWAXIS": 1 if detector == "NRS1" else -1,
            "NOUTPUTS": 4, "NRS_NORM": 16, "NRS_REF": 4, "FILENAME": name}
    write_uncal(tmp / name, nints=nints, ngroups=ngroups, ny=WIDTH, nx=ROWS, xstart=1, ystart=1, primary=keys,
                zeroframe=True, sci=np.zeros((nints, ngroups, WIDTH, ROWS), np.uint16))
    ds = open_uncal(str(tmp / name), tile=(512, 512))
    sci = np.ascontiguousarray(to_dms(_frame(rng, nints, ngroups), detector))
    pixeldq = np.zeros((WIDTH, ROWS), np.uint32)
    pixeldq[BAD_ROW, 10] = dqflags.BAD_REF_PIXEL
    pixeldq[2000:2010, 300:310] = dqflags.DO_NOT_USE
    pixeldq[1000:1010, 0:2] = dqflags.DO_NOT_USE  # bottom reference rows in detector orientation
    groupdq = np.zeros(sci.shape, np.uint8)
    groupdq[..., 1:, 2100, 400] = dqflags.SATURATED
    chunks = ds.sci.data.chunks
    zeroframe = sci[:, 0] - np.float32(2.0)
    zeroframe[:, 100:110, 500] = 0.0
    ramp = ds.assign(
        sci=(ds.sci.dims, da.from_array(sci, chunks=chunks)),
        zeroframe=(ds.zeroframe.dims, da.from_array(zeroframe, chunks=ds.zeroframe.data.chunks)),
        groupdq=(ds.sci.dims, da.from_array(groupdq, chunks=chunks)),
        pixeldq=(("y", "x"), da.from_array(pixeldq, chunks=chunks[2:])))
    # the minimal GROUP table of the test uncal does not follow the jwst schema: leave it out
    ramp = ramp.drop_vars([v for v in ramp.data_vars if str(v).startswith("group.")])
    ramp.attrs["tables"] = {k: v for k, v in ramp.attrs.get("tables", {}).items() if k != "group"}
    return Case(ramp, detector, name)


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_irs2_refpix(tmp_path_factory.mktemp("irs2ref") / "jwst_nirspec_refpix_9001.fits", seed=3)


@pytest.fixture(scope="module")
def reference_nrs2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_irs2_refpix(tmp_path_factory.mktemp("irs2ref") / "jwst_nirspec_refpix_9002.fits", detector="NRS2",
                             seed=4)


@pytest.fixture(scope="module")
def nrs1(tmp_path_factory: pytest.TempPathFactory) -> Case:
    return _build(tmp_path_factory.mktemp("irs2_nrs1"), "NRS1", nints=1, ngroups=2)


@pytest.fixture(scope="module")
def nrs2(tmp_path_factory: pytest.TempPathFactory) -> Case:
    return _build(tmp_path_factory.mktemp("irs2_nrs2"), "NRS2", nints=2, ngroups=2)


@pytest.fixture(scope="module")
def nrs1_result(nrs1: Case, reference_file: Path) -> xr.Dataset:
    return _ours(nrs1, str(reference_file))


def _ours(case: Case, reference: str, **params: object) -> xr.Dataset:
    with dask.config.set(scheduler="threads", num_workers=2):
        return refpix(case.ramp, RefProvider(overrides={"refpix": reference}), **params).compute()


def _jwst(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: str, **params: object):
    from jwst.refpix import RefPixStep

    from jwdask.io.products import write_product
    from tests.official import offline_crds

    offline_crds(tmp_path, monkeypatch)
    ramp_path = tmp_path / case.name.replace("_uncal", "_ramp")
    write_product(case.ramp, str(ramp_path), "ramp")
    return RefPixStep.call(str(ramp_path), override_refpix=reference, override_sirskernel="N/A", **params)


def test_layout() -> None:
    """16 normal / 4 reference samples: 2048 normal columns, reference blocks every 20 columns
    from column 8 of each 640-column sector, a 712-sample time series per row."""
    layout = irs2_layout()
    assert layout.normal.sum() == ROWS and not layout.normal[:SECTOR].any()
    interleaved = interleaved_positions(WIDTH, 16, 4, range(1, 5))
    np.testing.assert_array_equal(~layout.normal[SECTOR:], interleaved[SECTOR:])
    assert np.flatnonzero(interleaved[SECTOR:SECTOR + 40]).tolist() == [8, 9, 10, 11, 28, 29, 30, 31]
    assert layout.row == 712 and layout.hnorm1[-1] == 703 and len(layout.href1) == 128
    with pytest.raises(ValueError, match="NRS_REF"):
        irs2_layout(16, 3)


def test_output_layout_and_laziness(nrs1: Case, nrs1_result: xr.Dataset, reference_file: Path) -> None:
    refs = RefProvider(overrides={"refpix": str(reference_file)})
    lazy = refpix(nrs1.ramp, refs)
    assert isinstance(lazy.sci.data, da.Array) and lazy.sci.data.chunks[2:] == ((512,) * 4, (512,) * 4)
    for name in ("pixeldq", "groupdq", "zeroframe"):
        assert lazy[name].data.chunks[-2:] == lazy.sci.data.chunks[2:], name
    preserved = refpix(nrs1.ramp, refs, preserve_irs2_refpix=True)
    assert preserved.sci.data.chunks == nrs1.ramp.sci.data.chunks
    out = nrs1_result
    assert out.sci.shape == (1, 2, ROWS, ROWS) and out.sci.dtype == np.float32
    assert out.pixeldq.shape == (ROWS, ROWS) and out.groupdq.shape == out.sci.shape
    assert out.zeroframe.shape == (1, ROWS, ROWS)
    np.testing.assert_array_equal(out.y.values, np.arange(ROWS))
    assert out.attrs["meta"]["cal_step"]["refpix"] == "COMPLETE"
    assert keywords.get(out.attrs["meta"], "ref_file.refpix.name") == str(reference_file)
    keep = irs2_layout().normal
    np.testing.assert_array_equal(out.zeroframe.values, nrs1.ramp.zeroframe.values[:, keep])
    np.testing.assert_array_equal(out.groupdq.values, nrs1.ramp.groupdq.values[:, :, keep])
    # the correction removes most of the common drift from the science pixels
    before = nrs1.ramp.sci.values[0, 1][keep][100:-100, 100:-100]
    after = out.sci.values[0, 1][100:-100, 100:-100]
    assert np.std(after[:700]) < np.std(before[:700])


def test_reference_found_in_directory(nrs1: Case, reference_file: Path) -> None:
    """The simulated file carries the CRDS selectors of its type (DETECTOR, READPATT patterns)."""
    refs = RefProvider(refs_dir=reference_file.parent)
    assert refs.path("refpix", nrs1.ramp.attrs["meta"]) == str(reference_file.resolve())


@pytest.mark.reference
def test_equals_jwst_nrs1(nrs1: Case, nrs1_result: xr.Dataset, reference_file: Path, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("jwst")
    result = _jwst(nrs1, tmp_path, monkeypatch, str(reference_file))
    assert result.meta.cal_step.refpix == "COMPLETE"
    assert nrs1_result.sci.shape == result.data.shape
    np.testing.assert_array_equal(nrs1_result.sci.values, result.data)
    np.testing.assert_array_equal(nrs1_result.pixeldq.values, result.pixeldq)
    np.testing.assert_array_equal(nrs1_result.groupdq.values, result.groupdq)


@pytest.mark.reference
def test_equals_jwst_nrs2_preserved(nrs2: Case, reference_nrs2: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Two integrations, NRS2 orientation, reference pixels kept, another threshold."""
    pytest.importorskip("jwst")
    params = {"preserve_irs2_refpix": True, "ovr_corr_mitigation_ftr": 2.5}
    ours = _ours(nrs2, str(reference_nrs2), **params)
    result = _jwst(nrs2, tmp_path, monkeypatch, str(reference_nrs2), **params)
    assert result.meta.cal_step.refpix == "COMPLETE"
    assert ours.sci.shape == result.data.shape == (2, 2, WIDTH, ROWS)
    np.testing.assert_array_equal(ours.sci.values, result.data)
    np.testing.assert_array_equal(ours.pixeldq.values, result.pixeldq)
    np.testing.assert_array_equal(ours.groupdq.values, result.groupdq)
    flagged = dqflags.BAD_REF_PIXEL | dqflags.DO_NOT_USE
    assert (ours.pixeldq.values[WIDTH - 1 - NOISY] & flagged == flagged).all()


@pytest.mark.reference
@pytest.mark.parametrize("params", [{}, {"irs2_mean_subtraction": True},
                                    {"irs2_mean_subtraction": True, "odd_even_columns": False, "siglimit": 2.5}],
                         ids=["replace-only", "means", "means-all-columns"])
def test_not_applicable_equals_jwst(nrs1: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    params: dict[str, object]) -> None:
    """Without a refpix reference, jwst still flags and replaces the bad interleaved rows (after
    the reference-mean subtraction when asked): the frame keeps its 3200 rows."""
    pytest.importorskip("jwst")
    ours = _ours(nrs1, "N/A", **params)
    result = _jwst(nrs1, tmp_path, monkeypatch, "N/A", **params)
    assert result.meta.cal_step.refpix == ours.attrs["meta"]["cal_step"]["refpix"] == "SKIPPED"
    assert ours.sci.shape == result.data.shape == nrs1.ramp.sci.shape
    np.testing.assert_array_equal(ours.sci.values, result.data)
    np.testing.assert_array_equal(ours.pixeldq.values, result.pixeldq)
    np.testing.assert_array_equal(ours.zeroframe.values, result.zeroframe)
    if params:
        assert np.abs(ours.sci.values[0, 1, 1700:1710, 1000] - nrs1.ramp.sci.values[0, 1, 1700:1710, 1000]).min() > 1
    flagged = dqflags.BAD_REF_PIXEL | dqflags.DO_NOT_USE
    for row in (BAD_ROW, NOISY, NOISY + 1):
        assert (ours.pixeldq.values[row] & flagged == flagged).all()
        assert not np.array_equal(ours.sci.values[:, :, row], nrs1.ramp.sci.values[:, :, row])


def _broken(path: Path, reference_file: Path, kind: str) -> Path:
    with fits.open(reference_file) as hdul:
        primary, irs2, dq = (h.copy() for h in hdul)
    if kind == "no IRS2 table":
        hdus = [primary, dq]
    elif kind == "missing column":
        columns = [c for c in irs2.columns if c.name != "beta_2"]
        hdus = [primary, fits.BinTableHDU.from_columns(columns, name="IRS2"), dq]
    else:
        dq_cols = [c for c in dq.columns if c.name != "MASK"]
        hdus = [primary, irs2, fits.BinTableHDU.from_columns(dq_cols, name="DQ")]
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


@pytest.mark.parametrize(("kind", "match"), [("no IRS2 table", "no IRS2 binary table"),
                                             ("missing column", r"lacks columns \['beta_2'\]"),
                                             ("dq column", r"DQ table lacks columns \['MASK'\]")])
def test_bad_reference(nrs1: Case, reference_file: Path, tmp_path: Path, kind: str, match: str) -> None:
    path = _broken(tmp_path / "jwst_nirspec_refpix_bad.fits", reference_file, kind)
    with pytest.raises(ReferenceFileError, match=match) as err:
        refpix(nrs1.ramp, RefProvider(overrides={"refpix": str(path)}))
    assert str(path) in str(err.value) and err.value.reftype == "refpix"


def test_wrong_row_count(nrs1: Case, tmp_path: Path) -> None:
    path = write_irs2_refpix(tmp_path / "jwst_nirspec_refpix_short.fits", samples=1000)
    with pytest.raises(ReferenceFileError, match="2000 rows, expected 2916352") as err:
        refpix(nrs1.ramp, RefProvider(overrides={"refpix": str(path)}))
    assert str(path) in str(err.value)


def test_bad_exposure(nrs1: Case, reference_file: Path) -> None:
    refs = RefProvider(overrides={"refpix": str(reference_file)})
    other = nrs1.ramp.copy()
    other.attrs = {**nrs1.ramp.attrs, "meta": {**nrs1.ramp.attrs["meta"],
                                               "instrument": {"name": "NIRSPEC", "detector": "NRS3"}}}
    with pytest.raises(InputError, match="DETECTOR"):
        refpix(other, refs)
