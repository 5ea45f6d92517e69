"""Tree-reduce the per-(input, tile) drizzle partials into the final mosaic arrays.

Graph shape, per output tile: one :func:`jwdask.resample.drizzle.drizzle_overlap` task per
input that reaches the tile (a compact float32 partial), combined ``split_every`` at a time
into float64 sums (OR for context and DQ bits), then one finalising task that turns them into
SCI, WHT, CON, ERR, VAR_* (float32, as jwst stores them; image3.md §6.3-6.4). Tiles no input
reaches are constant fill chunks. Every task holds at most one tile (plus one input slab),
except that each input's pixel map is evaluated once, on the whole input, by one task
(:func:`pixmap_graph`) whose result its drizzle tasks slice (and, when the input is clipped by
the mosaic edge, one task scanning the pixels drizzle visits); outlier detection's blot uses
the same task. The mosaic only exists as a dask array chunked by tile.
"""

from __future__ import annotations

import functools
import logging
import uuid
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from jwdask.resample import scanner
from jwdask.resample.drizzle import (
    VARIANCES,
    CoarseMap,
    DrizzleParams,
    InputInfo,
    coarse_map,
    corner_points,
    drizzle_overlap,
    exposure_map,
    is_raw,
    map_token,
    partial_sums,
    plan_overlaps,
    stepsize_nodes,
    variance_sums,
)
from jwdask.resample.grid import OutputGrid
from jwdask.tiles import region_task

log = logging.getLogger(__name__)

OR_KEYS = ("con", "dq")
SLAB_ARRAYS = ("sci", "err", "dq", "var_rnoise", "var_poisson", "var_flat", "var_sky")


def combine(*partials: Mapping[str, Any], params: DrizzleParams) -> dict[str, np.ndarray]:
    """Sum partials (compact ones first turned into sums; bitwise OR for ``con`` and ``dq``);
    keys missing in some are kept."""
    out: dict[str, np.ndarray] = {}
    for part in partials:
        for key, value in partial_sums(part, params).items():
            if key not in out:
                out[key] = value.copy()
            elif key in OR_KEYS:
                out[key] |= value
            else:
                out[key] += value
    return out


def finalize(partial: Mapping[str, np.ndarray], shape: tuple[int, int], fillval: float,
             params: DrizzleParams, report_var: bool, compute_err: bool) -> dict[str, np.ndarray]:
    """Final tile arrays from summed partials.

    ``sci = Σfwd / Σfw`` (``fillval`` where the weight is 0), ``wht = Σfw``, ``con`` bits,
    ``var_* = S / psr² / Ω²`` (NaN where Ω = 0), ``err = sqrt(nansum(var_*))`` (NaN where all
    are NaN), or with ``driz_err`` ``err = Σfwe / Σfw / psr`` (``fillval / psr`` where the
    weight is 0). Units: SCI/ERR as the inputs' SCI (MJy/sr), VAR_* squared.
    """
    if is_raw(partial):
        w = partial["wht"].astype(np.float64)
        wd = np.where(w != 0, partial["img"].astype(np.float64) * w, 0.0)
        we = np.where(w != 0, partial["E"].astype(np.float64) * w, 0.0) if "E" in partial else None
    else:
        w, wd, we = partial.get("w", np.zeros(shape)), partial.get("wd", np.zeros(shape)), partial.get("we")
    wht = w.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sci = np.where(wht != 0, wd / w, fillval).astype(np.float32)
        if params.driz_err:
            mean_err = np.where(wht != 0, (we if we is not None else np.zeros(shape)) / w, fillval)
            err = (mean_err.astype(np.float32) / np.float32(params.pixel_scale_ratio)).astype(np.float32)
    del w, wd, we
    out = {"sci": sci, "wht": wht}
    if params.driz_err:
        out["err"] = err
    if params.enable_ctx:
        con = partial.get("con", np.zeros((params.n_planes, *shape), dtype=np.uint32))
        out["con"] = con.view(np.int32)
    if params.propagate_dq:
        out["dq"] = partial.get("dq", np.zeros(shape, dtype=np.uint32))
    if params.enable_var:
        scale = 1.0 / params.pixel_scale_ratio**2
        variances = {}
        for name in VARIANCES:
            sw = variance_sums(partial, name, params)
            if sw is None:
                variances[name] = np.full(shape, np.nan, dtype=np.float32)
                continue
            s, omega = sw
            with np.errstate(divide="ignore", invalid="ignore"):
                variances[name] = np.where(omega > 0, s * scale / omega / omega, np.nan).astype(np.float32)
            del s, omega, sw
        if compute_err:
            stack = np.stack([variances[n] for n in VARIANCES])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                err = np.sqrt(np.nansum(stack, axis=0)).astype(np.float32)
            err[np.all(np.isnan(stack), axis=0)] = np.nan
            out["err"] = err
        if report_var:
            out.update(variances)
    return out


