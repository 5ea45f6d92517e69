"""persistence: flag groups [s windows] that follow saturation, as jwst 3.0 (off by default).

The first SATURATED group of an integration (or a value above ``dn_threshold`` DN) opens a
window of ``persistence_time`` seconds in which every group gets PERSISTENCE (and DO_NOT_USE
with ``persistence_dnu``); windows carry over from earlier exposures through
``persistence_array_file``. Per (y, x) tile with all integrations and groups.

``save_persistence`` writes the windows at the end of the exposure to an ASDF file as jwst
does (per detector: ``filename``, ``rows``, ``cols``, ``vals`` of the open windows and
``pers_time``; other detectors' entries of an existing file are kept), atomically. The write
is one task over the gathered (y, x) window array [8 bytes/pixel]; the step's ``groupdq`` and
``persistence_window_end`` depend on it, so computing the exposure writes the file (and holds
the exposure's flagged ``groupdq`` tiles until the write is done).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import asdf
import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from jwdask.detector1._ramp import exposure, require_ramp
from jwdask.errors import InputError
from jwdask.io import keywords
from jwdask.kernels.persistence import flag_persistence, integration_start_epochs
from jwdask.steps import completed, skipped
from jwdask.tiles import as_delayed, map_tiles

log = logging.getLogger(__name__)


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
        ASDF file [path; a suffix other than ``.asdf`` is replaced by it] to which the window
        end times of this exposure's detector are written (jwst layout).
    persistence_dnu : bool
        Also set DO_NOT_USE on flagged groups.
    """
    require_ramp(ds, "persistence")
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
    previous = read_persistence_array(persistence_array_file, str(keywords.get(meta, "instrument.detector", "")),
                                 persistence_time, (ds.sizes["y"], ds.sizes["x"]))
    window = xr.DataArray(previous, dims=("y", "x"))
    flags = map_tiles(
        _flag, [ds.sci, ds.groupdq, window],
        {"groupdq": (ds.groupdq.dims, np.uint8), "window_end": (("y", "x"), np.float64)},
        like=ds.sci, name="persistence", integration_start=starts,
        group_time=float(exposure(ds, "group_time")), persistence_time=float(persistence_time),
        dn_threshold=dn_threshold, persistence_dnu=persistence_dnu)
    variables = {"groupdq": flags["groupdq"], "persistence_window_end": flags["window_end"]}
    if save_persistence is not None:
        variables = _after_saving(variables, save_persistence, meta=meta, persistence_time=persistence_time)
    return completed(ds, "persistence", variables)


def persistence_file_path(save_persistence: str) -> Path:
    """Where jwst writes ``save_persistence``: the name with its suffix replaced by ``.asdf``."""
    path = Path(save_persistence)
    return path if path.suffix == ".asdf" else path.with_suffix(".asdf")


def _after_saving(variables: dict[str, xr.DataArray], save_persistence: str, *, meta: Any,
                  persistence_time: int) -> dict[str, xr.DataArray]:
    """``variables`` made to depend on one task writing the window array to ASDF."""
    window = variables["persistence_window_end"]
    path = persistence_file_path(save_persistence)
    detector = str(keywords.get(meta, "instrument.detector", ""))
    filename = keywords.get(meta, "filename")
    token = tokenize(window.data.name, str(path), detector, filename, persistence_time)
    written = da.from_delayed(
        dask.delayed(write_persistence_array, pure=True)(
            as_delayed(window.data), path, detector=detector, filename=filename,
            persistence_time=persistence_time, dask_key_name=f"persistence-save-{token}"),
        shape=(), dtype=bool)
    out = {}
    for name, var in variables.items():
        data = da.map_blocks(_once_written, var.data, written, dtype=var.dtype,
                             name=f"persistence-saved-{name}-{token}")
        out[name] = var.copy(data=data)
    return out


def _once_written(block: np.ndarray, _written: Any) -> np.ndarray:
    return block


def write_persistence_array(window_end: np.ndarray, path: str | Path, *, detector: str, filename: str | None,
                            persistence_time: int) -> bool:
    """Write the open windows [s, Unix epoch] of ``detector`` to the ASDF file ``path`` (jwst
    layout), keeping the other detectors of an existing file; atomic (temporary file, rename).

    Raises
    ------
    InputError
        If an existing ``path`` cannot be read as ASDF.
    """
    path = Path(path)
    tree: dict[str, Any] = {}
    if path.exists():
        try:
            with asdf.open(path, lazy_load=False, memmap=False) as af:
                tree = {k: v for k, v in af.tree.items() if not k.startswith("asdf_") and k != "history"}
        except (OSError, ValueError) as exc:
            raise InputError(str(path), detector, f"cannot read the existing persistence file ({exc})") from exc
    rows, cols = np.nonzero(window_end)
    tree[detector] = {"filename": filename, "rows": rows, "cols": cols, "vals": window_end[rows, cols],
                      "pers_time": persistence_time}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        asdf.AsdfFile(tree).write_to(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("persistence: wrote %d open windows of %s to %s", rows.size, detector, path)
    return True


def _flag(sci: np.ndarray, groupdq: np.ndarray, window_end: np.ndarray, **kwargs: Any) -> Any:
    return flag_persistence(sci, groupdq, window_end=window_end, **kwargs)


def read_persistence_array(path: str | None, detector: str, persistence_time: float,
                           shape: tuple[int, int]) -> np.ndarray:
    """Window end times [s, Unix epoch] of ``detector`` in an ASDF file written with
    ``save_persistence`` (zeros when there is no file, no entry, or another ``pers_time``)."""
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
