"""picture_frame on a synthetic NIRSpec full-frame ramp: against the injected thermal pattern
and against jwst's PictureFrameStep on the same ramp and reference files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from astropy.io import fits

from jwdask.detector1.picture_frame import picture_frame
from jwdask.errors import InputError
from jwdask.io.uncal import open_uncal
from jwdask.refs import RefProvider
from tests.conftest import write_uncal

NY = NX = 2048
NGROUPS = 3
TGROUP = 10.0
NOISE = 3.0
"""Noise of one group [DN] (the glow stays below the scene mask's clip level)."""
GLOW_LEVEL, GLOW, SCALE = 0.05, 0.15, 1.7
"""Picture-frame reference: level and edge glow [DN/s]; the exposure has SCALE times it."""
"""Noise of one group [DN]."""
NIRSPEC = {"INSTRUME": "NIRSPEC", "DETECTOR": "NRS1", "EXP_TYPE": "NRS_FIXEDSLIT", "FILTER": "CLEAR",
           "GRATING": "PRISM", "PUPIL": None, "MODULE": None, "CHANNEL": None, "READPATT": "NRSRAPID",
           "SUBARRAY": "FULL", "FASTAXIS": 2, "SLOWAXIS": 1, "NOUTPUTS": 4, "TFRAME": TGROUP, "TGROUP": TGROUP,
           "FILENAME": "jw01234001001_01101_00001_nrs1_uncal.fits"}


@dataclass
class Case:
    ramp: xr.Dataset
    truth: np.ndarray
    """The ramp without the thermal pattern [DN]."""
    refs: RefProvider
    files: dict[str, Path]


def _reference(path: Path, reftype: str, data: np.ndarray) -> Path:
    """A full-frame NIRSpec NRS1 reference in the CRDS FITS layout (PRIMARY keywords, SCI)."""
    header = fits.Header({"TELESCOP": "JWST", "INSTRUME": "NIRSPEC", "DETECTOR": "NRS1",
                          "REFTYPE": reftype.upper(), "AUTHOR": "jwdask tests", "PEDIGREE": "DUMMY",
                          "DESCRIP": f"synthetic {reftype}", "USEAFTER": "2020-01-01T00:00:00",
                          "SUBARRAY": "FULL", "SUBSTRT1": 1, "SUBSTRT2": 1, "SUBSIZE1": NX, "SUBSIZE2": NY})
    fits.HDUList([fits.PrimaryHDU(header=header), fits.ImageHDU(data, name="SCI")]).writeto(path)
    return path


def _thermal_pattern() -> np.ndarray:
    """Picture-frame-like rate [DN/s]: a level plus a glow decaying away from the detector edges."""
    y, x = np.indices((NY, NX))
    edge_distance = np.minimum.reduce([y, x, NY - 1 - y, NX - 1 - x]).astype(np.float64)
    return (GLOW_LEVEL + GLOW * np.exp(-edge_distance / 60.0) + 1e-5 * x).astype(np.float32)


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    tmp = tmp_path_factory.mktemp("pctfrm")
    rng = np.random.default_rng(11)
    uncal = tmp / NIRSPEC["FILENAME"]
    write_uncal(uncal, nints=1, ngroups=NGROUPS, ny=NY, nx=NX, xstart=1, ystart=1, primary=NIRSPEC,
                sci=np.zeros((1, NGROUPS, NY, NX), np.uint16))
    ds = open_uncal(str(uncal), tile=(512, 512))
    pattern = _thermal_pattern()
    scene = np.zeros((NY, NX), np.float32)
    stars = rng.integers(100, NY - 100, (60, 2))
    scene[stars[:, 0], stars[:, 1]] = rng.uniform(50, 500, 60).astype(np.float32)
    t = (np.arange(NGROUPS, dtype=np.float32) * TGROUP)[:, None, None]
    truth = (1000.0 + t * scene + rng.normal(0, NOISE, (NGROUPS, NY, NX))).astype(np.float32)[None]
    truth[0, :, 500, 700] = np.nan
    sci = truth + (SCALE * t * pattern)[None]
    chunks = ds.sci.data.chunks
    ramp = ds.assign(
        sci=(ds.sci.dims, da.from_array(sci, chunks=chunks)),
        groupdq=(ds.sci.dims, da.zeros(sci.shape, dtype=np.uint8, chunks=chunks)),
        pixeldq=(("y", "x"), da.zeros((NY, NX), dtype=np.uint32, chunks=chunks[2:])))
    # the minimal GROUP table of the test uncal does not follow the jwst schema: leave it out
    ramp = ramp.drop_vars([v for v in ramp.data_vars if str(v).startswith("group.")])
    ramp.attrs["tables"] = {k: v for k, v in ramp.attrs.get("tables", {}).items() if k != "group"}
    files = {
        "gain": _reference(tmp / "gain.fits", "gain", np.full((NY, NX), 1.5, np.float32)),
        "readnoise": _reference(tmp / "readnoise.fits", "readnoise", np.full((NY, NX), 4.0, np.float32)),
        "pictureframe": _reference(tmp / "pictureframe.fits", "pictureframe", pattern),
    }
    refs = RefProvider(overrides={k: str(v) for k, v in files.items()})
    return Case(ramp, truth, refs, files)


def _ours(case: Case, **params: object) -> np.ndarray:
    with dask.config.set(scheduler="threads", num_workers=2):
        out = picture_frame(case.ramp, case.refs, mask_science_regions=False, **params)
        assert out.attrs["meta"]["cal_step"]["picture_frame"] == "COMPLETE"
        return out.sci.values


def test_graph_is_lazy_and_one_integration_per_task(case: Case) -> None:
    out = picture_frame(case.ramp, case.refs, mask_science_regions=False)
    assert isinstance(out.sci.data, da.Array)
    assert out.attrs["meta"]["ref_file"]["pictureframe"]["name"]
    assert out.sci.data.chunks == case.ramp.sci.data.chunks
    graph = dict(out.sci.data.__dask_graph__())
    tasks = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("picture_frame-")]
    assert len(tasks) == case.ramp.sizes["integration"]


