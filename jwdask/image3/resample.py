"""resample (image3): drizzle calibrated exposures [MJy/sr] onto one mosaic, the ``_i2d`` (image3.md §6).

Lazy: the returned Dataset's arrays are dask arrays chunked by output tile, each tile reduced
from the (exposure, tile) drizzle tasks of the exposures that reach it, so writing the i2d
stores it tile by tile and no task ever holds the whole mosaic. The mosaic's metadata is
blended across the exposures with jwst's rules and carries the ``HDRTAB`` table
(:mod:`jwdask.resample.blend`). :func:`resample_single` is jwst's ``single=True``: each
exposure group drizzled alone onto the common grid (the ``_outlier_i2d`` images).
"""

from __future__ import annotations

import copy
import logging
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from jwdask.errors import InputError, ParameterError
from jwdask.io import keywords
from jwdask.io.tables import with_tables
from jwdask.resample.blend import blend
from jwdask.resample.drizzle import GOOD_BITS, DrizzleParams, input_from_dataset
from jwdask.resample.grid import (
    OutputGrid,
    custom_grid,
    output_grid,
    sregion_footprints,
)
from jwdask.resample.reduce import drizzle_mosaic

log = logging.getLogger(__name__)

SIP_KEY = re.compile(r"^(cd[12]_[12]|[ab]p?_\d_\d|[ab]p?_order|sipmxerr|sipiverr)$")
POINTING_KEYS = ("v2_ref", "v3_ref", "ra_ref", "dec_ref", "roll_ref", "v3yangle", "vparity")


def resample_mosaic(datasets: Sequence[xr.Dataset], refs: Any = None, *, pixfrac: float = 1.0,
                    kernel: str = "square", fillval: str | float | None = "NAN",
                    weight_type: str | None = "ivm", output_shape: Sequence[int] | None = None,
                    crpix: Sequence[float] | None = None, crval: Sequence[float] | None = None,
                    rotation: float | None = None, pixel_scale_ratio: float = 1.0,
                    pixel_scale: float | None = None, output_wcs: str = "", single: bool = False,
                    blendheaders: bool = True, in_memory: bool = True, enable_ctx: bool = True,
                    enable_err: bool = True, report_var: bool = True, propagate_dq: bool = False,
                    pixmap_stepsize: float = 1.0, pixmap_order: int = 1,
                    tile: int | tuple[int, int] = 512) -> xr.Dataset:
    """Drizzle ``datasets`` (cal/crf, SCI in MJy/sr) into one i2d Dataset; parameters as jwst's
    ResampleStep (``pixel_scale`` [arcsec], ``rotation`` [deg], ``output_shape`` = [nx, ny],
    ``crpix`` 0-based) plus ``tile``, the output tile size [pixels]. With ``blendheaders`` and
    several inputs the metadata is blended and the ``HDRTAB`` table attached, as in jwst.
    ``single=True`` is :func:`resample_single`'s job (one image per exposure group). ``refs``
    is unused."""
    if single:
        msg = ("resample: single=True makes one image per exposure group, not one mosaic: "
               "call jwdask.image3.resample.resample_single (the image3 stage does)")
        raise ParameterError(msg)
    grid = _grid(datasets, weight_type, enable_err, output_wcs=output_wcs, output_shape=output_shape,
                 pixel_scale_ratio=pixel_scale_ratio, pixel_scale=pixel_scale, rotation=rotation,
                 crpix=crpix, crval=crval)
    if not in_memory:
        log.debug("resample: in_memory=False has no effect (the mosaic is never held in memory)")
    params = DrizzleParams(kernel=kernel, pixfrac=pixfrac, weight_type=weight_type, good_bits=GOOD_BITS,
                           pixel_scale_ratio=grid.pixel_scale_ratio, enable_ctx=enable_ctx,
                           enable_var=enable_err, propagate_dq=propagate_dq,
                           pixmap_stepsize=pixmap_stepsize, pixmap_order=pixmap_order,
                           n_inputs=len(datasets))
    return drizzle_product(datasets, grid, params, tile=tile, fillval=fillval, weight_type=weight_type,
                           blendheaders=blendheaders and len(datasets) > 1,
                           report_var=enable_err and report_var, compute_err=enable_err)


