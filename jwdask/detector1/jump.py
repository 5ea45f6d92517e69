"""jump: flag cosmic-ray jumps with the two-point difference method of jwst 3.0 / stcal, and
optionally snowballs (NIR, ``expand_large_events``) and showers (MIRI, ``find_showers``).

The two-point method works per (y, x) tile with a 1-pixel halo (the 4-neighbour flagging);
all integrations and groups of a pixel are in its tile, so the exposure-wide median
difference is exact. Thresholds are in sigma; after-jump thresholds in DN and seconds;
areas in pixels, radii in pixels, times in seconds. Adds JUMP_DET (and, for snowball cores,
SATURATED) to ``groupdq`` and NO_GAIN_VALUE|DO_NOT_USE to ``pixeldq`` where the gain is bad.

Snowballs and showers are connected regions that cross tile borders. They run in three
stages (see :mod:`jwdask.kernels.large_events` and :mod:`jwdask.kernels.showers`): a tiled
per-pixel stage, one whole-frame task per integration (snowballs: the SAT/JUMP bits of the
frame) or per (integration, group) plane (showers: the plane of difference ratios) that
turns the regions into a small table of ellipses, and a tiled stage that rasterises the
ellipses into each tile. The whole-frame tasks see exactly the arrays stcal sees, and the
rasterisation is per pixel, so any tiling gives the whole-frame (and stcal's) result.
"""

from __future__ import annotations

import logging
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from jwdask import dqflags
from jwdask.detector1._ramp import exposure, require_ramp
from jwdask.errors import ParameterError
from jwdask.kernels import showers
from jwdask.kernels.jump import detect_jumps
from jwdask.kernels.large_events import KIND_PERSIST, apply_events, snowball_events
from jwdask.steps import completed, reference, skipped
from jwdask.tiles import map_tiles

log = logging.getLogger(__name__)

def jump(ds: xr.Dataset, refs: Any, *, rejection_threshold: float = 4.0,
         three_group_rejection_threshold: float = 6.0, four_group_rejection_threshold: float = 5.0,
         flag_4_neighbors: bool = True, max_jump_to_flag_neighbors: float = 1000.0,
         min_jump_to_flag_neighbors: float = 10.0, after_jump_flag_dn1: float = 0.0,
         after_jump_flag_time1: float = 0.0, after_jump_flag_dn2: float = 0.0,
         after_jump_flag_time2: float = 0.0, minimum_groups: int = 3, minimum_sigclip_groups: int = 100,
         only_use_ints: bool = True, min_diffs_single_pass: int = 10, expand_large_events: bool = False,
         min_sat_area: float = 1.0, min_jump_area: float = 5.0, expand_factor: float = 2.0,
         use_ellipses: bool = False, sat_required_snowball: bool = True,
         min_sat_radius_extend: float = 2.5, sat_expand: int = 2, edge_size: int = 25,
         mask_snowball_core_next_int: bool = True, snowball_time_masked_next_int: float = 4000,
         find_showers: bool = False, max_shower_amplitude: float = 4.0,
         fix_max_shower_amplitude: bool = False, extend_snr_threshold: float = 1.2,
         extend_min_area: int = 90, extend_inner_radius: float = 1.0,
         extend_outer_radius: float = 2.6, extend_ellipse_expand_ratio: float = 1.1,
         time_masked_after_shower: float = 15.0, max_extended_radius: int = 200) -> xr.Dataset:
    """Flag jumps in ``groupdq`` (see the module docstring for units).

    Parameters and defaults are jwst 3.0 JumpStep's. ``use_ellipses`` is deprecated there
    and has no effect. ``max_shower_amplitude`` [DN/s] is, as in jwst, not used unless
    ``fix_max_shower_amplitude``: stcal's 6 DN/s applies [quirk].
    """
    require_ramp(ds, "jump")
    if rejection_threshold <= 0:
        msg = f"jump: rejection_threshold must be > 0 sigma, got {rejection_threshold}"
        raise ParameterError(msg)
    if use_ellipses:
        log.warning("jump: use_ellipses is deprecated and has no effect")
    for name, value in (("min_jump_area", min_jump_area), ("min_sat_area", min_sat_area),
                        ("expand_factor", expand_factor), ("extend_min_area", extend_min_area),
                        ("extend_outer_radius", extend_outer_radius),
                        ("max_extended_radius", max_extended_radius)):
        if not value > 0:
            msg = f"jump: {name} must be > 0, got {value}"
            raise ParameterError(msg)
    if int(exposure(ds, "ngroups")) <= 2:
        return skipped(ds, "jump", "NGROUPS <= 2")
    gain, gain_name = reference(refs, "gain", ds)
    readnoise, rn_name = reference(refs, "readnoise", ds)
    if gain is None or readnoise is None:
        return skipped(ds, "jump", "no gain or readnoise reference",
                       ref_files={"gain": gain_name, "readnoise": rn_name})
    all_dnu = (ds.groupdq & dqflags.DO_NOT_USE).astype(bool).all(dim=("y", "x")).data
    flags = map_tiles(
        detect_jumps, [ds.sci, ds.groupdq, ds.pixeldq, readnoise.sci, gain.sci],
        {"groupdq": (ds.groupdq.dims, np.uint8), "pixeldq": (("y", "x"), np.uint32)},
        like=ds.sci, depth=1 if flag_4_neighbors else 0, name="jump",
        plane_all_dnu=all_dnu,
        nframes=int(exposure(ds, "nframes")), frame_time=float(exposure(ds, "frame_time")),
        group_time=float(exposure(ds, "group_time")),
        rejection_threshold=rejection_threshold,
        three_group_rejection_threshold=three_group_rejection_threshold,
        four_group_rejection_threshold=four_group_rejection_threshold,
        flag_4_neighbors=flag_4_neighbors, max_jump_to_flag_neighbors=max_jump_to_flag_neighbors,
        min_jump_to_flag_neighbors=min_jump_to_flag_neighbors,
        after_jump_flag_dn1=after_jump_flag_dn1, after_jump_flag_time1=after_jump_flag_time1,
        after_jump_flag_dn2=after_jump_flag_dn2, after_jump_flag_time2=after_jump_flag_time2,
        minimum_groups=minimum_groups, minimum_sigclip_groups=minimum_sigclip_groups,
        only_use_ints=only_use_ints, min_diffs_single_pass=min_diffs_single_pass,
    )
    group_time = float(exposure(ds, "group_time"))
    if expand_large_events:
        flags["groupdq"] = snowball_flags(
            flags["groupdq"], group_time=group_time, min_jump_area=min_jump_area,
            min_sat_area=min_sat_area, expand_factor=expand_factor,
            sat_required_snowball=sat_required_snowball, min_sat_radius_extend=min_sat_radius_extend,
            sat_expand=sat_expand, edge_size=edge_size, max_extended_radius=max_extended_radius,
            mask_snowball_core_next_int=mask_snowball_core_next_int,
            snowball_time_masked_next_int=snowball_time_masked_next_int)
    if find_showers:
        amplitude = max_shower_amplitude if fix_max_shower_amplitude else showers.STCAL_MAX_SHOWER_AMPLITUDE
        flags["groupdq"] = shower_flags(
            ds.sci, flags["groupdq"], flags["pixeldq"], readnoise.sci, gain.sci,
            nframes=int(exposure(ds, "nframes")), group_time=group_time,
            minimum_sigclip_groups=minimum_sigclip_groups, max_shower_amplitude=amplitude,
            extend_snr_threshold=extend_snr_threshold, extend_min_area=extend_min_area,
            extend_inner_radius=extend_inner_radius, extend_outer_radius=extend_outer_radius,
            extend_ellipse_expand_ratio=extend_ellipse_expand_ratio,
            time_masked_after_shower=time_masked_after_shower, max_extended_radius=max_extended_radius)
    return completed(ds, "jump", flags, ref_files={"gain": gain_name, "readnoise": rn_name})


