"""tweakreg: relative and absolute astrometric alignment of the exposures of an association.

image3.md §3. Sources are detected in every exposure (one dask task per exposure, photutils
finders of :mod:`jwdask.kernels.detection`), exposures of one group share a catalog, groups
are matched and fitted to each other with tweakwcs (``align_wcs``, ``XYXYMatch``,
``JWSTWCSCorrector``) and optionally to an absolute reference catalog read from a file.
The correction is a tangent-plane affine inserted in the gwcs after ``v2v3vacorr``
(``v2v3corr`` frame); V2/V3/RA/DEC_REF keywords are untouched. Moving-target associations
get the ``moving_target`` frame of ``assign_mtwcs`` instead (§1).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.modeling.models import Identity, Shift
from astropy.table import Table
from gwcs import WCS
from gwcs import coordinate_frames as cf

from jwdask import cluster, dqflags
from jwdask.errors import InputError, ParameterError
from jwdask.io import keywords
from jwdask.kernels.detection import (
    STARFINDERS,
    FinderParams,
    find_sources,
    finder_params,
)
from jwdask.steps import completed, skipped
from jwdask.tiles import as_delayed

log = logging.getLogger(__name__)

__all__ = ["DEFAULTS", "NETWORK_CATALOGS", "assign_mtwcs", "exposure_catalogs", "group_id", "tweakreg"]

NETWORK_CATALOGS = ("GAIAREFCAT", "GAIADR3", "GAIADR2", "GAIADR1", "GAIADR3_S3")
"""Named astrometric catalogs jwst fetches over the network (not available in jwdask)."""

ABS_GROUP_ID = 987654
"""Group id given to every exposure for the absolute fit (all fitted as one rigid group)."""

FIT_GEOMETRIES = ("shift", "rshift", "rscale", "general")

DEFAULTS: dict[str, Any] = {
    "save_catalogs": False, "use_custom_catalogs": False, "catalog_format": "ecsv", "catfile": "",
    "output_dir": ".",
    "starfinder": "iraf", "snr_threshold": 10.0, "kernel_fwhm": 2.5, "bkg_boxsize": 400,
    "minsep_fwhm": 0.0, "sigma_radius": 1.5, "sharplo": 0.5, "sharphi": 2.0, "roundlo": 0.0,
    "roundhi": 0.2, "brightest": 200, "peakmax": None,
    "npixels": 10, "connectivity": 8, "nlevels": 32, "contrast": 0.001,
    "multithresh_mode": "exponential", "localbkg_width": 0, "apermask_method": "correct",
    "kron_params": None, "deblend": True,
    "enforce_user_order": False, "expand_refcat": False, "minobj": 15, "fitgeometry": "rshift",
    "nclip": 3, "sigma": 3.0,
    "searchrad": 2.0, "use2dhist": True, "separation": 1.0, "tolerance": 0.7, "xoffset": 0.0,
    "yoffset": 0.0,
    "abs_refcat": "", "save_abs_catalog": False, "abs_minobj": 15, "abs_fitgeometry": "rshift",
    "abs_nclip": 3, "abs_sigma": 3.0, "abs_searchrad": 6.0, "abs_use2dhist": True,
    "abs_separation": 1.0, "abs_tolerance": 0.7,
    "sip_approx": True, "sip_max_pix_error": 0.01, "sip_degree": None, "sip_max_inv_pix_error": 0.01,
    "sip_inv_degree": None, "sip_npoints": 12,
}
"""tweakreg parameters and their jwst 3.0 code defaults (image3.md §3.1); distances in arcsec."""

_MAX_SIP_DEGREE = 6
_SIP_KEYS = ("naxis", "cdelt1", "cdelt2", "pc1_1", "pc1_2", "pc2_1", "pc2_2",
             "a_order", "b_order", "ap_order", "bp_order")


class AlignmentFailed(Exception):
    """An alignment pass that cannot be used (jwst's ``TweakregError``): logged, then skipped."""


# ------------------------------------------------------------------------------ public API

def tweakreg(datasets: Sequence[xr.Dataset], refs: Any = None, **params: Any) -> list[xr.Dataset]:
    """Align the WCS of calibrated exposures to each other and to ``abs_refcat``.

    ``datasets`` are cal/crf Datasets (``sci`` [MJy/sr], ``err``, ``dq``; ``attrs["wcs"]``
    gwcs) in association order; ``params`` as :data:`DEFAULTS` (``searchrad``,
    ``separation``, ``tolerance`` in arcsec). Returns new Datasets with the corrected gwcs,
    ``S_TWKREG``, ``S_REGION``/SIP keywords and ``attrs["tweakreg"]`` (fit summary); arrays
    are untouched. Moving-target associations are handed to :func:`assign_mtwcs`.
    """
    del refs  # tweakreg uses no reference file
    p = _parameters(params)
    datasets = list(datasets)
    if not datasets:
        raise ParameterError("tweakreg needs at least one exposure")
    for ds in datasets:
        _check_input(ds)
    if any(str(keywords.get(ds.attrs.get("meta", {}), "target.type", "")).upper() == "MOVING"
           for ds in datasets):
        log.info("tweakreg: moving target (TARGTYPE=MOVING): applying assign_mtwcs instead")
        return assign_mtwcs(datasets)

    groups = [group_id(ds) for ds in datasets]
    n_groups = len(dict.fromkeys(groups))
    abs_refcat = str(p["abs_refcat"] or "").strip()
    refcat = read_refcat(abs_refcat) if abs_refcat else None
    if refcat is None and not p["save_catalogs"] and n_groups == 1:
        log.warning("tweakreg: at least two exposures (groups) are required for image alignment")
        return [skipped(ds, "tweakreg", "a single group and no abs_refcat") for ds in datasets]

    catalogs = exposure_catalogs(datasets, p)
    correctors = [_corrector(ds, cat, gid) for ds, cat, gid in zip(datasets, catalogs, groups, strict=True)]
    log.info("tweakreg: number of image groups to be aligned: %d", n_groups)

    relative_ok = False
    if n_groups > 1:
        try:
            _relative_align(correctors, p, expand_refcat=p["expand_refcat"] or refcat is not None)
            relative_ok = True
        except AlignmentFailed as err:
            log.warning("tweakreg: relative alignment failed: %s", err)
    relative = [_fit_summary(c.meta["fit_info"]) if c.meta.get("fit_info") else None for c in correctors]
    if refcat is not None:
        try:
            _absolute_align(correctors, refcat, p)
        except AlignmentFailed as err:
            log.warning("tweakreg: absolute alignment failed: %s", err)
            return [skipped(ds, "tweakreg", "absolute alignment failed; WCS unchanged") for ds in datasets]
    elif not relative_ok:
        return [skipped(ds, "tweakreg", "relative alignment failed; WCS unchanged") for ds in datasets]
    name = f"FIT-LVL3-{abs_refcat}" if refcat is not None else None
    out = [_apply(ds, c, p, name) for ds, c in zip(datasets, correctors, strict=True)]
    if refcat is not None:
        for ds, rel in zip(out, relative, strict=True):
            ds.attrs["tweakreg"]["relative"] = rel
    return out


def group_id(ds: xr.Dataset) -> str:
    """The exposure's stage-3 group id: ``meta["group_id"]`` or
    ``jw{PROGRAM}{OBSERVTN}{VISIT}_{VISITGRP}{SEQ_ID}{ACT_ID}_{EXPOSURE}``."""
    meta = ds.attrs.get("meta", {})
    if meta.get("group_id"):
        return str(meta["group_id"])
    parts = ("program_number", "observation_number", "visit_number", "visit_group", "sequence_id",
             "activity_id", "exposure_number")
    values = [keywords.get(meta, f"observation.{k}") for k in parts]
    if any(v is None for v in values):
        missing = [k for k, v in zip(parts, values, strict=True) if v is None]
        raise InputError(_source(ds), "PRIMARY", f"cannot build the group id: missing observation.{missing}")
    program, obs, visit, vgroup, seq, act, exp = (str(v) for v in values)
    return f"jw{program}{obs}{visit}_{vgroup}{seq}{act}_{exp}"


def exposure_catalogs(datasets: Sequence[xr.Dataset], params: Mapping[str, Any]) -> list[Table]:
    """Source catalogs (``id, x, y, flux`` [0-based pixels, MJy/sr]) of every exposure,
    filtered to the WCS bounding box. Detection runs as one dask task per exposure; custom
    catalogs (``use_custom_catalogs`` + ``catfile``) are read instead where listed."""
    p = {**DEFAULTS, **params}
    custom = _custom_catalogs(p["catfile"]) if p["use_custom_catalogs"] else {}
    finder = finder_params(p)
    tasks = {}
    for i, ds in enumerate(datasets):
        if custom.get(_filename(ds)) is None:
            tasks[i] = dask.delayed(_detect, pure=True)(
                as_delayed(ds["sci"].data), as_delayed(ds["dq"].data), as_delayed(ds["err"].data), finder)
    found = dict(zip(tasks, cluster.compute(*tasks.values()), strict=True)) if tasks else {}
    out = []
    for i, ds in enumerate(datasets):
        if i in found:
            cat = found[i]
        else:
            path = custom[_filename(ds)]
            log.info("tweakreg: using user-provided catalog %s for %s", path, _filename(ds))
            cat = Table.read(path)
        cat = _bbox_filter(_xy_columns(Table(cat), _source(ds)), ds.attrs["wcs"].bounding_box)
        cat.meta["name"] = Path(_filename(ds)).stem.strip("_- ")
        if len(cat) == 0:
            log.warning("tweakreg: no sources found in %s", _filename(ds))
        else:
            log.info("tweakreg: detected %d sources in %s", len(cat), _filename(ds))
        if p["save_catalogs"] and i in found:
            _write_catalog(cat, ds, p)
        out.append(cat)
    return out


def read_refcat(abs_refcat: str) -> Table:
    """The absolute reference catalog ``abs_refcat`` (a table file with RA/DEC columns, any
    case, or a ``sky_centroid`` column) as a table with ``RA, DEC`` [deg]."""
    if abs_refcat.upper() in NETWORK_CATALOGS:
        msg = (f"abs_refcat={abs_refcat!r} is fetched by jwst from the STScI catalog web service, "
               "which needs the network; jwdask steps do not use the network: download the catalog "
               "once and pass its file path (ECSV/FITS with RA/DEC columns) as abs_refcat")
        raise ParameterError(msg)
    path = Path(abs_refcat)
    if not path.is_file():
        msg = (f"abs_refcat={abs_refcat!r} is not an existing file (nor one of the network catalogs "
               f"{', '.join(NETWORK_CATALOGS)})")
        raise ParameterError(msg)
    try:
        table = Table.read(path)
    except Exception as err:
        raise InputError(str(path), "", f"cannot read the reference catalog: {err}") from err
    upper = {c.upper(): c for c in table.colnames}
    if "RA" in upper and "DEC" in upper:
        out = Table({"RA": np.asarray(table[upper["RA"]], float), "DEC": np.asarray(table[upper["DEC"]], float)})
    elif "SKY_CENTROID" in upper:
        sky = table[upper["SKY_CENTROID"]]
        out = Table({"RA": np.asarray(sky.ra.deg), "DEC": np.asarray(sky.dec.deg)})
    else:
        raise InputError(str(path), "RA/DEC", "the reference catalog has neither RA/DEC nor sky_centroid columns")
    out.meta["name"] = path.name
    return out


def assign_mtwcs(datasets: Sequence[xr.Dataset]) -> list[xr.Dataset]:
    """Moving-target WCS (image3.md §1): append a ``moving_target`` frame shifting each
    exposure's sky coordinates [deg] by ``mean(MT_RA/DEC) - MT_RA/DEC``. Skipped (with a
    warning) if any exposure lacks ``MT_RA``/``MT_DEC``."""
    metas = [ds.attrs.get("meta", {}) for ds in datasets]
    mt = [(keywords.get(m, "wcsinfo.mt_ra"), keywords.get(m, "wcsinfo.mt_dec")) for m in metas]
    if any(ra is None or dec is None for ra, dec in mt):
        log.warning("assign_mtwcs: one or more MT_RA/MT_DEC values missing; skipped, so the target "
                    "will be misaligned")
        return [skipped(ds, "assign_mtwcs", "MT_RA/MT_DEC missing") for ds in datasets]
    ra_mean = float(np.mean([float(ra) for ra, _ in mt]))
    dec_mean = float(np.mean([float(dec) for _, dec in mt]))
    out = []
    for ds, (ra, dec) in zip(datasets, mt, strict=True):
        wcs = _with_moving_target_frame(ds.attrs["wcs"], ra_mean - float(ra), dec_mean - float(dec))
        meta = {"wcsinfo.mt_avra": ra_mean, "wcsinfo.mt_avdec": dec_mean}
        if (region := s_region(wcs)) is not None:
            meta["wcsinfo.s_region"] = region
        new = completed(ds, "assign_mtwcs", meta=meta)
        new.attrs["wcs"] = wcs
        out.append(new)
    return out


def s_region(wcs: WCS) -> str | None:
    """``S_REGION`` polygon of the sky positions [deg] of the four WCS bounding-box corners
    (jwst's ``center=False`` footprint), or None if any is not finite."""
    footprint = np.array(wcs.footprint(center=False, axis_type="spatial"), dtype=float)[:, :2]
    footprint[:, 0] = np.mod(footprint[:, 0], 360.0)
    if not np.isfinite(footprint).all():
        log.info("there are NaNs in the footprint; S_REGION not updated")
        return None
    return "POLYGON ICRS  " + " ".join(f"{v:.9f}" for v in footprint.ravel())


# ------------------------------------------------------------------------------ parameters

def _parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ParameterError(f"unknown tweakreg parameter(s) {unknown}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if p["starfinder"] not in STARFINDERS:
        raise ParameterError(f"tweakreg starfinder={p['starfinder']!r}: choose one of {STARFINDERS}")
    for key in ("fitgeometry", "abs_fitgeometry"):
        if p[key] not in FIT_GEOMETRIES:
            raise ParameterError(f"tweakreg {key}={p[key]!r}: choose one of {FIT_GEOMETRIES}")
    if int(p["connectivity"]) not in (4, 8):
        raise ParameterError(f"tweakreg connectivity={p['connectivity']!r}: must be 4 or 8")
    if p["catalog_format"] not in ("ecsv", "fits"):
        raise ParameterError(f"tweakreg catalog_format={p['catalog_format']!r}: must be 'ecsv' or 'fits'")
    for key in ("nclip", "abs_nclip"):
        if int(p[key]) < 0:
            raise ParameterError(f"tweakreg {key}={p[key]!r}: must be >= 0")
    return p


def _check_input(ds: xr.Dataset) -> None:
    for var in ("sci", "err", "dq"):
        if var not in ds:
            raise InputError(_source(ds), var.upper(), "tweakreg needs a cal image with SCI, ERR and DQ")
        if ds[var].dims != ("y", "x"):
            raise InputError(_source(ds), var.upper(), f"tweakreg needs 2-D (y, x) images, got {ds[var].dims}")
    if ds.attrs.get("wcs") is None:
        raise InputError(_source(ds), "ASDF meta.wcs", "no gwcs: run assign_wcs first")


def _source(ds: xr.Dataset) -> str:
    return str(ds.attrs.get("source") or _filename(ds))


def _filename(ds: xr.Dataset) -> str:
    return str(keywords.get(ds.attrs.get("meta", {}), "filename", "exposure.fits"))


# ------------------------------------------------------------------------------ catalogs

def _detect(sci: np.ndarray, dq: np.ndarray, err: np.ndarray, finder: FinderParams) -> Table:
    """Catalog of one exposure (runs inside a dask task)."""
    coverage = (np.asarray(dq) & (dqflags.NON_SCIENCE | dqflags.DO_NOT_USE)) != 0
    cat, _ = find_sources(np.asarray(sci), coverage, finder, error=np.asarray(err))
    return Table(cat[["id", "xcentroid", "ycentroid", "flux"]])


def _xy_columns(cat: Table, source: str) -> Table:
    for axis in ("x", "y"):
        if axis in cat.colnames:
            continue
        for long_name in (f"{axis}centroid", f"{axis}_centroid"):
            if long_name in cat.colnames:
                cat.rename_column(long_name, axis)
                break
        else:
            raise InputError(source, "catalog", f"a tweakreg catalog needs a column {axis!r}, "
                                                f"'{axis}centroid' or '{axis}_centroid'")
    return cat


def _bbox_filter(cat: Table, bbox: Any) -> Table:
    """Sources strictly inside the WCS bounding box."""
    if bbox is None or len(cat) == 0:
        return cat
    (xmin, xmax), (ymin, ymax) = _bbox_tuple(bbox)
    x, y = np.asarray(cat["x"], float), np.asarray(cat["y"], float)
    return cat[(x > xmin) & (x < xmax) & (y > ymin) & (y < ymax)]


def _bbox_tuple(bbox: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    if hasattr(bbox, "bounding_box"):
        bbox = bbox.bounding_box(order="F")
    (x0, x1), (y0, y1) = bbox
    return (float(x0), float(x1)), (float(y0), float(y1))


def _custom_catalogs(catfile: str) -> dict[str, str | None]:
    """``{exposure file name: catalog path or None}`` from a two-column text file."""
    if not str(catfile).strip():
        return {}
    path = Path(catfile)
    out: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, *rest = line.split()
        if len(rest) > 1:
            raise InputError(str(path), "", f"'catfile' lines have at most two columns: {line!r}")
        out[name] = str(path.parent / rest[0]) if rest else None
    if not out:
        log.warning("tweakreg: use_custom_catalogs is set but catfile lists no catalog; detecting sources")
    return out


def _write_catalog(cat: Table, ds: xr.Dataset, p: Mapping[str, Any]) -> None:
    fmt = "ascii.ecsv" if p["catalog_format"] == "ecsv" else "fits"
    name = _filename(ds).replace(".fits", f"_cat.{p['catalog_format']}")
    path = Path(p["output_dir"]) / name
    cat.write(path, format=fmt, overwrite=True)
    log.info("tweakreg: wrote source catalog %s", path)


# ------------------------------------------------------------------------------ alignment

def _corrector(ds: xr.Dataset, catalog: Table, gid: str) -> Any:
    from tweakwcs.correctors import JWSTWCSCorrector

    meta = ds.attrs.get("meta", {})
    wcsinfo = {k: keywords.get(meta, f"wcsinfo.{k}") for k in ("roll_ref", "v2_ref", "v3_ref")}
    missing = [k for k, v in wcsinfo.items() if v is None]
    if missing:
        raise InputError(_source(ds), "SCI " + " ".join(k.upper() for k in missing),
                         "tweakreg needs V2_REF, V3_REF and ROLL_REF")
    return JWSTWCSCorrector(wcs=ds.attrs["wcs"], wcsinfo=wcsinfo,
                            meta={"catalog": catalog, "name": catalog.meta.get("name"), "group_id": gid})


def _align(correctors: list[Any], refcat: Table | None, *, enforce_user_order: bool, expand_refcat: bool,
           minobj: int, fitgeometry: str, nclip: int, sigma: float, searchrad: float, use2dhist: bool,
           separation: float, tolerance: float, xoffset: float, yoffset: float,
           group_bb_policy: str | int = "auto") -> None:
    from tweakwcs.imalign import align_wcs
    from tweakwcs.matchutils import XYXYMatch

    if separation <= math.sqrt(2.0) * tolerance:
        raise AlignmentFailed(f"separation ({separation}\") must exceed tolerance ({tolerance}\") by at "
                              "least a factor sqrt(2) to avoid source confusion")
    match = XYXYMatch(searchrad=searchrad, separation=separation, use2dhist=use2dhist, tolerance=tolerance,
                      xoffset=xoffset, yoffset=yoffset)
    try:
        align_wcs(correctors, refcat=refcat, enforce_user_order=enforce_user_order,
                  expand_refcat=expand_refcat, minobj=minobj, match=match, fitgeom=fitgeometry,
                  nclip=nclip, sigma=(sigma, "rmse"), clip_accum=False, group_bb_policy=group_bb_policy)
    except ValueError as err:
        if str(err).startswith("Too few input images"):
            raise AlignmentFailed(f"{err} At least two exposures (one with a reference catalog) are "
                                  "required") from None
        raise
    except RuntimeError as err:
        if str(err).startswith("Number of output coordinates exceeded allocation"):
            raise AlignmentFailed("several sources within the tolerance matched one reference source; "
                                  "adjust 'tolerance' and/or 'separation'") from None
        raise


def _relative_align(correctors: list[Any], p: Mapping[str, Any], *, expand_refcat: bool) -> None:
    _align(correctors, None, enforce_user_order=p["enforce_user_order"], expand_refcat=expand_refcat,
           minobj=p["minobj"], fitgeometry=p["fitgeometry"], nclip=p["nclip"], sigma=p["sigma"],
           searchrad=p["searchrad"], use2dhist=p["use2dhist"], separation=p["separation"],
           tolerance=p["tolerance"], xoffset=p["xoffset"], yoffset=p["yoffset"])
    if p["use2dhist"]:
        limit = 2.0 * (p["searchrad"] + p["tolerance"])
    else:
        limit = 2.0 * (max(abs(p["xoffset"]), abs(p["yoffset"])) + p["tolerance"])
    for c in correctors:
        moved = _footprint(c.wcs).separation(_footprint(c.original_wcs)).to_value(u.arcsec)
        if not (moved < limit).all():
            raise AlignmentFailed(f"the WCS of {c.meta.get('name')} moved by {moved.max():.3f}\" "
                                  f"(limit {limit:.3f}\"): relative alignment discarded")


def _footprint(wcs: WCS) -> SkyCoord:
    ra, dec = np.asarray(wcs.footprint(axis_type="spatial"), dtype=float).T
    return SkyCoord(ra=ra, dec=dec, unit="deg")


def _absolute_align(correctors: list[Any], refcat: Table, p: Mapping[str, Any]) -> None:
    if len(refcat) < p["abs_minobj"]:
        raise AlignmentFailed(f"only {len(refcat)} sources in the reference catalog {refcat.meta['name']} "
                              f"(abs_minobj={p['abs_minobj']})")
    if p["save_abs_catalog"]:
        log.info("tweakreg: save_abs_catalog only saves catalogs fetched from the network (as jwst); "
                 "the file catalog %s is used as is", refcat.meta["name"])
    for c in correctors:
        c.meta["group_id"] = ABS_GROUP_ID
        if "REFERENCE" in c.meta.get("fit_info", {}).get("status", ""):
            del c.meta["fit_info"]
    # All exposures form one group aligned in user order, so tweakwcs never intersects the
    # group's bounding polygon: group_bb_policy=0 replaces its exact spherical union (most
    # of jwst's tweakreg time) by a cheap convex hull; the fit is unchanged.
    _align(correctors, refcat, enforce_user_order=True, expand_refcat=False, minobj=p["abs_minobj"],
           fitgeometry=p["abs_fitgeometry"], nclip=p["abs_nclip"], sigma=p["abs_sigma"],
           searchrad=p["abs_searchrad"], use2dhist=p["abs_use2dhist"], separation=p["abs_separation"],
           tolerance=p["abs_tolerance"], xoffset=0.0, yoffset=0.0, group_bb_policy=0)


# ------------------------------------------------------------------------------ results

def _fit_summary(fit: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-friendly fit summary: status, geometry, shift [TP arcsec], matrix, rotation [deg],
    scale, RMSE/MAE [arcsec], number of matches (the absolute fit's summary also carries the
    preceding relative fit under ``"relative"``)."""
    out: dict[str, Any] = {"status": str(fit.get("status", "UNKNOWN"))}
    for key in ("fitgeom", "rmse", "mae", "nmatches", "proper_rot", "skew"):
        if key in fit:
            out[key] = fit[key].item() if hasattr(fit[key], "item") else fit[key]
    for key in ("shift", "matrix", "rot", "scale"):
        if key in fit:
            out[key] = np.asarray(fit[key], float).tolist()
    return out


def _apply(ds: xr.Dataset, corrector: Any, p: Mapping[str, Any], wcs_name: str | None) -> xr.Dataset:
    fit = corrector.meta.get("fit_info", {})
    summary = _fit_summary(fit) if fit else {"status": "NOT FITTED"}
    out = completed(ds, "tweakreg")
    out.attrs["tweakreg"] = summary
    if "SUCCESS" not in summary["status"]:
        level = logging.INFO if "REFERENCE" in summary["status"] else logging.WARNING
        log.log(level, "tweakreg: %s: fit status %s, WCS unchanged", _filename(ds), summary["status"])
        return out
    wcs = corrector.wcs
    if wcs_name is not None:
        wcs.name = wcs_name
    meta = out.attrs["meta"]
    if (region := s_region(wcs)) is not None:
        keywords.put(meta, "wcsinfo.s_region", region)
    if p["sip_approx"]:
        _refit_sip(meta, wcs, p, _filename(ds))
    out.attrs["wcs"] = wcs
    log.info("tweakreg: %s: shift %s arcsec, rotation %s deg, RMSE %.4g arcsec from %s matches",
             _filename(ds), np.round(summary.get("shift", [0, 0]), 5), np.round(summary.get("rot", [0]), 6),
             summary.get("rmse", float("nan")), summary.get("nmatches"))
    return out


def _refit_sip(meta: dict[str, Any], wcs: WCS, p: Mapping[str, Any], name: str) -> None:
    """Replace the FITS (TAN-SIP) approximation in ``meta["wcsinfo"]`` by a fit of ``wcs``."""
    info = meta.setdefault("wcsinfo", {})
    crpix = [info.get("crpix1"), info.get("crpix2")]
    degree = p["sip_degree"] if p["sip_degree"] is not None else range(1, _MAX_SIP_DEGREE)
    inv_degree = p["sip_inv_degree"] if p["sip_inv_degree"] is not None else range(1, _MAX_SIP_DEGREE)
    try:
        hdr = wcs.to_fits_sip(max_pix_error=p["sip_max_pix_error"], degree=degree,
                              max_inv_pix_error=p["sip_max_inv_pix_error"], inv_degree=inv_degree,
                              npoints=p["sip_npoints"], crpix=None if None in crpix else crpix)
    except (ValueError, RuntimeError) as err:
        log.warning("tweakreg: %s: failed to update the FITS SIP approximation: %s", name, err)
        return
    del hdr["naxis*"]
    for key in list(info):
        if key in _SIP_KEYS or (key.split("_")[0] in ("a", "b", "ap", "bp") and key.count("_") == 2):
            del info[key]
    info.update({k.lower(): v for k, v in hdr.items()})


def _with_moving_target_frame(wcs: WCS, dra: float, ddec: float) -> WCS:
    pipeline = list(wcs.pipeline[:-1])
    frame = copy.deepcopy(wcs.output_frame)
    frame.name = "moving_target"
    if isinstance(frame, cf.CelestialFrame):
        shift = Shift(dra) & Shift(ddec)
    elif isinstance(frame, cf.CompositeFrame):
        shift = Shift(dra) & Shift(ddec) & Identity(1)
    else:
        raise NotImplementedError(f"assign_mtwcs: unsupported output frame type {type(frame).__name__}")
    pipeline.append((wcs.output_frame, shift))
    pipeline.append((frame, None))
    return WCS(pipeline)
