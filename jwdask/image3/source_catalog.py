"""source_catalog: detect, deblend and measure the sources of an i2d mosaic.

image3.md §7. Detection is photutils segmentation + deblending on the Gaussian-convolved,
mesh-background-subtracted mosaic (:mod:`jwdask.kernels.detection`); photometry is in
circular apertures at the encircled-energy radii of the APCORR reference with a local
annulus background, corrected to an infinite aperture (:mod:`jwdask.kernels.photometry`).
Fluxes are in Jy, magnitudes AB and Vega; column names and order are jwst's.
"""

from __future__ import annotations

import copy
import logging
import platform
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import astropy
import dask
import numpy as np
import photutils
import xarray as xr
from astropy import units as u
from astropy.table import QTable, Table

from jwdask import __version__
from jwdask.errors import InputError, ParameterError, ReferenceFileError
from jwdask.io import keywords
from jwdask.io.products import write_product
from jwdask.kernels import photometry
from jwdask.kernels.detection import (
    STARFINDERS,
    find_sources,
    finder_params,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULTS",
    "ApertureParams",
    "abvega_offset",
    "aperture_params",
    "source_catalog",
    "write_catalog",
    "write_segmentation",
]

DEFAULTS: dict[str, Any] = {
    "aperture_ee1": 30, "aperture_ee2": 50, "aperture_ee3": 70,
    "ci1_star_threshold": 2.0, "ci2_star_threshold": 1.8,
    "starfinder": "segmentation", "snr_threshold": 3.0, "bkg_boxsize": 1000, "kernel_fwhm": 2.0,
    "minsep_fwhm": 0.0, "sigma_radius": 1.5, "sharplo": 0.5, "sharphi": 2.0, "roundlo": 0.0,
    "roundhi": 0.2, "brightest": 200, "peakmax": None,
    "npixels": 25, "connectivity": 8, "nlevels": 32, "contrast": 0.001,
    "multithresh_mode": "exponential", "localbkg_width": 0, "apermask_method": "correct",
    "kron_params": None, "deblend": True,
}
"""source_catalog parameters and their jwst 3.0 code defaults (image3.md §7.1)."""

_SEGMENT_SOURCE = {"label": "id", "isophotal_flux": "flux", "isophotal_area": "area",
                   "semimajor_sigma": "semimajor_axis", "semiminor_sigma": "semiminor_axis",
                   "isophotal_flux_err": "segment_flux_err"}
"""Catalog column -> finder-table column it is taken from (others: same name)."""


class ApertureParams(dict):
    """``aperture_ee`` [%], ``aperture_radii`` [mosaic pixels], ``aperture_corrections``,
    ``bkg_aperture_inner_radius``/``outer_radius`` [mosaic pixels] (a dict, as jwst's)."""


# ------------------------------------------------------------------------------ public API

def source_catalog(i2d: xr.Dataset, refs: Any, **params: Any) -> tuple[QTable | None, xr.Dataset | None]:
    """Source catalog of a resampled mosaic.

    ``i2d``: Dataset with ``sci``/``err`` [MJy/sr], ``wht``, ``attrs["wcs"]`` and
    ``PIXAR_SR``; ``refs``: a RefProvider for ``apcorr`` and ``abvegaoffset``; ``params`` as
    :data:`DEFAULTS`. Returns ``(catalog, segmentation)``: the catalog (fluxes [Jy], AB/Vega
    magnitudes, pixel/sky positions; jwst column names) and a ``segm`` Dataset (``sci``
    uint32 labels, i2d WCS; None for the dao/iraf finders), or ``(None, None)`` if no source
    is found. Computes the mosaic arrays.
    """
    p = _parameters(params)
    meta = i2d.attrs.get("meta", {})
    _check_input(i2d, meta)
    if refs is None:
        raise ReferenceFileError("apcorr", "no reference provider was given (pass refs=RefProvider(...))")
    ee = (int(p["aperture_ee1"]), int(p["aperture_ee2"]), int(p["aperture_ee3"]))
    apers = aperture_params(refs, meta, ee)
    offset = abvega_offset(refs, meta)

    sci, err, wht = dask.compute(i2d["sci"].data, i2d["err"].data, i2d["wht"].data)
    to_jy = 1.0e6 * float(keywords.get(meta, "photometry.pixelarea_steradians"))
    data = np.asarray(sci) * to_jy
    error = np.asarray(err) * to_jy
    coverage = np.isnan(error) | (np.asarray(wht) == 0)
    wcs = i2d.attrs["wcs"]
    found, segm = find_sources(data, coverage, finder_params(p), error=error, wcs=wcs)
    if len(found) == 0:
        log.warning("source_catalog: no sources found in the image; no catalog")
        return None, None
    catalog = _build_catalog(data, error, found, wcs, meta, apers, offset, p)
    log.info("source_catalog: %d sources", len(catalog))
    return catalog, (_segmentation_dataset(i2d, segm) if segm is not None else None)


