"""Drizzle one input exposure onto one output tile.

The square kernel (jwst's default) runs in :mod:`jwdask.kernels.drizzle`: SCI and the
resampled variances in one pass, without the GIL; other kernels use the ``drizzle`` package's
C kernel, one call per array.

The work unit is an (exposure, output tile) pair. On the client, a coarse evaluation of the
exposure's pixel map (every ``PLAN_STEP`` input pixels) tells which input pixels can reach
each tile; the task then gets only that slab of the input (plus a one-pixel halo, so drop
corners interpolate from the same pixel-map cells as on the whole image) and the same slab of
the exposure's exact pixel map (:func:`exposure_map`, evaluated once per exposure and output
grid) and drizzles it onto a local output array that contains the slab's whole
footprint. Because nothing is clipped at the local array's border, every output pixel of the
tile receives exactly the contributions it receives when the whole exposure is drizzled onto
the whole mosaic (image3.md §6.3); the tile is then cut out.

A task returns its tile compactly: drizzle's float32 weighted mean ``img`` and weight ``wht``,
context bits, and per variance array the float32 resampled variance ``V:<var>``.
:func:`partial_sums` turns that into additive sums (float64): ``wd = Σ f·w·d``, ``w = Σ f·w``,
and per variance ``S = Σ ω²·Ṽ`` and ``Ω = Σ ω`` (image3.md §6.4), which
:mod:`jwdask.resample.reduce` adds; the same arithmetic whatever the tiling.
"""

from __future__ import annotations

import logging
import math
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import astropy.units as u
import numpy as np
from astropy.nddata.bitmask import bitfield_to_boolean_mask
from scipy import interpolate

from jwdask import dqflags
from jwdask.errors import ParameterError
from jwdask.kernels.drizzle import drizzle_square
from jwdask.kernels.flat_field import match_nans_and_flags
from jwdask.resample import scanner

log = logging.getLogger(__name__)

KERNELS = ("square", "gaussian", "point", "turbo", "lanczos2", "lanczos3")
WEIGHT_TYPES = ("ivm", "ivm-sky", "exptime", None)
VARIANCES = ("var_rnoise", "var_flat", "var_poisson")
GOOD_BITS = "~DO_NOT_USE+NON_SCIENCE"
PLAN_STEP = 16
"""Spacing [input pixels] of the coarse pixel map used to plan (exposure, tile) overlaps."""
PLAN_MARGIN = 3.0
"""Extra margin [output pixels] around each coarse cell's footprint (curvature, rounding)."""
MAP_BLOCK = 1 << 18
"""Pixels per block when evaluating an exact pixel map (bounds the WCS temporaries)."""


@dataclass(frozen=True)
class DrizzleParams:
    """Drizzle parameters shared by every input (jwst ResampleStep names and defaults).

    ``pixel_scale_ratio`` is output over input pixel scale: it sizes the non-square kernels
    and divides the variances by its square. ``driz_err`` drizzles ERR like SCI (jwst's
    ``compute_err="driz_err"`` of single-group resampling) instead of deriving it from the
    resampled variances (``enable_var``); the two exclude each other.
    """

    kernel: str = "square"
    pixfrac: float = 1.0
    weight_type: str | None = "ivm"
    good_bits: int | str | None = GOOD_BITS
    pixel_scale_ratio: float = 1.0
    enable_ctx: bool = True
    enable_var: bool = True
    driz_err: bool = False
    propagate_dq: bool = False
    pixmap_stepsize: float = 1.0
    pixmap_order: int = 1
    n_inputs: int = 1

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            msg = f"resample: kernel must be one of {KERNELS}, not {self.kernel!r}"
            raise ParameterError(msg)
        if not 0.0 <= self.pixfrac <= 1.0:
            msg = f"resample: pixfrac must be in [0, 1], not {self.pixfrac}"
            raise ParameterError(msg)
        if self.weight_type not in WEIGHT_TYPES:
            msg = f"resample: weight_type must be one of {WEIGHT_TYPES}, not {self.weight_type!r}"
            raise ParameterError(msg)
        if self.weight_type is None and self.enable_var:
            msg = ("resample: weight_type=None gives no weights to combine the variance arrays "
                   "(jwst 3.0 rejects it too); use 'ivm' or 'exptime', or enable_err=False")
            raise ParameterError(msg)
        if self.pixmap_stepsize > 1 and self.pixmap_order not in (1, 3):
            msg = f"resample: pixmap_order must be 1 or 3, not {self.pixmap_order}"
            raise ParameterError(msg)
        if self.driz_err and self.enable_var:
            msg = "resample: ERR is either drizzled (driz_err) or computed from the variances (enable_var), not both"
            raise ParameterError(msg)
        if self.pixel_scale_ratio <= 0:
            msg = f"resample: pixel_scale_ratio must be > 0, not {self.pixel_scale_ratio}"
            raise ParameterError(msg)

    @property
    def n_planes(self) -> int:
        """Number of 32-bit context planes."""
        return (self.n_inputs - 1) // 32 + 1

    @property
    def reach(self) -> float:
        """How far [output pixels] from its mapped centre an input pixel can deposit flux."""
        s = self.pixel_scale_ratio
        pf = max(self.pixfrac, 1e-3)
        if self.kernel == "square":
            half = math.sqrt(0.5) * pf / s
        elif self.kernel == "turbo":
            half = 0.5 * pf / s
        elif self.kernel == "point" or self.pixfrac <= 0.001:
            half = 0.5
        elif self.kernel == "gaussian":
            half = max(2.5 * pf / 2.3548 / s, 1.2 / s)
        else:
            half = (2 if self.kernel == "lanczos2" else 3) * pf / s + 1.0
        return half + 1.0


