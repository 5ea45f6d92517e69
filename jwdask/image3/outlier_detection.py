"""outlier_detection (imaging): flag cosmic rays and other outliers by comparing each exposure
with the median of all exposure groups (image3.md §5).

Lazy and tile-parallel. Each group is drizzled onto the default mosaic grid with the tiled
engine of :mod:`jwdask.resample` (one task per (exposure, output tile)); each group's weight
threshold is a chain of tile reductions (:mod:`jwdask.kernels.outlier_detection`); the median
is one task per output tile over the group stack; the median is blotted back to every
exposure tile from the output tiles its pixels map into (``drizzle``'s bilinear blot) and the
flags are computed per exposure tile with the 2-pixel halo the derivative and the 3x3
dilation need. With ``resample_data=False`` the median is taken directly over the exposures
(which must then share one pixel grid). No task holds a whole mosaic.

With ``save_intermediate_results``, :func:`detect_outliers` also returns jwst's diagnostic
products (each group's drizzled image, the median, each exposure's blotted median) as lazy
Datasets built on the same dask arrays, so writing them recomputes nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import math
import posixpath
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from jwdask import dqflags
from jwdask.errors import InputError, ParameterError
from jwdask.image3.resample import i2d_product
from jwdask.image3.tweakreg import group_id
from jwdask.io import keywords
from jwdask.kernels import outlier_detection as kern
from jwdask.kernels.flat_field import match_nans_and_flags
from jwdask.resample import (
    DrizzleParams,
    InputInfo,
    OutputGrid,
    drizzle_mosaic,
    output_grid,
)
from jwdask.resample.drizzle import (
    VARIANCES,
    coarse_map,
    resample_range,
    stepsize_nodes,
    weight_map,
)
from jwdask.resample.reduce import pixmap_graph
from jwdask.steps import completed, skipped
from jwdask.tiles import map_tiles, region_task

log = logging.getLogger(__name__)

__all__ = ["DEFAULTS", "Intermediate", "detect_outliers", "outlier_detection"]

DEFAULTS: dict[str, Any] = {
    "weight_type": "ivm", "pixfrac": 1.0, "kernel": "square", "fillval": "NAN", "maskpt": 0.7,
    "snr": "5.0 4.0", "scale": "1.2 0.7", "backg": 0.0, "kernel_size": "7 7", "threshold_percent": 99.8,
    "rolling_window_width": 25, "ifu_second_check": False, "save_intermediate_results": False,
    "resample_data": True, "good_bits": "~DO_NOT_USE", "search_output_file": False, "in_memory": True,
    "pixmap_stepsize": 1.0, "pixmap_order": 1, "tile": 512,
}
"""Parameters and their jwst 3.0 code defaults (image3.md §5.1), plus ``tile``: the output
tile size [pixels]. ``kernel_size``, ``threshold_percent``, ``rolling_window_width`` and
``ifu_second_check`` belong to other modes and are ignored."""

FLAG = dqflags.DO_NOT_USE | dqflags.OUTLIER
HALO = 2
"""Exposure-tile halo [pixels]: 1 for the blot derivative + 1 for the 3x3 dilation."""
BLOT_MARGIN = 5
"""Margin [output pixels] around a tile's coarse pixel-map footprint when choosing median tiles."""


@dataclasses.dataclass(frozen=True)
class Intermediate:
    """One diagnostic product of ``save_intermediate_results``: written by the Image3 stage as
    ``<root>_<asn id>_<suffix>.fits`` (jwst's names), as product ``kind``."""

    root: str
    """File root of the exposure it belongs to (the first exposure for the median)."""
    suffix: str
    """``outlier_i2d`` (one exposure group drizzled), ``median`` or ``blot``."""
    kind: str
    """The :data:`jwdask.io.products.PRODUCTS` layout: ``i2d``, ``median`` or ``blot``."""
    dataset: xr.Dataset
    """The product, lazy (the same dask arrays the flags are computed from)."""