def resample_single(datasets: Sequence[xr.Dataset], refs: Any = None, *, pixfrac: float = 1.0,
                    kernel: str = "square", fillval: str | float | None = "NAN",
                    weight_type: str | None = "ivm", output_shape: Sequence[int] | None = None,
                    crpix: Sequence[float] | None = None, crval: Sequence[float] | None = None,
                    rotation: float | None = None, pixel_scale_ratio: float = 1.0,
                    pixel_scale: float | None = None, output_wcs: str = "", single: bool = True,
                    blendheaders: bool = True, in_memory: bool = True, enable_ctx: bool = True,
                    enable_err: bool = True, report_var: bool = True, propagate_dq: bool = False,
                    pixmap_stepsize: float = 1.0, pixmap_order: int = 1,
                    tile: int | tuple[int, int] = 512) -> list[xr.Dataset]:
    """jwst's ``ResampleStep(single=True)``: each exposure group (same observation, visit and
    exposure number: the detectors of one exposure) drizzled on its own onto the common output
    grid of all ``datasets``; one i2d Dataset per group, in input order, each named
    ``<first member root>_outlier_i2d.fits`` in its meta. As in jwst, ERR is drizzled like SCI
    (weighted mean of the inputs' ERR [MJy/sr], divided by the pixel scale ratio) and no VAR_*
    arrays are made (``enable_err`` and ``report_var`` have no effect); NDRIZ counts the groups
    drizzled so far (jwst 3.0 does not reset its count between groups) and S_REGION outlines
    all the inputs. Other parameters as :func:`resample_mosaic`; ``single`` must be True."""
    del enable_err, report_var, refs
    if not single:
        msg = "resample_single: single=False makes one mosaic: call resample_mosaic"
        raise ParameterError(msg)
    grid = _grid(datasets, weight_type, False, output_wcs=output_wcs, output_shape=output_shape,
                 pixel_scale_ratio=pixel_scale_ratio, pixel_scale=pixel_scale, rotation=rotation,
                 crpix=crpix, crval=crval)
    if not in_memory:
        log.debug("resample: in_memory=False has no effect (no image is held in memory)")
    out = []
    for n, members in enumerate(exposure_groups(datasets).values()):
        params = DrizzleParams(kernel=kernel, pixfrac=pixfrac, weight_type=weight_type, good_bits=GOOD_BITS,
                               pixel_scale_ratio=grid.pixel_scale_ratio, enable_ctx=enable_ctx,
                               enable_var=False, driz_err=True, propagate_dq=propagate_dq,
                               pixmap_stepsize=pixmap_stepsize, pixmap_order=pixmap_order,
                               n_inputs=len(members))
        out.append(drizzle_product([datasets[k] for k in members], grid, params, tile=tile, fillval=fillval,
                                   weight_type=weight_type, blendheaders=blendheaders, report_var=False,
                                   compute_err=False, filename=single_name(datasets[members[0]]),
                                   footprints=datasets))
        keywords.put(out[-1].attrs["meta"], "resample.pointings", n + 1)
    log.info("resample: %d exposure group(s) drizzled separately onto a %s grid", len(out), grid.shape)
    return out


def exposure_groups(datasets: Sequence[xr.Dataset]) -> dict[str, list[int]]:
    """Indices of ``datasets`` by exposure group id (:func:`group_id`), in input order."""
    groups: dict[str, list[int]] = {}
    for k, ds in enumerate(datasets):
        groups.setdefault(group_id(ds.attrs.get("meta", {})), []).append(k)
    return groups


def single_name(first: xr.Dataset) -> str:
    """``<root>_outlier_i2d.fits``: jwst's name of a group's single-drizzled image, from the
    file name of its first member (``<root>_<suffix>.fits``)."""
    name = posixpath.basename(str(keywords.get(first.attrs.get("meta", {}), "filename", _source(first))))
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, "fits"
    root = "_".join(stem.split("_")[:-1]) or stem
    return f"{root}_outlier_i2d.{ext}"


