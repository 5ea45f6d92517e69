"""resample (image3): drizzle calibrated exposures [MJy/sr] onto one mosaic, the ``_i2d`` (image3.md §6).

Lazy: the returned Dataset's arrays are dask arrays chunked by output tile, each tile reduced
from the (exposure, tile) drizzle tasks of the exposures that reach it, so writing the i2d
stores it tile by tile and no task ever holds the whole mosaic.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from jwdask.errors import InputError, ParameterError
from jwdask.io import keywords
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
    ``crpix`` 0-based) plus ``tile``, the output tile size [pixels]. ``refs`` is unused."""
    if single:
        msg = "resample: single=True (one output per exposure group) is not implemented in jwdask"
        raise NotImplementedError(msg)
    if not datasets:
        msg = "resample: no input exposures"
        raise ParameterError(msg)
    if not in_memory:
        log.debug("resample: in_memory=False has no effect (the mosaic is never held in memory)")
    if blendheaders and len(datasets) > 1:
        log.warning("resample: header blending (HDRTAB) is not implemented; the i2d metadata "
                    "comes from the first exposure plus the combined exposure times")
    for ds in datasets:
        _check_input(ds, weight_type, enable_err)
    first = datasets[0]
    shapes = [tuple(int(n) for n in ds.sci.shape) for ds in datasets]
    metas = [ds.attrs.get("meta", {}) for ds in datasets]
    wcses = [ds.attrs["wcs"] for ds in datasets]
    if output_wcs:
        grid = custom_grid(output_wcs, wcses[0], metas[0], shapes[0], output_shape=output_shape)
    else:
        grid = output_grid(wcses, metas, shapes[0], pixel_scale_ratio=pixel_scale_ratio,
                           pixel_scale=pixel_scale, rotation=rotation, crpix=crpix, crval=crval,
                           output_shape=output_shape, sources=[_source(ds) for ds in datasets])
    params = DrizzleParams(kernel=kernel, pixfrac=pixfrac, weight_type=weight_type, good_bits=GOOD_BITS,
                           pixel_scale_ratio=grid.pixel_scale_ratio, enable_ctx=enable_ctx,
                           enable_var=enable_err, propagate_dq=propagate_dq,
                           pixmap_stepsize=pixmap_stepsize, pixmap_order=pixmap_order,
                           n_inputs=len(datasets))
    inputs = [input_from_dataset(k, ds) for k, ds in enumerate(datasets)]
    arrays = drizzle_mosaic(inputs, grid, params, tile=tile, fillval=_fill_value(fillval),
                            report_var=enable_err and report_var, compute_err=enable_err)
    meta = _output_meta(metas, grid, params, fillval=fillval, weight_type=weight_type)
    return _i2d_dataset(arrays, grid, meta, first)


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


def _output_meta(metas: Sequence[Mapping[str, Any]], grid: OutputGrid, params: DrizzleParams, *,
                 fillval: Any, weight_type: str | None) -> dict[str, Any]:
    meta = copy.deepcopy(dict(metas[0]))
    wcsinfo = {k: v for k, v in meta.get("wcsinfo", {}).items()
               if not SIP_KEY.match(k) and k not in POINTING_KEYS}
    wcsinfo.update(grid.wcsinfo())
    meta["wcsinfo"] = wcsinfo
    s_region = combined_sregion(metas, grid)
    if s_region:
        wcsinfo["s_region"] = s_region
    meta.pop("background", None)
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