@dataclass(frozen=True)
class InputInfo:
    """What the planner and the tasks need to know about one input (no pixel data).

    Attributes
    ----------
    index : int
        Context id (position in the input list).
    wcs : gwcs.WCS
        detector (0-based array pixels) -> world.
    shape : (int, int)
        ``(ny, nx)``.
    xyrange : (int, int, int, int)
        ``(xmin, xmax, ymin, ymax)`` of the pixels drizzled (inclusive; the bounding box).
    level : float or None
        Sky level subtracted before drizzling (``BKGLEVEL`` when ``BKGSUB`` is False).
    tmeasure : float
        Weight of ``weight_type='exptime'`` [s] (``TMEASURE``, else ``EFFEXPTM``).
    """

    index: int
    wcs: Any
    shape: tuple[int, int]
    xyrange: tuple[int, int, int, int]
    level: float | None
    tmeasure: float


@dataclass(frozen=True)
class Overlap:
    """One (input, tile) task: which input pixels, which local output array, which tile.

    ``slab`` is the input slice ``(y0, y1, x0, x1)`` (exclusive ends) including the halo;
    ``driz`` the inclusive ``(xmin, xmax, ymin, ymax)`` drizzled, relative to the slab;
    ``origin``/``shape`` the local output array (global output pixel of its [0, 0]);
    ``tile`` the global ``(y0, y1, x0, x1)`` of the output tile.
    """

    slab: tuple[int, int, int, int]
    driz: tuple[int, int, int, int]
    origin: tuple[int, int]
    shape: tuple[int, int]
    tile: tuple[int, int, int, int]


