"""Map a per-pixel kernel over the (y, x) tiles of exposure arrays, one task per tile.

Arrays have dims ``(..., y, x)`` with every leading dim (integration, group) in a single
chunk, so a ramp never spans two tasks. Kernels that need neighbours get a halo of
``depth`` pixels on the tile sides that touch another tile (none at the detector edge)
and are told its size; their outputs are trimmed back to the tile. No task ever sees more
than its tile plus the halo. The halo travels as one small task per tile and input (the
tile's border strips), assembled inside the kernel's task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.core import flatten
from dask.delayed import Delayed, unpack_collections
from dask.highlevelgraph import HighLevelGraph
from dask.task_spec import List, Task, TaskRef


def _tile_chunks(like: xr.DataArray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    chunks = like.chunks
    if chunks is None:
        msg = "map_tiles needs dask-backed arrays"
        raise TypeError(msg)
    return chunks[-2], chunks[-1]


def _as_tiled(arr: xr.DataArray, ychunks: tuple[int, ...], xchunks: tuple[int, ...]) -> da.Array:
    """The array as dask, whole along leading dims, tiled like the science array in (y, x)."""
    data = arr.data if isinstance(arr.data, da.Array) else da.from_array(np.asarray(arr.data))
    lead = tuple(-1 for _ in range(data.ndim - 2))
    return data.rechunk((*lead, ychunks, xchunks))


def map_tiles(
    kernel: Callable[..., Any],
    inputs: Sequence[xr.DataArray | None],
    outputs: Mapping[str, tuple[tuple[str, ...], np.dtype | str]],
    *,
    like: xr.DataArray,
    depth: int = 0,
    name: str | None = None,
    **kwargs: Any,
) -> dict[str, xr.DataArray]:
    """Run ``kernel`` once per (y, x) tile of ``like`` and return its outputs lazily.

    Parameters
    ----------
    kernel : callable
        ``kernel(*blocks, **kwargs)`` (plus ``halo=(top, bottom, left, right)`` when
        ``depth > 0``) returning an object whose attributes (or keys) are the outputs.
        ``None`` inputs are passed as ``None``.
    inputs : sequence of DataArray or None
        Arrays whose last two dims are ``(y, x)`` on the same pixels as ``like``.
    outputs : mapping
        Output name -> (dims, dtype); dims end in ``("y", "x")``; leading dims take their
        sizes from ``like`` (``integration``, ``group``) or from the inputs.
    like : DataArray
        The science array whose (y, x) chunks define the tiles.
    depth : int
        Halo in pixels around each tile (0 for pure per-pixel kernels).
    """
    ychunks, xchunks = _tile_chunks(like)
    present = [i for i, a in enumerate(inputs) if a is not None]
    arrays = [_as_tiled(inputs[i], ychunks, xchunks) for i in present]
    sizes = dict(like.sizes)
    for i in present:
        sizes.update(inputs[i].sizes)
    result = _kernel_array(kernel, arrays, present, len(inputs), depth, (ychunks, xchunks), tuple(outputs), kwargs,
                           name=f"{name or 'tile'}-{tokenize(kernel, arrays, present, depth, kwargs)}")
    coords = {"y": like["y"], "x": like["x"]} if "y" in like.coords else {}
    out = {}
    for key, (dims, dtype) in outputs.items():
        lead = tuple((sizes[d],) for d in dims[:-2])
        data = result.map_blocks(
            _field, key, dtype=dtype, chunks=(*lead, ychunks, xchunks),
            new_axis=list(range(len(lead))) or None, meta=np.empty((0,) * len(dims), dtype=dtype),
        )
        out[key] = xr.DataArray(data, dims=dims, coords=coords)
    return out


def _kernel_array(kernel: Callable[..., Any], arrays: list[da.Array], positions: list[int], n_inputs: int,
                  depth: int, chunks: tuple[tuple[int, ...], tuple[int, ...]], out_names: tuple[str, ...],
                  kwargs: dict[str, Any], *, name: str) -> da.Array:
    """The (y-tile, x-tile) object array of kernel results, one task per tile.

    The layer is built explicitly rather than with ``map_blocks``: dask then neither fuses the
    kernel into each consumer of its outputs (running it once per output) nor hands keyword
    arguments that are dask collections a renamed copy of their graph (running everything
    upstream again); such arguments become references to the collections' own keys.
    """
    static = {k: v for k, v in kwargs.items() if not _is_lazy(v)}
    edges = [_edge_layer(a, depth) for a in arrays] if depth else []
    lazy = {k: [as_delayed(x) if isinstance(x, da.Array) else x for x in v] if isinstance(v, list | tuple)
            else as_delayed(v) if isinstance(v, da.Array) else v
            for k, v in kwargs.items() if _is_lazy(v)}
    lazy_node, collections = unpack_collections(lazy)
    nblocks = (len(chunks[0]), len(chunks[1]))
    graph = {}
    for by in range(nblocks[0]):
        for bx in range(nblocks[1]):
            blocks = [TaskRef((a.name, *(0,) * (a.ndim - 2), by, bx)) for a in arrays]
            if depth:
                around = [(by + dy, bx + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                          if (dy, dx) != (0, 0) and 0 <= by + dy < nblocks[0] and 0 <= bx + dx < nblocks[1]]
                blocks = [Task(None, _with_halo, block, List(*(TaskRef((e.name, *n)) for n in around)),
                               offsets=[(n[0] - by, n[1] - bx) for n in around], depth=depth)
                          for block, e in zip(blocks, edges, strict=True)]
            key = (name, by, bx)
            graph[key] = Task(key, _call_tile, *blocks, lazy_node, kernel=kernel, positions=positions,
                              n_inputs=n_inputs, depth=depth, nblocks=nblocks, out_names=out_names,
                              kwargs=static, block_id=(by, bx))
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=[*arrays, *edges, *collections])
    return da.Array(hlg, name, chunks, meta=np.empty((0, 0), dtype=object))


def _edge_layer(arr: da.Array, depth: int) -> da.Array:
    """One task per tile of ``arr``: its border strips (rows and columns ``depth`` deep and the
    corners), all a neighbouring tile's halo needs; a (y-tile, x-tile) object array."""
    name = f"halo-{tokenize(arr.name, depth)}"
    lead = (0,) * (arr.ndim - 2)
    graph = {(name, by, bx): Task((name, by, bx), _border_strips, TaskRef((arr.name, *lead, by, bx)), depth=depth)
             for by in range(arr.numblocks[-2]) for bx in range(arr.numblocks[-1])}
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=[arr])
    return da.Array(hlg, name, arr.chunks[-2:], meta=np.empty((0, 0), dtype=object))


