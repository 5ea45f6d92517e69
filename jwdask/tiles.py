"""Map a per-pixel kernel over the (y, x) tiles of exposure arrays, one task per tile.

Arrays have dims ``(..., y, x)`` with every leading dim (integration, group) in a single
chunk, so a ramp never spans two tasks. Kernels that need neighbours get a halo of
``depth`` pixels on the tile sides that touch another tile (none at the detector edge)
and are told its size; their outputs are trimmed back to the tile. No task ever sees more
than its tile plus the halo.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dask.array as da
from dask.base import tokenize
import numpy as np
import xarray as xr


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
    if depth:
        arrays = [da.overlap.overlap(a, depth={a.ndim - 2: depth, a.ndim - 1: depth}, boundary="none")
                  for a in arrays]
    nblocks = (len(ychunks), len(xchunks))
    max_ndim = max(a.ndim for a in arrays)
    result = da.map_blocks(
        _call_tile, *arrays, drop_axis=list(range(max_ndim - 2)), dtype=object,
        meta=np.empty((0, 0), dtype=object),
        name=f"{name or 'tile'}-{tokenize(kernel, arrays, present, depth, kwargs)}",
        kernel=kernel, positions=present, n_inputs=len(inputs), depth=depth, nblocks=nblocks,
        out_names=tuple(outputs), kwargs=kwargs,
    )
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


def _field(result: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    return result[key]


def _call_tile(*blocks: np.ndarray, kernel: Callable[..., Any], positions: list[int], n_inputs: int,
               depth: int, nblocks: tuple[int, int], out_names: tuple[str, ...], kwargs: dict[str, Any],
               block_id: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
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