def outlier_detection(datasets: Sequence[xr.Dataset], refs: Any = None, **params: Any) -> list[xr.Dataset]:
    """Flag outliers in calibrated exposures (SCI/ERR in MJy/sr) as ``DO_NOT_USE | OUTLIER``.

    ``params`` as :data:`DEFAULTS` (jwst OutlierDetectionStep names; ``snr`` and ``scale``
    as "first second" strings; ``backg`` in MJy/sr). Returns new Datasets whose ``dq`` has the
    flags and whose SCI, ERR, VAR_* are NaN there (lazy), with ``S_OUTLIR``. ``refs`` is unused.
    ``save_intermediate_results`` needs somewhere to write: use :func:`detect_outliers`.
    """
    if _parameters(params)["save_intermediate_results"]:
        msg = ("outlier_detection: save_intermediate_results makes products to write: call "
               "detect_outliers (which returns them) or run the image3 stage, which writes them")
        raise ParameterError(msg)
    return detect_outliers(datasets, refs, **params)[0]


def detect_outliers(datasets: Sequence[xr.Dataset], refs: Any = None,
                    **params: Any) -> tuple[list[xr.Dataset], list[Intermediate]]:
    """:func:`outlier_detection`, and with ``save_intermediate_results`` jwst's intermediate
    products: per exposure group its drizzled image (``outlier_i2d``: SCI [MJy/sr] and WHT),
    the ``median`` image [MJy/sr] and per exposure the median blotted back (``blot``
    [MJy/sr]); without resampling (``resample_data=False``) only the median."""
    del refs  # imaging outlier detection uses no reference file
    p = _parameters(params)
    datasets = list(datasets)
    for ds in datasets:
        _check_input(ds, p)
    if len(datasets) < 2:
        log.warning("outlier_detection: input only contains %d exposure(s); skipped", len(datasets))
        return [skipped(ds, "outlier_detection", "fewer than two exposures") for ds in datasets], []
    if not p["in_memory"]:
        log.debug("outlier_detection: in_memory=False has no effect (no task holds a whole image stack)")
    snr1, snr2 = _pair(p["snr"], "snr")
    scale1, scale2 = _pair(p["scale"], "scale")
    params_d = DrizzleParams(kernel=p["kernel"], pixfrac=float(p["pixfrac"]), weight_type=p["weight_type"],
                             good_bits=p["good_bits"], enable_ctx=False, enable_var=False,
                             pixmap_stepsize=float(p["pixmap_stepsize"]), pixmap_order=int(p["pixmap_order"]),
                             n_inputs=len(datasets))
    tile = (p["tile"], p["tile"]) if isinstance(p["tile"], int) else tuple(int(t) for t in p["tile"])
    save = bool(p["save_intermediate_results"])
    intermediates = []
    if p["resample_data"]:
        grid, median, groups = resampled_median(datasets, params_d, maskpt=float(p["maskpt"]),
                                                fillval=_fill_value(p["fillval"]), tile=tile)
        params_d = dataclasses.replace(params_d, pixel_scale_ratio=grid.pixel_scale_ratio)
        blots = [blot_median(ds, k, grid, median, params_d) for k, ds in enumerate(datasets)]
        masks = [_resampled_flags(ds, blot, snr1, snr2, scale1, scale2, float(p["backg"]))
                 for ds, blot in zip(datasets, blots, strict=True)]
        if save:
            intermediates = _resampled_intermediates(datasets, grid, median, groups, blots, params_d, p)
    else:
        median = direct_median(datasets, params_d, maskpt=float(p["maskpt"]))
        masks = [_direct_flags(ds, median, snr1) for ds in datasets]
        if save:
            first = datasets[0]
            intermediates = [Intermediate(file_root(first), "median", "median", _image(
                median, copy.deepcopy(dict(first.attrs.get("meta", {}))), first.attrs.get("wcs"), first))]
    return [_apply_flags(ds, mask) for ds, mask in zip(datasets, masks, strict=True)], intermediates


def file_root(ds: xr.Dataset) -> str:
    """``<root>`` of the exposure's ``<root>_<suffix>.fits`` file name."""
    name = posixpath.basename(str(keywords.get(ds.attrs.get("meta", {}), "filename", _source(ds))))
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return "_".join(stem.split("_")[:-1]) or stem


