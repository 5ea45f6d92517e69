"""refpix for NIRSpec IRS2 readouts: interleaved reference pixels and the reference output [DN].

As jwst 3.0 ``RefPixStep`` on IRS2 data (frames 3200 x 2048 in DMS orientation): outlying
interleaved reference rows are flagged (``pixeldq`` BAD_REF_PIXEL | DO_NOT_USE) over every
integration and replaced; then, with the ``refpix`` reference (IRS2 ``alpha``/``beta`` tables),
each integration gets the Fourier-domain correction of :mod:`jwdask.kernels.refpix_irs2` and
the interleaved rows and the reference output are dropped (2048 x 2048 out) unless
``preserve_irs2_refpix``. With ``irs2_mean_subtraction`` each sector's top/bottom reference
means are subtracted first (sci and zeroframe). One task per integration holds the whole frame
(the FFTs span it); the result is re-tiled like the input. A ``refpix`` reference of N/A only
replaces the bad rows (after the mean subtraction) and marks the step SKIPPED, as jwst does.
``zeroframe`` (otherwise not corrected by jwst) loses the same rows as ``pixeldq``/``groupdq``
so that every (y, x) array keeps one shape.
"""

from __future__ import annotations

import logging
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from jwdask import dqflags
from jwdask.errors import InputError, ParameterError, ReferenceFileError
from jwdask.io import keywords
from jwdask.kernels.refpix_irs2 import (
    MeanSubtraction,
    correct_irs2,
    detector_rows,
    flag_bad_reference_rows,
    irs2_layout,
    subtract_reference_means,
)
from jwdask.refs.irs2 import check_irs2_reference, read_irs2_reference
from jwdask.steps import completed, skipped
from jwdask.tiles import as_delayed

log = logging.getLogger(__name__)

DEFAULT_NORMAL = 16
"""NRS_NORM [samples] assumed when the keyword is missing (jwst's default)."""
DEFAULT_REFERENCE = 4
"""NRS_REF [samples] assumed when the keyword is missing (jwst's default)."""
FLAGGED = np.uint32(dqflags.BAD_REF_PIXEL | dqflags.DO_NOT_USE)


