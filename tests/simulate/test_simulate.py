"""Tests of the simulated NIRCam programs (``jwdask.simulate``)."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import asdf
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from jwdask import dqflags
from jwdask.simulate import (
    PRESETS,
    Preset,
    Program,
    detector,
    geometry,
    scene,
    simulate_program,
)

REFERENCE_MODELS = {
    "mask": "MaskModel", "saturation": "SaturationModel", "superbias": "SuperBiasModel",
    "linearity": "LinearityModel", "dark": "DarkModel", "gain": "GainModel",
    "readnoise": "ReadnoiseModel", "ipc": "IPCModel", "flat": "FlatModel", "area": "PixelAreaModel",
    "photom": "NrcImgPhotomModel", "apcorr": "NrcImgApcorrModel", "distortion": "DistortionModel",
    "filteroffset": "FilteroffsetModel", "abvegaoffset": "ABVegaOffsetModel",
}


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Program:
    return simulate_program("tiny", tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def summary(prog: Program) -> dict:
    return json.loads(prog.summary.read_text())


def _ref(prog: Program, reftype: str, ext: str = "SCI") -> np.ndarray:
    with fits.open(prog.reference_files[reftype]) as hdul:
        return hdul[ext].data.astype(np.float64)


def _sub(prog: Program, full: np.ndarray) -> np.ndarray:
    hdr = fits.getheader(prog.uncal[0])
    x0, y0 = hdr["SUBSTRT1"] - 1, hdr["SUBSTRT2"] - 1
    return full[..., y0:y0 + hdr["SUBSIZE2"], x0:x0 + hdr["SUBSIZE1"]]


def _rate_from_raw(prog: Program, index: int) -> tuple[np.ndarray, np.ndarray]:
    """A minimal Detector1: superbias, reference rows, linearity, dark, least-squares slope.

    Returns the per-integration slopes [DN/s] ``(nints, ny, nx)`` and the saturation flags.
    """
    with fits.open(prog.uncal[index]) as hdul:
        raw = hdul["SCI"].data.astype(np.float64)
        hdr = hdul[0].header
    sat = raw >= _sub(prog, _ref(prog, "saturation"))
    data = raw - _sub(prog, _ref(prog, "superbias"))
    dq = _sub(prog, fits.getdata(prog.reference_files["mask"], "DQ"))
    ref_rows = (dq & dqflags.REFERENCE_PIXEL).all(axis=1)
    assert ref_rows.any(), "tiny preset must include reference rows"
    cols = np.arange(data.shape[-1]) + hdr["SUBSTRT1"] - 1
    for parity in (0, 1):
        sel = (cols % 2 == parity) & ~(dq & dqflags.REFERENCE_PIXEL).all(axis=0)
        level = data[:, :, ref_rows][..., sel].mean(axis=(-2, -1))
        data[..., parity::2] -= level[..., None, None]
    coeffs = _sub(prog, _ref(prog, "linearity", "COEFFS"))
    data = sum(coeffs[k] * data**k for k in range(coeffs.shape[0]))
    dark = _ref(prog, "dark")
    ngroups, tgroup, nframes = hdr["NGROUPS"], hdr["TGROUP"], hdr["NFRAMES"]
    period = nframes + hdr["GROUPGAP"]
    data -= np.stack([dark[g * period:g * period + nframes].mean(axis=0) for g in range(ngroups)])[None]
    t = (np.arange(ngroups) + 1) * tgroup
    tc = t - t.mean()
    slope = np.einsum("g,igyx->iyx", tc, data) / (tc**2).sum()
    return slope, sat


def test_presets_and_program(prog: Program) -> None:
    assert set(PRESETS) >= {"tiny", "small", "full"}
    assert isinstance(PRESETS["tiny"], Preset)
    assert prog.preset == "tiny" and prog.seed == 0
    assert len(prog.uncal) == len(PRESETS["tiny"].dithers) == 2
    assert all(p.exists() for p in prog.uncal)
    assert set(prog.reference_files) == set(REFERENCE_MODELS)
    assert all(p.parent == prog.refs_dir and p.exists() for p in prog.reference_files.values())
    assert prog.refcat.exists() and prog.truth_dir.is_dir()


def test_deterministic(prog: Program, tmp_path: Path) -> None:
    variant = replace(PRESETS["tiny"], dithers=PRESETS["tiny"].dithers[:1])
    again = simulate_program(replace(variant, band_rows=37), tmp_path / "a", seed=0)
    other = simulate_program(variant, tmp_path / "b", seed=1)
    first = fits.getdata(prog.uncal[0], "SCI")
    np.testing.assert_array_equal(fits.getdata(again.uncal[0], "SCI"), first)
    np.testing.assert_array_equal(fits.getdata(again.truth_rate[0]), fits.getdata(prog.truth_rate[0]))
    assert Table.read(again.sources).pformat() == Table.read(prog.sources).pformat()
    assert not np.array_equal(fits.getdata(other.uncal[0], "SCI"), first)


def test_uncal_layout(prog: Program) -> None:
    preset = PRESETS["tiny"]
    for path in prog.uncal:
        with fits.open(path, do_not_scale_image_data=True) as hdul:
            assert [h.name for h in hdul] == ["PRIMARY", "SCI", "ZEROFRAME", "GROUP", "INT_TIMES", "ASDF"]
            p, s = hdul[0].header, hdul["SCI"].header
            assert hdul[0].data is None
            assert s["BITPIX"] == 16 and s["BZERO"] == 32768 and s.get("BSCALE", 1) == 1
            assert hdul["ZEROFRAME"].header["BZERO"] == 32768
            assert hdul["SCI"].data.shape == (preset.nints, preset.ngroups, 160, 160)
            assert p["DATAMODL"] == "Level1bModel" and p["EXP_TYPE"] == "NRC_IMAGE"
            assert p["PROGRAM"] == "09001" and p["OBSERVTN"] == "001" and p["EXPOSURE"].startswith("0000")
            assert isinstance(p["NGROUPS"], int) and isinstance(p["TFRAME"], float)
            assert p["SUBARRAY"] == "SUB160" and (p["SUBSTRT1"], p["SUBSTRT2"]) == (1, 1)
            assert (p["FASTAXIS"], p["SLOWAXIS"]) == (1, -2) and p["NOUTPUTS"] == 1
            assert p["TGROUP"] == pytest.approx((p["NFRAMES"] + p["GROUPGAP"]) * p["TFRAME"])
            assert p["TFRAME"] == pytest.approx(0.27864)
            assert p["EXPSTART"] < p["EXPMID"] < p["EXPEND"] and p["EFFEXPTM"] > 0
            assert p["ZEROFRAM"] is True
            for key in ("BUNIT", "RA_REF", "DEC_REF", "ROLL_REF", "V2_REF", "V3_REF", "VPARITY",
                        "V3I_YANG", "PA_V3", "RA_V1", "DEC_V1"):
                assert key in s, key
            assert "RA_REF" not in p
            group = hdul["GROUP"].data
            assert len(group) == preset.nints * preset.ngroups
            assert {"integration_number", "group_number", "end_day", "end_milliseconds",
                    "end_submilliseconds", "group_end_time", "number_of_columns", "number_of_rows",
                    "number_of_gaps", "completion_code_number", "completion_code_text",
                    "bary_end_time", "helio_end_time"} <= set(group.names)
            assert len(hdul["INT_TIMES"].data) == preset.nints
        with fits.open(path) as hdul:
            sci = hdul["SCI"].data
            assert sci.dtype == np.uint16
            # RAPID: the zero frame is the first group.
            np.testing.assert_array_equal(hdul["ZEROFRAME"].data, sci[:, 0])
    assert "_02101_00001_nrcb1_uncal.fits" in prog.uncal[0].name


def test_stdatamodels_opens_everything(prog: Program) -> None:
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in prog.uncal:
            with datamodels.open(path) as model:
                assert type(model).__name__ == "Level1bModel"
                model.validate()
                assert model.meta.subarray.name == "SUB160"
                assert model.meta.exposure.readpatt == "RAPID"
                assert model.meta.instrument.detector == "NRCB1"
                assert model.meta.wcsinfo.roll_ref is not None
                assert model.meta.observation.program_number == "09001"
        for reftype, name in REFERENCE_MODELS.items():
            with getattr(datamodels, name)(prog.reference_files[reftype]) as model:
                model.validate()
                assert model.meta.reftype.lower() == reftype


def test_jwdask_open_uncal(prog: Program) -> None:
    import jwdask

    ds = jwdask.open_uncal(str(prog.uncal[0]))
    assert ds["sci"].shape == (2, 5, 160, 160)
    assert int(ds["y"][0]) == 0 and int(ds["x"][0]) == 0
    np.testing.assert_array_equal(ds["sci"].values, fits.getdata(prog.uncal[0], "SCI"))


def test_dark_matches_science(prog: Program) -> None:
    with fits.open(prog.reference_files["dark"]) as hdul, fits.open(prog.uncal[0]) as sci:
        h, p = hdul[0].header, sci[0].header
        for key in ("SUBARRAY", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2", "NOUTPUTS"):
            assert h[key] == p[key], key
        assert hdul["SCI"].data.shape[0] >= p["NGROUPS"] * (p["NFRAMES"] + p["GROUPGAP"])
        assert hdul["SCI"].data.shape[1:] == (p["SUBSIZE2"], p["SUBSIZE1"])


def test_linearity_inversion() -> None:
    rng = np.random.default_rng(3)
    linear = rng.uniform(0, 60000, 100000)
    c2 = rng.normal(2.4e-6, 1e-7, linear.size)
    c3 = rng.normal(1.5e-11, 1e-12, linear.size)
    raw = detector.nonlinear(linear, c2, c3)
    assert np.all(raw <= linear)
    assert np.max(np.abs(detector.linearize(raw, c2, c3) - linear)) < 1e-3


def test_mean_slope_matches_truth(prog: Program) -> None:
    truth = fits.getdata(prog.truth_rate[0]).astype(np.float64)
    slope, sat = _rate_from_raw(prog, 0)
    dq = _sub(prog, fits.getdata(prog.reference_files["mask"], "DQ"))
    jumps = Table.read(prog.truth_jumps[0])
    good = (dq == 0) & ~sat.any(axis=(0, 1))
    good[jumps["y"], jumps["x"]] = False
    sky = good & (truth < 3.0)
    diff = (slope.mean(axis=0) - truth)[sky]
    # Sky pixels: per-pixel slope noise ~ 10 DN/s, mean over > 10^4 pixels.
    assert abs(diff.mean()) < 0.6
    stars = good & (truth > 300) & (truth < 3000)
    assert stars.sum() > 5
    rel = (slope.mean(axis=0)[stars] - truth[stars]) / truth[stars]
    assert abs(np.median(rel)) < 0.03


def test_saturation_on_bright_star(prog: Program, summary: dict) -> None:
    positions = Table.read(prog.truth_dir / f"{summary['exposures'][0]['root']}_positions.ecsv")
    brightest = positions[np.argmax(positions["rate"])]
    x, y = int(round(brightest["x"])), int(round(brightest["y"]))
    raw = fits.getdata(prog.uncal[0], "SCI")
    threshold = _sub(prog, _ref(prog, "saturation"))
    assert raw[0, -1, y, x] >= threshold[y, x]
    assert raw.max() < 65536


def test_jumps_where_truth_says(prog: Program) -> None:
    raw = fits.getdata(prog.uncal[0], "SCI").astype(np.float64)
    threshold = _sub(prog, _ref(prog, "saturation"))
    jumps = Table.read(prog.truth_jumps[0])
    assert len(jumps) >= 3
    diffs = np.diff(raw, axis=1)
    checked = 0
    for j in jumps:
        x, y, i, g = int(j["x"]), int(j["y"]), int(j["integration"]), int(j["group"])
        assert 1 <= g < raw.shape[1]
        if raw[i, -1, y, x] >= threshold[y, x] or j["amplitude"] < 150:
            continue
        step = diffs[i, g - 1, y, x]
        others = np.delete(diffs[i, :, y, x], g - 1)
        assert step - np.median(others) > 0.5 * j["amplitude"]
        checked += 1
    assert checked >= 3


def test_wcs_matches_flux_peaks(prog: Program, summary: dict) -> None:
    """Truth star positions from the distortion reference + true pointing hit the flux peaks."""
    with asdf.open(prog.reference_files["distortion"]) as af:
        model = af["model"]
    sources = Table.read(prog.sources)
    for k, exposure in enumerate(summary["exposures"]):
        true = geometry.Pointing(**exposure["true_pointing"])
        v2, v3 = geometry.v2v3_to_sky_model(true).inverse(sources["ra"], sources["dec"])
        x, y = model.inverse(v2, v3)
        hdr = fits.getheader(prog.uncal[k])
        x, y = np.asarray(x) - (hdr["SUBSTRT1"] - 1), np.asarray(y) - (hdr["SUBSTRT2"] - 1)
        raw = fits.getdata(prog.uncal[k], "SCI").astype(np.float64)
        signal = raw[:, -1] - raw[:, 0]
        signal = signal.mean(axis=0)
        saturation = _sub(prog, _ref(prog, "saturation"))
        checked = 0
        for xi, yi, flux in zip(x, y, sources["flux"]):
            ix, iy = int(round(xi)), int(round(yi))
            crowded = (np.hypot(x - xi, y - yi) < 15) & (sources["flux"] > 0.1 * flux)
            if not (8 <= ix < 152 and 8 <= iy < 152) or crowded.sum() > 1:
                continue
            box = np.s_[iy - 3:iy + 4, ix - 3:ix + 4]
            if (raw[:, -1][(slice(None),) + box] >= saturation[box]).any():
                continue
            stamp = signal[box] - np.median(signal)
            yy, xx = np.mgrid[box]
            cx, cy = (stamp * xx).sum() / stamp.sum(), (stamp * yy).sum() / stamp.sum()
            assert abs(cx - xi) < 0.2 and abs(cy - yi) < 0.2, (cx, xi, cy, yi)
            checked += 1
        assert checked >= 2


def test_distortion_matches_siaf() -> None:
    pysiaf = pytest.importorskip("pysiaf")
    ap = geometry.aperture("NIRCam", "NRCB1", "SUB160")
    model = geometry.distortion_model(ap)
    full = pysiaf.Siaf("NIRCam")["NRCB1_FULL"]
    for x, y in [(0.0, 0.0), (1023.5, 1023.5), (2000.0, 100.0)]:
        v2, v3 = model(x, y)
        e2, e3 = full.sci_to_tel(x + 1, y + 1)
        assert v2 == pytest.approx(e2, abs=1e-6) and v3 == pytest.approx(e3, abs=1e-6)
        xi, yi = model.inverse(v2, v3)
        assert abs(xi - x) < 0.02 and abs(yi - y) < 0.02
    # The subarray reference point maps to the SIAF subarray V2/V3.
    v2, v3 = model(ap.sub_xref - 1, ap.sub_yref - 1)
    assert v2 == pytest.approx(ap.sub_v2_ref, abs=1e-3) and v3 == pytest.approx(ap.sub_v3_ref, abs=1e-3)


def test_pointing_truth(summary: dict) -> None:
    for exposure in summary["exposures"]:
        assert 0.01 <= exposure["pointing_error_arcsec"] <= 0.05 + 1e-6
        assert exposure["header_pointing"] != exposure["true_pointing"]


def test_associations(prog: Program) -> None:
    roots = [p.name.removesuffix("_uncal.fits") for p in prog.uncal]
    assert len(prog.image2_asn) == len(prog.uncal)
    for path, root in zip(prog.image2_asn, roots):
        asn = json.loads(path.read_text())
        assert asn["asn_type"] == "image2"
        (product,) = asn["products"]
        assert product["name"] == root and (path.parent / f"{root}_uncal.fits").exists()
        assert product["members"] == [{"expname": f"{root}_rate.fits", "exptype": "science"}]
    asn3 = json.loads(prog.image3_asn.read_text())
    assert asn3["asn_type"] == "image3"
    members = asn3["products"][0]["members"]
    assert [m["expname"] for m in members] == [f"{r}_cal.fits" for r in roots]
    assert asn3["products"][0]["name"].startswith("jw09001-o001_t001_nircam_clear-f200w")
    load_asn = pytest.importorskip("jwst.associations").load_asn
    for path in [*prog.image2_asn, prog.image3_asn]:
        with path.open() as f:
            load_asn(f)


def test_refcat_and_sources(prog: Program) -> None:
    refcat = Table.read(prog.refcat)
    sources = Table.read(prog.sources)
    assert {"id", "ra", "dec", "mag", "epoch"} <= set(refcat.colnames)
    stars = sources[sources["type"] == "star"]
    np.testing.assert_allclose(refcat["ra"], stars["ra"])
    np.testing.assert_allclose(sources["mag_ab"], -2.5 * np.log10(sources["flux"] / 3631.0))


@pytest.mark.reference
def test_official_detector1_recovers_truth(prog: Program, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """jwst's Detector1, fed only the simulated references, returns the truth rate."""
    from tests.official import run_official_detector1

    run_official_detector1(prog.uncal[0], prog.reference_files, tmp_path, monkeypatch)
    with fits.open(tmp_path / prog.uncal[0].name.replace("_uncal", "_rateints")) as hdul:
        rates, dq = hdul["SCI"].data.astype(np.float64), hdul["DQ"].data
    truth = fits.getdata(prog.truth_rate[0]).astype(np.float64)
    rate = rates.mean(axis=0)
    good = (dq == 0).all(axis=0)
    sky = good & (truth < 3)
    assert abs(np.median((rate - truth)[sky])) < 0.3
    stars = good & (truth > 300)
    assert abs(np.median((rate[stars] - truth[stars]) / truth[stars])) < 0.01
    jumps = Table.read(prog.truth_jumps[0])
    flagged = [(dq[j["integration"], j["y"], j["x"]] & dqflags.JUMP_DET) != 0 for j in jumps]
    assert np.mean(flagged) >= 0.8