def _resampled_intermediates(datasets: list[xr.Dataset], grid: OutputGrid, median: da.Array,
                             groups: list[tuple[list[int], dict[str, da.Array]]], blots: list[da.Array],
                             params: DrizzleParams, p: Mapping[str, Any]) -> list[Intermediate]:
    """jwst's intermediate products of resampled outlier detection (header blending off; a
    group's image has the metadata of its first exposure with the resample keywords, NDRIZ
    counting the groups drizzled so far and S_REGION outlining all exposures, as jwst 3.0;
    the median has the first group image's metadata; a blot image its exposure's)."""
    out = []
    for n, (members, arrays) in enumerate(groups):
        first = datasets[members[0]]
        name = f"{file_root(first)}_outlier_i2d.fits"
        single = i2d_product(arrays, [datasets[k] for k in members], grid,
                             dataclasses.replace(params, n_inputs=len(members)), fillval=p["fillval"],
                             weight_type=p["weight_type"], blendheaders=False, filename=name, footprints=datasets)
        keywords.put(single.attrs["meta"], "resample.pointings", n + 1)
        out.append(Intermediate(file_root(first), "outlier_i2d", "i2d", single))
        if n == 0:
            meta = copy.deepcopy(single.attrs["meta"])
            out.insert(0, Intermediate(file_root(first), "median", "median",
                                       _image(median, meta, grid.wcs, first)))
    for ds, blot in zip(datasets, blots, strict=True):
        out.append(Intermediate(file_root(ds), "blot", "blot",
                                _image(blot, _blot_meta(ds), ds.attrs.get("wcs"), ds,
                                       coords={k: ds.coords[k] for k in ("y", "x") if k in ds.coords})))
    return out


def _blot_meta(ds: xr.Dataset) -> dict[str, Any]:
    """A blot image's metadata: its exposure's, ERR unit included (jwst copies the exposure's
    metadata, so its ``_blot`` has a header-only ERR extension with BUNIT, and no error array)."""
    meta = copy.deepcopy(dict(ds.attrs.get("meta", {})))
    unit = ds["err"].attrs.get("units")
    if unit:
        meta["bunit_err"] = unit
    return meta


def _image(data: da.Array, meta: dict[str, Any], wcs: Any, like: xr.Dataset,
           coords: Mapping[str, Any] | None = None) -> xr.Dataset:
    """A one-image (``sci``) Dataset with ``like``'s SCI unit."""
    unit = like["sci"].attrs.get("units")
    ny, nx = data.shape
    sci = xr.DataArray(data, dims=("y", "x"), attrs={"units": unit} if unit else {})
    attrs: dict[str, Any] = {"meta": meta}
    if wcs is not None:
        attrs["wcs"] = wcs
    return xr.Dataset({"sci": sci}, coords=dict(coords) if coords is not None else
                      {"y": np.arange(ny), "x": np.arange(nx)}, attrs=attrs)


# ------------------------------------------------------------------------------ parameters and input

