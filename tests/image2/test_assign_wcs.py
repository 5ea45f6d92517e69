"""assign_wcs (imaging gwcs, S_REGION, TAN-SIP header) against jwst's AssignWcsStep."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import asdf
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from astropy.io import fits

import jwdask
from jwdask.errors import InputError, ParameterError, ReferenceFileError
from jwdask.image2.assign_wcs import assign_wcs
from jwdask.io import keywords
from jwdask.io.products import open_product, write_product
from jwdask.refs import RefProvider
from jwdask.simulate import PRESETS, simulate_program
from jwdask.wcs import imaging
from jwdask.wcs.pointing import Pointing, dva_correction, v2v3_to_sky
from tests.official import offline_crds

PIXEL_SCALE = 0.0311  # NRCB1 [arcsec/pixel], to express sky differences in pixels

VARIANTS: dict[str, dict[str, Any]] = {
    # as simulated: SUB160 at (1, 1), no VA_SCALE, no CRPIX, zero filter offsets
    "nircam": {},
    "nircam_subarray": {
        "meta": {"subarray.xstart": 501, "subarray.ystart": 701, "velocity_aberration.scale_factor": 1.00003,
                 "wcsinfo.crpix1": 80.5, "wcsinfo.crpix2": 80.5},
        "offsets": [{"filter": "F200W", "pupil": "CLEAR", "column_offset": 1.7, "row_offset": -2.3}],
    },
    "niriss": {
        "meta": {"instrument.name": "NIRISS", "instrument.detector": "NIS", "instrument.filter": "F200W",
                 "instrument.pupil": "CLEARP", "exposure.type": "NIS_IMAGE", "subarray.xstart": 1001,
                 "subarray.ystart": 33, "velocity_aberration.scale_factor": 0.99995},
        "offsets": [{"filter": "F200W", "pupil": "CLEARP", "column_offset": -0.6, "row_offset": 3.1},
                    {"filter": "F150W", "pupil": "CLEARP", "column_offset": 9.0, "row_offset": 9.0}],
    },
    "miri": {
        "meta": {"instrument.name": "MIRI", "instrument.detector": "MIRIMAGE", "instrument.filter": "F770W",
                 "instrument.pupil": None, "instrument.module": None, "instrument.channel": None,
                 "exposure.type": "MIR_IMAGE", "subarray.xstart": 413, "subarray.ystart": 1,
                 "subarray.name": "SUB256"},
        "offsets": [{"filter": "F770W", "column_offset": 0.8, "row_offset": 0.4}],
    },
    "fgs": {
        "meta": {"instrument.name": "FGS", "instrument.detector": "GUIDER1", "instrument.filter": None,
                 "instrument.pupil": None, "instrument.module": None, "instrument.channel": None,
                 "exposure.type": "FGS_IMAGE", "subarray.xstart": 900, "subarray.ystart": 1200},
    },
}


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tiny = PRESETS["tiny"]
    return simulate_program(replace(tiny, dithers=tiny.dithers[:1]), tmp_path_factory.mktemp("tiny"), seed=3)


def _rate_dataset(prog: Any, changes: dict[str, Any]) -> xr.Dataset:
    """A rate-shaped Dataset with the uncal's metadata (plus ``changes``): no Detector1 needed."""
    uncal = jwdask.open_uncal(str(prog.uncal[0]))
    meta = copy.deepcopy(uncal.attrs["meta"])
    for path, value in changes.items():
        keywords.put(meta, path, value)
    meta = _drop_none(meta)
    sci = (uncal["sci"][:, -1].astype("float32") - uncal["sci"][:, 0].astype("float32")).mean("integration")
    zero = xr.zeros_like(sci)
    return xr.Dataset({"sci": sci, "err": zero + 1, "dq": zero.astype("uint32"), "var_poisson": zero + 1,
                       "var_rnoise": zero}, attrs={"meta": meta, "source": str(prog.uncal[0])})


def _drop_none(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in meta.items() if v is not None}