def refpix_irs2(ds: xr.Dataset, refs: Any, *, ovr_corr_mitigation_ftr: float = 3.0,
                preserve_irs2_refpix: bool = False, irs2_mean_subtraction: bool = False,
                odd_even_columns: bool = True, siglimit: float = 3.0) -> xr.Dataset:
    """IRS2 reference correction of ``sci`` [DN] (jwst 3.0 parameters).

    Parameters
    ----------
    ovr_corr_mitigation_ftr : float
        Outlier threshold [standard deviations] for bad interleaved reference pixels.
    preserve_irs2_refpix : bool
        Keep the interleaved reference rows and the reference output (3200 x 2048 out).
    irs2_mean_subtraction : bool
        First subtract each sector's clipped top/bottom reference means (no side pixels),
        from ``sci`` and ``zeroframe``.
    odd_even_columns, siglimit : bool, float
        Odd/even columns apart, and the clipping limit [standard deviations], of those means.
    """
    meta = ds.attrs.get("meta", {})
    source = ds.attrs.get("source", "exposure")
    if not siglimit > 0:
        raise ParameterError(f"refpix: siglimit must be > 0 sigma, got {siglimit}")
    if not ovr_corr_mitigation_ftr > 0:
        raise ParameterError(f"refpix: ovr_corr_mitigation_ftr must be > 0 sigma, got {ovr_corr_mitigation_ftr}")
    detector = str(keywords.get(meta, "instrument.detector", "")).upper()
    if detector not in ("NRS1", "NRS2"):
        raise InputError(source, "PRIMARY DETECTOR", f"IRS2 frames ({ds.sizes['y']} x {ds.sizes['x']}) need a "
                         f"NIRSpec detector NRS1 or NRS2, got {detector or 'none'}")
    scipix_n, refpix_r = _readout(meta, "nrs_normal", DEFAULT_NORMAL), _readout(meta, "nrs_reference", DEFAULT_REFERENCE)
    try:
        layout = irs2_layout(scipix_n, refpix_r, width=ds.sizes["y"], height=ds.sizes["x"])
    except ValueError as exc:
        raise InputError(source, "SCI", f"not an IRS2 frame: {exc}") from exc
    if refs is None:
        raise ReferenceFileError("refpix", "IRS2 data need a reference provider (pass refs=RefProvider(...))")
    path = refs.path("refpix", meta)
    if path is not None:
        check_irs2_reference(path)
    _, ngroups, ny, nx = ds.sci.shape
    sci = _lazy(ds.sci.data).rechunk((1, -1, -1, -1))
    pixeldq = _lazy(ds.pixeldq.data)
    known = ((pixeldq & np.uint32(dqflags.BAD_REF_PIXEL)) != 0).any(axis=1).rechunk(-1)
    settings = {"scipix_n": scipix_n, "refpix_r": refpix_r}
    token = tokenize(sci.name, known.name, settings, ovr_corr_mitigation_ftr)
    blocks = sci.to_delayed(optimize_graph=False).ravel()
    found = [da.from_delayed(dask.delayed(_flag, pure=True)(block, as_delayed(known), n_sigma=float(ovr_corr_mitigation_ftr),
                                                             dask_key_name=f"refpix-irs2-flag-{token}-{i}", **settings),
                             (ny,), dtype=bool)
             for i, block in enumerate(blocks)]
    bad = da.any(da.stack([known, *found]), axis=0)
    new_pixeldq = da.where(bad[:, None], pixeldq | FLAGGED, pixeldq).astype(np.uint32)
    means = None
    if irs2_mean_subtraction:
        axes = [keywords.get(meta, f"subarray.{axis}") for axis in ("fastaxis", "slowaxis")]
        if sorted(abs(int(a or 0)) for a in axes) != [1, 2]:
            raise InputError(source, "SCI FASTAXIS/SLOWAXIS", f"irs2_mean_subtraction needs them (+-1, +-2), got {axes}")
        means = dask.delayed(MeanSubtraction, pure=True)(as_delayed(new_pixeldq), int(axes[0]), int(axes[1]),
                                                         bool(odd_even_columns), float(siglimit))
    reference = None
    if path is not None:
        reference = dask.delayed(read_irs2_reference, pure=True)(path, dask_key_name=f"refpix-irs2-reference-{tokenize(path)}")
    trim = path is not None and not preserve_irs2_refpix
    out_y = layout.normal.sum() if trim else ny
    bad_delayed = as_delayed(bad)
    token = tokenize(token, path, preserve_irs2_refpix, irs2_mean_subtraction, odd_even_columns, siglimit)
    corrected = [da.from_delayed(dask.delayed(_correct, pure=True)(
        block, bad_delayed, reference, means, detector=detector, preserve_refpix=bool(preserve_irs2_refpix),
        dask_key_name=f"refpix-irs2-{token}-{i}", **settings), (1, ngroups, out_y, nx), dtype=np.float32)
        for i, block in enumerate(blocks)]
    in_chunks = _lazy(ds.sci.data).chunks
    y_chunks = da.core.normalize_chunks(max(in_chunks[2]), (int(out_y),))[0] if trim else in_chunks[2]
    sci_out = da.concatenate(corrected, axis=0).rechunk((*in_chunks[:2], y_chunks, in_chunks[3]))
    out = ds.assign(pixeldq=(ds.pixeldq.dims, new_pixeldq.rechunk(pixeldq.chunks)))
    if means is not None and "zeroframe" in ds:
        zeroframe = _lazy(ds.zeroframe.data)
        planes = zeroframe.rechunk((1, -1, -1)).to_delayed(optimize_graph=False).ravel()
        fixed = [da.from_delayed(dask.delayed(_correct_zeroframe, pure=True)(
            plane, means, layout, dask_key_name=f"refpix-irs2-zeroframe-{token}-{i}"), (1, ny, nx), dtype=np.float32)
            for i, plane in enumerate(planes)]
        out["zeroframe"] = (ds.zeroframe.dims, da.concatenate(fixed, axis=0).rechunk(zeroframe.chunks))
    if trim:
        keep = detector_rows(layout.normal, detector)
        out = out.isel(y=np.flatnonzero(keep))
        out = out.assign_coords(y=np.arange(int(ds.y.values[0]), int(ds.y.values[0]) + int(out_y)))
        for name, var in out.data_vars.items():
            if "y" in var.dims and isinstance(var.data, da.Array):
                out[name] = var.chunk({"y": y_chunks})
    out = out.assign(sci=xr.DataArray(sci_out, dims=ds.sci.dims, coords={"y": out.y, "x": out.x},
                                      attrs=dict(ds.sci.attrs)))
    if path is None:
        log.warning("refpix: no refpix reference (N/A) for IRS2 data; bad reference pixels replaced only")
        return skipped(out, "refpix", "no refpix (IRS2) reference file", ref_files={"refpix": "N/A"})
    return completed(out, "refpix", ref_files={"refpix": refs.record("refpix", meta)})


def _lazy(data: Any) -> da.Array:
    return data if isinstance(data, da.Array) else da.from_array(np.asarray(data))


def _readout(meta: dict[str, Any], name: str, default: int) -> int:
    value = keywords.get(meta, f"exposure.{name}")
    if value is None:
        log.warning("refpix: keyword %s not found; using %d", name.upper(), default)
        return default
    return int(value)


def _flag(block: np.ndarray, known: np.ndarray, *, scipix_n: int, refpix_r: int, n_sigma: float) -> np.ndarray:
    sci = np.ascontiguousarray(block[0], dtype=np.float32)
    return flag_bad_reference_rows(sci, np.asarray(known, bool), scipix_n=scipix_n, refpix_r=refpix_r,
                                   n_sigma=n_sigma)


def _correct(block: np.ndarray, bad: np.ndarray, reference: Any, means: MeanSubtraction | None, *, detector: str,
             scipix_n: int, refpix_r: int, preserve_refpix: bool) -> np.ndarray:
    sci = np.ascontiguousarray(block[0], dtype=np.float32)
    out = correct_irs2(sci, np.asarray(bad, bool), reference, detector=detector, scipix_n=scipix_n,
                       refpix_r=refpix_r, preserve_refpix=preserve_refpix, means=means)
    return out[np.newaxis]


def _correct_zeroframe(plane: np.ndarray, means: MeanSubtraction, layout: Any) -> np.ndarray:
    """Reference means removed from one integration's zero frame; zeros (no data) stay 0."""
    out = np.array(plane, dtype=np.float32, copy=True)
    subtract_reference_means(out, means, layout)
    out[plane == 0.0] = 0.0
    return out