def _parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ParameterError(f"unknown outlier_detection parameter(s) {unknown}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if p["weight_type"] not in ("ivm", "exptime"):
        raise ParameterError(f"outlier_detection weight_type={p['weight_type']!r}: choose 'ivm' or 'exptime'")
    if p["kernel"] not in ("square", "point", "turbo"):
        raise ParameterError(f"outlier_detection kernel={p['kernel']!r}: choose 'square', 'point' or 'turbo'")
    if not 0.0 <= float(p["pixfrac"]) <= 1.0:
        raise ParameterError(f"outlier_detection pixfrac={p['pixfrac']!r} must be in [0, 1]")
    if int(p["pixmap_order"]) not in (1, 3):
        raise ParameterError(f"outlier_detection pixmap_order={p['pixmap_order']!r} must be 1 or 3")
    return p


def _pair(text: str, name: str) -> tuple[float, float]:
    try:
        first, second = (float(v) for v in str(text).split())
    except ValueError:
        raise ParameterError(f"outlier_detection {name}={text!r} must be two numbers, e.g. '5.0 4.0'") from None
    return first, second


def _fill_value(fillval: str | float | None) -> float:
    if fillval is None or (isinstance(fillval, str) and fillval.strip().upper() in ("", "INDEF")):
        return float("nan")
    try:
        return float(fillval)
    except ValueError:
        raise ParameterError(f"outlier_detection fillval={fillval!r} must be a number, 'NaN' or 'INDEF'") from None


def _source(ds: xr.Dataset) -> str:
    return str(ds.attrs.get("source", keywords.get(ds.attrs.get("meta", {}), "filename", "exposure")))


def _check_input(ds: xr.Dataset, p: Mapping[str, Any]) -> None:
    for var in ("sci", "err", "dq"):
        if var not in ds:
            raise InputError(_source(ds), var.upper(), "outlier_detection needs a cal Dataset with sci, err, dq")
    if ds["sci"].dims != ("y", "x"):
        raise InputError(_source(ds), "SCI", f"imaging outlier detection needs (y, x) images, not {ds['sci'].dims}")
    if p["resample_data"] and ds.attrs.get("wcs") is None:
        raise InputError(_source(ds), "ASDF meta.wcs", "no WCS: run assign_wcs first")


def _as_dask(var: xr.DataArray) -> da.Array:
    return var.data if isinstance(var.data, da.Array) else da.from_array(np.asarray(var.data))


def _input_info(index: int, ds: xr.Dataset) -> InputInfo:
    meta = ds.attrs.get("meta", {})
    wcs = ds.attrs.get("wcs")
    shape = tuple(int(n) for n in ds["sci"].shape)
    level = keywords.get(meta, "background.level")
    subtracted = keywords.get(meta, "background.subtracted")
    tmeasure = keywords.get(meta, "exposure.measurement_time")
    if tmeasure is None:
        tmeasure = keywords.get(meta, "exposure.exposure_time")
    bbox = getattr(wcs, "bounding_box", None) if wcs is not None else None
    return InputInfo(index=index, wcs=wcs, shape=shape, xyrange=resample_range(shape, bbox),
                     level=None if (subtracted or level is None) else float(level),
                     tmeasure=float(tmeasure) if tmeasure is not None else 1.0)


def _arrays(ds: xr.Dataset) -> dict[str, da.Array | None]:
    names = ("sci", "err", "dq", *VARIANCES, "var_sky")
    return {n: (_as_dask(ds[n]) if n in ds and ds[n].shape == ds["sci"].shape else None) for n in names}


# ------------------------------------------------------------------------------ weight threshold

def weight_threshold(weight: da.Array, maskpt: float) -> Any:
    """Delayed ``maskpt * mean(sigma_clip(W[finite & W != 0], 3 sigma, 5 iterations))`` (a 0-d
    float64 array) of a tiled weight image, as a chain of tile reductions (no task sees more than one tile)."""
    # Not optimized: an optimized copy of the weight image's graph would have fused, renamed
    # tasks, so the drizzle behind it would run again for the median.
    tiles = list(weight.to_delayed(optimize_graph=False).ravel())

    def moments(state: Any) -> Any:
        parts = [dask.delayed(_tile_moments, pure=True)(t, state) for t in tiles]
        return _tree(_merge_moments, parts)

    state = dask.delayed(kern.start_clip, pure=True)(moments(None))
    for _ in range(kern.MAXITERS):
        bins = dask.delayed(kern.median_bins, pure=True)(state)
        lows = [dask.delayed(_tile_low, pure=True)(t, state, bins) for t in tiles]
        bounded = dask.delayed(kern.clip_bounds, pure=True)(state, bins, _tree(_sum, lows))
        previous = dask.delayed(_moments_of, pure=True)(state)
        state = dask.delayed(kern.advance_clip, pure=True)(previous, bounded, moments(bounded))
    return dask.delayed(_threshold_array, pure=True)(state, maskpt)


def _threshold_array(state: kern.ClipState, maskpt: float) -> np.ndarray:
    return np.asarray(kern.weight_threshold(state, maskpt), dtype=np.float64)


def _tile_moments(weight: np.ndarray, state: kern.ClipState | None) -> kern.Moments | None:
    if state is None:
        return kern.tile_moments(weight, np.float32(-np.inf), np.float32(np.inf))
    if state.done:
        return None
    return kern.tile_moments(weight, state.lo, state.hi)


def _tile_low(weight: np.ndarray, state: kern.ClipState, bins: tuple[int, ...]) -> np.ndarray:
    return kern.tile_low_hist(weight, state.lo, state.hi, bins)


def _moments_of(state: kern.ClipState) -> kern.Moments:
    return state.moments


def _sum(*parts: np.ndarray) -> np.ndarray:
    return np.sum(np.stack(parts), axis=0)


def _merge_moments(*parts: kern.Moments | None) -> kern.Moments | None:
    present = [q for q in parts if q is not None]
    return kern.merge_moments(*present) if present else None


def _tree(merge: Any, parts: list[Any], split_every: int = 8) -> Any:
    """Delayed tree combination of ``parts`` with ``merge`` (``split_every`` at a time)."""
    while len(parts) > 1:
        parts = [dask.delayed(merge, pure=True)(*parts[i:i + split_every])
                 for i in range(0, len(parts), split_every)]
    return parts[0]


# ------------------------------------------------------------------------------ medians

def resampled_median(datasets: Sequence[xr.Dataset], params: DrizzleParams, *, maskpt: float, fillval: float,
                     tile: tuple[int, int]) -> tuple[OutputGrid, da.Array,
                                                     list[tuple[list[int], dict[str, da.Array]]]]:
    """The default mosaic grid, the tiled nan-median [MJy/sr] of the exposure groups drizzled
    onto it, each group masked below its weight threshold, and per group its member indices
    and drizzled arrays (``sci`` [MJy/sr], ``wht``)."""
    shapes = [tuple(int(n) for n in ds["sci"].shape) for ds in datasets]
    metas = [ds.attrs.get("meta", {}) for ds in datasets]
    grid = output_grid([ds.attrs["wcs"] for ds in datasets], metas, shapes[0],
                       sources=[_source(ds) for ds in datasets])
    params = dataclasses.replace(params, pixel_scale_ratio=grid.pixel_scale_ratio)
    groups = [group_id(ds) for ds in datasets]
    scis, whts, thresholds, drizzled = [], [], [], []
    for gid in dict.fromkeys(groups):
        members = [k for k, g in enumerate(groups) if g == gid]
        inputs = [(_input_info(k, datasets[k]), _arrays(datasets[k]),
                   getattr(datasets[k].attrs["wcs"], "bounding_box", None)) for k in members]
        arrays = drizzle_mosaic(inputs, grid, params, tile=tile, fillval=fillval, report_var=False, compute_err=False)
        scis.append(arrays["sci"])
        whts.append(arrays["wht"])
        thresholds.append(da.from_delayed(weight_threshold(arrays["wht"], maskpt), shape=(), dtype=np.float64))
        drizzled.append((members, arrays))
    log.info("outlier_detection: median of %d group(s) on a %s grid", len(scis), grid.shape)
    return grid, _median(scis, whts, thresholds), drizzled


def direct_median(datasets: Sequence[xr.Dataset], params: DrizzleParams, *, maskpt: float) -> da.Array:
    """Tiled nan-median [MJy/sr] of the exposures themselves (``resample_data=False``), each
    masked below its weight threshold; all exposures must have one shape."""
    shape = datasets[0]["sci"].shape
    chunks = datasets[0]["sci"].chunks or tuple((n,) for n in shape)
    scis, whts, thresholds = [], [], []
    for k, ds in enumerate(datasets):
        if ds["sci"].shape != shape:
            raise InputError(_source(ds), "SCI", f"shape {ds['sci'].shape} differs from {shape}: "
                             "resample_data=False needs exposures on one pixel grid")
        info = _input_info(k, ds)
        arrays = {n: (a.rechunk(chunks) if a is not None else None) for n, a in _arrays(ds).items()}
        wht = da.map_blocks(_weights, arrays["dq"], arrays["var_rnoise"] if arrays["var_rnoise"] is not None
                            else da.ones(shape, dtype=np.float32, chunks=chunks),
                            arrays["var_rnoise"] is not None, info, params, dtype=np.float32)
        scis.append(arrays["sci"])
        whts.append(wht)
        thresholds.append(da.from_delayed(weight_threshold(wht, maskpt), shape=(), dtype=np.float64))
    return _median(scis, whts, thresholds)


def _weights(dq: np.ndarray, var_rnoise: np.ndarray, has_var: bool, info: InputInfo,
             params: DrizzleParams) -> np.ndarray:
    return weight_map(dq, {"var_rnoise": var_rnoise if has_var else None}, info, params)


def _median(scis: list[da.Array], whts: list[da.Array], thresholds: list[da.Array]) -> da.Array:
    return da.blockwise(kern.masked_median, "yx", da.stack(scis), "gyx", da.stack(whts), "gyx",
                        da.stack(thresholds), "g", dtype=np.float32, concatenate=True)


# ------------------------------------------------------------------------------ blot and flags

def blot_median(ds: xr.Dataset, index: int, grid: OutputGrid, median: da.Array,
                params: DrizzleParams) -> da.Array:
    """The median blotted onto the exposure's pixels, a dask array tiled like its SCI; the
    exposure's pixel map is the task that drizzled it onto the median grid
    (:func:`jwdask.resample.reduce.pixmap_graph`)."""
    info = _input_info(index, ds)
    bbox = getattr(ds.attrs["wcs"], "bounding_box", None)
    nodes = stepsize_nodes(info, bbox, params)
    cmap = coarse_map(info, grid.wcs)
    map_key, map_layer = pixmap_graph(info, grid.wcs, nodes, params.pixmap_order)
    ychunks, xchunks = _as_dask(ds["sci"]).chunks
    ny, nx = grid.shape
    name = f"outlier-blot-{tokenize(map_key, median.name, ychunks, xchunks)}"
    layer: dict[Any, Any] = dict(map_layer)
    for i, (y0, dy) in enumerate(zip(itertools.accumulate((0, *ychunks[:-1])), ychunks, strict=True)):
        for j, (x0, dx) in enumerate(zip(itertools.accumulate((0, *xchunks[:-1])), xchunks, strict=True)):
            slab = (y0, y0 + dy, x0, x0 + dx)
            window = _patch_window(cmap, slab, (ny, nx))
            if window is None:
                layer[(name, i, j)] = (np.full, (dy, dx), np.nan, np.float32)
                continue
            layer[(name, i, j)] = (_blot_tile, region_task(median, *window), map_key, slab, window, (ny, nx))
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[median])
    return da.Array(graph, name, (ychunks, xchunks), dtype=np.float32)