def _write_refs(prog: Any, folder: Path, variant: dict[str, Any], meta: dict[str, Any]) -> dict[str, str]:
    """Copies of the simulated distortion (and a filteroffset) relabelled for the variant."""
    folder.mkdir(parents=True, exist_ok=True)
    instrument = keywords.get(meta, "instrument")
    out = {}
    with asdf.open(prog.reference_files["distortion"], lazy_load=False, memmap=False) as af:
        tree = {k: v for k, v in af.tree.items() if not k.startswith("asdf_")}
    name = instrument["name"].lower()
    tree["meta"]["instrument"] = {"name": instrument["name"], "detector": instrument["detector"],
                                  **{k: instrument[k] for k in ("module", "channel") if k in instrument}}
    tree["meta"]["exposure"] = {"type": meta["exposure"]["type"], "p_exptype": meta["exposure"]["type"] + "|"}
    if name in ("nircam", "niriss"):
        tree["meta"]["instrument"].update({"filter": "N/A", "pupil": "ANY", "p_pupil": "ANY|"})
    tree["meta"]["filename"] = f"jwst_{name}_distortion_test.asdf"
    out["distortion"] = str(folder / tree["meta"]["filename"])
    asdf.AsdfFile(tree).write_to(out["distortion"])
    if name != "fgs":
        with asdf.open(prog.reference_files["filteroffset"], lazy_load=False, memmap=False) as af:
            tree = {k: v for k, v in af.tree.items() if not k.startswith("asdf_")}
        tree["meta"]["instrument"] = copy.deepcopy(tree["meta"]["instrument"])
        tree["meta"]["instrument"].update({"name": instrument["name"], "detector": instrument["detector"]})
        if name != "nircam":
            for key in ("module", "channel"):
                tree["meta"]["instrument"].pop(key, None)
        tree["meta"]["exposure"] = {"type": meta["exposure"]["type"]}
        if "offsets" in variant:
            tree["filters"] = variant["offsets"]
        tree["meta"]["filename"] = f"jwst_{name}_filteroffset_test.asdf"
        out["filteroffset"] = str(folder / tree["meta"]["filename"])
        asdf.AsdfFile(tree).write_to(out["filteroffset"])
    return out


def _grid(nx: int, ny: int, n: int = 41) -> tuple[np.ndarray, np.ndarray]:
    """``n x n`` points over the whole array including the pixel-edge corners."""
    y, x = np.mgrid[-0.5:ny - 0.5:n * 1j, -0.5:nx - 0.5:n * 1j]
    return x, y


def _sky_pixels(ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray) -> np.ndarray:
    """Angular separation [NRCB1 pixels]."""
    r1, d1, r2, d2 = (np.deg2rad(a) for a in (ra1, dec1, ra2, dec2))
    sep = 2 * np.arcsin(np.sqrt(np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2))
    return np.rad2deg(sep) * 3600 / PIXEL_SCALE


def _crds_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    offline_crds(tmp_path, monkeypatch)


