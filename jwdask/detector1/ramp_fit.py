"""ramp_fit: fit a slope to every ramp (OLS_C or LIKELY of jwst 3.0 / stcal), per (y, x) tile.

Rates in DN/s, variances in (DN/s)^2. The Dataset returned holds the rate arrays
(``sci, err, dq, var_poisson, var_rnoise`` on ``(y, x)``) and the per-integration arrays
(``<name>_ints`` on ``(integration, y, x)``); :func:`rate_product` and
:func:`rateints_product` give the ``_rate`` and ``_rateints`` layouts.
"""

from __future__ import annotations

import logging

import dask.array as da
import numpy as np
import xarray as xr

from jwdask.detector1._ramp import exposure, require_ramp
from jwdask.errors import InputError, ParameterError
from jwdask.io import keywords
from jwdask.kernels.ramp_fit import (
    GroupFlagSummary,
    exposure_group_range,
    fit_ramps,
    group_flag_summary,
)
from jwdask.kernels.ramp_fit_likely import LIKELY_MIN_NGROUPS, fit_ramps_likely
from jwdask.steps import completed, reference
from jwdask.tiles import map_tiles

log = logging.getLogger(__name__)

RATE_VARS = ("sci", "err", "dq", "var_poisson", "var_rnoise")
_KERNEL_NAMES = {"sci": "slope", "err": "err", "dq": "dq", "var_poisson": "var_poisson",
                 "var_rnoise": "var_rnoise"}


def ramp_fit(ds: xr.Dataset, refs: object, *, algorithm: str = "OLS_C", suppress_one_group: bool = True,
             firstgroup: int | None = None, lastgroup: int | None = None) -> xr.Dataset:
    """Fit ramps [DN] to count rates [DN/s] with the OLS_C or LIKELY algorithm of jwst 3.0.

    Parameters
    ----------
    algorithm : {"OLS_C", "LIKELY"}
        OLS_C: segment-wise least squares. LIKELY: likelihood fit with its own jump search
        (Brandt 2024); as jwst, exposures with explicit read times use LIKELY and exposures
        with fewer than 4 groups fall back to OLS_C.
    suppress_one_group : bool
        Ignore ramps with a single good group (jwst default True; OLS_C only).
    firstgroup, lastgroup : int, optional
        0-based groups before/after which every group is marked DO_NOT_USE.
    """
    if algorithm.upper() not in ("OLS_C", "LIKELY"):
        msg = f"ramp_fit: unknown algorithm {algorithm!r} (OLS_C or LIKELY)"
        raise ParameterError(msg)
    require_ramp(ds, "ramp_fit")
    read_times = _read_times(ds)
    algorithm = _effective_algorithm(ds, algorithm.upper(), read_times)
    gain, gain_name = reference(refs, "gain", ds)
    readnoise, rn_name = reference(refs, "readnoise", ds)
    if gain is None or readnoise is None:
        msg = "ramp_fit needs gain and readnoise reference files (got N/A)"
        raise ParameterError(msg)
    outputs = {f"{name}_ints" if ints else name: ((("integration",) if ints else ()) + ("y", "x"),
                                                   np.uint32 if name == "dq" else np.float32)
               for name in RATE_VARS for ints in (False, True)}
    names = {f"{k}_ints": f"{v}_ints" for k, v in _KERNEL_NAMES.items()} | _KERNEL_NAMES
    if algorithm == "LIKELY":
        nframes = int(exposure(ds, "nframes"))
        if "zeroframe" in ds and (len(read_times[0]) if read_times else nframes) < 2:
            log.warning("ramp_fit: ZEROFRAME present but the first group has < 2 reads; LIKELY ignores it")
        fitted = map_tiles(
            _fit_tile_likely, [ds.sci, ds.groupdq, ds.pixeldq, readnoise.sci, gain.sci, ds.get("zeroframe"),
                               ds.get("average_dark_current")],
            outputs, like=ds.sci, name="ramp_fit_likely", names=names,
            frame_time=float(exposure(ds, "frame_time")), nframes=nframes,
            groupgap=int(exposure(ds, "groupgap")), read_times=read_times, firstgroup=firstgroup,
            lastgroup=lastgroup, row_width=int(ds.sizes["x"]),
        )
        return _finish(ds, fitted, gain, gain_name, rn_name)
    flags = {"suppress_one_group": suppress_one_group, "firstgroup": firstgroup, "lastgroup": lastgroup}
    miri = str(keywords.get(ds.attrs.get("meta", {}), "instrument.name", "")).upper() == "MIRI"
    source = str(ds.attrs.get("source", "exposure"))
    summary = _exposure_summary(ds.groupdq, flags)
    fitted = map_tiles(
        _fit_tile, [ds.sci, ds.groupdq, ds.pixeldq, readnoise.sci, gain.sci, ds.get("zeroframe"),
                    ds.get("average_dark_current")],
        outputs, like=ds.sci, name="ramp_fit",
        names=names, frame_time=float(exposure(ds, "frame_time")),
        group_time=float(exposure(ds, "group_time")), nframes=int(exposure(ds, "nframes")),
        groupgap=int(exposure(ds, "groupgap")), dropframes1=int(exposure(ds, "drop_frames1", 0) or 0),
        summary=summary if miri else None, source=source, **flags,
    )
    if not miri:  # the fit never waits for the exposure-wide summary: only the rates are checked
        fitted.update(map_tiles(_require_fit_range, [fitted["sci"], fitted["sci_ints"]],
                                {name: (outputs[name][0], np.float32) for name in ("sci", "sci_ints")},
                                like=ds.sci, name="ramp_fit-check", summary=summary, source=source))
    return _finish(ds, fitted, gain, gain_name, rn_name)