def _patch_window(cmap: Any, slab: tuple[int, int, int, int], grid_shape: tuple[int, int]
                  ) -> tuple[int, int, int, int] | None:
    """Median rows/columns ``(y0, y1, x0, x1)`` an exposure slab can map into (None: none)."""
    y0, y1, x0, x1 = slab
    cx0, cx1, cy0, cy1 = cmap.cells
    iy = np.nonzero((cmap.ys[1:] >= y0) & (cmap.ys[:-1] <= y1 - 1))[0]
    ix = np.nonzero((cmap.xs[1:] >= x0) & (cmap.xs[:-1] <= x1 - 1))[0]
    if iy.size == 0 or ix.size == 0:
        return None
    block = (slice(iy[0], iy[-1] + 1), slice(ix[0], ix[-1] + 1))
    ok = np.isfinite(cx0[block]) & np.isfinite(cy0[block])
    if not ok.any():
        return None
    ny, nx = grid_shape
    ax0 = max(0, math.floor(np.min(cx0[block][ok])) - BLOT_MARGIN)
    ax1 = min(nx, math.floor(np.max(cx1[block][ok])) + BLOT_MARGIN + 2)
    ay0 = max(0, math.floor(np.min(cy0[block][ok])) - BLOT_MARGIN)
    ay1 = min(ny, math.floor(np.max(cy1[block][ok])) + BLOT_MARGIN + 2)
    if ax1 <= ax0 or ay1 <= ay0:
        return None
    return ay0, ay1, ax0, ax1