def aperture_params(refs: Any, meta: Mapping[str, Any], aperture_ee: tuple[int, int, int]) -> ApertureParams:
    """Aperture radii, corrections and background annulus from the APCORR reference for
    the mosaic's instrument setup, scaled by the mosaic ``PXSCLRT``; fixed radii 1/2/3 px,
    no correction and a 5-10 px annulus when there is no APCORR reference."""
    ee = np.asarray(aperture_ee, int)
    if len(ee) != 3 or not np.all(ee[1:] > ee[:-1]) or np.any((ee <= 0) | (ee >= 100)):
        raise ParameterError(f"aperture_ee {tuple(ee)}: need 3 strictly increasing values in (0, 100)")
    path = refs.path("apcorr", meta)
    if path is None:
        log.warning("source_catalog: no APCORR reference: fallback aperture radii without aperture corrections")
        return ApertureParams(aperture_radii=np.array([1.0, 2.0, 3.0]),
                              aperture_corrections=np.array([1.0, 1.0, 1.0]), aperture_ee=np.array([1, 2, 3]),
                              bkg_aperture_inner_radius=5.0, bkg_aperture_outer_radius=10.0)
    table = _read_table("apcorr", path, "APCORR")
    rows = table[_selector_mask(table, _apcorr_selector(meta), "apcorr", path)]
    if len(rows) == 0:
        raise ReferenceFileError("apcorr", f"{path}: no row for {_apcorr_selector(meta)}")
    percent = np.round(np.asarray(rows["eefraction"], float) * 100)
    radii, corrections, inner, outer = [], [], [], []
    for value in ee:
        match = rows[percent == value]
        if len(match) != 1:
            raise ReferenceFileError("apcorr", f"{path}: {len(match)} rows for encircled energy {value}%")
        radii.append(match["radius"][0])
        corrections.append(match["apcorr"][0])
        inner.append(match["skyin"][0])
        outer.append(match["skyout"][0])
    if len(np.unique(inner)) != 1 or len(np.unique(outer)) != 1:
        raise ReferenceFileError("apcorr", f"{path}: skyin/skyout differ between the selected rows")
    ratio = keywords.get(meta, "resample.pixel_scale_ratio")
    if ratio is None:
        log.warning("source_catalog: no PXSCLRT in the mosaic; assuming the native pixel scale")
        ratio = 1.0
    return ApertureParams(aperture_ee=ee, aperture_radii=np.array(radii) / ratio,
                          aperture_corrections=np.array(corrections),
                          bkg_aperture_inner_radius=inner[0] / ratio, bkg_aperture_outer_radius=outer[0] / ratio)


