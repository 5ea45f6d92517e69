"""Ramp fitting with the OLS_C algorithm of stcal 1.20 / jwst 3.0, one (y, x) tile at a time.

:func:`fit_ramps` turns a tile of ramps [DN] into count rates [DN/s] with the same numbers as
``stcal.ramp_fitting.ramp_fit.ramp_fit(..., algorithm="OLS_C", weighting="optimal")`` called
by jwst's ``RampFitStep`` (spec §6.15): the rate product (``slope, err, dq, var_poisson,
var_rnoise`` on ``(y, x)``) and the rateints product (the ``*_ints`` arrays on
``(integration, y, x)``). Every output pixel depends on its own ramp only, so tiles can be
fitted independently and stitched; a tile must hold all integrations and groups.

Two decisions of stcal depend on the whole exposure, not on one tile: MIRI drops groups that
are DO_NOT_USE in every pixel, and no product is made at all when the first fitted group is
saturated everywhere. They are made once per exposure from per-group flag summaries of the
tiles (:func:`group_flag_summary`, :func:`combine_group_flag_summaries`,
:func:`exposure_group_range`) and handed to :func:`fit_ramps` as ``group_range``.

The step-level preprocessing of jwst's RampFitStep and stcal's ``ramp_fit`` (firstgroup /
lastgroup, read-noise scaling, one-good-group suppression, MIRI group trimming, bad gain) is
done here or inside the compiled kernel :mod:`jwdask.kernels.ramp_ols_c`; callers pass the
reference arrays as they come from the GAIN and READNOISE files.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from jwdask.kernels import ramp_ols_c

__all__ = [
    "GroupFlagSummary",
    "RampFitResult",
    "combine_group_flag_summaries",
    "exposure_group_range",
    "fit_ramps",
    "group_dnu_bounds",
    "group_flag_summary",
]


class RampFitResult(NamedTuple):
    """Outputs of :func:`fit_ramps` (stcal's ``image_info`` and ``integ_info``).

    Invalid pixels have ``slope = NaN`` and ``err = var_poisson = var_rnoise = 0``.
    """

    slope: np.ndarray
    """(y, x) float32 [DN/s]: count rate over all integrations."""
    err: np.ndarray
    """(y, x) float32 [DN/s]: ``sqrt(var_poisson + var_rnoise)``."""
    dq: np.ndarray
    """(y, x) uint32: PIXELDQ plus the ramp-fit flags (spec §6.15.7)."""
    var_poisson: np.ndarray
    """(y, x) float32 [(DN/s)^2]: Poisson variance of ``slope``."""
    var_rnoise: np.ndarray
    """(y, x) float32 [(DN/s)^2]: read-noise variance of ``slope``."""
    slope_ints: np.ndarray
    """(integration, y, x) float32 [DN/s]: count rate of each integration."""
    err_ints: np.ndarray
    """(integration, y, x) float32 [DN/s]: ``sqrt(1 / sum over segments of 1 / (vp + vr))``."""
    dq_ints: np.ndarray
    """(integration, y, x) uint32: data quality of each integration."""
    var_poisson_ints: np.ndarray
    """(integration, y, x) float32 [(DN/s)^2]: Poisson variance of ``slope_ints``."""
    var_rnoise_ints: np.ndarray
    """(integration, y, x) float32 [(DN/s)^2]: read-noise variance of ``slope_ints``."""


class GroupFlagSummary(NamedTuple):
    """Per-group flags that hold in every pixel and integration (of a tile or an exposure)."""

    all_dnu: np.ndarray
    """(group,) bool: the group is DO_NOT_USE everywhere (after firstgroup/lastgroup and
    one-good-group suppression)."""
    all_sat: np.ndarray
    """(group,) bool: the group is SATURATED everywhere."""


# ---------------------------------------------------------------------------------------------
# Step-level preprocessing (jwst RampFitStep.process and stcal ramp_fit / ols_fit, spec §6.15.1)
# ---------------------------------------------------------------------------------------------


def group_dnu_bounds(firstgroup: int | None, lastgroup: int | None, ngroups: int) -> tuple[int, int]:
    """Groups that RampFitStep's ``firstgroup``/``lastgroup`` leave usable.

    Parameters
    ----------
    firstgroup, lastgroup : int or None
        The step parameters (0-based group indices; None = no limit).
    ngroups : int
        Number of groups per integration.

    Returns
    -------
    tuple of int
        ``(lo, hi)``: groups ``k < lo`` and ``k > hi`` are flagged DO_NOT_USE. As in jwst, a
        negative ``firstgroup`` counts as 0, and the pair is ignored when ``firstgroup >=
        lastgroup``.

    Examples
    --------
    >>> group_dnu_bounds(None, None, 10)
    (0, 9)
    >>> group_dnu_bounds(2, 6, 10)
    (2, 6)
    >>> group_dnu_bounds(5, 3, 10)
    (0, 9)
    """
    lo = 0 if firstgroup is None else max(int(firstgroup), 0)
    hi = ngroups - 1 if lastgroup is None else int(lastgroup)
    if lo >= hi:
        return 0, ngroups - 1
    return lo, hi


def group_flag_summary(groupdq: np.ndarray, *, suppress_one_group: bool = True, firstgroup: int | None = None,
                       lastgroup: int | None = None) -> GroupFlagSummary:
    """Which groups are DO_NOT_USE / SATURATED in every pixel and integration of a tile.

    Summaries of the tiles of an exposure combine with :func:`combine_group_flag_summaries`;
    the exposure's summary feeds :func:`exposure_group_range`.

    Parameters
    ----------
    groupdq : ndarray of uint8, shape (integration, group, y, x)
        Group data quality of the tile.
    suppress_one_group, firstgroup, lastgroup
        As in :func:`fit_ramps` (they add DO_NOT_USE flags before stcal looks at them).

    Returns
    -------
    GroupFlagSummary
        Two (group,) boolean arrays.

    Examples
    --------
    >>> gdq = np.zeros((1, 3, 2, 2), np.uint8)
    >>> gdq[:, 0] = 1
    >>> group_flag_summary(gdq).all_dnu
    array([ True, False, False])
    """
    groupdq = _native(groupdq, np.uint8, "groupdq", ndim=4)
    ngroups = groupdq.shape[1]
    lo, hi = group_dnu_bounds(firstgroup, lastgroup, ngroups)
    all_dnu = np.ones(ngroups, dtype=np.bool_)
    all_sat = np.ones(ngroups, dtype=np.bool_)
    ramp_ols_c.group_flags_tile(groupdq, lo, hi, bool(suppress_one_group) and ngroups > 1, all_dnu, all_sat)
    return GroupFlagSummary(all_dnu, all_sat)


def combine_group_flag_summaries(summaries: Iterable[GroupFlagSummary]) -> GroupFlagSummary:
    """The summary of an exposure from the summaries of its tiles (logical AND).

    Examples
    --------
    >>> a = GroupFlagSummary(np.array([True, True]), np.array([False, True]))
    >>> b = GroupFlagSummary(np.array([True, False]), np.array([False, True]))
    >>> combine_group_flag_summaries([a, b]).all_dnu
    array([ True, False])
    """
    items = list(summaries)
    if not items:
        msg = "combine_group_flag_summaries needs at least one summary"
        raise ValueError(msg)
    return GroupFlagSummary(np.logical_and.reduce([s.all_dnu for s in items]),
                            np.logical_and.reduce([s.all_sat for s in items]))


def exposure_group_range(summary: GroupFlagSummary, *, miri: bool) -> tuple[int, int] | None:
    """The groups stcal fits for the whole exposure, or None when it makes no product.

    For MIRI exposures with more than one group, stcal drops leading groups while they are
    DO_NOT_USE everywhere, then the last group if it is DO_NOT_USE everywhere, and gives up
    when fewer than two groups remain. For every instrument it gives up when the first kept
    group is saturated everywhere. jwst then writes no rate/rateints product and skips
    gain_scale.

    Parameters
    ----------
    summary : GroupFlagSummary
        The exposure's summary (:func:`combine_group_flag_summaries` over all tiles).
    miri : bool
        Whether the exposure is MIRI (``meta.instrument.name == "MIRI"``).

    Returns
    -------
    tuple of int or None
        ``(first, stop)``: fit groups ``first <= k < stop`` (pass as ``group_range`` to
        :func:`fit_ramps`), or None for "no rate product".

    Examples
    --------
    >>> s = GroupFlagSummary(np.array([True, False, False, True]), np.zeros(4, bool))
    >>> exposure_group_range(s, miri=True)
    (1, 3)
    >>> exposure_group_range(s, miri=False)
    (0, 4)
    """
    all_dnu = np.asarray(summary.all_dnu, dtype=bool)
    all_sat = np.asarray(summary.all_sat, dtype=bool)
    ngroups = all_dnu.size
    first, stop = 0, ngroups
    if miri and ngroups > 1:
        while first < stop and all_dnu[first]:
            first += 1
        if first == stop:
            return None
        if all_dnu[stop - 1]:
            stop -= 1
        if stop - first < 2:
            return None
    if all_sat[first]:
        return None
    return first, stop


# ---------------------------------------------------------------------------------------------
# The kernel
# ---------------------------------------------------------------------------------------------


def fit_ramps(
    sci: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    readnoise: np.ndarray,
    gain: np.ndarray,
    *,
    frame_time: float,
    group_time: float,
    nframes: int,
    groupgap: int,
    dropframes1: int = 0,
    zeroframe: np.ndarray | None = None,
    average_dark_current: np.ndarray | None = None,
    suppress_one_group: bool = True,
    firstgroup: int | None = None,
    lastgroup: int | None = None,
    group_range: tuple[int, int] | None = None,
) -> RampFitResult:
    """Fit the ramps of a tile with stcal's OLS_C algorithm (jwst 3.0 RampFitStep defaults).

    Parameters
    ----------
    sci : ndarray of float32, shape (integration, group, y, x)
        Ramps [DN] after jump detection.
    groupdq : ndarray of uint8, shape (integration, group, y, x)
        Group data quality (DO_NOT_USE, SATURATED, JUMP_DET, PERSISTENCE, CHARGELOSS, ...).
    pixeldq : ndarray of uint32, shape (y, x)
        Pixel data quality; copied into every output DQ.
    readnoise : ndarray of float32, shape (y, x)
        READNOISE reference [DN]: the CDS noise. Converted as stcal does to the noise of one
        group read in electrons, ``float32(RN * (gain / sqrt(2 * nframes)))``.
    gain : ndarray of float32, shape (y, x)
        GAIN reference [e-/DN]. Pixels with gain <= 0 or NaN get DO_NOT_USE | NO_GAIN_VALUE.
    frame_time : float
        TFRAME [s]; the time of a one-group ramp and of ZEROFRAME data.
    group_time : float
        TGROUP [s]. Both times are rounded to float32 first, as stcal's C code does.
    nframes : int
        NFRAMES, frames averaged per group (>= 1).
    groupgap : int
        GROUPGAP, frames dropped between groups (>= 0).
    dropframes1 : int
        DRPFRMS1, frames dropped at the start of an integration (>= 0). ``groupgap`` and
        ``dropframes1`` enter only stcal's optional pedestal output, which this kernel does
        not make; they are checked and otherwise unused.
    zeroframe : ndarray of float32, shape (integration, y, x), optional
        ZEROFRAME [DN] (0 means unusable). Used only when one-good-group suppression is off
        (always off for one-group exposures), for integrations without a good group.
    average_dark_current : ndarray of float32, shape (y, x), optional
        Added to the median rate in the Poisson variance, in DN/s as stcal does (default 0).
    suppress_one_group : bool
        Treat integrations with exactly one good group as having none (jwst default True;
        forced False when the exposure has one group).
    firstgroup, lastgroup : int, optional
        0-based: flag groups before ``firstgroup`` and after ``lastgroup`` DO_NOT_USE
        (see :func:`group_dnu_bounds`).
    group_range : tuple of int, optional
        ``(first, stop)`` from :func:`exposure_group_range`: fit only groups ``first <= k <
        stop`` and, when ``first > 0`` (MIRI leading DO_NOT_USE groups), clear JUMP_DET on
        group ``first``. Default: all groups. Must be the same for every tile of an exposure.

    Returns
    -------
    RampFitResult
        Rate arrays on (y, x) and rateints arrays on (integration, y, x); new arrays, the
        inputs are not modified.

    Notes
    -----
    Per pixel (spec §6.15): the median of the first differences of each integration gives a
    median rate :math:`\\tilde R` shared by all integrations; each integration is cut into
    segments at jumps and unusable groups; a segment of :math:`n \\ge 3` groups is fitted by
    least squares with weights :math:`|(j - m)/m|^P / r^2` (:math:`m = (n-1)/2`, :math:`P`
    from its signal-to-noise ratio) and has variances

    .. math:: v_p = \\frac{\\max(\\tilde R, 0) + D}{t_g\\, g\\, (n-1)}, \\qquad
              v_r = \\frac{12\\, r^2}{t_g^2\\, g^2\\, (n^3 - n)},

    with :math:`r` the read noise of a group in electrons. Slopes of segments and of
    integrations are combined with weights :math:`1/v_r`.

    Examples
    --------
    >>> ramp = np.arange(5, dtype=np.float32).reshape(1, 5, 1, 1) * 100
    >>> one = np.ones((1, 1), np.float32)
    >>> r = fit_ramps(ramp, np.zeros(ramp.shape, np.uint8), np.zeros((1, 1), np.uint32),
    ...               10 * one, 2 * one, frame_time=10.0, group_time=10.0, nframes=1, groupgap=0)
    >>> float(r.slope[0, 0]), float(r.var_poisson[0, 0]), float(r.var_rnoise[0, 0])
    (10.0, 0.125, 0.05000000074505806)
    """
    sci = _native(sci, np.float32, "sci", ndim=4)
    nints, ngroups, ny, nx = sci.shape
    groupdq = _native(groupdq, np.uint8, "groupdq", shape=sci.shape)
    pixeldq = _native(pixeldq, np.uint32, "pixeldq", shape=(ny, nx))
    readnoise = _native(readnoise, np.float32, "readnoise", shape=(ny, nx))
    gain = _native(gain, np.float32, "gain", shape=(ny, nx))
    zf = _native(np.empty((0, 0, 0), np.float32) if zeroframe is None else zeroframe, np.float32, "zeroframe",
                 shape=None if zeroframe is None else (nints, ny, nx))
    dark = _native(np.empty((0, 0), np.float32) if average_dark_current is None else average_dark_current,
                   np.float32, "average_dark_current", shape=None if average_dark_current is None else (ny, nx))
    if nints < 1 or ngroups < 1:
        msg = f"sci needs at least one integration and one group, got shape {sci.shape}"
        raise ValueError(msg)
    for name, value in (("frame_time", frame_time), ("group_time", group_time)):
        if not float(value) > 0:
            msg = f"{name} must be > 0 s, got {value!r}"
            raise ValueError(msg)
    for name, value, low in (("nframes", nframes, 1), ("groupgap", groupgap, 0), ("dropframes1", dropframes1, 0)):
        if int(value) != value or value < low:
            msg = f"{name} must be an integer >= {low}, got {value!r}"
            raise ValueError(msg)
    first, stop = (0, ngroups) if group_range is None else (int(group_range[0]), int(group_range[1]))
    if not 0 <= first < stop <= ngroups:
        msg = f"group_range must satisfy 0 <= first < stop <= {ngroups}, got {group_range!r}"
        raise ValueError(msg)
    lo, hi = group_dnu_bounds(firstgroup, lastgroup, ngroups)

    tframe = float(np.float32(frame_time))
    tgroup = float(np.float32(group_time))
    one_group_time = (float(np.float32(nframes)) + 1.0) * tframe / 2.0

    rate_f = np.empty((ramp_ols_c.N_OUT, ny, nx), dtype=np.float32)
    rate_dq = np.empty((ny, nx), dtype=np.uint32)
    ints_f = np.empty((ramp_ols_c.N_OUT, nints, ny, nx), dtype=np.float32)
    ints_dq = np.empty((nints, ny, nx), dtype=np.uint32)
    ramp_ols_c.fit_tile(
        sci, groupdq, pixeldq, readnoise, gain, dark, zf, first, stop, lo, hi, first > 0,
        bool(suppress_one_group) and ngroups > 1, zeroframe is not None, tframe, tgroup, one_group_time,
        int(nframes), _BATCHED, rate_f, rate_dq, ints_f, ints_dq,
    )
    slope, err, var_p, var_r = (rate_f[r] for r in _OUT_ROWS)
    slope_i, err_i, var_p_i, var_r_i = (ints_f[r] for r in _OUT_ROWS)
    return RampFitResult(slope, err, rate_dq, var_p, var_r, slope_i, err_i, ints_dq, var_p_i, var_r_i)


_OUT_ROWS = (ramp_ols_c.OUT_SLOPE, ramp_ols_c.OUT_ERR, ramp_ols_c.OUT_VARP, ramp_ols_c.OUT_VARR)
_BATCHED = True
"""Fit clean pixels in vectorized runs (tests switch it off to check that both paths agree)."""


def _native(arr: np.ndarray, dtype: type, name: str, *, ndim: int | None = None,
            shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``arr`` as a read-only view of a C-contiguous native-byte-order array of ``dtype`` (a copy
    only if needed). Read-only whatever the caller's flags, so numba compiles one signature."""
    arr = np.asarray(arr)
    want = np.dtype(dtype)
    if arr.dtype.newbyteorder("=") != want:
        msg = f"{name} must have dtype {want}, got {arr.dtype}"
        raise TypeError(msg)
    if ndim is not None and arr.ndim != ndim:
        msg = f"{name} must have {ndim} dimensions, got shape {arr.shape}"
        raise ValueError(msg)
    if shape is not None and arr.shape != tuple(shape):
        msg = f"{name} must have shape {tuple(shape)}, got {arr.shape}"
        raise ValueError(msg)
    view = np.ascontiguousarray(arr, dtype=want).view()
    view.flags.writeable = False
    return view
