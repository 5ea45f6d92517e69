"""persistence: flag groups [s windows] that follow saturation, as jwst 3.0 (off by default).

The first SATURATED group of an integration (or a value above ``dn_threshold`` DN) opens a
window of ``persistence_time`` seconds in which every group gets PERSISTENCE (and DO_NOT_USE
with ``persistence_dnu``); windows carry over from earlier exposures through
``persistence_array_file``. Per (y, x) tile with all integrations and groups.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asdf
import numpy as np
import xarray as xr

from jwdask.detector1._ramp import exposure, require_ramp
from jwdask.errors import InputError
from jwdask.io import keywords
from jwdask.kernels.persistence import flag_persistence, integration_start_epochs
from jwdask.steps import completed, skipped
from jwdask.tiles import map_tiles


def persistence(ds: xr.Dataset, refs: Any, *, persistence_time: int | None = None,
                dn_threshold: float | None = None, persistence_array_file: str | None = None,
                save_persistence: str | None = None, persistence_dnu: bool = False) -> xr.Dataset:
    """Flag PERSISTENCE in ``groupdq``; the window end times [s, Unix epoch] are kept in
    ``persistence_window_end`` (y, x).

    Parameters
    ----------
    persistence_time : int
        Window length [s]; required (jwst marks the step FAILED without it).
    dn_threshold : float, optional
        Values above it [DN] also open a window.
    persistence_array_file : str, optional
        ASDF file of earlier windows (jwst layout: per detector ``rows, cols, vals, pers_time``).
    save_persistence : str, optional
        Writing the windows to an ASDF file is not implemented (raises).
    persistence_dnu : bool
        Also set DO_NOT_USE on flagged groups.
    """
    require_ramp(ds, "persistence")
    if save_persistence is not None:
        msg = ("persistence: save_persistence (writing the window array to ASDF) is not implemented "
               "in jwdask; the windows are in the 'persistence_window_end' variable of the ramp")
        raise NotImplementedError(msg)
    if persistence_time is None or persistence_time <= 0:
        out = skipped(ds, "persistence", "persistence_time is not set (> 0 s required)")
        keywords.put(out.attrs["meta"], ("cal_step", "persistence"), "FAILED")
        return out
    meta = ds.attrs.get("meta", {})
    nints = ds.sizes["integration"]
    int_start = ds["int_times.int_start_MJD_UTC"].values if "int_times.int_start_MJD_UTC" in ds else None
    starts = integration_start_epochs(
        nints, exposure_start_mjd=float(exposure(ds, "start_time")),
        integration_time=float(exposure(ds, "integration_time")),
        int_start_mjd=None if int_start is None else list(int_start))
    previous = _previous_windows(persistence_array_file, str(keywords.get(meta, "instrument.detector", "")),
                                 persistence_time, (ds.sizes["y"], ds.sizes["x"]))
    window = xr.DataArray(previous, dims=("y", "x"))
    flags = map_tiles(
        _flag, [ds.sci, ds.groupdq, window],
        {"groupdq": (ds.groupdq.dims, np.uint8), "window_end": (("y", "x"), np.float64)},
        like=ds.sci, name="persistence", integration_start=starts,
        group_time=float(exposure(ds, "group_time")), persistence_time=float(persistence_time),
        dn_threshold=dn_threshold, persistence_dnu=persistence_dnu)
    return completed(ds, "persistence", {"groupdq": flags["groupdq"],
                                         "persistence_window_end": flags["window_end"]})


def _flag(sci: np.ndarray, groupdq: np.ndarray, window_end: np.ndarray, **kwargs: Any) -> Any:
    return flag_persistence(sci, groupdq, window_end=window_end, **kwargs)


def _previous_windows(path: str | None, detector: str, persistence_time: float,
                      shape: tuple[int, int]) -> np.ndarray:
    """Window end times [s] carried from earlier exposures (zeros when there are none)."""
    windows = np.zeros(shape, np.float64)
    if path is None or not Path(path).exists():
        return windows
    try:
        with asdf.open(path) as af:
            if detector not in af.tree:
                return windows
            entry = af.tree[detector]
            if entry["pers_time"] != persistence_time:
                return windows
            windows[np.asarray(entry["rows"]), np.asarray(entry["cols"])] = np.asarray(entry["vals"])
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise InputError(path, detector, f"cannot read the persistence array ({exc})") from exc
    return windows