def tile_bounds(shape: tuple[int, int], tile: tuple[int, int]) -> tuple[tuple[tuple[int, ...], tuple[int, ...]],
                                                                       list[tuple[int, int, int, int]]]:
    """Dask chunks ``(ychunks, xchunks)`` and the ``(y0, y1, x0, x1)`` of every tile (row-major)."""
    ny, nx = shape
    ty, tx = tile
    ychunks = tuple(min(ty, ny - y) for y in range(0, ny, ty))
    xchunks = tuple(min(tx, nx - x) for x in range(0, nx, tx))
    tiles = [(y, min(y + ty, ny), x, min(x + tx, nx)) for y in range(0, ny, ty) for x in range(0, nx, tx)]
    return (ychunks, xchunks), tiles


def drizzle_mosaic(inputs: Sequence[tuple[InputInfo, Mapping[str, da.Array | None], Any]], grid: OutputGrid,
                   params: DrizzleParams, *, tile: int | tuple[int, int] = 512, fillval: float = np.nan,
                   report_var: bool = True, compute_err: bool = True,
                   split_every: int = 4) -> dict[str, da.Array]:
    """Lazy mosaic arrays of ``inputs`` drizzled onto ``grid``, chunked by output tile.

    Parameters
    ----------
    inputs : sequence of (InputInfo, arrays, bbox)
        Per input: its description, its dask arrays on ``(y, x)`` (``sci``, ``dq``,
        ``var_rnoise``, ``var_poisson``, ``var_flat``, ``var_sky``; None when absent) and its
        WCS bounding box (for ``pixmap_stepsize``).
    grid : OutputGrid
        The output grid.
    params : DrizzleParams
        Drizzle parameters.
    tile : int or (int, int)
        Output tile size [pixels].
    fillval : float
        SCI value where no input contributes.

    Returns
    -------
    dict of dask arrays
        ``sci``, ``wht`` (y, x) float32; ``con`` (plane, y, x) int32 if ``enable_ctx``;
        ``err`` and ``var_*`` float32 if ``enable_var`` (``var_*`` only with ``report_var``);
        ``dq`` uint32 if ``propagate_dq``.
    """
    tile_yx = (tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1]))
    chunks, tiles = tile_bounds(grid.shape, tile_yx)
    token = dask.base.tokenize([(i.index, {k: None if a is None else a.name for k, a in arrs.items()})
                                for i, arrs, _ in inputs], grid.shape, tile_yx, params, fillval,
                               report_var, compute_err, uuid.uuid4().hex)
    grid_key = f"resample-grid-wcs-{token}"
    layer: dict[Any, Any] = {grid_key: grid.wcs}
    dependencies: list[da.Array] = []
    per_tile: dict[int, list[Any]] = {}
    for info, arrays, bbox in inputs:
        cmap: CoarseMap = coarse_map(info, grid.wcs)
        overlaps = plan_overlaps(info, cmap, tiles, params)
        log.debug("resample: input %d reaches %d of %d tiles", info.index, len(overlaps), len(tiles))
        nodes = stepsize_nodes(info, bbox, params)
        info_key = f"resample-input-{info.index}-{token}"
        layer[info_key] = info
        map_key = visited_key = None
        if overlaps:
            map_key, map_layer = pixmap_graph(info, grid.wcs, nodes, params.pixmap_order)
            layer.update(map_layer)
            if scanner.needs_scan(corner_points(info, grid.wcs), grid.shape, margin=1e-6):
                visited_key = f"resample-visited-{map_key.rsplit('-', 1)[-1]}-{dask.base.tokenize(grid.shape)}"
                layer[visited_key] = (scanner.visited_rows, map_key, info.xyrange, grid.shape)
        for t, ov in overlaps.items():
            y0, y1, x0, x1 = ov.slab
            keys = []
            for name in SLAB_ARRAYS:
                arr = arrays.get(name)
                if arr is None:
                    keys.append(None)
                    continue
                if not any(arr is d for d in dependencies):
                    dependencies.append(arr)
                keys.append(region_task(arr, y0, y1, x0, x1))
            key = (f"resample-partial-{token}", info.index, t)
            layer[key] = (_partial, *keys, info_key, ov, params, map_key, visited_key)
            per_tile.setdefault(t, []).append(key)
    finals = {}
    for t, parts in per_tile.items():
        level = 0
        while len(parts) > 1:
            level += 1
            merged = []
            for n, i in enumerate(range(0, len(parts), split_every)):
                group = parts[i:i + split_every]
                if len(group) == 1:
                    merged.extend(group)
                    continue
                key = (f"resample-combine-{token}", t, level, n)
                layer[key] = (functools.partial(combine, params=params), *group)
                merged.append(key)
            parts = merged
        ty0, ty1, tx0, tx1 = tiles[t]
        key = (f"resample-final-{token}", t)
        layer[key] = (_final, parts[0], grid_key, (ty1 - ty0, tx1 - tx0), fillval, params, report_var, compute_err)
        finals[t] = key
    return _assemble(layer, dependencies, finals, tiles, chunks, params, token=token, fillval=fillval,
                     report_var=report_var, compute_err=compute_err)


