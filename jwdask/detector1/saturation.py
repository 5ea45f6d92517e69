"""saturation: flag groups at or above the SATURATION threshold [DN] and at the A/D floor.

SATURATED is set on a group and every later group of its integration and grown by
``n_pix_grow_sat`` pixels [box half-width]; groups <= 0 DN get AD_FLOOR | DO_NOT_USE. With
``use_readpatt`` frame-averaged groups that partly saturated are DO_NOT_USE (the SUPERBIAS
reference feeds the group-2 test). Runs per (y, x) tile with a halo of the grown box.
NIRSpec IRS2 exposures (3200 rows) follow jwst's own IRS2 loop on their normal rows
(:mod:`jwdask.kernels.saturation_irs2`): 2048 x 2048 SATURATION, IRS2-layout SUPERBIAS.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from jwdask.detector1._ramp import exposure, require_ramp
from jwdask.errors import ParameterError
from jwdask.kernels.saturation import flag_saturation, halo_depth
from jwdask.kernels.saturation_irs2 import flag_saturation_irs2
from jwdask.refs import irs2_layout
from jwdask.steps import completed, reference, skipped
from jwdask.tiles import map_tiles


def saturation(ds: xr.Dataset, refs: Any, *, n_pix_grow_sat: int = 1, use_readpatt: bool = True) -> xr.Dataset:
    """Flag saturation in ``groupdq`` and set the SATURATION dq in ``pixeldq``.

    Parameters
    ----------
    n_pix_grow_sat : int
        Pixels [>= 0] by which SATURATED flags grow around a saturated pixel.
    use_readpatt : bool
        Use the frame-averaging read pattern to flag partly saturated groups.
    """
    require_ramp(ds, "saturation")
    if n_pix_grow_sat < 0:
        msg = f"saturation: n_pix_grow_sat must be >= 0 pixels, got {n_pix_grow_sat}"
        raise ParameterError(msg)
    if irs2_layout.is_irs2(ds.sci.shape):
        return _saturation_irs2(ds, refs, n_pix_grow_sat=n_pix_grow_sat, use_readpatt=use_readpatt)
    ref, name = reference(refs, "saturation", ds)
    if ref is None:
        return skipped(ds, "saturation", "no saturation reference", ref_files={"saturation": name})
    bias, bias_name = reference(refs, "superbias", ds)
    nframes = int(exposure(ds, "nframes"))
    zeroframe = ds.get("zeroframe")
    outputs = {"groupdq": (ds.groupdq.dims, np.uint8), "pixeldq": (("y", "x"), np.uint32)}
    if zeroframe is not None:
        outputs["zeroframe"] = (zeroframe.dims, np.float32)
    flags = map_tiles(
        _flag,
        [ds.sci, ds.groupdq, ds.pixeldq, ref.sci.astype(np.float32), ref.dq.astype(np.uint32),
         None if bias is None else bias.sci.astype(np.float32), zeroframe],
        outputs, like=ds.sci, depth=halo_depth(n_pix_grow_sat, nframes=nframes, use_readpatt=use_readpatt),
        name="saturation", n_pix_grow_sat=n_pix_grow_sat, nframes=nframes, use_readpatt=use_readpatt,
    )
    ref_files = {"saturation": name}
    if bias is not None:
        ref_files["superbias"] = bias_name
    return completed(ds, "saturation", flags, ref_files=ref_files)


def _flag(sci: np.ndarray, groupdq: np.ndarray, pixeldq: np.ndarray, sat_thresh: np.ndarray,
          sat_dq: np.ndarray, bias: np.ndarray | None, zeroframe: np.ndarray | None, **kwargs: Any) -> Any:
    return flag_saturation(sci, groupdq, pixeldq, sat_thresh, sat_dq, bias=bias, zeroframe=zeroframe, **kwargs)


def _saturation_irs2(ds: xr.Dataset, refs: Any, *, n_pix_grow_sat: int, use_readpatt: bool) -> xr.Dataset:
    """jwst's IRS2 saturation: flag the normal rows against the 2048 x 2048 SATURATION reference
    (the IRS2-layout SUPERBIAS cut to the same rows) and write the flags back."""
    rows = irs2_layout.exposure_rows(ds, "saturation")
    normal = irs2_layout.normal_dataset(ds, rows, ("sci", "groupdq", "pixeldq", "zeroframe"))
    ref, name = reference(refs, "saturation", normal)
    if ref is None:
        return skipped(ds, "saturation", "no saturation reference", ref_files={"saturation": name})
    bias, bias_name = reference(refs, "superbias", ds)
    tile = (max(normal.chunks["y"]), max(normal.chunks["x"]))
    bias_sci = None if bias is None else irs2_layout.normal_view(bias.sci.astype(np.float32), rows, tile)
    zeroframe = normal.get("zeroframe")
    outputs = {"groupdq": (normal.groupdq.dims, np.uint8), "pixeldq": (("y", "x"), np.uint32)}
    if zeroframe is not None:
        outputs["zeroframe"] = (zeroframe.dims, np.float32)
    flags = map_tiles(
        _flag_irs2,
        [normal.sci.astype(np.float32), normal.groupdq, normal.pixeldq, ref.sci.astype(np.float32),
         ref.dq.astype(np.uint32), bias_sci, zeroframe],
        outputs, like=normal.sci, depth=n_pix_grow_sat, name="saturation-irs2", n_pix_grow_sat=n_pix_grow_sat,
        nframes=int(exposure(ds, "nframes")), use_readpatt=use_readpatt,
    )
    variables = {key: irs2_layout.insert_normal(ds[key], value, rows) for key, value in flags.items()}
    ref_files = {"saturation": name}
    if bias is not None:
        ref_files["superbias"] = bias_name
    return completed(ds, "saturation", variables, ref_files=ref_files)


def _flag_irs2(sci: np.ndarray, groupdq: np.ndarray, pixeldq: np.ndarray, sat_thresh: np.ndarray,
               sat_dq: np.ndarray, bias: np.ndarray | None, zeroframe: np.ndarray | None, **kwargs: Any) -> Any:
    return flag_saturation_irs2(sci, groupdq, pixeldq, sat_thresh, sat_dq, bias=bias, zeroframe=zeroframe, **kwargs)