def test_removes_thermal_pattern(case: Case) -> None:
    """Relative to group 0, the corrected ramps hold the scene only: the pattern (with its level)
    is removed to well below the noise of a group difference (the medians over a clipped mask
    leave a small offset, a fraction of the noise)."""
    out = _ours(case)
    rel = out[0, 1:] - out[0, :1]
    truth_rel = case.truth[0, 1:] - case.truth[0, :1]
    residual = rel - truth_rel
    assert np.array_equal(np.isnan(out), np.isnan(case.truth))
    for g in range(NGROUPS - 1):
        r = residual[g]
        contrast = SCALE * (g + 1) * TGROUP * GLOW * np.exp(-0.5)
        print(g, np.nanmedian(r), np.nanmedian(r[4:75, 4:2043]) - np.nanmedian(r[900:1100, 900:1100]), contrast)
        assert abs(np.nanmedian(r)) < 0.1 * NOISE * np.sqrt(2)
        assert abs(np.nanmedian(r[4:75, 4:2043]) - np.nanmedian(r[900:1100, 900:1100])) < 0.2 * contrast
    np.testing.assert_array_equal(out[0, 0], case.ramp.sci.values[0, 0])


def test_not_implemented_and_skips(case: Case) -> None:
    with pytest.raises(NotImplementedError, match="mask_science_regions"):
        picture_frame(case.ramp, case.refs)
    with pytest.raises(NotImplementedError, match="save_correction"):
        picture_frame(case.ramp, case.refs, mask_science_regions=False, save_correction=True)
    one_group = case.ramp.isel(group=slice(0, 1))
    out = picture_frame(one_group, case.refs, mask_science_regions=False)
    assert out.attrs["meta"]["cal_step"]["picture_frame"] == "SKIPPED"
    nircam = case.ramp.copy()
    nircam.attrs = {**case.ramp.attrs, "meta": {**case.ramp.attrs["meta"],
                                                 "instrument": {"name": "NIRCAM", "detector": "NRCB1"}}}
    assert picture_frame(nircam, None).attrs["meta"]["cal_step"]["picture_frame"] == "SKIPPED"


def test_empty_mask_is_a_clear_error(case: Case) -> None:
    blank = case.ramp.assign(sci=case.ramp.sci * 0)
    with pytest.raises(InputError, match="centre or edge"), dask.config.set(scheduler="synchronous"):
        picture_frame(blank, case.refs, mask_science_regions=False).sci.compute()


@pytest.mark.reference
def test_equals_jwst(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("jwst")
    import jwst.clean_flicker_noise.clean_flicker_noise as cfn
    from jwst.picture_frame import PictureFrameStep
    from jwst.ramp_fitting import RampFitStep

    from jwdask.io.products import write_product
    from tests.official import offline_crds

    offline_crds(tmp_path, monkeypatch)
    files = case.files

    class DraftRampFit(RampFitStep):
        """jwst's draft-rate ramp fit with the test's gain and readnoise (no CRDS lookup)."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.override_gain, self.override_readnoise = str(files["gain"]), str(files["readnoise"])

    monkeypatch.setattr(cfn, "RampFitStep", DraftRampFit)
    ramp_path = tmp_path / "jw01234001001_01101_00001_nrs1_ramp.fits"
    write_product(case.ramp, str(ramp_path), "ramp")
    result = PictureFrameStep.call(str(ramp_path), skip=False, mask_science_regions=False,
                                   override_pictureframe=str(files["pictureframe"]))
    assert result.meta.cal_step.picture_frame == "COMPLETE"
    theirs = np.asarray(result.data)
    ours = _ours(case)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    ok = ~np.isnan(ours)
    np.testing.assert_allclose(ours[ok], theirs[ok], rtol=1e-5, atol=0)