def _border_strips(block: np.ndarray, *, depth: int) -> dict[tuple[int, int], np.ndarray]:
    """The parts of ``block`` seen by the neighbour at offset ``(dy, dx)`` [tiles], keyed by
    that offset: its last rows for the tile below (``dy = 1``), first rows for the one above..."""
    def part(d: int) -> slice:
        return slice(None) if d == 0 else slice(-depth, None) if d > 0 else slice(0, depth)
    return {(dy, dx): block[..., part(dy), part(dx)].copy()
            for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)}


def _with_halo(block: np.ndarray, strips: list[dict[tuple[int, int], np.ndarray]], *,
               offsets: list[tuple[int, int]], depth: int) -> np.ndarray:
    """``block`` with its neighbours' strips around it (at the ``offsets`` [tiles] that exist)."""
    pieces = {(0, 0): block}
    for (dy, dx), parts in zip(offsets, strips, strict=True):
        pieces[(dy, dx)] = parts[(-dy, -dx)]
    rows = []
    for dy in (-1, 0, 1):
        row = [pieces[(dy, dx)] for dx in (-1, 0, 1) if (dy, dx) in pieces]
        if (dy, 0) in pieces:
            rows.append(row[0] if len(row) == 1 else np.concatenate(row, axis=-1))
    return rows[0] if len(rows) == 1 else np.concatenate(rows, axis=-2)


