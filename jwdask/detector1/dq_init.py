"""dq_init: start the data-quality arrays from the MASK reference and make the ramp float32.

``pixeldq = MASK.dq [| user_supplied_dq]``; every group of a DO_NOT_USE pixel gets DO_NOT_USE
in ``groupdq``; ``sci`` [DN] becomes float32 (the raw cube is uint16). A NIRSpec IRS2 exposure
(3200 rows) takes a MASK in the IRS2 layout, applied to every row as jwst does
(:mod:`jwdask.refs.irs2_layout`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from astropy.io import fits

from jwdask import dqflags
from jwdask.errors import InputError, ReferenceFileError
from jwdask.steps import completed, reference


def dq_init(ds: xr.Dataset, refs: Any, *, user_supplied_dq: str | None = None) -> xr.Dataset:
    """Initialise ``pixeldq`` (uint32) and ``groupdq`` (uint8) from the MASK reference.

    Parameters
    ----------
    user_supplied_dq : str, optional
        A FITS file whose first 2-D image (or ``DQ`` extension) is OR-ed into the mask;
        its shape must equal the exposure's (y, x) shape.
    """
    mask, name = reference(refs, "mask", ds)
    if mask is None:
        msg = "dq_init needs a mask reference file (got N/A)"
        raise ReferenceFileError("mask", msg)
    dq = mask.dq.astype(np.uint32)
    if user_supplied_dq is not None:
        dq = dq | xr.DataArray(_read_user_dq(user_supplied_dq, dq.shape), dims=("y", "x"),
                               coords={"y": dq.y, "x": dq.x})
    sci = ds.sci.astype(np.float32)
    sci.attrs = {**ds.sci.attrs, "units": "DN"}
    groupdq = xr.zeros_like(sci, dtype=np.uint8) | (dq & dqflags.DO_NOT_USE).astype(np.uint8)
    groupdq = groupdq.transpose(*sci.dims)
    variables = {"sci": sci, "groupdq": groupdq, "pixeldq": dq}
    if "zeroframe" in ds:
        variables["zeroframe"] = ds.zeroframe.astype(np.float32)
    return completed(ds, "dq_init", variables, ref_files={"mask": name})


def _read_user_dq(path: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        with fits.open(path) as hdul:
            hdu = hdul["DQ"] if "DQ" in hdul else next(h for h in hdul if h.data is not None)
            data = np.asarray(hdu.data)
    except (OSError, StopIteration, KeyError) as exc:
        raise InputError(path, "DQ", f"cannot read a user-supplied DQ array ({exc})") from exc
    if data.shape != shape:
        raise InputError(path, "DQ", f"shape {data.shape} differs from the mask's {shape}")
    return data.astype(np.uint32)
