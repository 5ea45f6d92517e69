"""picture_frame: NIRSpec thermal "picture frame" correction, as jwst 3.0 (off by default;
spec §6.13).

A draft rate [DN/s] (ramp_fit on the input) gives a scene mask of background pixels; in each
group (relative to group 0, in DN) the medians over the background pixels of the detector's
centre and of its edge bands scale and offset the PICTUREFRAME reference pattern, which is then
subtracted. NIRSpec full frame only; one task per integration (all groups, full frame).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import xarray as xr

from jwdask.detector1._ramp import require_ramp
from jwdask.detector1.clean_flicker_noise import (
    draft_rate,
    per_integration,
    whole_frame,
)
from jwdask.errors import InputError, ReferenceFileError
from jwdask.io import keywords
from jwdask.kernels.clean_flicker_noise import (
    correct_picture_frame_integration,
    picture_frame_reference_levels,
    picture_frame_region_masks,
    scene_mask,
)
from jwdask.steps import completed, reference, skipped

log = logging.getLogger(__name__)

STEP = "picture_frame"


def picture_frame(ds: xr.Dataset, refs: Any, *, mask_science_regions: bool = True, n_sigma: float = 2.0,
                  save_mask: bool = False, save_correction: bool = False) -> xr.Dataset:
    """Scale and subtract the PICTUREFRAME pattern [DN] from every group after the first.

    Parameters (jwst 3.0 ``PictureFrameStep`` defaults)
    ----------
    mask_science_regions : bool
        Mask slits/IFU slices and failed-open MSA shutters from the NIRSpec WCS: not implemented
        in jwdask (raises NotImplementedError; run with ``mask_science_regions=false``).
    n_sigma : float
        Clip level [sigma] for signal in the scene mask (0: no clip).
    save_mask, save_correction : bool
        Not implemented (raise NotImplementedError when set).
    """
    require_ramp(ds, STEP)
    for name, value in (("save_mask", save_mask), ("save_correction", save_correction)):
        if value:
            raise NotImplementedError(f"{STEP}: {name}=True (saving this diagnostic product) is not "
                                      "implemented in jwdask")
    meta = ds.attrs.get("meta", {})
    instrument = str(keywords.get(meta, "instrument.name", "")).upper()
    subarray = str(keywords.get(meta, "subarray.name", "")).upper()
    if instrument != "NIRSPEC" or subarray != "FULL":
        log.warning("%s: only applicable to NIRSpec full-frame exposures; skipped", STEP)
        return skipped(ds, STEP, "not a NIRSpec full-frame exposure")
    frame, frame_name = reference(refs, "pictureframe", ds)
    if frame is None:
        return skipped(ds, STEP, f"no PICTUREFRAME reference for EXP_TYPE {keywords.get(meta, 'exposure.type')}",
                       ref_files={"pictureframe": "N/A"})
    ref_files = {"pictureframe": frame_name}
    if ds.sizes["group"] < 2:
        log.warning("%s: cannot be performed for single-group data; skipped", STEP)
        return skipped(ds, STEP, "single-group data", ref_files=ref_files)
    if mask_science_regions:
        raise NotImplementedError(f"{STEP}: mask_science_regions=True (NIRSpec WCS slit/slice and MSA "
                                  "failed-open masks) is not implemented in jwdask; set "
                                  "mask_science_regions=false")
    if "sci" not in frame:
        raise ReferenceFileError("pictureframe", f"{frame_name}: no SCI image")
    mask = draft_rate(ds, refs).map_blocks(scene_mask, dtype=bool, n_sigma=float(n_sigma))
    pattern = whole_frame(frame["sci"].data.astype(np.float32))
    corrected = per_integration(_correct_block, ds, mask, pattern, name=STEP, source=str(ds.attrs.get("source", "exposure")))
    return completed(ds, STEP, {"sci": ds.sci.copy(data=corrected)}, ref_files=ref_files)


def _correct_block(sci: np.ndarray, groupdq: np.ndarray, mask: np.ndarray, pattern: np.ndarray, *,
                   source: str) -> np.ndarray:
    center, edge = picture_frame_region_masks(mask)
    if not np.any(center) or not np.any(edge):
        msg = ("picture_frame: no background pixel in the centre or edge region of the draft rate "
               "mask, nothing to scale (jwst leaves the data unchanged and marks the step SKIPPED)")
        raise InputError(source, "SCI", msg)
    ref_center, ref_edge = picture_frame_reference_levels(pattern, center, edge)
    return correct_picture_frame_integration(sci, pattern, center, edge, ref_center, ref_edge)