def _is_lazy(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return any(_is_lazy(v) for v in value)
    return isinstance(value, da.Array | Delayed)


def as_delayed(arr: Any) -> Any:
    """The whole of ``arr`` as one Delayed that shares ``arr``'s task keys (anything that is not
    a dask array is returned as it is).

    Pass this, never the dask array itself, to ``dask.delayed`` calls and to kernel keyword
    arguments: dask gives a collection found there a renamed, separately optimized copy of
    its whole graph, so every upstream task (saturation, jump, ...) would run once more.
    """
    if not isinstance(arr, da.Array):
        return arr
    whole = arr.rechunk(tuple(-1 for _ in arr.shape)) if arr.npartitions > 1 else arr
    return whole.to_delayed(optimize_graph=False).ravel()[0]


def block_delayed(arr: da.Array) -> np.ndarray:
    """The blocks of ``arr`` as an array of Delayed sharing its task keys (see :func:`as_delayed`)."""
    return arr.to_delayed(optimize_graph=False)


def region_task(arr: da.Array, y0: int, y1: int, x0: int, x1: int) -> tuple[Any, ...]:
    """A task (legacy tuple, to place in a graph layer whose dependencies include ``arr``)
    computing ``arr[..., y0:y1, x0:x1]`` from the blocks of ``arr`` it touches.

    Slicing and rechunking the dask array does the same with two graph layers per region;
    with thousands of regions (the (exposure, output tile) slabs of a mosaic) every later
    graph operation slows down with the layer count.
    """
    if arr.numblocks[:-2] != (1,) * (arr.ndim - 2):
        msg = "region_task needs the leading dims in one chunk"
        raise ValueError(msg)
    ybounds = np.cumsum((0, *arr.chunks[-2]))
    xbounds = np.cumsum((0, *arr.chunks[-1]))
    i0, i1 = int(np.searchsorted(ybounds, y0, "right")) - 1, int(np.searchsorted(ybounds, y1, "left"))
    j0, j1 = int(np.searchsorted(xbounds, x0, "right")) - 1, int(np.searchsorted(xbounds, x1, "left"))
    lead = (0,) * (arr.ndim - 2)
    keys = [[(arr.name, *lead, i, j) for j in range(j0, j1)] for i in range(i0, i1)]
    window = (y0 - int(ybounds[i0]), y1 - int(ybounds[i0]), x0 - int(xbounds[j0]), x1 - int(xbounds[j0]))
    return (_cut, keys, window)


def _cut(blocks: list[list[np.ndarray]], window: tuple[int, int, int, int]) -> np.ndarray:
    y0, y1, x0, x1 = window
    whole = blocks[0][0] if len(blocks) == 1 and len(blocks[0]) == 1 else np.block(blocks)
    return whole[..., y0:y1, x0:x1]


def after_blocks(func: Callable[..., Any], *args: Any, arrays: Sequence[da.Array], name: str) -> Delayed:
    """A Delayed ``func(*args, blocks)`` run once every block of ``arrays`` is computed
    (``blocks``: the list of their values, in block order), on the arrays' own task keys.

    Handing dask.delayed a list of block Delayeds instead culls the whole graph once per
    block, quadratic in the graph size (30 s for the products of an 8-exposure mosaic).
    ``args`` must hold no dask collection.
    """
    keys = [k for arr in arrays for k in flatten(arr.__dask_keys__())]
    key = f"{name}-{tokenize(func, args, keys)}"
    layer = {key: Task(key, func, *args, List(*[TaskRef(k) for k in keys]))}
    return Delayed(key, HighLevelGraph.from_collections(key, layer, dependencies=list(arrays)))


def _field(result: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    return result[key]


def _call_tile(*blocks: Any, kernel: Callable[..., Any], positions: list[int], n_inputs: int,
               depth: int, nblocks: tuple[int, int], out_names: tuple[str, ...], kwargs: dict[str, Any],
               block_id: tuple[int, ...]) -> dict[str, np.ndarray]:
    *blocks, lazy = blocks
    kwargs = {**kwargs, **lazy}
    args: list[Any] = [None] * n_inputs
    for pos, block in zip(positions, blocks, strict=True):
        args[pos] = block
    if depth:
        by, bx = block_id[-2:]
        halo = (depth if by > 0 else 0, depth if by < nblocks[0] - 1 else 0,
                depth if bx > 0 else 0, depth if bx < nblocks[1] - 1 else 0)
        result = kernel(*args, halo=halo, **kwargs)
    else:
        halo = (0, 0, 0, 0)
        result = kernel(*args, **kwargs)
    out = {}
    for key in out_names:
        value = result[key] if isinstance(result, Mapping) else getattr(result, key)
        top, bottom, left, right = halo
        ny, nx = value.shape[-2:]
        out[key] = value[..., top:ny - bottom, left:nx - right]
    return out
