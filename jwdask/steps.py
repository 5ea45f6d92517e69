"""Bookkeeping shared by every step: cal_step status, reference files used, new variables.

Steps are pure: each helper returns a new Dataset with a new ``attrs["meta"]``; the input
Dataset is never changed.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import xarray as xr

from jwdask.errors import ReferenceFileError
from jwdask.io import keywords

log = logging.getLogger(__name__)

CAL_STEP_KEY = {"dark_current": "dark_sub"}
"""Steps whose ``meta.cal_step`` attribute (``S_*`` keyword) differs from the step name."""


def cal_step_key(step: str) -> str:
    """The ``meta["cal_step"]`` key of a step (``dark_current`` -> ``dark_sub``)."""
    return CAL_STEP_KEY.get(step, step)


def _with_meta(ds: xr.Dataset) -> tuple[xr.Dataset, dict[str, Any]]:
    out = ds.copy()
    out.attrs = {**ds.attrs, "meta": copy.deepcopy(ds.attrs.get("meta", {}))}
    return out, out.attrs["meta"]


def completed(ds: xr.Dataset, step: str, variables: Mapping[str, xr.DataArray] | None = None, *,
              ref_files: Mapping[str, str] | None = None,
              meta: Mapping[str, Any] | None = None) -> xr.Dataset:
    """``ds`` with ``variables`` replaced or added, the step marked COMPLETE, the reference
    files it used recorded (``R_*``) and other ``meta`` paths (dotted keys) set."""
    out, m = _with_meta(ds.assign(dict(variables or {})))
    keywords.put(m, ("cal_step", cal_step_key(step)), "COMPLETE")
    for reftype, name in (ref_files or {}).items():
        keywords.put(m, ("ref_file", reftype, "name"), name)
    for path, value in (meta or {}).items():
        keywords.put(m, path, value)
    return out


def skipped(ds: xr.Dataset, step: str, reason: str, *,
            ref_files: Mapping[str, str] | None = None) -> xr.Dataset:
    """``ds`` unchanged but for the step marked SKIPPED (the reason is logged).

    Objects that carry several Datasets (an Image3 association) mark themselves through
    their ``mark_skipped(step, reason)``.
    """
    if hasattr(ds, "mark_skipped"):
        return ds.mark_skipped(step, reason)
    log.info("%s: skipped (%s)", step, reason)
    out, m = _with_meta(ds)
    keywords.put(m, ("cal_step", cal_step_key(step)), "SKIPPED")
    for reftype, name in (ref_files or {}).items():
        keywords.put(m, ("ref_file", reftype, "name"), name)
    return out


def reference(refs: Any, reftype: str, ds: xr.Dataset) -> tuple[xr.Dataset | None, str]:
    """The reference of ``reftype`` cut to the exposure's pixels and tiled like it.

    Returns ``(None, "N/A")`` when the provider says there is no such reference (the
    step then skips itself), else ``(dataset, recorded name)``.
    """
    if refs is None:
        msg = "no reference provider was given (pass refs=RefProvider(...))"
        raise ReferenceFileError(reftype, msg)
    from jwdask.refs import cut_to

    meta = ds.attrs.get("meta", {})
    if refs.path(reftype, meta) is None:
        return None, "N/A"
    chunks = {d: ds.chunks[d] for d in ("y", "x") if d in ds.chunks}
    tile = (max(chunks["y"]), max(chunks["x"])) if len(chunks) == 2 else (512, 512)
    ref = cut_to(refs.open(reftype, meta, tile=tile), ds)
    return ref.chunk(chunks), refs.record(reftype, meta)