def abvega_offset(refs: Any, meta: Mapping[str, Any]) -> float:
    """``m_AB - m_Vega`` for the mosaic's filter from the ABVEGAOFFSET reference (0 if none)."""
    path = refs.path("abvegaoffset", meta)
    if path is None:
        log.warning("source_catalog: no ABVEGAOFFSET reference: Vega magnitudes are not correct")
        return 0.0
    tree = refs.open_asdf("abvegaoffset", meta)
    if "abvega_offset" not in tree:
        raise ReferenceFileError("abvegaoffset", f"{path}: no 'abvega_offset' table")
    table = Table(tree["abvega_offset"])
    instrument = str(keywords.get(meta, "instrument.name", "")).upper()
    if instrument in ("NIRCAM", "NIRISS"):
        selector = {"filter": "instrument.filter", "pupil": "instrument.pupil"}
    elif instrument == "MIRI":
        selector = {"filter": "instrument.filter"}
    elif instrument == "FGS":
        selector = {"detector": "instrument.detector"}
    else:
        raise InputError("i2d", "PRIMARY INSTRUME", f"{instrument!r} has no ABVEGAOFFSET selection rule")
    wanted = {col: keywords.get(meta, path_) for col, path_ in selector.items()}
    rows = table[_selector_mask(table, wanted, "abvegaoffset", path)]
    if len(rows) == 0:
        raise ReferenceFileError("abvegaoffset", f"{path}: no row for {wanted}")
    value = float(rows["abvega_offset"][0])
    log.info("source_catalog: AB to Vega magnitude offset %.5f", value)
    return value