def test_frame_averaging(tmp_path: Path) -> None:
    """SHALLOW2 (2 frames averaged, 3 dropped): timing keywords, dark depth and slopes."""
    variant = replace(PRESETS["tiny"], name="tiny-shallow2", readpatt="SHALLOW2", ngroups=4, nints=1,
                      dithers=((0.0, 0.0),), cosmic_ray_rate=0.0)
    prog = simulate_program(variant, tmp_path, seed=2)
    hdr = fits.getheader(prog.uncal[0])
    assert (hdr["NFRAMES"], hdr["GROUPGAP"]) == (2, 3)
    assert hdr["TGROUP"] == pytest.approx(5 * hdr["TFRAME"])
    assert fits.getdata(prog.reference_files["dark"], "SCI").shape[0] == 3 * 5 + 2
    slope, sat = _rate_from_raw(prog, 0)
    truth = fits.getdata(prog.truth_rate[0]).astype(np.float64)
    stars = ~sat.any(axis=(0, 1)) & (truth > 300) & (truth < 3000)
    assert stars.sum() > 5
    rel = (slope[0][stars] - truth[stars]) / truth[stars]
    assert abs(np.median(rel)) < 0.03


def test_bad_and_reference_pixels(prog: Program) -> None:
    dq = fits.getdata(prog.reference_files["mask"], "DQ")
    assert dq.shape == (2048, 2048)
    border = np.ones(dq.shape, bool)
    border[4:-4, 4:-4] = False
    assert np.all(dq[border] == dqflags.REFERENCE_PIXEL)
    assert not (dq[~border] & dqflags.REFERENCE_PIXEL).any()
    sub_dq = _sub(prog, dq)
    truth = fits.getdata(prog.truth_rate[0])
    dead = (sub_dq & dqflags.DEAD) != 0
    hot = (sub_dq & dqflags.HOT) != 0
    assert dead.sum() >= 2 and hot.sum() >= 2
    assert np.all(sub_dq[dead] & dqflags.DO_NOT_USE)
    assert np.all(truth[dead] == 0) and np.all(truth[_sub(prog, border)] == 0)
    dark = fits.getdata(prog.reference_files["dark"], "SCI")
    assert dark[-1][hot].min() > 10 * np.median(dark[-1])
    raw = fits.getdata(prog.uncal[0], "SCI").astype(np.float64)
    ramp = raw[:, -1] - raw[:, 0]
    assert np.median(np.abs(ramp[:, dead])) < 30