def _blot_tile(patch: np.ndarray, exposure_map: np.ndarray, slab: tuple[int, int, int, int],
               window: tuple[int, int, int, int], grid_shape: tuple[int, int]) -> np.ndarray:
    """Blot one exposure tile from a median patch, exactly as blotting the whole median.

    ``exposure_map`` is the whole exposure's pixel map on the median grid. The slab's map is
    rounded to float32 (drizzle's interpolation precision) before the integer shift to patch
    coordinates, so interpolation weights are unchanged; points off the median grid, or NaN,
    stay off the patch.
    """
    sy0, sy1, sx0, sx1 = slab
    pixmap = exposure_map[sy0:sy1, sx0:sx1].astype(np.float32).astype(np.float64)
    py0, py1, px0, px1 = window
    ny, nx = grid_shape
    x, y = pixmap[..., 0], pixmap[..., 1]
    with np.errstate(invalid="ignore"):
        on_grid = (x >= 0) & (x < nx) & (y >= 0) & (y < ny)
    if on_grid.any():
        fx, fy = np.floor(x[on_grid]), np.floor(y[on_grid])
        if (fx.min() < px0 or fy.min() < py0 or (fx.max() + 1 >= px1 and px1 != nx)
                or (fy.max() + 1 >= py1 and py1 != ny)):
            msg = (f"outlier_detection: exposure pixels {slab} map outside the planned median window "
                   f"{window}; the WCS is too non-linear for the coarse pixel map")
            raise RuntimeError(msg)
    local = np.full_like(pixmap, np.nan)
    local[..., 0] = np.where(on_grid, x - px0, np.where(np.isfinite(x), -1.0, np.nan))
    local[..., 1] = np.where(on_grid, y - py0, np.where(np.isfinite(y), -1.0, np.nan))
    return kern.blot(patch, local)


