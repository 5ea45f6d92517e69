"""bkg_subtract (imaging): subtract the sigma-clipped mean of background exposures [DN/s]
(image2.md §2).

Each background ``_rate`` (``_rateints`` for cube science) is placed on the science pixels by
its full-frame ``y``/``x`` coordinates (NaN and dq 0 where it does not reach), reduced to one
image per background, and combined with a sigma clip along the background axis
(:mod:`jwdask.kernels.background`). ``SCI -= B`` and ``DQ |= DQ_B``; ERR and the variances
are unchanged, as in jwst.

With ``save_combined_background`` (jwst's parameter, default False) the step also carries
``B``, ``E_B`` and ``DQ_B`` as the variables :data:`COMBINED_VARS`;
:func:`combined_background_product` turns them into the ``_combinedbackground`` product
(ImageModel: SCI, ERR, DQ), written next to the other products like jwst's
``<exposure>_combinedbackground.fits``.

Difference from jwst 3.0: jwst copies the overlap of a background that does not cover the
science window's first row/column into the array's corner instead of its place; here it lands
on the detector pixels it belongs to. Backgrounds covering the science window agree exactly.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from jwdask.errors import InputError, ParameterError
from jwdask.image2.flat_field import require_image, task_name
from jwdask.io import keywords
from jwdask.io.products import open_product
from jwdask.kernels.background import combine_backgrounds, reduce_integrations
from jwdask.refs.readers import full_frame
from jwdask.steps import completed, skipped
from jwdask.tiles import map_tiles

log = logging.getLogger(__name__)

BackgroundInput = str | xr.Dataset
SUBARRAY_PATHS = ("subarray.xstart", "subarray.ystart", "subarray.xsize", "subarray.ysize")
COMBINED_VARS = {"sci": "combinedbackground_sci", "err": "combinedbackground_err", "dq": "combinedbackground_dq"}
"""Product variable -> name under which a step run with ``save_combined_background`` keeps it."""


def _as_list(bkg_list: str | Sequence[BackgroundInput] | None) -> list[BackgroundInput]:
    if bkg_list is None:
        return []
    if isinstance(bkg_list, str):
        bkg_list = bkg_list.split(",")
    return [b for b in bkg_list if isinstance(b, xr.Dataset) or str(b).strip()]


def _name(ds: xr.Dataset) -> str:
    return str(ds.attrs.get("source", keywords.get(ds.attrs.get("meta", {}), "filename", "exposure")))


def _check_window(ds: xr.Dataset) -> None:
    """SUBSTRT/SUBSIZE may be missing only for a full-frame array (as jwst)."""
    meta = ds.attrs.get("meta", {})
    if all(keywords.get(meta, p) is not None for p in SUBARRAY_PATHS):
        return
    instrument = str(keywords.get(meta, "instrument.name", ""))
    if (ds.sizes["y"], ds.sizes["x"]) != full_frame(instrument):
        missing = [keywords.by_path()[tuple(p.split("."))].name for p in SUBARRAY_PATHS
                   if keywords.get(meta, p) is None]
        raise InputError(_name(ds), f"PRIMARY {missing[0]}",
                         f"required keyword is missing ({', '.join(missing)}): a {ds.sizes['x']}x"
                         f"{ds.sizes['y']} subarray cannot be registered without it")


def _open(item: BackgroundInput, tile: tuple[int, int]) -> xr.Dataset:
    bkg = item if isinstance(item, xr.Dataset) else open_product(str(item), tile=tile)
    for var in ("sci", "err", "dq"):
        if var not in bkg:
            raise InputError(_name(bkg), var.upper(), "a background exposure needs SCI, ERR and DQ")
    return bkg


def _on_science_pixels(var: xr.DataArray, ds: xr.Dataset, fill: float | int) -> da.Array | None:
    """``var`` on the science window (``fill`` where it has no pixels); None without overlap."""
    ys, xs = ds["y"].values, ds["x"].values
    by, bx = var["y"].values, var["x"].values
    y0, y1 = max(ys[0], by[0]), min(ys[-1], by[-1]) + 1
    x0, x1 = max(xs[0], bx[0]), min(xs[-1], bx[-1]) + 1
    if y1 <= y0 or x1 <= x0:
        return None
    data = var.data if isinstance(var.data, da.Array) else da.from_array(np.asarray(var.data))
    cut = data[..., y0 - by[0]:y1 - by[0], x0 - bx[0]:x1 - bx[0]]
    pad = [(y0 - ys[0], ys[-1] + 1 - y1), (x0 - xs[0], xs[-1] + 1 - x1)]
    if any(p for pair in pad for p in pair):
        cut = da.pad(cut, [(0, 0)] * (cut.ndim - 2) + pad, mode="constant", constant_values=fill)
    lead = (-1,) * (cut.ndim - 2)
    return cut.rechunk((*lead, ds.chunks["y"], ds.chunks["x"]))


def _reduced(bkg: xr.Dataset, ds: xr.Dataset, sigma: float, maxiters: int | None
             ) -> tuple[da.Array, da.Array, da.Array]:
    """One background as ``(c_k, v_k, dq_k)`` on the science window: float64, float64, uint32."""
    yx = (ds.chunks["y"], ds.chunks["x"])
    sci = _on_science_pixels(bkg.sci.astype(np.float32), ds, np.nan)
    if sci is None:
        log.info("bkg_subtract: %s does not overlap the science window", _name(bkg))
        nan = da.full((ds.sizes["y"], ds.sizes["x"]), np.nan, dtype=np.float64, chunks=yx)
        return nan, nan, da.zeros((ds.sizes["y"], ds.sizes["x"]), dtype=np.uint32, chunks=yx)
    err = _on_science_pixels(bkg.err.astype(np.float32), ds, np.nan)
    dq = _on_science_pixels(bkg.dq.astype(np.uint32), ds, 0)
    if sci.ndim == 2:
        return sci.astype(np.float64), (err * err).astype(np.float64), dq
    dims = ("integration", "y", "x")
    coords = {"y": ds["y"], "x": ds["x"]}
    arrays = [xr.DataArray(a, dims=dims, coords=coords) for a in (sci, err, dq)]
    out = map_tiles(reduce_integrations, arrays,
                    {"data": (("y", "x"), np.float64), "var": (("y", "x"), np.float64),
                     "dq": (("y", "x"), np.uint32)},
                    like=arrays[0], name=task_name("bkg_reduce", arrays, sigma, maxiters),
                    sigma=sigma, maxiters=maxiters)
    return out["data"].data, out["var"].data, out["dq"].data


def combined_background(ds: xr.Dataset, bkg_list: Sequence[BackgroundInput], *, sigma: float = 3.0,
                        maxiters: int | None = None) -> xr.Dataset:
    """The combined background of ``bkg_list`` on the science window of ``ds`` (lazy).

    Parameters
    ----------
    ds : xarray.Dataset
        The science rate (or rateints) Dataset; only its pixels, chunks and metadata are used.
    bkg_list : sequence of str or Dataset
        Background ``_rate`` (``_rateints`` for cube science) paths/URLs or opened Datasets.
    sigma : float
        Clipping threshold [standard deviations].
    maxiters : int, optional
        Clipping iterations (None: until convergence).

    Returns
    -------
    xarray.Dataset
        ``sci`` (``B`` [DN/s]), ``err`` (``E_B`` [DN/s]) float32 and ``dq`` uint32 on ``(y, x)``,
        with the science ``meta`` (the jwst ``_combinedbackground`` product).
    """
    require_image(ds, "bkg_subtract")
    if not bkg_list:
        raise ParameterError("combined_background needs at least one background exposure")
    _check_window(ds)
    tile = (ds.chunks["y"][0], ds.chunks["x"][0])
    planes, variances, dqs = [], [], []
    for item in bkg_list:
        bkg = _open(item, tile)
        _check_window(bkg)
        if bkg.sci.ndim != ds.sci.ndim:
            raise InputError(_name(bkg), "SCI",
                             f"a {bkg.sci.ndim}-D background cannot be used for {ds.sci.ndim}-D science "
                             f"(rate backgrounds for rate science, rateints for rateints)")
        log.info("bkg_subtract: accumulating background %s", _name(bkg))
        c, v, q = _reduced(bkg, ds, sigma, maxiters)
        planes.append(c)
        variances.append(v)
        dqs.append(q)
    dims = ("background", "y", "x")
    coords = {"y": ds["y"], "x": ds["x"]}
    stack_c = xr.DataArray(da.stack(planes), dims=dims, coords=coords)
    stack_v = xr.DataArray(da.stack(variances), dims=dims, coords=coords)
    out = map_tiles(combine_backgrounds, [stack_c, stack_v],
                    {"data": (("y", "x"), np.float32), "err": (("y", "x"), np.float32)},
                    like=stack_c, name=task_name("bkg_combine", [stack_c, stack_v], sigma, maxiters),
                    sigma=sigma, maxiters=maxiters)
    dq = xr.DataArray(functools.reduce(da.bitwise_or, dqs), dims=("y", "x"), coords=coords)
    unit = ds.sci.attrs.get("units")
    attrs = {"units": unit} if unit else {}
    return xr.Dataset({"sci": out["data"].assign_attrs(attrs), "err": out["err"].assign_attrs(attrs), "dq": dq},
                      attrs={**ds.attrs, "meta": dict(ds.attrs.get("meta", {}))})


def background(ds: xr.Dataset, refs: Any, *, bkg_list: str | Sequence[BackgroundInput] | None = None,
               sigma: float = 3.0, maxiters: int | None = None,
               save_combined_background: bool = False) -> xr.Dataset:
    """Subtract the combined background exposures from a rate image or cube [DN/s]
    (jwst ``BackgroundStep``, imaging path; SKIPPED without backgrounds).

    Parameters
    ----------
    bkg_list : list of str or Dataset, or str
        The association's background members: ``_rate`` paths/URLs (a comma-separated string
        is split), or opened Datasets.
    sigma : float
        Clipping threshold [standard deviations], jwst default 3.
    maxiters : int, optional
        Clipping iterations; None (default) iterates to convergence.
    save_combined_background : bool
        Keep the combined background [DN/s] for the ``_combinedbackground`` product
        (:func:`combined_background_product`); default False, as jwst.
    """
    require_image(ds, "bkg_subtract")
    items = _as_list(bkg_list)
    if not items:
        return skipped(ds, "bkg_subtract", "no background exposures")
    if not sigma > 0:
        raise ParameterError(f"bkg_subtract: sigma must be > 0, got {sigma}")
    if maxiters is not None and int(maxiters) < 1:
        raise ParameterError(f"bkg_subtract: maxiters must be None or >= 1, got {maxiters}")
    bkg = combined_background(ds, items, sigma=float(sigma), maxiters=None if maxiters is None else int(maxiters))
    sci = (ds.sci - bkg.sci).astype(np.float32).transpose(*ds.sci.dims)
    sci.attrs = dict(ds.sci.attrs)
    dq = (ds.dq | bkg.dq).astype(np.uint32).transpose(*ds.dq.dims)
    variables = {"sci": sci, "dq": dq}
    if save_combined_background:
        variables.update({name: bkg[var] for var, name in COMBINED_VARS.items()})
    return completed(ds, "bkg_subtract", variables)


def combined_background_product(ds: xr.Dataset) -> xr.Dataset | None:
    """The ``_combinedbackground`` product (ImageModel: SCI, ERR [DN/s], DQ) of a Dataset
    returned by :func:`background` with ``save_combined_background``; None when the step
    did not keep it (not requested, or no background exposures)."""
    if not all(name in ds for name in COMBINED_VARS.values()):
        return None
    return xr.Dataset({var: ds[name] for var, name in COMBINED_VARS.items()}, attrs=dict(ds.attrs))