def _finish(ds: xr.Dataset, fitted: dict[str, xr.DataArray], gain: xr.Dataset, gain_name: str,
            rn_name: str) -> xr.Dataset:
    """The step's output Dataset: the ramp arrays replaced by the fitted rate arrays."""
    for name in ("sci", "err", "var_poisson", "var_rnoise"):
        fitted[name].attrs["units"] = "DN/s" if name in ("sci", "err") else "(DN/s)**2"
        fitted[f"{name}_ints"].attrs["units"] = fitted[name].attrs["units"]
    out = ds.drop_vars([v for v in ("sci", "groupdq", "pixeldq", "zeroframe") if v in ds])
    gainfact = gain.attrs.get("meta", {}).get("exposure", {}).get("gain_factor")
    meta = {"bunit_data": "DN/s", "bunit_err": "DN/s"}
    if gainfact is not None:
        meta["exposure.gain_factor"] = gainfact
    return completed(out, "ramp_fit", fitted, ref_files={"gain": gain_name, "readnoise": rn_name}, meta=meta)


def _read_times(ds: xr.Dataset) -> list[list[float]] | None:
    """``meta.exposure.read_times`` [s] (frame times of each group), or None when absent."""
    read_times = keywords.get(ds.attrs.get("meta", {}), "exposure.read_times")
    if read_times is None or not len(read_times):
        return None
    times = [[float(v) for v in np.atleast_1d(t)] for t in read_times]
    if len(times) != ds.sizes["group"]:
        raise InputError(str(ds.attrs.get("source", "exposure")), "meta.exposure.read_times",
                         f"lists {len(times)} groups, the ramps have {ds.sizes['group']}")
    return times


def _effective_algorithm(ds: xr.Dataset, algorithm: str, read_times: list[list[float]] | None) -> str:
    """The algorithm jwst's RampFitStep really runs for this exposure (``read_times`` as
    :func:`_read_times`)."""
    if read_times is not None and algorithm != "LIKELY":
        log.warning("ramp_fit: the exposure has explicit read times (unevenly sampled); using LIKELY")
        algorithm = "LIKELY"
    ngroups = int(ds.sizes["group"])
    if algorithm == "LIKELY" and ngroups < LIKELY_MIN_NGROUPS:
        log.info("ramp_fit: LIKELY needs at least %d groups, the exposure has %d; using OLS_C",
                 LIKELY_MIN_NGROUPS, ngroups)
        algorithm = "OLS_C"
    return algorithm