def _grid(datasets: Sequence[xr.Dataset], weight_type: str | None, enable_err: bool, *, output_wcs: str,
          output_shape: Sequence[int] | None, pixel_scale_ratio: float, pixel_scale: float | None,
          rotation: float | None, crpix: Sequence[float] | None, crval: Sequence[float] | None) -> OutputGrid:
    """Check the inputs and build the common output grid (custom from ``output_wcs``, else jwst's)."""
    if not datasets:
        msg = "resample: no input exposures"
        raise ParameterError(msg)
    for ds in datasets:
        _check_input(ds, weight_type, enable_err)
    shapes = [tuple(int(n) for n in ds.sci.shape) for ds in datasets]
    metas = [ds.attrs.get("meta", {}) for ds in datasets]
    wcses = [ds.attrs["wcs"] for ds in datasets]
    if output_wcs:
        return custom_grid(output_wcs, wcses[0], metas[0], shapes[0], output_shape=output_shape)
    return output_grid(wcses, metas, shapes[0], pixel_scale_ratio=pixel_scale_ratio, pixel_scale=pixel_scale,
                       rotation=rotation, crpix=crpix, crval=crval, output_shape=output_shape,
                       sources=[_source(ds) for ds in datasets])


def drizzle_product(datasets: Sequence[xr.Dataset], grid: OutputGrid, params: DrizzleParams, *,
                    tile: int | tuple[int, int], fillval: str | float | None, weight_type: str | None,
                    blendheaders: bool, report_var: bool, compute_err: bool,
                    filename: str | None = None, footprints: Sequence[xr.Dataset] | None = None) -> xr.Dataset:
    """``datasets`` drizzled together onto ``grid`` as a lazy i2d Dataset tiled by ``tile``
    [pixels]: the arrays of :func:`jwdask.resample.reduce.drizzle_mosaic` with the metadata of
    :func:`i2d_product`."""
    inputs = [input_from_dataset(k, ds) for k, ds in enumerate(datasets)]
    arrays = drizzle_mosaic(inputs, grid, params, tile=tile, fillval=_fill_value(fillval),
                            report_var=report_var, compute_err=compute_err)
    return i2d_product(arrays, datasets, grid, params, fillval=fillval, weight_type=weight_type,
                       blendheaders=blendheaders, filename=filename, footprints=footprints)


def i2d_product(arrays: Mapping[str, da.Array], datasets: Sequence[xr.Dataset], grid: OutputGrid,
                params: DrizzleParams, *, fillval: str | float | None, weight_type: str | None,
                blendheaders: bool, filename: str | None = None,
                footprints: Sequence[xr.Dataset] | None = None) -> xr.Dataset:
    """The i2d Dataset of ``arrays`` (``datasets`` drizzled onto ``grid``) with jwst's output
    metadata: the first input's, blended over the inputs with an ``HDRTAB`` table when
    ``blendheaders``, then the output WCS, S_REGION, exposure times and resample keywords;
    ``filename`` when given. S_REGION is the union of the footprints of ``footprints``
    (default ``datasets``): jwst gives a group's single-drizzled image the union of all the
    exposures resampled onto the grid."""
    metas = [ds.attrs.get("meta", {}) for ds in datasets]
    table = None
    if blendheaders:
        first, table = blend(metas)
    else:
        first = copy.deepcopy(dict(metas[0]))
    outline = [ds.attrs.get("meta", {}) for ds in (footprints if footprints is not None else datasets)]
    meta = _output_meta(first, metas, grid, params, fillval=fillval, weight_type=weight_type, outline=outline)
    if filename:
        meta["filename"] = filename
    out = _i2d_dataset(arrays, grid, meta, datasets[0])
    return out if table is None else with_tables(out, {"HDRTAB": table})


def _source(ds: xr.Dataset) -> str:
    return str(ds.attrs.get("source", keywords.get(ds.attrs.get("meta", {}), "filename", "exposure")))


