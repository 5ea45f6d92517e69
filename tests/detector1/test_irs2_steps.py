"""dq_init, saturation, ipc and superbias on a NIRSpec IRS2 exposure (3200 x 2048, SUBSIZE2 = 2048)
against jwst's steps on the same raw file and the same reference files: IRS2-layout MASK and
SUPERBIAS, 2048 x 2048 SATURATION, a 2-D IPC kernel; then refpix takes the result to 2048 x 2048."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.table import Table

from jwdask import dqflags
from jwdask.detector1.dq_init import dq_init
from jwdask.detector1.ipc import ipc
from jwdask.detector1.refpix import refpix
from jwdask.detector1.saturation import saturation
from jwdask.detector1.superbias import superbias
from jwdask.errors import InputError, ReferenceFileError
from jwdask.io.uncal import open_uncal
from jwdask.refs import RefProvider, irs2_layout
from jwdask.simulate.irs2 import write_irs2_refpix
from tests.conftest import write_uncal

NY, NX = 3200, 2048
NGROUPS, NFRAMES = 3, 5
TILE = (512, 512)
DQ_DEF = ("DO_NOT_USE", "SATURATED", "DEAD", "HOT", "NO_SAT_CHECK", "UNRELIABLE_BIAS", "REFERENCE_PIXEL")
SAT = 40000.0
"""Saturation threshold [DN] of most pixels."""


@dataclass
class Case:
    uncal: Path
    refs: dict[str, Path]
    detector: str
    nints: int

    @property
    def rows(self) -> np.ndarray:
        """bool ``(3200,)``: the normal DMS rows."""
        return irs2_layout.normal_rows(NY, self.detector)

    @property
    def normal_y(self) -> np.ndarray:
        return np.flatnonzero(self.rows)

    @property
    def ref_y(self) -> np.ndarray:
        """The interleaved reference rows and the reference output."""
        return np.flatnonzero(~self.rows)

    @property
    def group2(self) -> tuple[int, int]:
        """A pixel that saturates within the frames of group 2 (jwst's IRS2 group-2 test flags group 1)."""
        return int(self.normal_y[1200]), 700

    @property
    def star(self) -> tuple[slice, slice]:
        """A source saturating from group 0 on, across interleaved reference rows."""
        return slice(int(self.normal_y[300]), int(self.normal_y[300]) + 12), slice(1500, 1510)


def _reference(path: Path, detector: str, reftype: str, model: str, images: dict[str, np.ndarray]) -> Path:
    """A CRDS-like reference: full-frame keywords (SUBSIZE2 = 2048 also for IRS2-layout images),
    the images, and a DQ_DEF table with a DQ image; no window keywords for a small kernel."""
    primary = fits.PrimaryHDU()
    window = {"SUBARRAY": "FULL", "SUBSTRT1": 1, "SUBSTRT2": 1, "SUBSIZE1": 2048, "SUBSIZE2": 2048}
    for key, value in {"TELESCOP": "JWST", "INSTRUME": "NIRSPEC", "DETECTOR": detector, "REFTYPE": reftype,
                       "DATAMODL": model, "USEAFTER": "2022-01-01T00:00:00", "PEDIGREE": "DUMMY",
                       "DESCRIP": f"synthetic IRS2 test {reftype}", "AUTHOR": "jwdask tests", "READPATT": "ANY",
                       **(window if next(iter(images.values())).shape[-1] == 2048 else {})}.items():
        primary.header[key] = value
    hdus: list[Any] = [primary, *(fits.ImageHDU(data, name=name) for name, data in images.items())]
    if "DQ" in images:
        values = np.array([dqflags.PIXEL[n] for n in DQ_DEF], np.uint32)
        hdus.append(fits.BinTableHDU(Table({"BIT": np.array([int(v).bit_length() - 1 for v in values], np.int32),
                                            "VALUE": values, "NAME": np.array(DQ_DEF, "S40"),
                                            "DESCRIPTION": np.array(DQ_DEF, "S80")}), name="DQ_DEF"))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def _build(tmp: Path, detector: str, nints: int) -> Case:
    name = f"jw01234001001_01101_00001_{detector.lower()}_uncal.fits"
    keys = {"INSTRUME": "NIRSPEC", "DETECTOR": detector, "EXP_TYPE": "NRS_FIXEDSLIT", "FILTER": "CLEAR",
            "GRATING": "PRISM", "PUPIL": None, "MODULE": None, "CHANNEL": None, "READPATT": "NRSIRS2",
            "NFRAMES": NFRAMES, "SUBARRAY": "FULL", "FASTAXIS": 2 if detector == "NRS1" else -2,
            "SLOWAXIS": 1 if detector == "NRS1" else -1, "NOUTPUTS": 4, "NRS_NORM": 16, "NRS_REF": 4,
            "SUBSIZE2": 2048, "FILENAME": name}
    case = Case(tmp / name, {}, detector, nints)
    rows, normal_y, ref_y, star, group2 = case.rows, case.normal_y, case.ref_y, case.star, case.group2
    rng = np.random.default_rng(11 if detector == "NRS1" else 12)
    bias = (12000.0 + rng.normal(0, 50, (NY, NX))).astype(np.float32)
    raw = np.stack([np.stack([bias + 400.0 * (g + 1) + rng.normal(0, 10, (NY, NX)) for g in range(NGROUPS)])
                    for _ in range(nints)])
    raw[0, :, star[0], star[1]] = np.array([42000.0, 52000.0, 62000.0])[:, None, None]
    raw[-1, :, group2[0], group2[1]] = [13000.0, 30000.0, 45000.0]
    raw[0, 1, normal_y[50], 60:64] = 0.0  # A/D floor
    raw[0, :, ref_y[900], 100:110] = 60000.0  # an interleaved reference row: never flagged by jwst
    raw[-1, 2, ref_y[901], 200:210] = 0.0
    raw[:, :, normal_y[-1], 2040:2048] = 65535.0  # the top edge of the normal frame
    write_uncal(case.uncal, nints=nints, ngroups=NGROUPS, ny=NY, nx=NX, xstart=1, ystart=1, primary=keys,
                zeroframe=True, sci=np.clip(raw, 0, 65535).astype(np.uint16))
    with fits.open(case.uncal) as hdul:  # the test GROUP table does not follow jwst's schema: leave it out
        fits.HDUList([h for h in hdul if h.name != "GROUP"]).writeto(case.uncal, overwrite=True)
    mask = np.zeros((NY, NX), np.uint32)
    mask[~rows] = dqflags.REFERENCE_PIXEL
    mask[normal_y[100]:normal_y[100] + 3, 30:33] = dqflags.DO_NOT_USE | dqflags.HOT
    mask[ref_y[700], 40:45] |= dqflags.DO_NOT_USE
    mask[2500, 1000] = dqflags.DEAD | dqflags.DO_NOT_USE
    thresh = np.full((2048, 2048), SAT, np.float32)
    thresh[10:14, 1000:1004] = np.nan
    sat_dq = np.zeros((2048, 2048), np.uint32)
    sat_dq[20:22, 1500:1502] = dqflags.NO_SAT_CHECK
    sat_dq[300, 1505] = dqflags.NO_SAT_CHECK  # under the source: never flagged
    sb_dq = np.zeros((NY, NX), np.uint32)
    sb_dq[1234, 567] = dqflags.UNRELIABLE_BIAS
    sb = bias.copy()
    sb[1500:1502, 800:803] = np.nan
    kernel = np.array([[0.0005, -0.012, 0.0005], [-0.014, 1.05, -0.014], [0.0005, -0.012, 0.0005]], np.float32)
    case.refs.update({
        "mask": _reference(tmp / "jwst_nirspec_mask_irs2.fits", detector, "MASK", "MaskModel", {"DQ": mask}),
        "saturation": _reference(tmp / "jwst_nirspec_saturation.fits", detector, "SATURATION", "SaturationModel",
                                 {"SCI": thresh, "DQ": sat_dq}),
        "superbias": _reference(tmp / "jwst_nirspec_superbias_irs2.fits", detector, "SUPERBIAS", "SuperBiasModel",
                                {"SCI": sb, "ERR": np.full((NY, NX), 5.0, np.float32), "DQ": sb_dq}),
        "ipc": _reference(tmp / "jwst_nirspec_ipc.fits", detector, "IPC", "IPCModel", {"SCI": kernel}),
    })
    return case


@pytest.fixture(scope="module")
def nrs1(tmp_path_factory: pytest.TempPathFactory) -> Case:
    return _build(tmp_path_factory.mktemp("irs2_nrs1"), "NRS1", nints=1)


@pytest.fixture(scope="module")
def nrs2(tmp_path_factory: pytest.TempPathFactory) -> Case:
    return _build(tmp_path_factory.mktemp("irs2_nrs2"), "NRS2", nints=2)


def _provider(case: Case, **more: str) -> RefProvider:
    return RefProvider(overrides={**{k: str(v) for k, v in case.refs.items()}, **more})


def _chain(case: Case) -> dict[str, xr.Dataset]:
    """Every stage of our chain, lazy."""
    refs = _provider(case)
    stages = {"dq_init": dq_init(open_uncal(str(case.uncal), tile=TILE), refs)}
    stages["saturation"] = saturation(stages["dq_init"], refs)
    stages["ipc"] = ipc(stages["saturation"], refs)
    stages["superbias"] = superbias(stages["ipc"], refs)
    return stages


def _computed(case: Case) -> dict[str, xr.Dataset]:
    stages = {k: v[["sci", "pixeldq", "groupdq", "zeroframe"]] for k, v in _chain(case).items()}
    with dask.config.set(scheduler="threads", num_workers=2):
        (computed,) = dask.compute(stages)
    return computed


@pytest.fixture(scope="module")
def ours(nrs1: Case) -> dict[str, xr.Dataset]:
    return _computed(nrs1)


def test_lazy_and_tiled(nrs1: Case) -> None:
    stages = _chain(nrs1)
    for name, ds in stages.items():
        for var in ("sci", "pixeldq", "groupdq"):
            assert isinstance(ds[var].data, da.Array), (name, var)
            assert ds[var].data.chunks[-2:] == ((512,) * 6 + (128,), (512,) * 4), (name, var)
        assert ds.attrs["meta"]["cal_step"][name] == "COMPLETE"
    np.testing.assert_array_equal(stages["superbias"].y.values, np.arange(NY))


def test_irs2_uncal_accepted(nrs1: Case) -> None:
    """Real IRS2 raw files have 3200 rows and SUBSIZE2 = 2048."""
    ds = open_uncal(str(nrs1.uncal))
    assert ds.sci.shape == (1, NGROUPS, NY, NX) and ds.zeroframe.shape == (1, NY, NX)
    assert ds.attrs["meta"]["subarray"]["ysize"] == 2048


def test_layout_matches_jwst() -> None:
    x_irs2 = pytest.importorskip("jwst.saturation.x_irs2")
    for n, r in ((16, 4), (8, 2), (32, 8), (14, 4)):
        np.testing.assert_array_equal(irs2_layout.normal_mask(NY, n, r), x_irs2.make_mask(np.zeros((NY, 2)), n=n, r=r))
    frame = np.arange(NY * 3, dtype=np.float32).reshape(NY, 3)
    for detector in ("NRS1", "NRS2"):
        rows = irs2_layout.normal_rows(NY, detector)
        normal = irs2_layout.from_irs2(frame, rows)
        np.testing.assert_array_equal(normal, x_irs2.from_irs2(frame, x_irs2.make_mask(frame), detector))
        np.testing.assert_array_equal(irs2_layout.to_irs2(normal, rows, -1.0)[rows], normal)


def test_saturation_flags_only_normal_rows(nrs1: Case, ours: dict[str, xr.Dataset]) -> None:
    before, after = ours["dq_init"], ours["saturation"]
    ref_y, normal_y, star, (gy, gx) = nrs1.ref_y, nrs1.normal_y, nrs1.star, nrs1.group2
    np.testing.assert_array_equal(after.groupdq.values[..., ref_y, :], before.groupdq.values[..., ref_y, :])
    np.testing.assert_array_equal(after.pixeldq.values[ref_y], before.pixeldq.values[ref_y])
    gdq = after.groupdq.values[0]
    normal_star = np.intersect1d(np.arange(star[0].start, star[0].stop), normal_y)
    assert (gdq[:, normal_star, star[1]] & dqflags.SATURATED).all()
    assert gdq[1, gy, gx] & dqflags.SATURATED and not gdq[0, gy, gx]
    assert gdq[1, normal_y[50], 60] & dqflags.AD_FLOOR
    # grown across the interleaved rows: the normal row after the source's last one
    below = int(normal_y[np.searchsorted(normal_y, star[0].stop - 1) + 1])
    assert below > star[0].stop and gdq[0, below, 1505] & dqflags.SATURATED


def test_ipc_keeps_reference_rows(nrs1: Case, ours: dict[str, xr.Dataset]) -> None:
    ref_y, normal_y = nrs1.ref_y, nrs1.normal_y
    np.testing.assert_array_equal(ours["ipc"].sci.values[..., ref_y, :], ours["saturation"].sci.values[..., ref_y, :])
    assert not np.array_equal(ours["ipc"].sci.values[..., normal_y[10:20], 10:20],
                              ours["saturation"].sci.values[..., normal_y[10:20], 10:20])


def test_normal_layout_reference_rejected(nrs1: Case, tmp_path: Path) -> None:
    """jwst cannot apply a 2048-row MASK or SUPERBIAS to an IRS2 exposure; nor can we."""
    flat = _reference(tmp_path / "jwst_nirspec_mask_2048.fits", "NRS1", "MASK", "MaskModel",
                      {"DQ": np.zeros((2048, 2048), np.uint32)})
    with pytest.raises(ReferenceFileError, match="IRS2 layout"):
        dq_init(open_uncal(str(nrs1.uncal), tile=TILE), _provider(nrs1, mask=str(flat)))


def test_bad_irs2_exposure(nrs1: Case) -> None:
    ds = dq_init(open_uncal(str(nrs1.uncal), tile=TILE), _provider(nrs1))
    other = ds.copy()
    other.attrs = {**ds.attrs, "meta": {**ds.attrs["meta"], "instrument": {"name": "NIRSPEC", "detector": "NRS3"}}}
    with pytest.raises(InputError, match="NRS1 or NRS2"):
        saturation(other, _provider(nrs1))


def _jwst(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from jwst.dq_init import DQInitStep
    from jwst.ipc import IPCStep
    from jwst.saturation import SaturationStep
    from jwst.superbias import SuperBiasStep

    from tests.official import offline_crds

    offline_crds(tmp_path, monkeypatch)
    refs = {k: str(v) for k, v in case.refs.items()}
    stages = {"dq_init": DQInitStep.call(str(case.uncal), override_mask=refs["mask"])}
    stages["saturation"] = SaturationStep.call(stages["dq_init"], override_saturation=refs["saturation"],
                                               override_superbias=refs["superbias"])
    stages["ipc"] = IPCStep.call(stages["saturation"], override_ipc=refs["ipc"])
    stages["superbias"] = SuperBiasStep.call(stages["ipc"], override_superbias=refs["superbias"])
    return stages


def _assert_equal(ours: dict[str, xr.Dataset], theirs: dict[str, Any]) -> None:
    """Every stage: dq identical, SCI within 1e-5 relative and in fact bit-identical, ZEROFRAME identical."""
    for name, model in theirs.items():
        assert getattr(model.meta.cal_step, name) == "COMPLETE", name
        mine = ours[name]
        np.testing.assert_array_equal(mine.pixeldq.values, model.pixeldq, err_msg=name)
        np.testing.assert_array_equal(mine.groupdq.values, model.groupdq, err_msg=name)
        np.testing.assert_allclose(mine.sci.values, model.data, rtol=1e-5, atol=0, err_msg=name)
        np.testing.assert_array_equal(mine.sci.values, model.data, err_msg=f"{name}: not bit-identical")
        np.testing.assert_array_equal(mine.zeroframe.values, model.zeroframe, err_msg=name)


@pytest.mark.reference
def test_equals_jwst_nrs1(nrs1: Case, ours: dict[str, xr.Dataset], tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("jwst")
    _assert_equal(ours, _jwst(nrs1, tmp_path, monkeypatch))


@pytest.mark.reference
def test_equals_jwst_nrs2(nrs2: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NRS2 reads the rows the other way (the reference output last); two integrations."""
    pytest.importorskip("jwst")
    ours = _computed(nrs2)
    (gy, gx) = nrs2.group2
    assert ours["saturation"].groupdq.values[1, 1, gy, gx] & dqflags.SATURATED
    _assert_equal(ours, _jwst(nrs2, tmp_path, monkeypatch))


@pytest.mark.reference
@pytest.mark.parametrize("params", [{"n_pix_grow_sat": 2}, {"n_pix_grow_sat": 0, "use_readpatt": False}],
                         ids=["grow2", "no-grow-no-readpatt"])
def test_saturation_options_equal_jwst(nrs1: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       params: dict[str, Any]) -> None:
    pytest.importorskip("jwst")
    from jwst.dq_init import DQInitStep
    from jwst.saturation import SaturationStep

    from tests.official import offline_crds

    offline_crds(tmp_path, monkeypatch)
    refs = _provider(nrs1)
    ours = saturation(dq_init(open_uncal(str(nrs1.uncal), tile=TILE), refs), refs, **params)
    with dask.config.set(scheduler="threads", num_workers=2):
        groupdq, pixeldq = dask.compute(ours.groupdq.data, ours.pixeldq.data)
    theirs = SaturationStep.call(DQInitStep.call(str(nrs1.uncal), override_mask=str(nrs1.refs["mask"])),
                                 override_saturation=str(nrs1.refs["saturation"]),
                                 override_superbias=str(nrs1.refs["superbias"]), **params)
    np.testing.assert_array_equal(groupdq, theirs.groupdq)
    np.testing.assert_array_equal(pixeldq, theirs.pixeldq)


def test_refpix_follows(nrs1: Case, tmp_path: Path) -> None:
    """The chain ends in refpix, which drops the interleaved rows and the reference output."""
    reference = write_irs2_refpix(tmp_path / "jwst_nirspec_refpix_irs2.fits", seed=5, bad_columns=False)
    out = refpix(_chain(nrs1)["superbias"], _provider(nrs1, refpix=str(reference)))
    assert out.sci.shape == (1, NGROUPS, 2048, 2048)
    with dask.config.set(scheduler="threads", num_workers=2):
        sci = out.sci[0, -1, ::64, ::64].values
    assert np.isfinite(sci).all()
