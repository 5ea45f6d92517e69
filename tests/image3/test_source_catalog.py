"""source_catalog: fluxes and positions against simulator truth; row-by-row equal to jwst's
SourceCatalogStep on the same mosaic; ``_cat.ecsv`` / ``_segm.fits`` writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import QTable, Table

from jwdask import dqflags
from jwdask.errors import InputError, ParameterError
from jwdask.image3.source_catalog import (
    source_catalog,
    write_catalog,
    write_segmentation,
)
from jwdask.io.products import open_product
from jwdask.refs import RefProvider

COLUMNS = [
    "label", "xcentroid", "ycentroid", "sky_centroid", "aper_bkg_flux", "aper_bkg_flux_err",
    "aper30_flux", "aper30_flux_err", "aper50_flux", "aper50_flux_err", "aper70_flux",
    "aper70_flux_err", "aper_total_flux", "aper_total_flux_err", "aper30_abmag",
    "aper30_abmag_err", "aper50_abmag", "aper50_abmag_err", "aper70_abmag", "aper70_abmag_err",
    "aper_total_abmag", "aper_total_abmag_err", "aper30_vegamag", "aper30_vegamag_err",
    "aper50_vegamag", "aper50_vegamag_err", "aper70_vegamag", "aper70_vegamag_err",
    "aper_total_vegamag", "aper_total_vegamag_err", "CI_50_30", "CI_70_50", "CI_70_30",
    "is_extended", "sharpness", "roundness", "nn_label", "nn_dist", "isophotal_flux",
    "isophotal_flux_err", "isophotal_abmag", "isophotal_abmag_err", "isophotal_vegamag",
    "isophotal_vegamag_err", "isophotal_area", "semimajor_sigma", "semiminor_sigma", "ellipticity",
    "orientation", "sky_orientation", "sky_bbox_ll", "sky_bbox_ul", "sky_bbox_lr", "sky_bbox_ur",
]


@pytest.fixture(scope="module")
def refs(reduced) -> RefProvider:
    return RefProvider(refs_dir=str(reduced.program.refs_dir))


@pytest.fixture(scope="module")
def i2d(reduced) -> xr.Dataset:
    return open_product(str(reduced.i2d))


@pytest.fixture(scope="module")
def mosaic_catalog(i2d, refs) -> tuple[QTable, xr.Dataset]:
    return source_catalog(i2d, refs)


def _single_exposure_mosaic(path: Path) -> xr.Dataset:
    """A tweaked cal exposure presented as a mosaic (WHT = good pixels): the native PSF the
    simulator's APCORR table describes, free of any resampling."""
    cal = open_product(str(path))
    good = ((cal["dq"] & dqflags.DO_NOT_USE) == 0).astype("float32")
    return xr.Dataset({"sci": cal["sci"], "err": cal["err"], "wht": good}, attrs=cal.attrs)


def _match_truth(catalog: QTable, reduced) -> tuple[Table, np.ndarray, np.ndarray]:
    sources = Table.read(reduced.program.sources)
    idx, dist, _ = catalog["sky_centroid"].match_to_catalog_sky(
        SkyCoord(sources["ra"], sources["dec"], unit="deg"))
    return sources[idx], dist.to_value("mas"), idx


def test_columns_and_units(mosaic_catalog) -> None:
    cat, segm = mosaic_catalog
    assert cat.colnames == COLUMNS
    assert cat["aper_total_flux"].unit == "Jy" and cat["nn_dist"].unit == "pix"
    assert cat["isophotal_area"].unit == "pix2" and cat["sky_orientation"].unit == "deg"
    assert set(np.unique(segm["sci"].values)) == {0, *cat["label"]}
    assert cat.meta["aperture_params"]["aperture_ee"] == [30, 50, 70]
    assert cat.meta["abvega_offset"] == pytest.approx(1.7)


def test_fluxes_unbiased_against_truth(reduced, refs) -> None:
    """Default (70 % EE) aperture-corrected total fluxes ``aper_total_flux`` [Jy] of bright,
    isolated, unsaturated stars are unbiased to 1 % and centroids agree with the truth
    positions to a few mas: the simulator's APCORR table is measured on the PSF it renders."""
    cat, _ = source_catalog(_single_exposure_mosaic(reduced.tweaked_abs[0]), refs)
    assert cat["aper_total_flux"].unit == "Jy"
    truth, dist, _ = _match_truth(cat, reduced)
    stars = (dist < 50) & (truth["type"] == "star") & (truth["mag_ab"] > 17.0) & (truth["mag_ab"] < 19.5)
    stars &= np.asarray(cat["nn_dist"].value) > 15.0  # beyond the background annulus
    assert stars.sum() >= 20
    ratio = np.asarray(cat["aper_total_flux"].value)[stars] / np.asarray(truth["flux"])[stars]
    assert abs(np.median(ratio) - 1.0) < 0.01, np.median(ratio)
    assert np.std(ratio) < 0.02  # noise and the sub-pixel phase of a ~2 pixel aperture
    assert np.sqrt(np.mean(dist[stars] ** 2)) < 10.0
    mag = np.asarray(cat["aper_total_abmag"])[stars]
    np.testing.assert_allclose(mag, -2.5 * np.log10(np.asarray(cat["aper_total_flux"].value)[stars]) + 8.9)