def _check_input(ds: xr.Dataset, weight_type: str | None, enable_err: bool) -> None:
    source = _source(ds)
    for var in ("sci", "dq"):
        if var not in ds:
            raise InputError(source, var.upper(), "resample needs a cal Dataset with sci, err, dq, var_*")
    if ds.sci.dims != ("y", "x"):
        raise InputError(source, "SCI", f"resample needs a 2-D (y, x) image, not dims {ds.sci.dims}")
    if ds.attrs.get("wcs") is None:
        raise InputError(source, "ASDF meta.wcs", "no WCS: run assign_wcs first")
    if enable_err and weight_type in ("ivm", "ivm-sky") and "var_rnoise" not in ds:
        raise InputError(source, "VAR_RNOISE", "needed to weight the resampled variances (weight_type='ivm')")


def _fill_value(fillval: str | float | None) -> float:
    if fillval is None:
        return float("nan")
    if isinstance(fillval, str):
        text = fillval.strip()
        if text.upper() in ("", "INDEF"):
            return float("nan")
        try:
            return float(text)
        except ValueError:
            msg = f"resample: fillval must be a number, 'NaN' or 'INDEF', not {fillval!r}"
            raise ParameterError(msg) from None
    return float(fillval)


def group_id(meta: Mapping[str, Any]) -> str:
    """The exposure group id (``jw<program><obs><visit>_<visitgrp><seq><act>_<exposure>``)."""
    explicit = keywords.get(meta, "group_id")
    if explicit:
        return str(explicit)
    obs = meta.get("observation", {})
    keys = ("program_number", "observation_number", "visit_number", "visit_group", "sequence_id",
            "activity_id", "exposure_number")
    if not all(k in obs for k in keys):
        return str(keywords.get(meta, "filename", id(meta)))
    return (f"jw{obs['program_number']}{obs['observation_number']}{obs['visit_number']}"
            f"_{obs['visit_group']}{obs['sequence_id']}{obs['activity_id']}_{obs['exposure_number']}")


