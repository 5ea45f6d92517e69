"""rscd (MIRI): flag the first groups of each integration DO_NOT_USE (jwst 3.0 flags only).

The RSCD table gives the groups to flag in the first integration and in later ones for the
exposure's SUBARRAY and READPATT; counts shrink for short ramps and, per pixel, for early
saturation (those pixels get FLUX_ESTIMATED). Skipped for non-MIRI detectors, a missing table
row, or NGROUPS < 3.
"""

from __future__ import annotations

from typing import Any

import dask
import numpy as np
import xarray as xr

from jwdask.detector1._miri import detector, meta_value, task_name
from jwdask.detector1._ramp import exposure, require_ramp
from jwdask.errors import ReferenceFileError
from jwdask.kernels.miri_rscd import (
    flag_rscd,
    integration_ranges,
    problem_levels,
    skip_counts,
)
from jwdask.steps import completed, skipped
from jwdask.tiles import block_delayed, map_tiles

TABLE = "RSCD_GROUP_SKIP"
COLUMNS = ("subarray", "readpatt", "group_skip1", "group_skip")


def _table_skips(refs: Any, ds: xr.Dataset, name: str) -> tuple[int, int] | None:
    """``(group_skip1, group_skip)`` of the table row for the exposure, None if there is none."""
    table = refs.open_table("rscd", ds.attrs.get("meta", {}), TABLE)
    missing = [c for c in COLUMNS if c not in table.colnames]
    if missing:
        raise ReferenceFileError("rscd", f"{name}: table {TABLE} lacks columns {missing}")
    subarray = str(meta_value(ds, "subarray.name", ""))
    if subarray.upper() == "SUBPRISM":
        subarray = "SLITLESSPRISM"
    readpatt = str(meta_value(ds, "exposure.readpatt", ""))
    for row in table:
        if str(row["subarray"]).rstrip() == subarray and str(row["readpatt"]).rstrip() == readpatt:
            return int(row["group_skip1"]), int(row["group_skip"])
    return None


def _or_levels(parts: list[np.ndarray]) -> np.ndarray:
    return np.logical_or.reduce(parts)


def rscd(ds: xr.Dataset, refs: Any) -> xr.Dataset:
    """Flag RSCD-affected leading groups in ``groupdq`` (no parameters)."""
    require_ramp(ds, "rscd")
    det = detector(ds)
    if not det.startswith("MIR"):
        return skipped(ds, "rscd", f"only for MIRI data (DETECTOR={det or 'missing'})")
    if refs is None:
        raise ReferenceFileError("rscd", "no reference provider was given (pass refs=RefProvider(...))")
    meta = ds.attrs.get("meta", {})
    if refs.path("rscd", meta) is None:
        return skipped(ds, "rscd", "no rscd reference", ref_files={"rscd": "N/A"})
    name = refs.record("rscd", meta)
    skips = _table_skips(refs, ds, name)
    if skips is None:
        return skipped(ds, "rscd", "READPATT, SUBARRAY combination not in the RSCD table",
                       ref_files={"rscd": name})
    nints, ngroups = int(exposure(ds, "nints")), int(exposure(ds, "ngroups"))
    counts = skip_counts(*skips, ngroups=ngroups, nints=nints)
    if counts is None:
        return skipped(ds, "rscd", f"too few groups (NGROUPS={ngroups} < 3)", ref_files={"rscd": name})
    skip1, skip2p = counts
    start = meta_value(ds, "exposure.integration_start")
    ranges = integration_ranges(ds.sizes["integration"], nints=nints,
                                integration_start=None if start is None else int(start),
                                skip1=skip1, skip2p=skip2p)
    gdq = ds.groupdq.data.rechunk({0: -1, 1: -1})
    levels = []
    for first, stop, skip in ranges:
        blocks = block_delayed(gdq[first:stop]).ravel()
        parts = [dask.delayed(problem_levels)(b, skip) for b in blocks]
        levels.append(dask.delayed(_or_levels)(parts))
    out = map_tiles(flag_rscd, [ds.groupdq, ds.pixeldq],
                    {"groupdq": (ds.groupdq.dims, np.uint8), "pixeldq": (("y", "x"), np.uint32)},
                    like=ds.sci, ranges=ranges, levels=levels,
                    name=task_name("rscd", ds.groupdq.data, ds.pixeldq.data, ranges))
    record = {}
    if start in (None, 1):
        record["rscd.ngroups_skip_int1"] = skip1
    if nints > 1:
        record["rscd.ngroups_skip_int2p"] = skip2p
    return completed(ds, "rscd", out, ref_files={"rscd": name}, meta=record)