@pytest.mark.reference
@pytest.mark.parametrize("name", list(VARIANTS))
def test_matches_jwst(prog: Any, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same rate file and references: world coordinates, inverse, frames, bounding box,
    S_REGION and the SIP keywords agree with jwst's AssignWcsStep."""
    step_module = pytest.importorskip("jwst.assign_wcs")
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    variant = VARIANTS[name]
    ds = _rate_dataset(prog, variant.get("meta", {}))
    rate = tmp_path / prog.uncal[0].name.replace("_uncal", "_rate")
    write_product(ds, str(rate), "rate")
    paths = _write_refs(prog, tmp_path / "refs", variant, ds.attrs["meta"])

    ours = assign_wcs(open_product(str(rate)), RefProvider(overrides=paths))

    _crds_offline(tmp_path, monkeypatch)
    overrides = {f"override_{t}": "N/A" for t in step_module.AssignWcsStep.reference_file_types}
    overrides.update({f"override_{t}": p for t, p in paths.items()})
    with datamodels.open(str(rate)) as model:
        theirs = step_module.AssignWcsStep.call(model, **overrides)
    ours_wcs, their_wcs = ours.attrs["wcs"], theirs.meta.wcs

    frames = [step.frame.name for step in ours_wcs.pipeline]
    assert frames == [step.frame.name for step in their_wcs.pipeline]
    assert frames == ["detector", "v2v3", "v2v3vacorr", "world"]
    assert ours_wcs.bounding_box.bounding_box(order="F") == their_wcs.bounding_box.bounding_box(order="F")

    ny, nx = ds.sizes["y"], ds.sizes["x"]
    x, y = _grid(nx, ny)
    ra, dec = ours_wcs(x, y)
    ra_j, dec_j = their_wcs(x, y)
    assert np.isfinite(ra).all()
    forward = _sky_pixels(ra, dec, ra_j, dec_j).max()
    assert forward <= 0.01, forward
    inside = ~np.isnan(ours_wcs.invert(ra_j, dec_j)[0])  # edge points may fall just outside the box
    np.testing.assert_array_equal(inside, ~np.isnan(their_wcs.invert(ra_j, dec_j)[0]))
    assert inside.mean() > 0.9
    xi, yi = ours_wcs.invert(ra_j, dec_j, with_bounding_box=False)
    xj, yj = their_wcs.invert(ra_j, dec_j, with_bounding_box=False)
    assert np.hypot(xi - xj, yi - yj).max() <= 0.01
    assert np.hypot(xi - x, yi - y).max() <= 0.01  # the distortion's analytic inverse
    v2, v3 = ours_wcs.get_transform("detector", "v2v3")(x, y)
    v2j, v3j = their_wcs.get_transform("detector", "v2v3")(x, y)
    np.testing.assert_allclose([v2, v3], [v2j, v3j], rtol=0, atol=1e-9)
    # outside the bounding box both give NaN. [quirk] A subarray at SUBSTRT (1, 1) keeps the
    # distortion's full-frame box, as in jwst.
    beyond = ours_wcs.bounding_box.bounding_box(order="F")[0][1] + 2.0
    assert np.isnan(ours_wcs(beyond, 10.0)[0]) and np.isnan(their_wcs(beyond, 10.0)[0])

    meta = ours.attrs["meta"]
    assert meta["wcsinfo"]["s_region"] == theirs.meta.wcsinfo.s_region
    assert meta["cal_step"]["assign_wcs"] == theirs.meta.cal_step.assign_wcs == "COMPLETE"
    assert meta["ref_file"]["distortion"]["name"] == str(Path(paths["distortion"]).resolve())
    theirs_info = theirs.meta.wcsinfo.instance
    assert set(meta["wcsinfo"]) == set(theirs_info)
    for key, value in theirs_info.items():
        if isinstance(value, float):
            assert meta["wcsinfo"][key] == pytest.approx(value, rel=1e-7, abs=1e-12), key
        else:
            assert meta["wcsinfo"][key] == value, key


@pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")
def test_written_product_opens_in_stdatamodels(prog: Any, tmp_path: Path) -> None:
    """The rate with its WCS is written (gwcs in the ASDF extension, SIP in SCI) and read back."""
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    ds = _rate_dataset(prog, VARIANTS["nircam_subarray"]["meta"])
    out = assign_wcs(ds, RefProvider(refs_dir=str(prog.refs_dir)))
    assert isinstance(out["sci"].data, da.Array)  # metadata only: nothing was computed
    path = tmp_path / prog.uncal[0].name.replace("_uncal", "_rate")
    write_product(out, str(path), "rate")
    x, y = _grid(ds.sizes["x"], ds.sizes["y"], 9)
    expected = out.attrs["wcs"](x, y)
    with datamodels.open(str(path)) as model:
        assert model.meta.cal_step.assign_wcs == "COMPLETE"
        assert model.meta.wcsinfo.s_region == out.attrs["meta"]["wcsinfo"]["s_region"]
        assert model.meta.wcsinfo.ctype1 == "RA---TAN-SIP"
        np.testing.assert_allclose(model.meta.wcs(x, y), expected, rtol=0, atol=1e-12)
    again = open_product(str(path))
    np.testing.assert_allclose(again.attrs["wcs"](x, y), expected, rtol=0, atol=1e-12)
    header = fits.getheader(path, "SCI")
    assert header["S_REGION"].startswith("POLYGON ICRS  ")
    assert fits.getheader(path, 0)["S_WCS"] == "COMPLETE"
    # the FITS TAN-SIP header alone reproduces the gwcs to the fit tolerance
    from astropy.wcs import WCS

    sip = WCS(header)
    ra, dec = sip.all_pix2world(x, y, 0)
    assert _sky_pixels(ra, dec, *expected).max() <= 0.02


def test_missing_pointing_keyword(prog: Any) -> None:
    ds = _rate_dataset(prog, {"wcsinfo.roll_ref": None})
    with pytest.raises(InputError, match=r"SCI ROLL_REF.*missing") as info:
        assign_wcs(ds, RefProvider(refs_dir=str(prog.refs_dir)))
    assert info.value.source == str(prog.uncal[0])
    ds = _rate_dataset(prog, {"velocity_aberration.scale_factor": -1.0})
    with pytest.raises(InputError, match="VA_SCALE"):
        assign_wcs(ds, RefProvider(refs_dir=str(prog.refs_dir)))


def test_distortion_for_another_detector(prog: Any, tmp_path: Path) -> None:
    ds = _rate_dataset(prog, {})
    with asdf.open(prog.reference_files["distortion"], lazy_load=False, memmap=False) as af:
        tree = {k: v for k, v in af.tree.items() if not k.startswith("asdf_")}
    tree["meta"]["instrument"]["detector"] = "NRCA1"
    wrong = tmp_path / "jwst_nircam_distortion_nrca1.asdf"
    asdf.AsdfFile(tree).write_to(wrong)
    refs = RefProvider(overrides={"distortion": str(wrong),
                                  "filteroffset": str(prog.reference_files["filteroffset"])})
    with pytest.raises(ReferenceFileError, match="DETECTOR") as info:
        assign_wcs(ds, refs)
    assert str(wrong) in str(info.value)
    # the step's own check (a file that got past reference selection)
    with pytest.raises(ReferenceFileError, match=r"meta\.instrument\.detector is 'NRCA1'.*NRCB1") as info:
        imaging.check_distortion(tree, str(wrong), ds.attrs["meta"])
    assert str(wrong) in str(info.value)
    with pytest.raises(ReferenceFileError, match="not a 2-input"):
        imaging.check_distortion({"meta": tree["meta"]}, str(wrong), ds.attrs["meta"])


@pytest.mark.filterwarnings("ignore:Failed to achieve requested SIP", "ignore:Double sampling check FAILED")
def test_modes(prog: Any) -> None:
    refs = RefProvider(refs_dir=str(prog.refs_dir))
    with pytest.raises(NotImplementedError, match="NRC_WFSS"):
        assign_wcs(_rate_dataset(prog, {"exposure.type": "NRC_WFSS"}), refs)
    dark = assign_wcs(_rate_dataset(prog, {"exposure.type": "NRC_DARK"}), refs)
    assert dark.attrs["meta"]["cal_step"]["assign_wcs"] == "SKIPPED" and "wcs" not in dark.attrs
    image = assign_wcs(_rate_dataset(prog, {}), refs)
    cube = assign_wcs(_rate_dataset(prog, {}).expand_dims(integration=2), refs)
    x, y = _grid(160, 160, 5)
    np.testing.assert_array_equal(cube.attrs["wcs"](x, y), image.attrs["wcs"](x, y))
    assert cube.attrs["meta"]["wcsinfo"] == image.attrs["meta"]["wcsinfo"]
    with pytest.raises(ReferenceFileError, match="N/A"):
        assign_wcs(_rate_dataset(prog, {}), RefProvider(overrides={"distortion": "N/A"}))
    with pytest.raises(ParameterError, match="sip_degree"):
        assign_wcs(_rate_dataset(prog, {}), refs, sip_degree=7)
    plain = assign_wcs(_rate_dataset(prog, {"wcsinfo.cdelt1": 8.6e-6}), refs, sip_approx=False)
    assert "ctype1" not in plain.attrs["meta"]["wcsinfo"] and plain.attrs["meta"]["wcsinfo"]["cdelt1"] == 8.6e-6
    fitted = assign_wcs(_rate_dataset(prog, {"wcsinfo.cdelt1": 8.6e-6}), refs, sip_degree=3, sip_inv_degree=3)
    info = fitted.attrs["meta"]["wcsinfo"]
    assert "cdelt1" not in info and info["a_order"] == 3 and info["ap_order"] == 3


def test_pointing_transforms() -> None:
    p = Pointing(v2_ref=-93.5, v3_ref=-487.0, roll_ref=45.0, ra_ref=53.16, dec_ref=-27.78, va_scale=1.0001)
    ra, dec = v2v3_to_sky(p)(p.v2_ref, p.v3_ref)
    assert ra == pytest.approx(p.ra_ref, abs=1e-12) and dec == pytest.approx(p.dec_ref, abs=1e-12)
    v2, v3 = v2v3_to_sky(p).inverse(ra, dec)
    assert v2 == pytest.approx(p.v2_ref, abs=1e-9) and v3 == pytest.approx(p.v3_ref, abs=1e-9)
    # the V3 axis points to position angle ROLL_REF at the reference point
    ra2, dec2 = v2v3_to_sky(p)(p.v2_ref, p.v3_ref + 1.0)
    pa = np.rad2deg(np.arctan2(np.sin(np.deg2rad(ra2 - ra)) * np.cos(np.deg2rad(dec2)),
                               np.deg2rad(dec2 - dec)))
    assert pa == pytest.approx(p.roll_ref, abs=0.01)
    dva = dva_correction(1.0001, p.v2_ref, p.v3_ref)
    assert dva(p.v2_ref, p.v3_ref) == pytest.approx((p.v2_ref, p.v3_ref), abs=1e-12)
    assert dva(p.v2_ref + 10, p.v3_ref)[0] == pytest.approx(p.v2_ref + 10.001, abs=1e-12)
    assert dva_correction(None, 1.0, 2.0)(3.0, 4.0) == (3.0, 4.0)