def _exposure_summary(groupdq: xr.DataArray, flags: dict[str, object]) -> da.Array:
    """(2, group) bool dask array: groups DO_NOT_USE / SATURATED in every pixel of the exposure.

    A cheap reduction of one small array per tile: the two exposure-wide decisions of stcal
    (MIRI group trimming, "first group saturated everywhere") need it, nothing else.
    """
    data = groupdq.data
    ngroups = data.shape[1]
    per_tile = data.map_blocks(_tile_summary, dtype=bool, flags=flags,
                               chunks=((2,), (ngroups,), (1,) * data.numblocks[2], (1,) * data.numblocks[3]))
    return per_tile.all(axis=(2, 3))


def _tile_summary(groupdq: np.ndarray, *, flags: dict[str, object]) -> np.ndarray:
    summary = group_flag_summary(groupdq, **flags)
    return np.stack([summary.all_dnu, summary.all_sat])[:, :, np.newaxis, np.newaxis]


def _group_range(summary: np.ndarray, *, miri: bool, source: str) -> tuple[int, int]:
    group_range = exposure_group_range(GroupFlagSummary(summary[0], summary[1]), miri=miri)
    if group_range is None:
        msg = ("every pixel's first usable group is saturated (or too few groups are usable): "
               "jwst makes no rate product for this exposure, and neither does jwdask")
        raise InputError(source, "SCI", msg)
    return group_range


def _require_fit_range(sci: np.ndarray, sci_ints: np.ndarray, *, summary: np.ndarray,
                       source: str) -> dict[str, np.ndarray]:
    """The rates unchanged, once the exposure-wide summary says a near-IR exposure has a rate."""
    _group_range(summary, miri=False, source=source)
    return {"sci": sci, "sci_ints": sci_ints}


def _fit_tile(sci, groupdq, pixeldq, readnoise, gain, zeroframe, average_dark_current, *, names, summary,
              source, **kwargs):
    # Near-IR: stcal fits every group unless the exposure has no rate at all (checked on the
    # outputs by _require_fit_range); MIRI trims groups flagged everywhere, so it needs the summary.
    group_range = (0, sci.shape[1]) if summary is None else _group_range(summary, miri=True, source=source)
    result = fit_ramps(sci, groupdq, pixeldq, readnoise, gain, zeroframe=zeroframe,
                       average_dark_current=average_dark_current, group_range=group_range, **kwargs)
    return {key: getattr(result, attr) for key, attr in names.items()}


def _fit_tile_likely(sci, groupdq, pixeldq, readnoise, gain, zeroframe, average_dark_current, *, names, **kwargs):
    result = fit_ramps_likely(sci, groupdq, pixeldq, readnoise, gain, zeroframe=zeroframe,
                              average_dark_current=average_dark_current, **kwargs)
    return {key: getattr(result, attr) for key, attr in names.items()}


def rate_product(ds: xr.Dataset) -> xr.Dataset:
    """The ``_rate`` product (ImageModel layout) of a fitted Dataset."""
    return ds[list(RATE_VARS)].assign_attrs(ds.attrs)


def rateints_product(ds: xr.Dataset) -> xr.Dataset:
    """The ``_rateints`` product (CubeModel layout, with INT_TIMES) of a fitted Dataset."""
    tables = [v for v in ds.data_vars if str(v).startswith("int_times.")]
    out = ds[[f"{v}_ints" for v in RATE_VARS] + tables].rename({f"{v}_ints": v for v in RATE_VARS})
    out.attrs = dict(ds.attrs)
    out.attrs["tables"] = {k: v for k, v in ds.attrs.get("tables", {}).items() if k == "int_times"}
    return out