@dataclass
class CoarseMap:
    """A coarse pixel map of one input: output (x, y) at input nodes ``xs`` x ``ys``."""

    xs: np.ndarray
    ys: np.ndarray
    px: np.ndarray
    py: np.ndarray
    cells: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        corners_x = np.stack([self.px[:-1, :-1], self.px[:-1, 1:], self.px[1:, :-1], self.px[1:, 1:]])
        corners_y = np.stack([self.py[:-1, :-1], self.py[:-1, 1:], self.py[1:, :-1], self.py[1:, 1:]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.cells = np.stack([np.nanmin(corners_x, 0), np.nanmax(corners_x, 0),
                                   np.nanmin(corners_y, 0), np.nanmax(corners_y, 0)])


def input_from_dataset(index: int, ds: Any) -> tuple[InputInfo, dict[str, Any], Any]:
    """``(InputInfo, dask arrays, WCS bounding box)`` of a cal Dataset for
    :func:`jwdask.resample.reduce.drizzle_mosaic` (``index`` is its context id).

    Arrays: ``sci``, ``err``, ``dq``, ``var_rnoise``, ``var_poisson``, ``var_flat``,
    ``var_sky`` (None when absent or not shaped like ``sci``). The sky level ``BKGLEVEL`` is
    subtracted when ``BKGSUB`` is not True; ``TMEASURE`` (else ``EFFEXPTM``) [s] is the
    ``exptime`` weight.
    """
    import dask.array as da

    from jwdask.io import keywords

    meta = ds.attrs.get("meta", {})
    wcs = ds.attrs["wcs"]
    shape = tuple(int(n) for n in ds.sci.shape)
    bbox = getattr(wcs, "bounding_box", None)
    level = keywords.get(meta, "background.level")
    tmeasure = keywords.get(meta, "exposure.measurement_time")
    if tmeasure is None:
        tmeasure = keywords.get(meta, "exposure.exposure_time")
    info = InputInfo(index=index, wcs=wcs, shape=shape, xyrange=resample_range(shape, bbox),
                     level=None if (keywords.get(meta, "background.subtracted") or level is None) else float(level),
                     tmeasure=float(tmeasure) if tmeasure is not None else 1.0)
    arrays = {}
    for name in ("sci", "err", "dq", *VARIANCES, "var_sky"):
        if name in ds and ds[name].shape == ds.sci.shape:
            data = ds[name].data
            arrays[name] = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
        else:
            arrays[name] = None
    return info, arrays, bbox


def resample_range(shape: tuple[int, int], bbox: Any) -> tuple[int, int, int, int]:
    """Inclusive ``(xmin, xmax, ymin, ymax)`` of the input pixels drizzled (jwst's rule)."""
    ny, nx = shape
    if bbox is None:
        return 0, nx - 1, 0, ny - 1
    (x1, x2), (y1, y2) = bbox.bounding_box(order="F") if hasattr(bbox, "bounding_box") else bbox
    xmin, ymin = max(0, int(x1 + 0.5)), max(0, int(y1 + 0.5))
    xmax = max(xmin, min(nx - 1, int(x2 + 0.5)))
    ymax = max(ymin, min(ny - 1, int(y2 + 0.5)))
    return xmin, xmax, ymin, ymax


def map_pixels(wcs: Any, grid_wcs: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output pixel (x, y) of input pixels (x, y): input forward (NaN outside its bounding box),
    then output inverse (no bounding box).

    When every point lies inside the input's bounding box, the forward transform is called
    without it (the box would only copy the inputs and outputs; the values are the same)."""
    return _Mapper(wcs, grid_wcs)(x, y)


class _Mapper:
    """:func:`map_pixels` for repeated calls: the output grid's analytic inverse transform is
    built once (gwcs rebuilds it on every ``invert``); same values as ``grid_wcs.invert``."""

    def __init__(self, wcs: Any, grid_wcs: Any) -> None:
        self.wcs, self.grid_wcs = wcs, grid_wcs
        try:
            inverse = grid_wcs.backward_transform
        except NotImplementedError:
            inverse = None
        self.inverse = None if inverse is None or getattr(inverse, "uses_quantity", True) else inverse

    def __call__(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = _inside_box(self.wcs, x, y)
        ra, dec = self.wcs(x, y, with_bounding_box=not inside)
        if self.inverse is None or isinstance(ra, u.Quantity):
            return self.grid_wcs.invert(ra, dec, with_bounding_box=False)
        return self.inverse(ra, dec, with_bounding_box=False, fill_value=np.nan)


def _inside_box(wcs: Any, x: np.ndarray, y: np.ndarray) -> bool:
    """True when all (x, y) lie inside ``wcs``'s 2-D bounding box (inclusive, as astropy)."""
    bbox = getattr(wcs, "bounding_box", None)
    if bbox is None:
        return True
    try:
        (x1, x2), (y1, y2) = bbox.bounding_box(order="F") if hasattr(bbox, "bounding_box") else bbox
    except (TypeError, ValueError):
        return False
    x, y = np.asarray(x), np.asarray(y)
    if x.size == 0:
        return True
    lo_x, hi_x, lo_y, hi_y = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
    return bool(x.min() >= lo_x and x.max() <= hi_x and y.min() >= lo_y and y.max() <= hi_y)


def coarse_map(info: InputInfo, grid_wcs: Any, step: int = PLAN_STEP) -> CoarseMap:
    """The pixel map of ``info`` on nodes every ``step`` pixels over its drizzled range."""
    xmin, xmax, ymin, ymax = info.xyrange
    xs = np.unique(np.append(np.arange(xmin, xmax + 1, step), xmax))
    ys = np.unique(np.append(np.arange(ymin, ymax + 1, step), ymax))
    gx, gy = np.meshgrid(xs.astype(float), ys.astype(float))
    px, py = map_pixels(info.wcs, grid_wcs, gx, gy)
    return CoarseMap(xs, ys, np.asarray(px, float), np.asarray(py, float))


def plan_overlaps(info: InputInfo, cmap: CoarseMap, tiles: list[tuple[int, int, int, int]],
                  params: DrizzleParams) -> dict[int, Overlap]:
    """The tasks of one input: tile index -> :class:`Overlap` for every tile it can reach."""
    ny, nx = info.shape
    xmin, xmax, ymin, ymax = info.xyrange
    pad = params.reach + PLAN_MARGIN
    cx0, cx1, cy0, cy1 = cmap.cells
    valid = np.isfinite(cx0) & np.isfinite(cy0)
    if not valid.any():
        log.warning("resample: input %d maps nowhere on the output grid", info.index)
        return {}
    fx0, fx1 = np.nanmin(cx0[valid]) - pad, np.nanmax(cx1[valid]) + pad
    fy0, fy1 = np.nanmin(cy0[valid]) - pad, np.nanmax(cy1[valid]) + pad
    out: dict[int, Overlap] = {}
    for t, (ty0, ty1, tx0, tx1) in enumerate(tiles):
        if tx1 - 0.5 < fx0 or tx0 - 0.5 > fx1 or ty1 - 0.5 < fy0 or ty0 - 0.5 > fy1:
            continue
        hit = valid & (cx1 + pad >= tx0 - 0.5) & (cx0 - pad <= tx1 - 0.5) \
            & (cy1 + pad >= ty0 - 0.5) & (cy0 - pad <= ty1 - 0.5)
        if not hit.any():
            continue
        rows, cols = np.nonzero(hit)
        j0, j1, i0, i1 = rows.min(), rows.max(), cols.min(), cols.max()
        x0, x1 = int(cmap.xs[i0]), int(cmap.xs[i1 + 1])
        y0, y1 = int(cmap.ys[j0]), int(cmap.ys[j1 + 1])
        x0, x1 = _at_least_two(x0, x1, xmin, xmax)
        y0, y1 = _at_least_two(y0, y1, ymin, ymax)
        block = (slice(j0, j1 + 1), slice(i0, i1 + 1))
        ok = valid[block]
        ax0 = math.floor(min(np.nanmin(cx0[block][ok]) - pad, tx0))
        ax1 = math.ceil(max(np.nanmax(cx1[block][ok]) + pad, tx1 - 1))
        ay0 = math.floor(min(np.nanmin(cy0[block][ok]) - pad, ty0))
        ay1 = math.ceil(max(np.nanmax(cy1[block][ok]) + pad, ty1 - 1))
        sy0, sy1 = max(0, y0 - 1), min(ny, y1 + 2)
        sx0, sx1 = max(0, x0 - 1), min(nx, x1 + 2)
        out[t] = Overlap(slab=(sy0, sy1, sx0, sx1), driz=(x0 - sx0, x1 - sx0, y0 - sy0, y1 - sy0),
                         origin=(ay0, ax0), shape=(ay1 - ay0 + 1, ax1 - ax0 + 1),
                         tile=(ty0, ty1, tx0, tx1))
    return out


def _at_least_two(lo: int, hi: int, vmin: int, vmax: int) -> tuple[int, int]:
    """Widen ``[lo, hi]`` to >= 2 pixels inside ``[vmin, vmax]`` (the C kernel needs it)."""
    if hi > lo:
        return lo, hi
    return (lo, lo + 1) if lo + 1 <= vmax else (max(vmin, lo - 1), hi)


def stepsize_nodes(info: InputInfo, bbox: Any, params: DrizzleParams) -> dict[str, np.ndarray] | None:
    """The sparse pixel-map nodes jwst interpolates when ``pixmap_stepsize > 1`` (None: exact).

    Returns ``{"xs", "ys", "box"}``: node coordinates and the inclusive ``(xmin, xmax, ymin,
    ymax)`` interpolated; the node values are evaluated by :func:`pixel_map`.
    """
    ny, nx = info.shape
    if bbox is None:
        xmin, xmax, ymin, ymax = 0, nx - 1, 0, ny - 1
    else:
        (bx0, bx1), (by0, by1) = bbox.bounding_box(order="F") if hasattr(bbox, "bounding_box") else bbox
        xmin, xmax = max(0, math.ceil(bx0)), min(nx - 1, math.floor(bx1))
        ymin, ymax = max(0, math.ceil(by0)), min(ny - 1, math.floor(by1))
    width, height = xmax - xmin + 1, ymax - ymin + 1
    step = params.pixmap_stepsize
    if step == 1 or max(width, height) <= 10:
        return None
    npx = max(math.ceil(width / step), min(10, width))
    npy = max(math.ceil(height / step), min(10, height))
    return {"xs": np.linspace(xmin, xmax, npx), "ys": np.linspace(ymin, ymax, npy),
            "box": np.array([xmin, xmax, ymin, ymax])}


def pixel_map(wcs: Any, grid_wcs: Any, slab: tuple[int, int, int, int],
              nodes: Mapping[str, np.ndarray] | None, order: int) -> np.ndarray:
    """The ``(ny, nx, 2)`` pixel map of an input slab onto the global output grid.

    With ``nodes`` (``pixmap_stepsize > 1``) the map is the bicubic/bilinear spline of the
    exposure's sparse nodes, as jwst computes it for the whole image, evaluated on the slab.
    """
    y0, y1, x0, x1 = slab
    if nodes is not None:
        gx, gy = np.meshgrid(nodes["xs"], nodes["ys"])
        cx, cy = map_pixels(wcs, grid_wcs, gx, gy)
        if np.all(np.isfinite(cx)) and np.all(np.isfinite(cy)):
            bx0, bx1, by0, by1 = (int(v) for v in nodes["box"])
            fx = interpolate.RectBivariateSpline(nodes["ys"], nodes["xs"], cx, kx=order, ky=order)
            fy = interpolate.RectBivariateSpline(nodes["ys"], nodes["xs"], cy, kx=order, ky=order)
            out = np.full((y1 - y0, x1 - x0, 2), np.nan)
            ry0, ry1, rx0, rx1 = max(y0, by0), min(y1, by1 + 1), max(x0, bx0), min(x1, bx1 + 1)
            if ry1 > ry0 and rx1 > rx0:
                rows, cols = np.arange(ry0, ry1), np.arange(rx0, rx1)
                out[ry0 - y0:ry1 - y0, rx0 - x0:rx1 - x0, 0] = fx(rows, cols)
                out[ry0 - y0:ry1 - y0, rx0 - x0:rx1 - x0, 1] = fy(rows, cols)
            return out
    out = np.empty((y1 - y0, x1 - x0, 2))
    xs = np.arange(x0, x1, dtype=np.float64)
    rows = max(1, MAP_BLOCK // max(1, x1 - x0))
    mapper = _Mapper(wcs, grid_wcs)
    for r0 in range(y0, y1, rows):
        r1 = min(y1, r0 + rows)
        x, y = np.meshgrid(xs, np.arange(r0, r1, dtype=np.float64))
        px, py = mapper(x, y)
        out[r0 - y0:r1 - y0, :, 0] = px
        out[r0 - y0:r1 - y0, :, 1] = py
    return out


def weight_map(dq: np.ndarray, variances: Mapping[str, np.ndarray | None], info: InputInfo,
               params: DrizzleParams) -> np.ndarray:
    """Per-pixel drizzle weight (float32): good-pixel mask times 1/VAR_RNOISE (``ivm``),
    1/VAR_SKY (``ivm-sky``), TMEASURE (``exptime``) or 1 (None)."""
    good = bitfield_to_boolean_mask(dq, params.good_bits, good_mask_value=1, dtype=np.uint8,
                                    flag_name_map=dqflags.PIXEL)
    if params.weight_type in ("ivm", "ivm-sky"):
        name = "var_rnoise" if params.weight_type == "ivm" else "var_sky"
        var = variances.get(name)
        if var is None:
            log.warning("resample: input %d has no %s; drizzle weights set to 1", info.index, name)
            inv = np.ones(dq.shape, dtype=np.float32)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = 1.0 / var
            inv[~np.isfinite(inv)] = 0
        result = inv * good
    elif params.weight_type == "exptime":
        result = np.float32(info.tmeasure) * good
    else:
        result = good
    return result.astype(np.float32)


def _drizzle(data: np.ndarray, weights: np.ndarray, pixmap: np.ndarray, overlap: Overlap,
             params: DrizzleParams, *, ctx: bool = False, dq: np.ndarray | None = None) -> Any:
    from drizzle.resample import Drizzle

    driz = Drizzle(kernel=params.kernel, fillval="NaN", out_shape=overlap.shape,
                   disable_ctx=not ctx, max_ctx_id=0 if ctx else None)
    xmin, xmax, ymin, ymax = overlap.driz
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Kernel '.*' is not a flux-conserving kernel")
        try:
            driz.add_image(data, exptime=1.0, pixmap=pixmap, iscale=1.0,
                           pixel_scale_ratio=params.pixel_scale_ratio, weight_map=weights, wht_scale=1.0,
                           pixfrac=params.pixfrac, in_units="cps", xmin=xmin, xmax=xmax, ymin=ymin,
                           ymax=ymax, **({"dq": dq} if dq is not None else {}))
        except ValueError as exc:
            if "valid pixels in the pixel map" not in str(exc):
                raise
            return None
    return driz


def _drizzle_all(arrays: list[np.ndarray], weights: np.ndarray, pixmap: np.ndarray, overlap: Overlap,
                 params: DrizzleParams, *, dq: np.ndarray | None = None) -> Any:
    """Drizzle ``arrays`` (same weights) onto the overlap's local output: float32 images
    (NaN where nothing landed), float32 weights, the boolean context and the OR-ed DQ (or
    None); None when no pixel could be drizzled.

    The square kernel runs in one pass over all arrays (:mod:`jwdask.kernels.drizzle`,
    equal to ``drizzle``'s C kernel where the pixel map is finite); other kernels, and pixel
    maps with NaN (where the C code's own pixel selection applies), use ``drizzle``."""
    xmin, xmax, ymin, ymax = overlap.driz
    if params.kernel == "square" and np.isfinite(pixmap[ymin:ymax + 1, xmin:xmax + 1]).all():
        shape = overlap.shape
        images = np.full((len(arrays), *shape), np.nan, dtype=np.float32)
        wht = np.zeros(shape, dtype=np.float32)
        ctx = np.zeros(shape if params.enable_ctx else (0, 0), dtype=bool)
        out_dq = np.zeros(shape if dq is not None else (0, 0), dtype=np.uint32)
        none = np.zeros((0, 0), dtype=np.uint32)
        stack = np.stack([np.asarray(a, dtype=np.float32) for a in arrays])
        drizzle_square(stack, np.asarray(weights, dtype=np.float32), np.ascontiguousarray(pixmap, dtype=np.float64),
                       images, wht, ctx, none if dq is None else np.asarray(dq, dtype=np.uint32), out_dq,
                       xmin, xmax, ymin, ymax, float(params.pixfrac))
        return list(images), wht, ctx, out_dq if dq is not None else None
    first = _drizzle(arrays[0], weights, pixmap, overlap, params, ctx=params.enable_ctx, dq=dq)
    if first is None:
        return None
    images = [first.out_img]
    for extra in arrays[1:]:
        images.append(_drizzle(extra, weights, pixmap, overlap, params).out_img)
    ctx = (first.out_ctx[0] & np.uint32(1)).astype(bool) if params.enable_ctx else None
    return images, first.out_wht, ctx, first.out_dq if dq is not None else None


def drizzle_overlap(sci: np.ndarray, err: np.ndarray | None, dq: np.ndarray,
                    variances: Mapping[str, np.ndarray | None], *, info: InputInfo, overlap: Overlap,
                    params: DrizzleParams, pixmap: np.ndarray,
                    visited: np.ndarray | None = None) -> dict[str, Any]:
    """The compact partial of one input slab on one output tile (see the module docstring).

    ``sci``, ``err``, ``dq`` and ``variances`` (``var_rnoise``, ``var_poisson``, ``var_flat``,
    optionally ``var_sky``; None when absent) are the slab ``overlap.slab`` of the input; NaNs
    and ``DO_NOT_USE`` are first made to agree (jwst's ``match_nans_and_flags``). ``pixmap``
    is the slab's pixel map on the output grid (a slice of :func:`exposure_map`; not
    modified). ``visited`` (:func:`jwdask.resample.scanner.visited_rows` of the exposure map)
    limits the pixels drizzled to those drizzle visits when the input is clipped by the
    mosaic edge.
    Returns the compact partial: float32 ``img``, ``wht``; ``tmeasure`` [s]; uint32 ``con``
    (planes, y, x) when ``enable_ctx``; uint32 ``dq`` when ``propagate_dq``; float32 ``V:<var>``
    when ``enable_var``; float32 ``E``, the drizzled ERR, when ``driz_err`` (see :func:`partial_sums`).
    """
    ty0, ty1, tx0, tx1 = overlap.tile
    ay0, ax0 = overlap.origin
    cut = (slice(ty0 - ay0, ty1 - ay0), slice(tx0 - ax0, tx1 - ax0))
    tshape = (ty1 - ty0, tx1 - tx0)
    pixmap = pixmap.copy()
    pixmap[..., 0] -= ax0
    pixmap[..., 1] -= ay0
    matched = match_nans_and_flags(sci, err if err is not None else np.zeros_like(sci), dq,
                                   variances.get("var_poisson"), variances.get("var_rnoise"),
                                   variances.get("var_flat"))
    sci, err, dq = matched.sci, matched.err, matched.dq
    variances = {**variances, "var_poisson": matched.var_poisson, "var_rnoise": matched.var_rnoise,
                 "var_flat": matched.var_flat}
    weights = weight_map(dq, variances, info, params)
    if visited is not None:
        y0, y1, x0, x1 = overlap.slab
        limits = visited[y0:y1]
        cols = np.arange(x0, x1)[None, :]
        weights = weights * ((cols >= limits[:, :1]) & (cols <= limits[:, 1:]))
    data = sci if info.level is None else sci - info.level
    del matched, sci
    out: dict[str, Any] = {"img": np.zeros(tshape, dtype=np.float32), "wht": np.zeros(tshape, dtype=np.float32),
                           "tmeasure": float(info.tmeasure)}
    if params.enable_ctx:
        out["con"] = np.zeros((params.n_planes, *tshape), dtype=np.uint32)
    if params.propagate_dq:
        out["dq"] = np.zeros(tshape, dtype=np.uint32)
    names = ["img"]
    arrays = [data]
    if params.driz_err:
        names.append("E")
        arrays.append(err)
    if params.enable_var:
        for name in VARIANCES:
            var = variances.get(name)
            if var is not None:
                names.append(f"V:{name}")
                arrays.append(np.sqrt(var))
    del data
    drizzled = _drizzle_all(arrays, weights, pixmap, overlap, params, dq=dq if params.propagate_dq else None)
    if drizzled is None:
        return out
    images, wht, ctx, out_dq = drizzled
    out["wht"] = wht[cut].copy()
    for name, image in zip(names, images, strict=True):
        out[name] = image[cut] ** 2 if name.startswith("V:") else image[cut].copy()
    if params.enable_ctx:
        out["con"][info.index // 32] = ctx[cut].astype(np.uint32) << np.uint32(info.index % 32)
    if params.propagate_dq:
        out["dq"] = out_dq[cut].astype(np.uint32)
    return out


def is_raw(partial: Mapping[str, Any]) -> bool:
    """True for one task's compact partial (float32 ``img``/``wht``/``V:*``), False for sums."""
    return "img" in partial


def partial_sums(partial: Mapping[str, Any], params: DrizzleParams) -> dict[str, np.ndarray]:
    """The additive sums (float64 ``wd``, ``w``, ``we`` (``Σ f·w·err``), ``S:*``, ``W:*``;
    ``con``, ``dq``) of one task's compact partial (see the module docstring); sums pass
    through unchanged."""
    if not is_raw(partial):
        return dict(partial)
    wht = partial["wht"].astype(np.float64)
    out = {"wd": np.where(wht != 0, partial["img"].astype(np.float64) * wht, 0.0), "w": wht}
    if params.driz_err:
        err = partial.get("E")
        out["we"] = np.where(wht != 0, err.astype(np.float64) * wht, 0.0) if err is not None else np.zeros_like(wht)
    for key in ("con", "dq"):
        if key in partial:
            out[key] = partial[key]
    if params.enable_var:
        for name in VARIANCES:
            sw = variance_sums(partial, name, params)
            if sw is not None:
                out[f"S:{name}"], out[f"W:{name}"] = sw
    return out


def variance_sums(partial: Mapping[str, Any], name: str,
                  params: DrizzleParams) -> tuple[np.ndarray, np.ndarray] | None:
    """``(S, Ω)`` of variance ``name`` (``S = ω²·Ṽ``, ``Ω = ω`` where usable) from a partial
    (compact or sums); None when the input has no such variance."""
    if not is_raw(partial):
        s = partial.get(f"S:{name}")
        return None if s is None else (s, partial[f"W:{name}"])
    var = partial.get(f"V:{name}")
    if var is None:
        return None
    if params.weight_type in ("ivm", "ivm-sky"):
        rn = partial.get("V:var_rnoise")
        if rn is None:
            return None
        omega = np.zeros(rn.shape)
        ok = (rn > 0) & np.isfinite(rn)
        omega[ok] = np.reciprocal(rn[ok])
    else:
        omega = np.full(var.shape, float(partial["tmeasure"]))
    use = (var >= 0) & np.isfinite(var) & (omega > 0)
    return np.where(use, var.astype(np.float64) * omega * omega, 0.0), np.where(use, omega, 0.0)


def corner_points(info: InputInfo, grid_wcs: Any) -> list[tuple[float, float] | None]:
    """The input range's four outline corners on the output grid, interpolated like drizzle
    (the 2 x 2 pixel-map cells around the four corners mapped in one call)."""
    ny, nx = info.shape
    outline = list(scanner.corners(info.xyrange))
    origins = [(min(max(int(y), 0), ny - 2), min(max(int(x), 0), nx - 2)) for x, y in outline]
    gx = np.array([[[i0, i0 + 1], [i0, i0 + 1]] for _, i0 in origins], dtype=np.float64)
    gy = np.array([[[j0, j0], [j0 + 1, j0 + 1]] for j0, _ in origins], dtype=np.float64)
    px, py = map_pixels(info.wcs, grid_wcs, gx, gy)
    local = np.stack([np.asarray(px, float), np.asarray(py, float)], axis=-1)
    return [scanner.interpolate_point(local[k], x - i0, y - j0)
            for k, ((x, y), (j0, i0)) in enumerate(zip(outline, origins, strict=True))]


def exposure_map(info: InputInfo, grid_wcs: Any, nodes: Mapping[str, np.ndarray] | None,
                 order: int) -> np.ndarray:
    """The ``(ny, nx, 2)`` pixel map of the whole input on the output grid (NaN outside its
    bounding box): evaluated once per (input, grid) and sliced by the input's drizzle and
    blot tasks, whose values equal those of maps evaluated per slab (every value depends
    on its own pixel only)."""
    ny, nx = info.shape
    return pixel_map(info.wcs, grid_wcs, (0, ny, 0, nx), nodes, order)


def map_token(info: InputInfo, grid_wcs: Any, nodes: Mapping[str, np.ndarray] | None, order: int) -> str:
    """A token of :func:`exposure_map`'s result: the same for inputs and grids whose transforms
    evaluate identically (same models, parameters, tables, bounding box, shape, nodes), so
    that graphs built separately on one grid (outlier detection's median grid and the final
    mosaic's) share one map; a random token when a transform cannot be described."""
    import dask

    try:
        forward = model_token(info.wcs.forward_transform)
        inverse = grid_wcs.backward_transform
        if inverse is None or getattr(inverse, "uses_quantity", True):
            return uuid.uuid4().hex
        backward = model_token(inverse)
    except (NotImplementedError, AttributeError, TypeError):
        return uuid.uuid4().hex
    bbox = getattr(info.wcs, "bounding_box", None)
    return dask.base.tokenize(forward, repr(bbox), backward, info.shape,
                              None if nodes is None else {k: np.asarray(v) for k, v in nodes.items()},
                              order if nodes is not None else None)


def model_token(model: Any) -> str:
    """A deterministic token of what an astropy model evaluates: its tree of operators and,
    per leaf, class, ``repr``, exact parameter values and plain attributes (non-parameter
    arguments such as a mapping, a degree, an axes order; arrays such as lookup tables).
    Raises TypeError for a tree node that is neither a model nor an operator (``fix_inputs``)."""
    import dask
    from astropy.modeling import CompoundModel, Model

    parts: list[Any] = []
    nodes = model.traverse_postorder(include_operator=True) if isinstance(model, CompoundModel) else [model]
    for node in nodes:
        if isinstance(node, str):
            parts.append(node)
            continue
        if not isinstance(node, Model):
            msg = f"cannot describe a {type(node).__name__} node of a compound model"
            raise TypeError(msg)
        plain = {k: v for k, v in sorted(vars(node).items())
                 if isinstance(v, np.ndarray | str | int | float | bool | tuple | list) and k != "_parameters"}
        parts.append((type(node).__module__, type(node).__qualname__, repr(node),
                      np.asarray(node.parameters, dtype=np.float64).tobytes(), node.n_inputs, node.n_outputs, plain))
    return dask.base.tokenize(parts)
