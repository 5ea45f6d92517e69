"""flat_field (imaging): divide rates [DN/s] by the FLAT and create ``var_flat`` (image2.md §4).

The FLAT is cut to the science window through the full-frame ``y``/``x`` coordinates; NaN,
zero and ``NO_FLAT_FIELD`` flat pixels are flagged ``DO_NOT_USE`` and left uncorrected, then
NaN in every array (``match_nans_and_flags``). A flat smaller than the science array skips the
step (as jwst does); a flat for another filter or pupil is an error.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import xarray as xr
from dask.base import tokenize

from jwdask.errors import InputError, ReferenceFileError
from jwdask.io import keywords
from jwdask.kernels.flat_field import apply_flat
from jwdask.refs import cut_to
from jwdask.refs.readers import open_image
from jwdask.refs.selectors import Candidate, condition, selector_keys
from jwdask.steps import completed, skipped
from jwdask.tiles import map_tiles

log = logging.getLogger(__name__)

IMAGE_VARS = ("sci", "err", "dq")
OPTICAL_KEYS = ("FILTER", "PUPIL", "BAND")
"""Selectors a FLAT must share with the exposure (when the FLAT names them)."""
_META_PATHS = {"FILTER": "instrument.filter", "PUPIL": "instrument.pupil", "BAND": "instrument.band"}
NIRSPEC_SPECTRAL = frozenset({"NRS_AUTOWAVE", "NRS_BRIGHTOBJ", "NRS_FIXEDSLIT", "NRS_IFU", "NRS_LAMP",
                              "NRS_MSASPEC"})
"""Exposure types that jwst flat-fields with the NIRSpec f/s/d flats instead of a FLAT."""


def require_image(ds: xr.Dataset, step: str) -> None:
    """Check that ``ds`` is a rate-like Dataset (``sci``, ``err``, ``dq`` on ``(..., y, x)``)."""
    for var in IMAGE_VARS:
        if var not in ds:
            msg = (f"step '{step}' needs a rate Dataset with '{var}' (sci, err, dq, var_poisson, "
                   f"var_rnoise); found {sorted(map(str, ds.data_vars))}")
            raise InputError(ds.attrs.get("source", "exposure"), var.upper(), msg)


def task_name(step: str, inputs: list[xr.DataArray | None], *params: Any) -> str:
    """A dask key prefix unique to the step, its inputs and parameters (``map_tiles`` names
    are used verbatim as keys, so a bare step name would collide between exposures)."""
    return f"{step}-{tokenize(*[a.data for a in inputs if a is not None], *params)}"


def check_optical_elements(reftype: str, ref: xr.Dataset, meta: dict[str, Any], source: str) -> None:
    """Raise if the reference names a FILTER/PUPIL/BAND the exposure does not have.

    Only selectors of ``reftype`` for the exposure's instrument are compared; a reference
    without the keyword (or with ``N/A``/``ANY``) fits any exposure.
    """
    header = ref.attrs.get("header", {})
    path = str(ref.attrs.get("path", ref.attrs.get("filename", "?")))
    candidate = Candidate(path, header)
    instrument = keywords.get(meta, "instrument.name")
    for key in OPTICAL_KEYS:
        if key not in selector_keys(reftype, instrument):
            continue
        allowed = candidate.pattern(key)
        if allowed is None:
            continue
        value = keywords.get(meta, _META_PATHS[key])
        if value is None:
            raise InputError(source, f"PRIMARY {key}",
                             f"required keyword is missing (the {reftype} reference {path} is for "
                             f"{key}={'|'.join(allowed)})")
        if condition(value) not in allowed and "*" not in allowed:
            msg = f"{path} is for {key}={'|'.join(allowed)}, the exposure has {key}={condition(value)}"
            raise ReferenceFileError(reftype, msg)


def _decoded_dq(ref: xr.Dataset) -> xr.DataArray | None:
    """The flat's dq (already translated through its DQ_DEF table by the reader)."""
    return ref.dq.astype(np.uint32) if "dq" in ref else None


def _open_flat(ds: xr.Dataset, refs: Any, user_supplied_flat: str | None) -> tuple[xr.Dataset | None, str]:
    meta = ds.attrs.get("meta", {})
    if user_supplied_flat is not None:
        log.info("flat_field: user-supplied flat %s", user_supplied_flat)
        return open_image("flat", str(user_supplied_flat)), str(user_supplied_flat)
    if refs is None:
        raise ReferenceFileError("flat", "no reference provider was given (pass refs=RefProvider(...))")
    if refs.path("flat", meta) is None:
        return None, "N/A"
    return refs.open("flat", meta), refs.record("flat", meta)


def flat_field(ds: xr.Dataset, refs: Any, *, inverse: bool = False,
               user_supplied_flat: str | None = None) -> xr.Dataset:
    """Flat-field a rate image or cube [DN/s] with the FLAT reference (jwst ``FlatFieldStep``).

    Parameters
    ----------
    inverse : bool
        Multiply by the flat instead of dividing (``var_flat`` = 0).
    user_supplied_flat : str, optional
        A FLAT file to use instead of the reference (recorded as ``R_FLAT``).
    """
    require_image(ds, "flat_field")
    meta = ds.attrs.get("meta", {})
    source = str(ds.attrs.get("source", keywords.get(meta, "filename", "exposure")))
    exp_type = str(keywords.get(meta, "exposure.type", "")).upper()
    if exp_type in NIRSPEC_SPECTRAL and str(keywords.get(meta, "instrument.lamp_mode", "")).upper() != "IMAGE":
        msg = f"flat_field for NIRSpec spectroscopy ({exp_type}: fflat/sflat/dflat) is not implemented in jwdask"
        raise NotImplementedError(msg)
    ref, name = _open_flat(ds, refs, user_supplied_flat)
    if ref is None:
        return skipped(ds, "flat_field", "no flat reference", ref_files={"flat": name})
    if "sci" not in ref:
        raise ReferenceFileError("flat", f"{name}: no SCI image")
    if ref.sizes["y"] < ds.sizes["y"] or ref.sizes["x"] < ds.sizes["x"]:
        log.warning("flat_field: flat %s (%dx%d) is smaller than the science array (%dx%d)",
                    name, ref.sizes["x"], ref.sizes["y"], ds.sizes["x"], ds.sizes["y"])
        return skipped(ds, "flat_field", "the flat is smaller than the science data", ref_files={"flat": name})
    check_optical_elements("flat", ref, meta, source)
    ref = cut_to(ref, ds).chunk({d: ds.chunks[d] for d in ("y", "x") if d in ds.chunks})
    dims = ds.sci.dims
    names = ["sci", "err", "dq", "var_flat"] + [v for v in ("var_poisson", "var_rnoise") if v in ds]
    outputs = {k: (dims, np.uint32 if k == "dq" else np.float32) for k in names}
    inputs = [ds.sci, ds.err, ds.dq, ds.get("var_poisson"), ds.get("var_rnoise"),
              ref.sci, ref.get("err"), _decoded_dq(ref)]
    out = map_tiles(apply_flat, inputs, outputs, like=ds.sci, name=task_name("flat_field", inputs, inverse),
                    inverse=bool(inverse))
    out["sci"].attrs = dict(ds.sci.attrs)
    out["err"].attrs = dict(ds.err.attrs)
    return completed(ds, "flat_field", out, ref_files={"flat": name})

