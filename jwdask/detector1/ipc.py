"""ipc: correct inter-pixel capacitance by convolving every group [DN] with the IPC kernel.

The IPC reference holds the (deconvolution) kernel; reference pixels are unchanged and count
as 0 in the sums. Per (y, x) tile with a halo of half the kernel size; bit-identical to jwst.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from jwdask.detector1._ramp import require_ramp
from jwdask.errors import ReferenceFileError
from jwdask.kernels.ipc import correct_ipc, halo_depth, reference_pixel_mask
from jwdask.steps import completed, skipped
from jwdask.tiles import map_tiles


def ipc(ds: xr.Dataset, refs: Any) -> xr.Dataset:
    """Apply the IPC correction to ``sci`` (no parameters)."""
    require_ramp(ds, "ipc")
    if refs is None:
        raise ReferenceFileError("ipc", "no reference provider was given (pass refs=RefProvider(...))")
    meta = ds.attrs.get("meta", {})
    if refs.path("ipc", meta) is None:
        return skipped(ds, "ipc", "no ipc reference", ref_files={"ipc": "N/A"})
    name = refs.record("ipc", meta)
    ref = refs.open("ipc", meta)
    kernel = np.asarray(ref.sci.values, dtype=np.float32)
    if kernel.ndim != 2:
        msg = (f"{name}: per-pixel (4-D) IPC kernels of shape {kernel.shape} are not implemented "
               "in jwdask; only 2-D kernels are")
        raise NotImplementedError(msg)
    if kernel.shape[0] > 9 or kernel.shape[1] > 9:
        raise ReferenceFileError("ipc", f"{name}: kernel shape {kernel.shape} is not a small IPC kernel")
    miri = str(meta.get("instrument", {}).get("name", "")).upper() == "MIRI"
    refmask = xr.DataArray(reference_pixel_mask(ds.y.values, ds.x.values, miri=miri), dims=("y", "x"))
    corrected = map_tiles(_correct, [ds.sci, refmask], {"sci": (ds.sci.dims, np.float32)},
                          like=ds.sci, depth=halo_depth(kernel.shape), name="ipc", ipc_kernel=kernel)
    corrected["sci"].attrs = dict(ds.sci.attrs)
    return completed(ds, "ipc", corrected, ref_files={"ipc": name})


def _correct(sci: np.ndarray, refmask: np.ndarray, *, ipc_kernel: np.ndarray,
             halo: tuple[int, int, int, int] = (0, 0, 0, 0)) -> Any:
    return correct_ipc(sci, ipc_kernel, refmask, halo=halo)