def test_galaxies_are_extended(reduced, mosaic_catalog) -> None:
    """No star is extended and every galaxy has larger concentration indices than any star;
    the resolved galaxies (r_eff > 0.15", ~5 pixels) pass jwst's default CI thresholds (a
    compact, edge-on one may fall just below them)."""
    cat, _ = mosaic_catalog
    truth, dist, _ = _match_truth(cat, reduced)
    matched = dist < 100
    galaxy = matched & (truth["type"] == "galaxy")
    star = matched & (truth["type"] == "star")
    resolved = galaxy & (truth["r_eff"] > 0.15)
    assert resolved.sum() >= 3 and np.all(cat["is_extended"][resolved])
    assert not np.any(cat["is_extended"][star])
    for ci in ("CI_50_30", "CI_70_50"):
        assert np.nanmin(np.asarray(cat[ci])[galaxy]) > np.nanmax(np.asarray(cat[ci])[star]), ci


@pytest.mark.reference
def test_matches_jwst(reduced, mosaic_catalog) -> None:
    """Row by row equal to jwst's SourceCatalogStep on the same i2d (same labels, segmentation
    identical, every column within 1e-5 relative)."""
    cat, segm = mosaic_catalog
    ref = QTable.read(reduced.catalog)
    assert cat.colnames == ref.colnames
    assert len(cat) == len(ref)
    np.testing.assert_array_equal(cat["label"], ref["label"])
    np.testing.assert_array_equal(segm["sci"].values, fits.getdata(reduced.segm, "SCI"))
    for name in cat.colnames:
        ours, theirs = cat[name], ref[name]
        if isinstance(theirs, SkyCoord):
            assert ours.separation(theirs).to_value("mas").max() < 1e-3, name
            continue
        a = np.asarray(getattr(ours, "value", ours), float)
        b = np.asarray(getattr(theirs, "value", theirs), float)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=0, equal_nan=True, err_msg=name)


def test_writers(mosaic_catalog, tmp_path: Path) -> None:
    cat, segm = mosaic_catalog
    path = write_catalog(cat, tmp_path / "jw09001-o001_t001_nircam_clear-f200w_cat.ecsv")
    back = QTable.read(path)
    assert back.colnames == COLUMNS and len(back) == len(cat)
    np.testing.assert_allclose(back["aper_total_flux"].value, cat["aper_total_flux"].value, rtol=1e-12)
    url = write_segmentation(segm, str(tmp_path / "jw09001-o001_t001_nircam_clear-f200w_segm.fits"))
    with fits.open(url) as hdul:
        assert hdul[0].header["DATAMODL"] == "SegmentationMapModel"
        assert hdul["SCI"].data.dtype.kind == "u"
        np.testing.assert_array_equal(hdul["SCI"].data, segm["sci"].values)
    reopened = open_product(url)
    assert reopened.attrs["kind"] == "segm" and reopened.attrs["wcs"] is not None
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    with datamodels.SegmentationMapModel(url) as model:
        np.testing.assert_array_equal(model.data, segm["sci"].values)
        assert model.meta.wcs is not None


def test_star_finders_without_segmentation(i2d, refs) -> None:
    cat, segm = source_catalog(i2d, refs, starfinder="iraf", snr_threshold=10.0)
    assert segm is None and cat.colnames == COLUMNS and len(cat) >= 20
    assert np.all(np.isfinite(cat["isophotal_flux"].value))
    assert np.all(np.isnan(cat["semimajor_sigma"].value)) and np.all(np.isnan(cat["isophotal_flux_err"].value))


def test_no_sources(i2d, refs) -> None:
    blank = i2d.copy()
    blank["sci"] = xr.zeros_like(i2d["sci"]) + np.float32(0.2)
    assert source_catalog(blank, refs) == (None, None)


def test_bad_inputs(i2d, refs) -> None:
    wrong = i2d.copy()
    wrong["sci"] = i2d["sci"].assign_attrs(units="DN/s")
    with pytest.raises(InputError, match="MJy/sr"):
        source_catalog(wrong, refs)
    with pytest.raises(ParameterError, match="unknown source_catalog parameter"):
        source_catalog(i2d, refs, snr=3.0)
    with pytest.raises(ParameterError, match="strictly increasing"):
        source_catalog(i2d, refs, aperture_ee1=70, aperture_ee3=30)


def test_without_apcorr_uses_fallback_radii(i2d, reduced) -> None:
    refs = RefProvider(overrides={"apcorr": "N/A", "abvegaoffset": "N/A"}, refs_dir=str(reduced.program.refs_dir))
    cat, _ = source_catalog(i2d, refs)
    assert "aper1_flux" in cat.colnames and cat.meta["abvega_offset"] == 0.0
    np.testing.assert_allclose(cat["aper_total_flux"].value, cat["aper3_flux"].value)
