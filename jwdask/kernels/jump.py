"""jump kernel: two-point difference cosmic-ray detection (spec §6.12; jwst 3.0 + stcal 1.20).

Per pixel, in electrons (``E = SCI * gain``, read noise ``RN * gain``):

1. differences ``d = E[k+1] - E[k]`` of every integration, NaN where either group is
   DO_NOT_USE or SATURATED; their median over all integrations and groups, and
   ``sigma = sqrt(|median| + rn^2 / NFRAMES)``;
2. one exposure-wide detector: sigma clipping across integrations (NINTS >=
   ``minimum_sigclip_groups`` with ``only_use_ints``, or that many usable groups without),
   else a single pass (``|d - median| / sigma > rejection_threshold``) when every integration
   has at least ``min_diffs_single_pass`` usable differences, else the iterative
   largest-outlier-first search with the 3- and 4-group thresholds;
3. JUMP_DET on the four edge neighbours of jumps whose ratio lies strictly between
   ``min_jump_to_flag_neighbors`` and ``max_jump_to_flag_neighbors`` (same group);
4. after-jump flagging (``after_jump_flag_dn*`` [DN], ``after_jump_flag_time*`` [s]);
5. clean-up: JUMP_DET is removed from groups that are also DO_NOT_USE or SATURATED.

Pixels with gain <= 0 or NaN get NO_GAIN_VALUE | DO_NOT_USE in PIXELDQ. With NGROUPS <= 2 the
step does nothing (jwst skips it); when too few groups are usable (the gate, §6.12.1) only
the clean-up and the PIXELDQ flags are applied, as in stcal.

REQUIRED_TILE: a (y, x) tile with all integrations and groups (the median is over the whole
exposure) and a halo of :data:`HALO_DEPTH` pixel on every side that touches another tile
(``map_overlap(depth=1, boundary="none")``; none needed without ``flag_4_neighbors``); 0 at
the true detector edge. Three inputs are properties of the whole frame; a tiled caller
passes them so that tiles equal the whole-frame result:

* ``plane_all_dnu``: the ``(integration, group)`` planes that are DO_NOT_USE in every
  pixel (gate and detector choice), e.g. ``(groupdq & DO_NOT_USE).all(axis=(y, x))``;
* ``gain_median``: ``nanmedian(gain)`` of the frame (after-jump thresholds only);
* ``sigclip_reset_planes``: on the sigma-clipping path only, the planes in which every
  pixel has JUMP_DET or DO_NOT_USE after detection, from :func:`sigclip_flagged_planes` on
  each tile, AND-ed (a pre-pass; stcal then clears the jumps of such planes).

Left to None, each is computed from the tile's interior (exact for a whole frame).

Snowball (``expand_large_events``) and MIRI shower (``find_showers``) flagging need connected
regions across tiles: they live in :mod:`jwdask.kernels.large_events` and
:mod:`jwdask.kernels.showers`, and the step (:mod:`jwdask.detector1.jump`) runs them after this
kernel; passing those flags here raises ``NotImplementedError`` pointing there.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from jwdask import dqflags
from jwdask.kernels import jump_core

__all__ = ["HALO_DEPTH", "JumpResult", "detect_jumps", "sigclip_flagged_planes"]

HALO_DEPTH = 1
"""Halo [pixels] a tile needs on each side that touches another tile."""


class JumpResult(NamedTuple):
    """Output of :func:`detect_jumps`; arrays keep the input (halo-included) shape."""

    groupdq: np.ndarray
    """uint8 ``(integration, group, y, x)`` with JUMP_DET added (and removed where the group
    is also DO_NOT_USE or SATURATED)."""
    pixeldq: np.ndarray
    """uint32 ``(y, x)``: input OR NO_GAIN_VALUE | DO_NOT_USE where the gain is <= 0 or NaN."""


class _Plan(NamedTuple):
    """Validated inputs and exposure-wide decisions shared by the public functions."""

    sci: np.ndarray
    groupdq: np.ndarray
    gain: np.ndarray
    readnoise: np.ndarray
    nframes: int
    mode: int
    thresholds: tuple[float, float, float]
    neighbours: tuple[bool, float, float]
    after: tuple[float, int, float, int]
    interior: tuple[int, int, int, int]


def detect_jumps(
    sci: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    readnoise: np.ndarray,
    gain: np.ndarray,
    *,
    nframes: int,
    frame_time: float,
    group_time: float,
    rejection_threshold: float = 4.0,
    three_group_rejection_threshold: float = 6.0,
    four_group_rejection_threshold: float = 5.0,
    flag_4_neighbors: bool = True,
    max_jump_to_flag_neighbors: float = 1000.0,
    min_jump_to_flag_neighbors: float = 10.0,
    after_jump_flag_dn1: float = 0.0,
    after_jump_flag_time1: float = 0.0,
    after_jump_flag_dn2: float = 0.0,
    after_jump_flag_time2: float = 0.0,
    minimum_groups: int = 3,
    minimum_sigclip_groups: int = 100,
    only_use_ints: bool = True,
    min_diffs_single_pass: int = 10,
    expand_large_events: bool = False,
    find_showers: bool = False,
    fix_minimum_groups: bool = False,
    plane_all_dnu: np.ndarray | None = None,
    gain_median: float | None = None,
    sigclip_reset_planes: np.ndarray | None = None,
    halo: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> JumpResult:
    """Flag cosmic-ray jumps in GROUPDQ with the two-point difference method.

    Parameters
    ----------
    sci : ndarray
        Ramps, float32 ``(integration, group, y, x)`` [DN], halo included. Not modified.
    groupdq : ndarray
        uint8, same shape. Not modified.
    pixeldq : ndarray
        uint32 ``(y, x)``. Not modified.
    readnoise : ndarray
        READNOISE reference ``(y, x)`` [DN], the CDS noise; used as float32 (the reference
        model's type), converted to electrons with the gain as stcal does.
    gain : ndarray
        GAIN reference ``(y, x)`` [e-/DN], used as float32.
    nframes : int
        NFRAMES, frames averaged per group: the difference noise is ``RN**2 / NFRAMES``.
    frame_time : float
        TFRAME [s]; part of the exposure timing every kernel receives, not used by the
        two-point method.
    group_time : float
        TGROUP [s]; converts the after-jump times to groups (``int(time // group_time)``).
    rejection_threshold : float
        [sigma] for 4 or more usable differences (single pass, iterative) and the ``sigma``
        of the sigma clipping.
    three_group_rejection_threshold : float
        [sigma] when exactly 2 differences remain (a 3-group ramp) in the iterative search.
    four_group_rejection_threshold : float
        [sigma] when exactly 3 differences remain (a 4-group ramp) in the iterative search.
    flag_4_neighbors : bool
        Flag the up/down/left/right neighbours of jumps in the same group.
    max_jump_to_flag_neighbors, min_jump_to_flag_neighbors : float
        [sigma] exclusive window of ``|d - median| / sigma`` of jumps whose neighbours are
        flagged.
    after_jump_flag_dn1, after_jump_flag_dn2 : float
        [DN] (times the frame's median gain): jumps at least this large flag later groups.
    after_jump_flag_time1, after_jump_flag_time2 : float
        [s] how long after such a jump groups are flagged; 0 disables.
    minimum_groups : int
        Usable groups needed per integration; see ``fix_minimum_groups``.
    minimum_sigclip_groups : int
        Integrations (``only_use_ints``) or usable groups needed for sigma clipping.
    only_use_ints : bool
        Sigma-clip each difference across integrations (True) or all differences of a pixel
        together (False).
    min_diffs_single_pass : int
        Usable differences per integration needed for the single pass.
    expand_large_events, find_showers : bool
        Snowball / MIRI shower flagging happen outside this kernel (jwdask.kernels.large_events, showers); True raises NotImplementedError here.
    fix_minimum_groups : bool
        False (default) reproduces jwst's single-process stcal, which gates on 3 groups
        whatever ``minimum_groups`` is [quirk]; True uses ``minimum_groups``.
    plane_all_dnu : ndarray, optional
        bool ``(integration, group)``: True where the group is DO_NOT_USE in every pixel of
        the whole frame. None: computed from this block's interior.
    gain_median : float, optional
        [e-/DN] NaN-median of the whole frame's gain (after-jump thresholds). None: from
        this block's interior.
    sigclip_reset_planes : ndarray, optional
        bool ``(integration, group)`` (sigma-clipping path only): the frame's planes fully
        flagged JUMP_DET or DO_NOT_USE after detection (see :func:`sigclip_flagged_planes`).
        None: computed from this block's interior.
    halo : tuple of int
        ``(top, bottom, left, right)`` halo rows/columns included in the block. The output
        keeps the halo; only the interior equals the whole-frame result.

    Returns
    -------
    JumpResult
        New ``groupdq`` and ``pixeldq`` arrays (native byte order).

    Raises
    ------
    ValueError
        On inconsistent shapes, a bad halo, negative thresholds or non-positive timing.
    NotImplementedError
        If ``expand_large_events`` or ``find_showers`` is requested.

    Examples
    --------
    >>> sci = np.zeros((1, 6, 3, 3), np.float32)
    >>> sci[0, :, 1, 1] = [0, 10, 20, 530, 540, 550]
    >>> ones = np.ones((3, 3), np.float32)
    >>> res = detect_jumps(sci, np.zeros(sci.shape, np.uint8), np.zeros((3, 3), np.uint32),
    ...                    5 * ones, ones, nframes=1, frame_time=10.0, group_time=10.0)
    >>> res.groupdq[0, :, 1, 1].tolist(), res.groupdq[0, 3].tolist()
    ([0, 0, 0, 4, 0, 0], [[0, 4, 0], [4, 4, 4], [0, 4, 0]])
    """
    pixeldq = np.asarray(pixeldq)
    plan = _plan(sci, groupdq, pixeldq, readnoise, gain, nframes=nframes, frame_time=frame_time,
                 group_time=group_time, rejection_threshold=rejection_threshold,
                 three_group_rejection_threshold=three_group_rejection_threshold,
                 four_group_rejection_threshold=four_group_rejection_threshold,
                 flag_4_neighbors=flag_4_neighbors,
                 max_jump_to_flag_neighbors=max_jump_to_flag_neighbors,
                 min_jump_to_flag_neighbors=min_jump_to_flag_neighbors,
                 after_jump_flag_dn1=after_jump_flag_dn1, after_jump_flag_time1=after_jump_flag_time1,
                 after_jump_flag_dn2=after_jump_flag_dn2, after_jump_flag_time2=after_jump_flag_time2,
                 minimum_groups=minimum_groups, minimum_sigclip_groups=minimum_sigclip_groups,
                 only_use_ints=only_use_ints, min_diffs_single_pass=min_diffs_single_pass,
                 expand_large_events=expand_large_events, find_showers=find_showers,
                 fix_minimum_groups=fix_minimum_groups, plane_all_dnu=plane_all_dnu,
                 gain_median=gain_median, halo=halo)
    out = plan.groupdq.copy()
    pdq = pixeldq.astype(np.uint32, copy=True)
    if out.shape[1] <= 2:
        return JumpResult(out, pdq)
    bad_gain = ~(plan.gain > 0)
    pdq[bad_gain] |= np.uint32(dqflags.NO_GAIN_VALUE | dqflags.DO_NOT_USE)

    nints, ngroups, ny, nx = out.shape
    seeds = np.zeros((nints, ngroups - 1, ny, nx), np.uint8)
    seed_any = np.zeros((ny, nx), bool)
    use_seeds, nb_min, nb_max = plan.neighbours
    after = plan.after
    if plan.mode != jump_core.MODE_NONE:
        jump_core.detect(plan.sci, plan.groupdq, plan.gain, plan.readnoise, plan.nframes, plan.mode,
                         plan.thresholds, nb_min, nb_max, use_seeds, out, seeds, seed_any)
        if plan.mode in (jump_core.MODE_CLIP_INTS, jump_core.MODE_CLIP_ALL):
            if sigclip_reset_planes is None:
                planes = np.empty((nints, ngroups), bool)
                jump_core.planes_with(out, jump_core.JUMP_DNU, *plan.interior, planes)
            else:
                planes = _planes_arg(sigclip_reset_planes, "sigclip_reset_planes", nints, ngroups)
            jump_core.reset_planes(out, seeds, planes)
    else:
        use_seeds, after = False, (0.0, 0, 0.0, 0)
    jump_core.finish(plan.sci, plan.groupdq, plan.gain, seeds, seed_any, use_seeds, after, out)
    return JumpResult(out, pdq)


def sigclip_flagged_planes(
    sci: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    readnoise: np.ndarray,
    gain: np.ndarray,
    **kwargs: Any,
) -> np.ndarray:
    """Planes of this block's interior fully flagged after sigma-clip detection.

    The pre-pass for ``sigclip_reset_planes`` of :func:`detect_jumps` on a tiled frame: AND
    the results of all tiles. Takes the same arguments as :func:`detect_jumps`
    (``sigclip_reset_planes`` excepted).

    Returns
    -------
    ndarray
        bool ``(integration, group)``: True where every interior pixel has JUMP_DET or
        DO_NOT_USE after the sigma clipping; all False when the exposure does not take the
        sigma-clipping path or has NGROUPS <= 2 (nothing is then reset).

    Examples
    --------
    >>> sci = np.zeros((2, 3, 2, 2), np.float32)
    >>> ones = np.ones((2, 2), np.float32)
    >>> sigclip_flagged_planes(sci, np.zeros(sci.shape, np.uint8), np.zeros((2, 2), np.uint32),
    ...                        ones, ones, nframes=1, frame_time=1.0, group_time=1.0).shape
    (2, 3)
    """
    plan = _plan(sci, groupdq, np.asarray(pixeldq), readnoise, gain, **kwargs)
    nints, ngroups, ny, nx = plan.groupdq.shape
    if ngroups <= 2 or plan.mode not in (jump_core.MODE_CLIP_INTS, jump_core.MODE_CLIP_ALL):
        return np.zeros((nints, ngroups), bool)
    out = plan.groupdq.copy()
    jump_core.detect(plan.sci, plan.groupdq, plan.gain, plan.readnoise, plan.nframes, plan.mode,
                     plan.thresholds, 0.0, 0.0, False, out, np.zeros((nints, ngroups - 1, ny, nx), np.uint8),
                     np.zeros((ny, nx), bool))
    planes = np.empty((nints, ngroups), bool)
    jump_core.planes_with(out, jump_core.JUMP_DNU, *plan.interior, planes)
    return planes


def _plan(
    sci: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    readnoise: np.ndarray,
    gain: np.ndarray,
    *,
    nframes: int,
    frame_time: float,
    group_time: float,
    rejection_threshold: float = 4.0,
    three_group_rejection_threshold: float = 6.0,
    four_group_rejection_threshold: float = 5.0,
    flag_4_neighbors: bool = True,
    max_jump_to_flag_neighbors: float = 1000.0,
    min_jump_to_flag_neighbors: float = 10.0,
    after_jump_flag_dn1: float = 0.0,
    after_jump_flag_time1: float = 0.0,
    after_jump_flag_dn2: float = 0.0,
    after_jump_flag_time2: float = 0.0,
    minimum_groups: int = 3,
    minimum_sigclip_groups: int = 100,
    only_use_ints: bool = True,
    min_diffs_single_pass: int = 10,
    expand_large_events: bool = False,
    find_showers: bool = False,
    fix_minimum_groups: bool = False,
    plane_all_dnu: np.ndarray | None = None,
    gain_median: float | None = None,
    halo: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> _Plan:
    """Validate the inputs and take the exposure-wide decisions of stcal's ``find_crs``."""
    if expand_large_events:
        msg = ("jump: snowball flagging (expand_large_events=True) needs whole-frame connected "
               "regions and is not implemented in jwdask")
        raise NotImplementedError(msg)
    if find_showers:
        msg = ("jump: MIRI shower flagging (find_showers=True) needs whole-frame connected "
               "regions and is not implemented in jwdask")
        raise NotImplementedError(msg)
    sci = np.asarray(sci, dtype=np.float32)
    groupdq = np.asarray(groupdq, dtype=np.uint8)
    if sci.ndim != 4 or groupdq.shape != sci.shape:
        msg = (f"jump: sci must be 4-D (integration, group, y, x) and groupdq the same shape, "
               f"got {sci.shape} and {groupdq.shape}")
        raise ValueError(msg)
    nints, ngroups, ny, nx = sci.shape
    gain32 = np.asarray(gain, dtype=np.float32)
    rn32 = np.asarray(readnoise, dtype=np.float32)
    for name, arr in (("pixeldq", pixeldq), ("readnoise", rn32), ("gain", gain32)):
        if arr.shape != (ny, nx):
            msg = f"jump: {name} must have shape (y, x) = {(ny, nx)}, got {arr.shape}"
            raise ValueError(msg)
    interior = _interior(halo, ny, nx)
    if int(nframes) < 1 or not group_time > 0 or not frame_time > 0:
        msg = (f"jump: nframes must be >= 1 and frame_time, group_time > 0 s, got {nframes}, "
               f"{frame_time}, {group_time}")
        raise ValueError(msg)
    thresholds = (float(rejection_threshold), float(three_group_rejection_threshold),
                  float(four_group_rejection_threshold))
    if not min(thresholds) >= 0:
        msg = f"jump: rejection thresholds must be >= 0 sigma, got {thresholds}"
        raise ValueError(msg)
    y0, y1, x0, x1 = interior
    if plane_all_dnu is None:
        dnu = np.empty((nints, ngroups), bool)
        jump_core.planes_with(groupdq, dqflags.DO_NOT_USE, y0, y1, x0, x1, dnu)
    else:
        dnu = _planes_arg(plane_all_dnu, "plane_all_dnu", nints, ngroups)
    mode = _choose_mode(dnu, minimum_groups=3 if not fix_minimum_groups else int(minimum_groups),
                        minimum_sigclip_groups=int(minimum_sigclip_groups),
                        only_use_ints=bool(only_use_ints),
                        min_diffs_single_pass=int(min_diffs_single_pass))
    n1 = int(float(after_jump_flag_time1) // float(group_time))
    n2 = int(float(after_jump_flag_time2) // float(group_time))
    e1 = e2 = 0.0
    if n1 > 0 or n2 > 0:
        gmed = np.float32(np.nanmedian(gain32[y0:y1, x0:x1]) if gain_median is None else gain_median)
        e1 = float(np.float32(after_jump_flag_dn1) * gmed)
        e2 = float(np.float32(after_jump_flag_dn2) * gmed)
    return _Plan(sci, groupdq, gain32, rn32, int(nframes), mode, thresholds,
                 (bool(flag_4_neighbors), float(min_jump_to_flag_neighbors),
                  float(max_jump_to_flag_neighbors)),
                 (e1, n1, e2, n2), interior)


def _choose_mode(plane_all_dnu: np.ndarray, *, minimum_groups: int, minimum_sigclip_groups: int,
                 only_use_ints: bool, min_diffs_single_pass: int) -> int:
    """stcal's gate and detector choice from the fully-DO_NOT_USE planes (spec §6.12.1-2)."""
    nints, ngroups = plane_all_dnu.shape
    flagged = plane_all_dnu.sum(axis=1)
    min_usable_groups = ngroups - int(flagged.max())
    total_groups = nints * ngroups - int(flagged.sum())
    if only_use_ints:
        sigclip = nints >= minimum_sigclip_groups
    else:
        sigclip = total_groups >= minimum_sigclip_groups
    if sigclip:
        return jump_core.MODE_CLIP_INTS if only_use_ints else jump_core.MODE_CLIP_ALL
    if min_usable_groups < minimum_groups:
        return jump_core.MODE_NONE
    if min_usable_groups - 1 >= min_diffs_single_pass:
        return jump_core.MODE_SINGLE
    return jump_core.MODE_ITERATIVE


def _planes_arg(planes: np.ndarray, name: str, nints: int, ngroups: int) -> np.ndarray:
    arr = np.asarray(planes, dtype=bool)
    if arr.shape != (nints, ngroups):
        msg = f"jump: {name} must have shape (integration, group) = {(nints, ngroups)}, got {arr.shape}"
        raise ValueError(msg)
    return arr


def _interior(halo: tuple[int, int, int, int], ny: int, nx: int) -> tuple[int, int, int, int]:
    if len(halo) != 4 or min(halo) < 0:
        msg = f"jump: halo must be four non-negative pixel counts (top, bottom, left, right), got {halo}"
        raise ValueError(msg)
    top, bottom, left, right = (int(h) for h in halo)
    if top + bottom >= ny or left + right >= nx:
        msg = f"jump: halo {halo} leaves no interior in a {(ny, nx)} block"
        raise ValueError(msg)
    return top, ny - bottom, left, nx - right
