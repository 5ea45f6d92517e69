"""NIRSpec IRS2 frame layout: the normal rows of a 3200-row frame, and moving pixels between the
IRS2 layout and the 2048-row normal layout (jwst 3.0 ``x_irs2`` ``make_mask``/``from_irs2``/``to_irs2``).

In DMS orientation an IRS2 frame has 3200 rows x 2048 columns: a row is one detector column
sample. Reading the detector order (the DMS rows of NRS1, reversed for NRS2), the first
``512 + 512 // NRS_NORM * NRS_REF`` (640) rows come from the reference output; each of the 4
amplifier sectors after it holds, from ``NRS_NORM // 2`` on, ``NRS_REF`` interleaved reference
rows every ``NRS_NORM + NRS_REF``. The remaining 2048 rows are the normal pixels.

How jwst 3.0 treats the steps before ``refpix`` on IRS2 exposures (reference files are never
reformatted):

- ``dq_init``, ``superbias``: CRDS supplies MASK and SUPERBIAS references already in the IRS2
  layout (3200 x 2048, SUBSIZE2 = 2048, selected by READPATT NRSIRS2*); they apply to every row,
  the interleaved reference rows and the reference output included. A 2048-row reference does
  not fit (jwst fails to broadcast it), and neither does it here.
- ``saturation``: the SATURATION reference stays 2048 x 2048. The ramp (and the IRS2-layout
  SUPERBIAS used by the group-2 test) is cut to its normal rows, flagged there, and the flags are
  written back; the reference rows get no flag and keep their ``groupdq``, ``pixeldq`` and
  ``zeroframe`` values.
- ``ipc``: the normal rows are corrected as a 2048 x 2048 full frame (its outer 4 rows and
  columns being reference pixels) with a 2048 x 2048 (or 2-D) IPC reference; the reference rows
  are unchanged.

The numpy functions build the masks and reformat arrays in memory (tests, reference files);
:func:`normal_view` and :func:`insert_normal` do the same lazily on the (y, x)-tiled
DataArrays of the steps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from jwdask.errors import InputError
from jwdask.io import keywords

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_NORMAL", "DEFAULT_REFERENCE", "FULL_FRAME", "exposure_rows", "from_irs2", "insert_normal",
           "is_irs2", "normal_dataset", "normal_mask", "normal_rows", "normal_view", "to_irs2"]

FULL_FRAME = 2048
"""Normal pixels along each axis of a full near-IR frame; a longer axis means IRS2 (jwst ``is_irs2``)."""
DEFAULT_NORMAL = 16
"""NRS_NORM [rows] assumed when the keyword is missing (jwst's default)."""
DEFAULT_REFERENCE = 4
"""NRS_REF [rows] assumed when the keyword is missing (jwst's default)."""
AMPLIFIERS = 4
"""Amplifier sectors after the reference output."""


def is_irs2(shape: Sequence[int]) -> bool:
    """Whether a frame of ``shape`` (``(..., y, x)``) is in the IRS2 layout: an axis longer than
    :data:`FULL_FRAME` pixels (jwst's test; it does not look at READPATT)."""
    return max(int(shape[-1]), int(shape[-2])) > FULL_FRAME


def normal_mask(length: int, nrs_normal: int = DEFAULT_NORMAL, nrs_reference: int = DEFAULT_REFERENCE) -> np.ndarray:
    """bool ``(length,)``: True at the normal samples of an IRS2 readout, in detector order.

    Parameters
    ----------
    length : int
        Samples along the long axis [pixels] (3200).
    nrs_normal, nrs_reference : int
        NRS_NORM and NRS_REF [samples]: normal samples between, and reference samples in, each
        interleaved block.

    Raises
    ------
    ValueError
        If the values are not positive or ``length`` is too short for the reference output.

    Examples
    --------
    >>> mask = normal_mask(3200)
    >>> int(mask.sum()), np.flatnonzero(~mask[640:680]).tolist()
    (2048, [8, 9, 10, 11, 28, 29, 30, 31])
    """
    if nrs_normal <= 0 or nrs_reference <= 0:
        msg = f"NRS_NORM={nrs_normal} and NRS_REF={nrs_reference} must be positive"
        raise ValueError(msg)
    refout = 512 + 512 // nrs_normal * nrs_reference
    if length <= refout:
        msg = f"an IRS2 axis of {length} samples is not longer than its reference output ({refout})"
        raise ValueError(msg)
    period = nrs_normal + nrs_reference
    per_output = (length - refout) // AMPLIFIERS
    blocks = per_output // period
    normal_per_output = per_output - blocks * nrs_reference
    mask = np.ones(length, dtype=bool)
    mask[:refout] = False
    if normal_per_output % nrs_normal == 0:
        # the blocks sit at the same rows whichever way an amplifier reads
        for start in range(refout + nrs_normal // 2, length + 1, period):
            mask[start:start + nrs_reference] = False
        return mask
    sector = np.ones(per_output, dtype=bool)
    for start in range(nrs_normal // 2, per_output + 1, period):
        sector[start:start + nrs_reference] = False
    for amp in range(AMPLIFIERS):
        lo = refout + amp * per_output
        mask[lo:lo + per_output] = sector if amp % 2 == 0 else sector[::-1]
    return mask


def normal_rows(length: int, detector: str, nrs_normal: int = DEFAULT_NORMAL,
                nrs_reference: int = DEFAULT_REFERENCE) -> np.ndarray:
    """bool ``(length,)``: the DMS rows of normal pixels (:func:`normal_mask`, reversed for NRS2).

    Raises
    ------
    ValueError
        If ``detector`` is not NRS1 or NRS2, or as :func:`normal_mask`.
    """
    detector = detector.upper()
    if detector not in ("NRS1", "NRS2"):
        msg = f"IRS2 frames come from NIRSpec NRS1 or NRS2, not {detector or 'no detector'}"
        raise ValueError(msg)
    mask = normal_mask(length, nrs_normal, nrs_reference)
    return mask[::-1].copy() if detector == "NRS2" else mask


def from_irs2(irs2: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The normal rows of ``irs2`` ``(..., length, x)``: ``(..., rows.sum(), x)``, a copy."""
    return np.asarray(irs2)[..., rows, :]


def to_irs2(normal: np.ndarray, rows: np.ndarray, fill: Any) -> np.ndarray:
    """An IRS2-layout array ``(..., len(rows), x)`` holding ``normal`` ``(..., rows.sum(), x)`` at
    the normal rows and ``fill`` (a scalar, or an array broadcasting to the reference rows'
    ``(..., n_reference, x)``) at the others; ``normal``'s dtype.

    Examples
    --------
    >>> rows = normal_rows(3200, "NRS1")
    >>> out = to_irs2(np.ones((2048, 3), np.float32), rows, 0.0)
    >>> out.shape, float(out[:640].sum()), float(out[rows].sum())
    ((3200, 3), 0.0, 6144.0)
    """
    normal = np.asarray(normal)
    if normal.shape[-2] != int(rows.sum()):
        msg = f"{normal.shape[-2]} normal rows given for a layout with {int(rows.sum())}"
        raise ValueError(msg)
    out = np.empty((*normal.shape[:-2], rows.size, normal.shape[-1]), dtype=normal.dtype)
    out[..., rows, :] = normal
    out[..., ~rows, :] = fill
    return out


def exposure_rows(ds: xr.Dataset, step: str) -> np.ndarray:
    """bool ``(y,)``: the normal DMS rows of an IRS2 exposure, from DETECTOR, NRS_NORM and NRS_REF.

    Raises
    ------
    InputError
        If the frame is not 3200-row-like DMS IRS2 (x longer than y, another detector, keywords
        that do not leave :data:`FULL_FRAME` normal rows).
    """
    source = str(ds.attrs.get("source", "exposure"))
    meta = ds.attrs.get("meta", {})
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    detector = str(keywords.get(meta, "instrument.detector", "") or "")
    settings = []
    for name, default in (("nrs_normal", DEFAULT_NORMAL), ("nrs_reference", DEFAULT_REFERENCE)):
        value = keywords.get(meta, f"exposure.{name}")
        if value is None:
            log.warning("%s: keyword %s not found; using %d", step, name.upper(), default)
            value = default
        settings.append(int(value))
    try:
        rows = normal_rows(ny, detector, *settings)
    except ValueError as exc:
        raise InputError(source, "SCI", f"{step}: not a DMS IRS2 frame ({ny} x {nx}): {exc}") from exc
    if int(rows.sum()) != FULL_FRAME or nx != FULL_FRAME:
        msg = (f"{step}: an IRS2 frame of {ny} x {nx} with NRS_NORM={settings[0]}, NRS_REF={settings[1]} has "
               f"{int(rows.sum())} x {nx} normal pixels, not the full {FULL_FRAME} x {FULL_FRAME} frame")
        raise InputError(source, "SCI", msg)
    return rows


def normal_view(arr: xr.DataArray, rows: np.ndarray, tile: tuple[int, int]) -> xr.DataArray:
    """The normal rows of an IRS2-layout ``arr`` (dims ``(..., y, x)``), lazily, tiled ``tile``.

    ``y`` becomes the normal layout's full-frame row index (``y[0] + arange(rows.sum())``), so
    2048 x 2048 references cut to it as to any full frame.
    """
    index = np.flatnonzero(rows)
    out = arr.isel(y=index)
    y0 = int(arr["y"].values[0]) if "y" in arr.coords else 0
    out = out.assign_coords(y=np.arange(y0, y0 + index.size))
    return out.chunk({"y": tile[0], "x": tile[1]}) if isinstance(arr.data, da.Array) else out


def normal_dataset(ds: xr.Dataset, rows: np.ndarray, names: Sequence[str]) -> xr.Dataset:
    """The variables ``names`` of an IRS2 exposure (those present) cut to their normal rows
    (:func:`normal_view`), tiled like ``ds``; same ``attrs``."""
    tile = (max(ds.chunks["y"]), max(ds.chunks["x"])) if ds.chunks else (FULL_FRAME, FULL_FRAME)
    variables = {n: normal_view(ds[n], rows, tile) for n in names if n in ds}
    return xr.Dataset(variables, attrs=dict(ds.attrs))


def insert_normal(irs2: xr.DataArray, normal: xr.DataArray, rows: np.ndarray) -> xr.DataArray:
    """``irs2`` with its normal rows replaced by ``normal`` (same leading dims), lazily; chunks,
    coordinates and attributes of ``irs2``, dtype of ``normal``."""
    index = np.cumsum(rows) - 1
    index[~rows] = 0
    normal = normal.transpose(*irs2.dims)
    new = normal.data if isinstance(normal.data, da.Array) else da.from_array(np.asarray(normal.data))
    old = irs2.data if isinstance(irs2.data, da.Array) else da.from_array(np.asarray(irs2.data))
    spread = da.take(new, index, axis=new.ndim - 2).rechunk(old.chunks)
    keep = da.from_array(rows[:, None], chunks=(old.chunks[-2], (1,)))
    data = da.where(keep, spread, old.astype(new.dtype)).rechunk(old.chunks)
    return xr.DataArray(data, dims=irs2.dims, coords=irs2.coords, attrs=dict(irs2.attrs))
