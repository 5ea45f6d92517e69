"""dark_current: subtract the dark [DN], averaged to the science readout pattern.

The NIR DARK reference holds one plane per frame; it is extrapolated if too short, averaged
over NFRAMES frames per group with GROUPGAP frames skipped, and subtracted from every
integration. MIRI darks hold such planes per integration: science integration ``i`` uses dark
integration ``i`` (the last one beyond, or always for segment files with INTSTART > 1) and the
first-plane dq of every dark integration is OR-ed. NaN dark values count as 0; the dark dq is
OR-ed into ``pixeldq``. The DARK must cover exactly the science window (jwst does not cut darks).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from dask.base import tokenize

from jwdask.detector1._ramp import exposure, require_ramp
from jwdask.errors import ReferenceFileError
from jwdask.io import keywords
from jwdask.kernels.dark import subtract_dark
from jwdask.steps import completed, reference, skipped
from jwdask.tiles import map_tiles


def dark_current(ds: xr.Dataset, refs: Any, *, average_dark_current: float | None = None) -> xr.Dataset:
    """Subtract the dark.

    Parameters
    ----------
    average_dark_current : float, optional
        Dark current stored for ramp_fit's Poisson variance [used as DN/s by jwst]; default:
        the reference's AVDRKCUR extension or keyword, else 0.
    """
    require_ramp(ds, "dark_current")
    ref, name = reference(refs, "dark", ds)
    if ref is None:
        return skipped(ds, "dark_current", "no dark reference", ref_files={"dark": name})
    if ref.sci.ndim not in (3, 4):
        msg = f"{name}: SCI must be (group, y, x) or (integration, group, y, x), got dims {ref.sci.dims}"
        raise ReferenceFileError("dark", msg)
    ref_meta = ref.attrs.get("meta", {})
    if "subarray" in ref_meta and keywords.get(ref_meta, "subarray.xsize") not in (None, ds.sizes["x"]):
        msg = (f"{name}: dark window {keywords.get(ref_meta, 'subarray.xsize')}x"
               f"{keywords.get(ref_meta, 'subarray.ysize')} differs from the science subarray "
               f"{ds.sizes['x']}x{ds.sizes['y']} (darks are not cut)")
        raise ReferenceFileError("dark", msg)
    nf, gg = (int(exposure(ds, k)) for k in ("nframes", "groupgap"))
    nfd = int(keywords.get(ref_meta, "exposure.nframes", 1))
    ggd = int(keywords.get(ref_meta, "exposure.groupgap", 0))
    if nfd > nf or ggd > gg:
        return skipped(ds, "dark_current", f"dark NFRAMES/GROUPGAP {nfd}/{ggd} exceed the science "
                       f"{nf}/{gg}", ref_files={"dark": name})
    pattern = {"nframes": nf, "groupgap": gg, "dark_nframes": nfd, "dark_groupgap": ggd}
    if ref.sci.ndim == 4:
        variables = _subtract_miri(ds, ref, name, **pattern)
    else:
        frames = ref.sci.rename({"group": "dark_frame"})  # not the science groups
        variables = map_tiles(subtract_dark, [ds.sci, ds.pixeldq, frames, ref.dq],
                              {"sci": (ds.sci.dims, np.float32), "pixeldq": (("y", "x"), np.uint32)},
                              like=ds.sci, name="dark", **pattern)
    variables["sci"].attrs = dict(ds.sci.attrs)
    if average_dark_current is not None:
        avg = xr.full_like(ds.pixeldq, average_dark_current, dtype=np.float32)
    elif "avdrkcur" in ref:
        avg = ref.avdrkcur.astype(np.float32)
    else:
        avg = xr.full_like(ds.pixeldq, float(keywords.get(ref_meta, "exposure.average_dark_current", 0.0) or 0.0),
                           dtype=np.float32)
    variables["average_dark_current"] = avg
    return completed(ds, "dark_current", variables, ref_files={"dark": name})


def _subtract_miri(ds: xr.Dataset, ref: xr.Dataset, name: str, **pattern: int) -> dict[str, xr.DataArray]:
    """MIRI: per-integration dark planes subtracted tile by tile (``kernels.dark``)."""
    if ref.dq.ndim != 4:
        msg = f"{name}: a MIRI dark needs a 4-D DQ (integration, plane, y, x), got dims {ref.dq.dims}"
        raise ReferenceFileError("dark", msg)
    planes = ref.sci.rename({"integration": "dark_integration", "group": "dark_group"})
    dq = ref.dq.rename({ref.dq.dims[0]: "dark_integration", ref.dq.dims[1]: "dq_plane"})
    start = keywords.get(ds.attrs.get("meta", {}), "exposure.integration_start")
    name_key = f"dark-miri-{tokenize(ds.sci.data, ds.pixeldq.data, planes.data, dq.data, start, pattern)}"
    return map_tiles(subtract_dark, [ds.sci, ds.pixeldq, planes, dq],
                     {"sci": (ds.sci.dims, np.float32), "pixeldq": (("y", "x"), np.uint32)},
                     like=ds.sci, name=name_key, integration_start=None if start is None else int(start),
                     **pattern)