def test_jwdask_reference_provider_selects_every_file(prog: Program) -> None:
    provider = pytest.importorskip("jwdask.refs.provider")
    import jwdask

    meta = jwdask.open_uncal(str(prog.uncal[0])).attrs["meta"]
    refs = provider.RefProvider(refs_dir=str(prog.refs_dir))
    for reftype, path in prog.reference_files.items():
        assert Path(refs.path(reftype, meta)) == path.resolve(), reftype


def test_apcorr_describes_rendered_psf(prog: Program) -> None:
    """The APCORR reference is measured on the PSF the simulator renders: isolated unit-flux
    stars drawn by ``scene.render`` at random sub-pixel positions and measured as source_catalog
    does (photutils exact apertures at the table radii, annulus median background) give the
    tabulated encircled energies and, aperture-corrected, the true flux (to 0.5 %; 2 % at 10 %
    EE, where the phase scatter is large); the analytic Moffat radii, which ignore the pixel
    integration, would lose flux."""
    from photutils.aperture import (
        CircularAnnulus,
        CircularAperture,
        aperture_photometry,
    )

    preset = PRESETS["tiny"]
    table = Table.read(prog.reference_files["apcorr"], hdu="APCORR")
    rows = table[np.char.strip(np.char.decode(np.asarray(table["filter"]))) == preset.filter]
    assert len(rows) == 9 and np.allclose(rows["eefraction"], np.arange(1, 10) / 10)
    assert len(np.unique(rows["skyin"])) == 1 and np.allclose(rows["skyout"] - rows["skyin"], 6.0)

    ap = geometry.aperture(preset.instrument.siaf_name, preset.detector, preset.subarray)
    pointing = geometry.Pointing(preset.target_ra, preset.target_dec, preset.roll, ap.sub_v2_ref, ap.sub_v3_ref)
    pixar_a2 = geometry.nominal_pixel_area(ap)
    pixar_sr = pixar_a2 / (180 / np.pi * 3600) ** 2
    jy = scene.PHOTMJSR[preset.filter] * 1e6 * pixar_sr
    rng = np.random.default_rng(3)
    grid = np.arange(30.0, ap.xsize - 30.0, 33.0)
    gx, gy = np.meshgrid(grid, grid)
    fluxes = []
    for _ in range(8):
        x = gx.ravel() + rng.uniform(0, 1, gx.size) + ap.xstart - 1
        y = gy.ravel() + rng.uniform(0, 1, gy.size) + ap.ystart - 1
        ra, dec = geometry.pixel_to_sky(ap, pointing, x, y)
        stars = [scene.SceneSource(i + 1, "star", float(r), float(d), jy) for i, (r, d) in enumerate(zip(ra, dec))]
        image, positions = scene.render(stars, ap, pointing, filter_name=preset.filter, pixar_sr=pixar_sr,
                                        sky=0.0, area=np.ones((ap.ysize, ap.xsize)))
        np.testing.assert_allclose(positions["rate"], 1.0)
        xy = np.transpose((positions["x"] - (ap.xstart - 1), positions["y"] - (ap.ystart - 1)))
        bkg = np.array([np.median(m.get_values(image)) for m in
                        CircularAnnulus(xy, rows["skyin"][0], rows["skyout"][0]).to_mask(method="center")])
        apertures = [CircularAperture(xy, float(r)) for r in rows["radius"]]
        sums = aperture_photometry(image, apertures)
        fluxes.append([np.asarray(sums[f"aperture_sum_{i}"]) - bkg * a.area for i, a in enumerate(apertures)])
    flux = np.concatenate(fluxes, axis=1)
    for row, f in zip(rows, flux):
        tol = 0.02 if row["eefraction"] < 0.15 else 0.005  # sub-pixel phase scatter of 128 stars
        assert abs(np.mean(f) / row["eefraction"] - 1.0) < tol, row
        assert abs(np.mean(f * row["apcorr"]) - 1.0) < tol, row
    alpha = scene.moffat_alpha(scene.PSF_FWHM[preset.filter] / np.sqrt(pixar_a2))
    r70 = float(scene.radius_for_ee(0.7, alpha))
    analytic = np.asarray(aperture_photometry(image, CircularAperture(xy, r70))["aperture_sum"]) / 0.7
    assert np.mean(analytic) < 0.98 < np.mean(flux[6] * rows["apcorr"][6])