def snowball_flags(groupdq: xr.DataArray, *, group_time: float, **params: Any) -> xr.DataArray:
    """GROUPDQ (after two-point detection) with snowballs flagged, lazily and tiled like the
    input; ``group_time`` [s]; ``params`` as :func:`jwdask.kernels.large_events.snowball_events`.

    One task per integration reads the whole frame's SAT/JUMP bits and returns the ellipse
    events; one task per tile draws all events. The core masking of the next integration
    comes after every other event, as in stcal.
    """
    groupdq = _whole_ramps(groupdq)
    data = groupdq.data
    bits = (data & np.uint8(dqflags.SATURATED | dqflags.JUMP_DET)).rechunk({0: 1, 1: -1, 2: -1, 3: -1})
    index = da.arange(data.shape[0], chunks=1)
    tables = da.blockwise(_snowball_block, "i", bits, "igyx", index, "i", dtype=object,
                          concatenate=True, meta=np.empty((0,), object), group_time=group_time, **params)
    return groupdq.copy(data=_draw(_draw_snowball_block, data, [], tables))


def shower_flags(sci: xr.DataArray, groupdq: xr.DataArray, pixeldq: xr.DataArray,
                 readnoise: xr.DataArray, gain: xr.DataArray, *, nframes: int, group_time: float,
                 minimum_sigclip_groups: int = 100,
                 max_shower_amplitude: float = showers.STCAL_MAX_SHOWER_AMPLITUDE,
                 time_masked_after_shower: float = 15.0, **params: Any) -> xr.DataArray:
    """GROUPDQ with MIRI showers flagged, lazily and tiled like ``groupdq``.

    ``sci`` [DN], ``readnoise`` [DN], ``gain`` [e-/DN], ``group_time`` and
    ``time_masked_after_shower`` [s], ``max_shower_amplitude`` [DN/s]; ``params`` as
    :func:`jwdask.kernels.showers.shower_events`. Tiles compute the difference ratios, one
    task per (integration, group) plane finds the showers on the whole plane, tiles draw them.
    """
    groupdq = _whole_ramps(groupdq)
    data = groupdq.data
    nints, ngroups = data.shape[:2]
    ratio = map_tiles(_ratio_tile, [sci, groupdq, pixeldq, readnoise, gain],
                      {"ratio": (groupdq.dims, np.float32)}, like=groupdq,
                      nframes=nframes, minimum_sigclip_groups=minimum_sigclip_groups)["ratio"].data
    pdq = _tiled(pixeldq, groupdq)
    planes = da.stack(showers.dnu_planes(data, pdq)).rechunk(-1)
    tables = da.blockwise(_shower_plane_block, "ig", ratio.rechunk({0: 1, 1: 1, 2: -1, 3: -1}), "igyx",
                          planes, "pab", da.arange(nints, chunks=1), "i", da.arange(ngroups, chunks=1), "g",
                          dtype=object, concatenate=True, meta=np.empty((0, 0), object), ngroups=ngroups,
                          groups_masked=int(time_masked_after_shower // group_time), **params)
    out = _draw(_draw_shower_block, data, [(_tiled(sci, groupdq), "igyx"), (pdq, "yx"),
                                           (_tiled(gain, groupdq), "yx")],
                tables, group_time=group_time, max_shower_amplitude=max_shower_amplitude)
    return groupdq.copy(data=out)


def _draw(func: Any, groupdq: da.Array, extra: list[tuple[da.Array, str]], tables: da.Array,
          **kwargs: Any) -> da.Array:
    """Blockwise ``func(groupdq, *extra, tables, rows, cols)`` per tile, where every tile
    receives all event tables and the frame row/column indices of its pixels."""
    ny, nx = groupdq.shape[-2:]
    ychunks, xchunks = groupdq.chunks[-2:]
    args: list[Any] = [groupdq, "igyx"]
    for arr, ind in extra:
        args += [arr, ind]
    args += [tables.rechunk(-1), "ab"[:tables.ndim], da.arange(ny, chunks=(ychunks,)), "y",
             da.arange(nx, chunks=(xchunks,)), "x"]
    return da.blockwise(func, "igyx", *args, dtype=np.uint8, concatenate=True,
                        meta=np.empty((0, 0, 0, 0), np.uint8), **kwargs)


def _whole_ramps(groupdq: xr.DataArray) -> xr.DataArray:
    """``groupdq`` with every integration and group in one chunk (tiles only in y, x)."""
    return groupdq.chunk({groupdq.dims[0]: -1, groupdq.dims[1]: -1})


def _tiled(arr: xr.DataArray, like: xr.DataArray) -> da.Array:
    """``arr`` as a dask array chunked like ``like`` on the dims it shares with it."""
    chunks = dict(zip(like.dims, like.chunks, strict=True))
    data = arr.data if isinstance(arr.data, da.Array) else da.from_array(np.asarray(arr.data))
    return data.rechunk(tuple(chunks.get(d, -1) for d in arr.dims))


def _drawing_order(tables: np.ndarray) -> np.ndarray:
    """All events of an object array of tables, the next-integration core masks last (stcal
    adds them after its loop)."""
    parts = [np.reshape(t, (-1, 14)) for t in np.ravel(tables)]
    events = np.concatenate(parts) if parts else np.zeros((0, 14))
    last = events[:, 3] == KIND_PERSIST
    return np.concatenate([events[~last], events[last]])


def _one(table: np.ndarray, ndim: int) -> np.ndarray:
    out = np.empty((1,) * ndim, object)
    out.flat[0] = table
    return out


def _snowball_block(bits: np.ndarray, index: np.ndarray, **params: Any) -> np.ndarray:
    return _one(snowball_events(bits[0], integration=int(index[0]), **params), 1)


def _draw_snowball_block(groupdq: np.ndarray, tables: np.ndarray, rows: np.ndarray,
                         cols: np.ndarray) -> np.ndarray:
    return apply_events(groupdq, _drawing_order(tables), (int(rows[0]), int(cols[0])))


def _ratio_tile(*arrays: np.ndarray, **params: Any) -> dict[str, np.ndarray]:
    return {"ratio": showers.shower_ratios(*arrays, **params)}


def _shower_plane_block(ratio: np.ndarray, planes: np.ndarray, integration: np.ndarray,
                        group: np.ndarray, **params: Any) -> np.ndarray:
    i, g = int(integration[0]), int(group[0])
    if g == 0 or not showers.gate_open(planes[0]) or g <= showers.first_good_group(planes[1], i):
        return _one(np.zeros((0, 14)), 2)
    return _one(showers.shower_events(ratio[0, 0], integration=i, group=g, **params), 2)


def _draw_shower_block(groupdq: np.ndarray, sci: np.ndarray, pixeldq: np.ndarray, gain: np.ndarray,
                       tables: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, group_time: float,
                       max_shower_amplitude: float) -> np.ndarray:
    return showers.apply_showers(sci, groupdq, pixeldq, gain, _drawing_order(tables),
                                 group_time=group_time, max_shower_amplitude=max_shower_amplitude,
                                 origin=(int(rows[0]), int(cols[0])))
