"""ipc: correct inter-pixel capacitance by convolving every group [DN] with the IPC kernel.

The IPC reference holds the (deconvolution) kernel: a small 2-D ``k[ky, kx]`` for every pixel,
or a per-pixel 4-D ``k[ky, kx, y, x]`` (NIRSpec). Reference pixels are unchanged and count as 0
in the sums. Per (y, x) tile with a halo of half the kernel size; a 4-D reference is read per
tile, never whole. NIRSpec IRS2 frames are corrected on their normal rows as a 2048 x 2048 frame
(interleaved reference rows unchanged). Bit-identical to jwst 3.0.
"""

from __future__ import annotations

import logging
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from jwdask.detector1._ramp import require_ramp
from jwdask.errors import ReferenceFileError
from jwdask.kernels.ipc import correct_ipc, halo_depth, reference_pixel_mask
from jwdask.refs import cut_to, irs2_layout
from jwdask.steps import completed, skipped
from jwdask.tiles import map_tiles

log = logging.getLogger(__name__)

MAX_KERNEL = 9
"""Largest kernel side [pixels] accepted from an IPC reference."""
MAX_AXIS = 2048
"""Longest (y or x) axis of a non-IRS2 near-IR frame [pixels]; jwst treats longer ones as IRS2."""


def ipc(ds: xr.Dataset, refs: Any) -> xr.Dataset:
    """Apply the IPC correction to ``sci`` [DN] (no parameters); 2-D or per-pixel 4-D kernels.

    NIRSpec IRS2 frames (3200 x 2048) are corrected on their 2048 x 2048 normal rows, as jwst does.
    """
    require_ramp(ds, "ipc")
    if refs is None:
        raise ReferenceFileError("ipc", "no reference provider was given (pass refs=RefProvider(...))")
    meta = ds.attrs.get("meta", {})
    if refs.path("ipc", meta) is None:
        return skipped(ds, "ipc", "no ipc reference", ref_files={"ipc": "N/A"})
    name = refs.record("ipc", meta)
    if not irs2_layout.is_irs2(ds.sci.shape):
        return completed(ds, "ipc", {"sci": _corrected(ds, refs, name)}, ref_files={"ipc": name})
    if ds.sizes["x"] > MAX_AXIS:
        msg = (f"ipc: IRS2-format exposures must be in DMS orientation (3200 rows x 2048 columns); "
               f"{ds.sizes['y']} x {ds.sizes['x']} pixels (the long axis along x) is not implemented in jwdask")
        raise NotImplementedError(msg)
    rows = irs2_layout.exposure_rows(ds, "ipc")
    normal = irs2_layout.normal_dataset(ds, rows, ("sci",))
    sci = irs2_layout.insert_normal(ds.sci, _corrected(normal, refs, name), rows)
    return completed(ds, "ipc", {"sci": sci}, ref_files={"ipc": name})


def _corrected(ds: xr.Dataset, refs: Any, name: str) -> xr.DataArray:
    """``ds.sci`` [DN] convolved with the IPC reference, lazily (``ds`` not IRS2)."""
    meta = ds.attrs.get("meta", {})
    chunks = {d: ds.chunks[d] for d in ("y", "x")}
    try:
        ref = refs.open("ipc", meta, tile=(max(chunks["y"]), max(chunks["x"])))
    except ValueError as exc:  # a 4-D kernel that is neither full frame nor placed: ky/kx twice
        msg = (f"{name}: SCI is not a 2-D kernel nor a per-pixel (4-D) kernel that is full frame or "
               f"placed by SUBSTRT1/2 keywords ({exc})")
        raise ReferenceFileError("ipc", msg) from exc
    kernel = _kernel_of(ref, name)
    miri = str(meta.get("instrument", {}).get("name", "")).upper() == "MIRI"
    # built per tile from the coordinates (an in-memory mask would ride in the graph: 4 MB a frame)
    rows = da.from_array(ds.y.values, chunks=(chunks["y"],))
    cols = da.from_array(ds.x.values, chunks=(chunks["x"],))
    refmask = xr.DataArray(da.blockwise(reference_pixel_mask, "yx", rows, "y", cols, "x", dtype=bool, miri=miri),
                           dims=("y", "x"))
    out_spec = {"sci": (ds.sci.dims, np.float32)}
    depth = halo_depth(kernel.shape)
    if kernel.ndim == 2:
        kernel2d = np.asarray(kernel.values, dtype=np.float32)
        corrected = map_tiles(_correct, [ds.sci, refmask, None], out_spec, like=ds.sci, depth=depth,
                              name="ipc", ipc_kernel=kernel2d)
    else:
        per_pixel = cut_to(ref, ds).sci.chunk(chunks).astype(np.float32)
        log.info("ipc: per-pixel kernel %s x %s from %s", kernel.sizes["ky"], kernel.sizes["kx"], name)
        corrected = map_tiles(_correct, [ds.sci, refmask, per_pixel], out_spec, like=ds.sci, depth=depth,
                              name="ipc")
    sci = corrected["sci"]
    sci.attrs = dict(ds.sci.attrs)
    return sci


def _kernel_of(ref: xr.Dataset, name: str) -> xr.DataArray:
    """The reference's SCI kernel, checked: 2-D ``(ky, kx)`` or 4-D ``(ky, kx, y, x)`` with
    full-frame coordinates, each kernel side at most :data:`MAX_KERNEL`."""
    if "sci" not in ref:
        raise ReferenceFileError("ipc", f"{name}: no SCI image (has {sorted(map(str, ref.data_vars))})")
    kernel = ref.sci
    if kernel.ndim not in (2, 4):
        msg = f"{name}: SCI has shape {kernel.shape}; an IPC kernel is 2-D (ky, kx) or 4-D (ky, kx, y, x)"
        raise ReferenceFileError("ipc", msg)
    if kernel.ndim == 4 and ("y" not in ref.coords or "x" not in ref.coords):
        msg = (f"{name}: per-pixel kernel SCI {kernel.shape} is neither full frame nor has "
               "SUBSTRT1/2 keywords placing it on the detector")
        raise ReferenceFileError("ipc", msg)
    if kernel.shape[0] > MAX_KERNEL or kernel.shape[1] > MAX_KERNEL:
        raise ReferenceFileError("ipc", f"{name}: kernel shape {kernel.shape} is not a small IPC kernel")
    return kernel


def _correct(sci: np.ndarray, refmask: np.ndarray, per_pixel: np.ndarray | None, *,
             ipc_kernel: np.ndarray | None = None, halo: tuple[int, int, int, int] = (0, 0, 0, 0)) -> Any:
    return correct_ipc(sci, per_pixel if per_pixel is not None else ipc_kernel, refmask, halo=halo)