def pixmap_graph(info: InputInfo, grid_wcs: Any, nodes: Mapping[str, np.ndarray] | None,
                 order: int) -> tuple[str, dict[str, Any]]:
    """``(key, graph)``: the one task evaluating :func:`jwdask.resample.drizzle.exposure_map`
    of ``info`` on ``grid_wcs``. The key is :func:`jwdask.resample.drizzle.map_token`, so
    graphs built separately on the same grid (outlier detection and the final mosaic) merge
    into one evaluation when computed together."""
    key = f"resample-pixmap-{map_token(info, grid_wcs, nodes, order)}"
    return key, {key: (exposure_map, info, grid_wcs, nodes, order)}


def _partial(sci: np.ndarray, err: np.ndarray | None, dq: np.ndarray, var_rnoise: np.ndarray | None,
             var_poisson: np.ndarray | None, var_flat: np.ndarray | None, var_sky: np.ndarray | None,
             info: InputInfo, overlap: Any, params: DrizzleParams, pixmap: np.ndarray,
             visited: np.ndarray | None) -> dict[str, np.ndarray]:
    variances = {"var_rnoise": var_rnoise, "var_poisson": var_poisson, "var_flat": var_flat, "var_sky": var_sky}
    y0, y1, x0, x1 = overlap.slab
    return drizzle_overlap(sci, err, dq, variances, info=info, overlap=overlap, params=params,
                           pixmap=pixmap[y0:y1, x0:x1], visited=visited)


def _fields(params: DrizzleParams, report_var: bool, compute_err: bool) -> dict[str, tuple[np.dtype, float]]:
    fields = {"sci": (np.dtype(np.float32), None), "wht": (np.dtype(np.float32), 0.0)}
    if params.enable_ctx:
        fields["con"] = (np.dtype(np.int32), 0)
    if params.propagate_dq:
        fields["dq"] = (np.dtype(np.uint32), 0)
    if params.driz_err:
        fields["err"] = (np.dtype(np.float32), np.nan)
    if params.enable_var:
        if compute_err:
            fields["err"] = (np.dtype(np.float32), np.nan)
        if report_var:
            fields.update({name: (np.dtype(np.float32), np.nan) for name in VARIANCES})
    return fields


def _final(partial: Mapping[str, Any], grid_wcs: Any, *args: Any) -> dict[str, np.ndarray]:
    """:func:`finalize`; the grid WCS dependency (unused) keeps dask's linear fusion from
    fusing the tile's drizzle task into it (see :func:`_field`)."""
    del grid_wcs
    return finalize(partial, *args)


def _field(final: Mapping[str, np.ndarray], name: str, grid_wcs: Any) -> np.ndarray:
    """Field ``name`` of a tile's final arrays. The grid WCS dependency (unused) keeps dask's
    linear fusion from fusing the tile reduction into a field's chunk: a graph optimised
    separately (per field, or a ``to_delayed`` copy) would rename the fused keys and run the
    reduction once per copy."""
    del grid_wcs
    return final[name]


def _assemble(tasks: Mapping[Any, Any], dependencies: list[da.Array], finals: Mapping[int, Any], tiles: list[tuple[int, int, int, int]],
              chunks: tuple[tuple[int, ...], tuple[int, ...]], params: DrizzleParams, *, token: str,
              fillval: float, report_var: bool, compute_err: bool) -> dict[str, da.Array]:
    """One dask array per field whose chunk (i, j) is field ``name`` of tile (i, j)'s final."""
    ychunks, xchunks = chunks
    ncols = len(xchunks)
    grid_key = f"resample-grid-wcs-{token}"
    out = {}
    for name, (dtype, empty) in _fields(params, report_var, compute_err).items():
        fill = fillval if name == "sci" else empty
        planes = name == "con"
        key = f"resample-{name}-{token}"
        layer: dict[Any, Any] = dict(tasks)
        for t, (y0, y1, x0, x1) in enumerate(tiles):
            i, j = divmod(t, ncols)
            index = (key, 0, i, j) if planes else (key, i, j)
            if t in finals:
                layer[index] = (_field, finals[t], name, grid_key)
            else:
                shape = (params.n_planes, y1 - y0, x1 - x0) if planes else (y1 - y0, x1 - x0)
                layer[index] = (np.full, shape, fill, dtype)
        field_graph = HighLevelGraph.from_collections(key, layer, dependencies=dependencies)
        array_chunks = ((params.n_planes,), ychunks, xchunks) if planes else (ychunks, xchunks)
        out[name] = da.Array(field_graph, key, array_chunks, dtype=dtype)
    return out