def _exposure_times(metas: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Header times summed once per exposure group (image3.md §6.5)."""
    seen: dict[str, Mapping[str, Any]] = {}
    for meta in metas:
        seen.setdefault(group_id(meta), meta)
    groups = list(seen.values())

    def values(path: str) -> list[Any]:
        return [keywords.get(m, path) for m in groups]

    exptime = sum(v for v in values("exposure.exposure_time") if v is not None)
    duration = sum(v for v in values("exposure.duration") if v is not None)
    tmeasure = values("exposure.measurement_time")
    starts = [v for v in values("exposure.start_time") if v is not None]
    ends = [v for v in values("exposure.end_time") if v is not None]
    return {
        "exposure.exposure_time": float(exptime),
        "exposure.effective_exposure_time": float(exptime),
        "exposure.duration": float(duration),
        "exposure.elapsed_exposure_time": float(duration),
        "exposure.measurement_time": (float(sum(tmeasure)) if all(v is not None for v in tmeasure) else None),
        "exposure.start_time": min(starts) if starts else None,
        "exposure.end_time": max(ends) if ends else None,
        "resample.pointings": len(groups),
    }


def combined_sregion(metas: Sequence[Mapping[str, Any]], grid: OutputGrid) -> str | None:
    """Union of the inputs' S_REGION polygons clipped to the output bounding box, as an S_REGION.

    Polygons are combined in output pixels and near-duplicate (< 0.05 px) or collinear
    (< 1e-6 rad) vertices dropped, as jwst does. Needs ``shapely``; without it the output
    bounding-box footprint is used.
    """
    bbox = grid.wcs.bounding_box
    (x0, x1), (y0, y1) = bbox.bounding_box(order="F") if bbox is not None else (
        (-0.5, grid.shape[1] - 0.5), (-0.5, grid.shape[0] - 0.5))
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    try:
        import shapely
        from shapely.geometry import Polygon
    except ImportError:
        log.warning("resample: shapely is not installed; S_REGION is the output footprint")
        polygons = [corners]
    else:
        pieces = []
        for meta in metas:
            s_region = keywords.get(meta, "wcsinfo.s_region")
            for fp in sregion_footprints(str(s_region)) if s_region else []:
                x, y = grid.world_to_pixel(fp[:, 0], fp[:, 1])
                pieces.append(Polygon(np.column_stack([x, y])))
        union = shapely.unary_union(pieces)
        window = Polygon(corners)
        polygons = []
        for geom in getattr(union, "geoms", [union]):
            clipped = shapely.intersection(Polygon(_vertices(geom)), window)
            if not clipped.is_empty:
                polygons.append(_vertices(clipped))
    if not polygons:
        return None
    parts = []
    for poly in polygons:
        ra, dec = grid.wcs(poly[:, 0], poly[:, 1], with_bounding_box=False)
        parts.append("POLYGON ICRS  " + " ".join(f"{r:.9f} {d:.9f}" for r, d in zip(ra, dec, strict=True)))
    return "  ".join(parts)


def _vertices(polygon: Any, close: float = 5e-2, angle: float = 1e-6) -> np.ndarray:
    """Exterior vertices of a shapely polygon without near-duplicates and collinear points."""
    xy = np.column_stack(polygon.exterior.coords.xy)[:-1]
    d1 = xy - np.roll(xy, 1, axis=0)
    d2 = np.roll(xy, -1, axis=0) - xy
    m1 = d1[:, 1] / (d1[:, 0] + 1e-12)
    m2 = d2[:, 1] / (d2[:, 0] + 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        turn = np.arctan((m2 - m1) / (1 + m1 * m2))
    drop = ((np.abs(d1[:, 0]) < close) & (np.abs(d1[:, 1]) < close)) | (np.abs(turn) < angle)
    return xy[~drop]


def _output_meta(first: dict[str, Any], metas: Sequence[Mapping[str, Any]], grid: OutputGrid,
                 params: DrizzleParams, *, fillval: Any, weight_type: str | None,
                 outline: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The output metadata: ``first`` (the first input's, or the blended, metadata) with the
    output WCS keywords, S_REGION, exposure times and resample keywords (jwst's
    ``update_output_model``); the sky level is unset (the output is sky-subtracted or not as
    its inputs)."""
    meta = first
    wcsinfo = {k: v for k, v in meta.get("wcsinfo", {}).items()
               if not SIP_KEY.match(k) and k not in POINTING_KEYS}
    wcsinfo.update(grid.wcsinfo())
    meta["wcsinfo"] = wcsinfo
    s_region = combined_sregion(outline, grid)
    if s_region:
        wcsinfo["s_region"] = s_region
    background = {k: v for k, v in meta.pop("background", {}).items() if k not in ("level", "subtracted")}
    if background:
        meta["background"] = background
    values = {
        **_exposure_times(metas),
        "photometry.pixelarea_steradians": grid.pixel_area_sr,
        "photometry.pixelarea_arcsecsq": grid.pixel_area_arcsec2,
        "resample.pixel_scale_ratio": params.pixel_scale_ratio,
        "resample.pixfrac": params.pixfrac,
        "resample.kernel": params.kernel,
        "resample.fillval": str(fillval),
        "resample.weight_type": str(weight_type),
        "cal_step.resample": "COMPLETE",
        "model_type": "ImageModel",
    }
    for path, value in values.items():
        if value is not None:
            keywords.put(meta, path, value)
    return meta


def _i2d_dataset(arrays: Mapping[str, da.Array], grid: OutputGrid, meta: dict[str, Any],
                 first: xr.Dataset) -> xr.Dataset:
    ny, nx = grid.shape
    unit = first.sci.attrs.get("units") or keywords.get(meta, "bunit_data")
    err_unit = first["err"].attrs.get("units") if "err" in first else None
    variables = {}
    for name, data in arrays.items():
        dims = ("plane", "y", "x") if name == "con" else ("y", "x")
        attrs = {}
        if name == "sci" and unit:
            attrs["units"] = unit
        if name == "err" and (err_unit or unit):
            attrs["units"] = err_unit or unit
        variables[name] = xr.DataArray(data, dims=dims, attrs=attrs)
    coords = {"y": np.arange(ny), "x": np.arange(nx)}
    return xr.Dataset(variables, coords=coords,
                      attrs={"meta": meta, "wcs": grid.wcs, "kind": "i2d"})