def _resampled_flags(ds: xr.Dataset, blot: da.Array, snr1: float, snr2: float, scale1: float, scale2: float,
                     backg: float) -> xr.DataArray:
    meta = ds.attrs.get("meta", {})
    level = keywords.get(meta, "background.level")
    if keywords.get(meta, "background.subtracted") is False and level is not None:
        backg = float(level)
    blotted = xr.DataArray(blot, dims=("y", "x"))
    out = map_tiles(_flag_tile, [ds["sci"], ds["err"], blotted], {"mask": (("y", "x"), bool)}, like=ds["sci"],
                    depth=HALO, name=f"outlier-flags-{uuid.uuid4().hex}", snr1=snr1, snr2=snr2, scale1=scale1,
                    scale2=scale2, backg=backg)
    return out["mask"]


def _flag_tile(sci: np.ndarray, err: np.ndarray, blotted: np.ndarray, *, halo: tuple[int, int, int, int],
               snr1: float, snr2: float, scale1: float, scale2: float, backg: float) -> dict[str, np.ndarray]:
    del halo  # the kernel treats the halo like any neighbour; map_tiles trims it
    return {"mask": kern.flag_resampled(sci, err, blotted, snr1, snr2, scale1, scale2, backg)}


def _direct_flags(ds: xr.Dataset, median: da.Array, snr: float) -> xr.DataArray:
    sci = _as_dask(ds["sci"])
    mask = da.map_blocks(kern.flag_direct, sci, _as_dask(ds["err"]).rechunk(sci.chunks),
                         median.rechunk(sci.chunks), snr, dtype=bool)
    return xr.DataArray(mask, dims=("y", "x"))


def _apply_flags(ds: xr.Dataset, mask: xr.DataArray) -> xr.Dataset:
    """``dq |= DO_NOT_USE | OUTLIER`` where flagged, then NaNs and DO_NOT_USE made to agree."""
    names = [n for n in ("sci", "err", "dq", *VARIANCES) if n in ds and ds[n].shape == ds["sci"].shape]
    inputs = [ds[n] for n in names] + [mask]
    out = map_tiles(_flag_arrays, inputs, {n: (("y", "x"), ds[n].dtype) for n in names}, like=ds["sci"],
                    name=f"outlier-apply-{uuid.uuid4().hex}", names=tuple(names))
    variables = {n: ds[n].copy(data=out[n].data) for n in names}
    return completed(ds, "outlier_detection", variables)


def _flag_arrays(*blocks: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    arrays = dict(zip(names, blocks[:-1], strict=True))
    mask = blocks[-1]
    dq = arrays["dq"] | (mask.astype(np.uint32) * np.uint32(FLAG))
    result = match_nans_and_flags(arrays["sci"], arrays["err"], dq, arrays.get("var_poisson"),
                                  arrays.get("var_rnoise"), arrays.get("var_flat"))
    out = {"sci": result.sci, "err": result.err, "dq": result.dq}
    for name in VARIANCES:
        if name in arrays:
            out[name] = getattr(result, name)
    return out