def write_catalog(catalog: QTable, path: str | Path) -> str:
    """Write the catalog as ECSV (``<root>_cat.ecsv``); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    catalog.write(path, format="ascii.ecsv", overwrite=True)
    log.info("wrote source catalog %s", path)
    return str(path)


def write_segmentation(segm: xr.Dataset, url: str) -> str:
    """Write the segmentation map as a ``SegmentationMapModel`` FITS (``<root>_segm.fits``)."""
    return write_product(segm, url, "segm")


# ------------------------------------------------------------------------------ helpers

def _parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ParameterError(f"unknown source_catalog parameter(s) {unknown}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if p["starfinder"] not in STARFINDERS:
        raise ParameterError(f"source_catalog starfinder={p['starfinder']!r}: choose one of {STARFINDERS}")
    if int(p["connectivity"]) not in (4, 8):
        raise ParameterError(f"source_catalog connectivity={p['connectivity']!r}: must be 4 or 8")
    return p


def _check_input(i2d: xr.Dataset, meta: Mapping[str, Any]) -> None:
    source = str(i2d.attrs.get("source", "i2d"))
    for var in ("sci", "err", "wht"):
        if var not in i2d:
            raise InputError(source, var.upper(), "source_catalog needs a resampled image with SCI, ERR and WHT")
    for var, key in (("sci", "bunit_data"), ("err", "bunit_err")):
        unit = i2d[var].attrs.get("units") or meta.get(key)
        if unit != "MJy/sr":
            raise InputError(source, f"{var.upper()} BUNIT", f"expected MJy/sr, got {unit!r}")
    if keywords.get(meta, "photometry.pixelarea_steradians") is None:
        raise InputError(source, "SCI PIXAR_SR", "the pixel area is needed to convert MJy/sr to Jy")
    if i2d.attrs.get("wcs") is None:
        raise InputError(source, "ASDF meta.wcs", "the mosaic has no gwcs")


def _read_table(reftype: str, path: str, hdu: str) -> Table:
    try:
        return Table.read(path, hdu=hdu)
    except (OSError, KeyError, ValueError) as err:
        raise ReferenceFileError(reftype, f"{path}: cannot read the {hdu} table ({err})") from err


def _apcorr_selector(meta: Mapping[str, Any]) -> dict[str, Any]:
    instrument = str(keywords.get(meta, "instrument.name", "")).upper()
    if instrument in ("NIRCAM", "NIRISS"):
        return {"filter": keywords.get(meta, "instrument.filter"), "pupil": keywords.get(meta, "instrument.pupil")}
    if instrument == "MIRI":
        return {"filter": keywords.get(meta, "instrument.filter"), "subarray": keywords.get(meta, "subarray.name")}
    if instrument == "FGS":
        return {}
    raise InputError("i2d", "PRIMARY INSTRUME", f"{instrument!r} has no APCORR selection rule")


def _selector_mask(table: Table, selector: Mapping[str, Any], reftype: str, path: str) -> np.ndarray:
    mask = np.ones(len(table), bool)
    for column, value in selector.items():
        if column not in table.colnames:
            raise ReferenceFileError(reftype, f"{path}: no column {column!r}")
        mask &= np.array([str(v).strip() == str(value) for v in table[column]])
    return mask


def _column(found: QTable, name: str, n: int) -> Any:
    source = _SEGMENT_SOURCE.get(name, name)
    if source in found.colnames:
        return found[source]
    return np.full(n, np.nan)


def _sky_angle(wcs: Any, meta: Mapping[str, Any], shape: tuple[int, int]) -> u.Quantity:
    """Angle [deg] counter-clockwise from +x to North at the CRPIX sky position."""
    crpix = (keywords.get(meta, "wcsinfo.crpix1"), keywords.get(meta, "wcsinfo.crpix2"))
    if None in crpix:
        log.warning("source_catalog: no CRPIX in the mosaic header; sky_orientation measured at the image centre")
        x, y = (shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0
    else:
        x, y = float(crpix[0]) - 1.0, float(crpix[1]) - 1.0
    sky = wcs.pixel_to_world(x, y)
    x0, y0 = wcs.world_to_pixel(sky)
    x1, y1 = wcs.world_to_pixel(sky.directional_offset_by(0.0, 1 * u.arcsec))
    return (np.arctan2(y1 - y0, x1 - x0) * u.rad).to(u.deg)


def _build_catalog(data: np.ndarray, error: np.ndarray, found: QTable, wcs: Any, meta: Mapping[str, Any],
                   apers: ApertureParams, offset: float, p: Mapping[str, Any]) -> QTable:
    n = len(found)
    cat = QTable()
    cat["label"] = np.asarray(_column(found, "label", n))
    x = np.asarray(_column(found, "xcentroid", n), float)
    y = np.asarray(_column(found, "ycentroid", n), float)
    cat["xcentroid"], cat["ycentroid"] = x, y
    cat["sky_centroid"] = found["sky_centroid"] if "sky_centroid" in found.colnames else wcs.pixel_to_world(x, y)

    xy = np.transpose((x, y))
    finite = np.isfinite(xy).all(axis=1)
    xy_safe = np.where(np.isfinite(xy), xy, -1000.0)
    bkg, bkg_err = photometry.local_background(data, xy_safe, apers["bkg_aperture_inner_radius"],
                                               apers["bkg_aperture_outer_radius"])
    sums, sum_errs, areas = photometry.aperture_sums(data, error, xy_safe, apers["aperture_radii"])
    fluxes = sums - bkg[None, :] * areas[:, None]
    ee = [int(v) for v in apers["aperture_ee"]]
    total = apers["aperture_corrections"][-1] * fluxes[-1]
    total_err = apers["aperture_corrections"][-1] * sum_errs[-1]
    names = [*(f"aper{e}" for e in ee), "aper_total"]
    flux_cols = [*zip(fluxes, sum_errs, strict=True), (total, total_err)]

    cat["aper_bkg_flux"] = bkg * u.Jy
    cat["aper_bkg_flux_err"] = bkg_err * u.Jy
    mags = []
    for name, (f, fe) in zip(names, flux_cols, strict=True):
        cat[f"{name}_flux"] = f * u.Jy
        cat[f"{name}_flux_err"] = fe * u.Jy
        mags.append(photometry.abmag(f, fe))
    for name, (m, me) in zip(names, mags, strict=True):
        cat[f"{name}_abmag"], cat[f"{name}_abmag_err"] = m, me
    for name, (m, me) in zip(names, mags, strict=True):
        cat[f"{name}_vegamag"], cat[f"{name}_vegamag_err"] = m - offset, me

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = [fluxes[j] / fluxes[i] for i, j in ((0, 1), (1, 2), (0, 2))]
    for (i, j), values in zip(((0, 1), (1, 2), (0, 2)), ci, strict=True):
        cat[f"CI_{ee[j]}_{ee[i]}"] = values
    cat["is_extended"] = (ci[0] > p["ci1_star_threshold"]) & (ci[1] > p["ci2_star_threshold"])
    cat["sharpness"], cat["roundness"] = photometry.sharpness_roundness(data, xy_safe, p["kernel_fwhm"])
    nn_label, nn_dist = photometry.nearest_neighbours(xy_safe, cat["label"], finite)
    cat["nn_label"] = nn_label
    cat["nn_dist"] = nn_dist * u.pix

    iso = np.asarray(u.Quantity(_column(found, "isophotal_flux", n)).value, float)
    iso_err = np.asarray(u.Quantity(_column(found, "isophotal_flux_err", n)).value, float)
    cat["isophotal_flux"], cat["isophotal_flux_err"] = iso * u.Jy, iso_err * u.Jy
    iso_mag, iso_mag_err = photometry.abmag(iso, iso_err)
    cat["isophotal_abmag"], cat["isophotal_abmag_err"] = iso_mag, iso_mag_err
    cat["isophotal_vegamag"], cat["isophotal_vegamag_err"] = iso_mag - offset, iso_mag_err
    cat["isophotal_area"] = u.Quantity(_column(found, "isophotal_area", n), u.pix**2)
    cat["semimajor_sigma"] = u.Quantity(_column(found, "semimajor_sigma", n), u.pix)
    cat["semiminor_sigma"] = u.Quantity(_column(found, "semiminor_sigma", n), u.pix)
    cat["ellipticity"] = np.asarray(u.Quantity(_column(found, "ellipticity", n)).value, float)
    orientation = u.Quantity(_column(found, "orientation", n), u.deg)
    cat["orientation"] = orientation
    cat["sky_orientation"] = (180.0 * u.deg - _sky_angle(wcs, meta, data.shape) + orientation) % (360 * u.deg)
    for corner in ("ll", "ul", "lr", "ur"):
        name = f"sky_bbox_{corner}"
        cat[name] = found[name] if name in found.colnames else np.full(n, np.nan)
    _format(cat)
    cat.meta.update(_catalog_meta(found, apers, offset))
    return cat


def _format(cat: QTable) -> None:
    for name in cat.colnames:
        if name in ("xcentroid", "ycentroid") or name.startswith("CI_"):
            cat[name].info.format = ".4f"
        if "flux" in name:
            cat[name].info.format = ".6e"
        if ("abmag" in name or "vegamag" in name or name in ("nn_dist", "sharpness", "roundness", "semimajor_sigma",
                                                              "semiminor_sigma", "ellipticity", "orientation",
                                                              "sky_orientation")):
            cat[name].info.format = ".6f"


def _catalog_meta(found: QTable, apers: ApertureParams, offset: float) -> dict[str, Any]:
    meta = {k: v for k, v in found.meta.items() if k not in ("version", "versions")}
    meta["version"] = {"Python": platform.python_version(), "numpy": np.__version__,
                       "astropy": astropy.__version__, "photutils": photutils.__version__, "jwdask": __version__}
    meta["aperture_params"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in apers.items()}
    meta["abvega_offset"] = offset
    return meta


def _segmentation_dataset(i2d: xr.Dataset, segm: Any) -> xr.Dataset:
    labels = np.asarray(segm.data).astype(np.uint32)
    meta = copy.deepcopy(i2d.attrs.get("meta", {}))
    meta["model_type"] = "SegmentationMapModel"
    meta.pop("bunit_data", None)
    meta.pop("bunit_err", None)
    chunks = {d: i2d.chunks[d] for d in ("y", "x") if d in i2d.chunks}
    sci = xr.DataArray(labels, dims=("y", "x"), coords={"y": i2d["y"].values, "x": i2d["x"].values})
    ds = xr.Dataset({"sci": sci}, attrs={"meta": meta, "wcs": i2d.attrs["wcs"], "kind": "segm"})
    return ds.chunk(chunks) if chunks else ds

