"""jump: flag cosmic-ray jumps with the two-point difference method of jwst 3.0 / stcal.

Works per (y, x) tile with a 1-pixel halo (the 4-neighbour flagging); all integrations and
groups of a pixel are in its tile, so the exposure-wide median difference is exact.
Thresholds are in sigma; after-jump thresholds in DN and seconds. Adds JUMP_DET to
``groupdq`` and NO_GAIN_VALUE|DO_NOT_USE to ``pixeldq`` where the gain is bad.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from jwdask import dqflags
from jwdask.detector1._ramp import exposure, require_ramp
from jwdask.errors import ParameterError
from jwdask.kernels.jump import detect_jumps
from jwdask.steps import completed, reference, skipped
from jwdask.tiles import map_tiles


def jump(ds: xr.Dataset, refs: Any, *, rejection_threshold: float = 4.0,
         three_group_rejection_threshold: float = 6.0, four_group_rejection_threshold: float = 5.0,
         flag_4_neighbors: bool = True, max_jump_to_flag_neighbors: float = 1000.0,
         min_jump_to_flag_neighbors: float = 10.0, after_jump_flag_dn1: float = 0.0,
         after_jump_flag_time1: float = 0.0, after_jump_flag_dn2: float = 0.0,
         after_jump_flag_time2: float = 0.0, minimum_groups: int = 3, minimum_sigclip_groups: int = 100,
         only_use_ints: bool = True, min_diffs_single_pass: int = 10, expand_large_events: bool = False,
         find_showers: bool = False) -> xr.Dataset:
    """Flag jumps in ``groupdq`` (see the module docstring for units)."""
    require_ramp(ds, "jump")
    if rejection_threshold <= 0:
        msg = f"jump: rejection_threshold must be > 0 sigma, got {rejection_threshold}"
        raise ParameterError(msg)
    if expand_large_events or find_showers:
        msg = ("jump: snowball (expand_large_events) and MIRI shower (find_showers) flagging "
               "need whole-frame context and are not implemented in jwdask yet")
        raise NotImplementedError(msg)
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
    return completed(ds, "jump", flags, ref_files={"gain": gain_name, "readnoise": rn_name})
