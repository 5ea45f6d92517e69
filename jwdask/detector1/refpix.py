"""refpix: remove bias drifts [DN] measured in the reference pixels (near-IR "median").

Per amplifier, sigma-clipped means of the top/bottom reference rows (even and odd columns
apart), then a running median of the side reference columns per row; single-output subarrays
use one mean of their reference pixels. Amplifier mode (full frames, 4-output subarrays) reads
only the 4-pixel border strips of each plane: one small task per integration measures, then the
corrections are subtracted tile by tile. Single-output subarrays (small) use whole planes, one
task per group block.
With ``refpix_algorithm="sirs"``, near-IR full frames whose ``sirskernel`` reference has
their detector replace the side running median by the SIRS convolution
(:mod:`jwdask.kernels.refpix_sirs`), measured on the same border strips; otherwise, as jwst,
the running median is used.
MIRI exposures go to :func:`jwdask.detector1.refpix_miri.refpix_miri`; NIRSpec IRS2 frames
(wider than the detector, as jwst's ``is_irs2``) to :func:`jwdask.detector1.refpix_irs2.refpix_irs2`.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from jwdask.detector1._ramp import require_ramp
from jwdask.errors import ParameterError, ReferenceFileError
from jwdask.io import keywords
from jwdask.kernels.refpix import (
    DETECTOR_SIZE,
    NirCorrections,
    apply_nir,
    correct_nir,
    measure_nir,
    reads_border_only,
)
from jwdask.kernels.refpix_sirs import (
    AMPLIFIERS,
    SirsKernels,
    kernel_coefficients,
    make_sirs_kernels,
)
from jwdask.steps import completed, skipped
from jwdask.tiles import as_delayed

log = logging.getLogger(__name__)

BLOCK_BYTES = 128 * 2**20
"""Largest refpix block [bytes] of single-output subarrays: whole planes, as many groups as fit."""

BORDER = 4
"""Width [pixels] of the border strips that hold every reference pixel in amplifier mode."""


def refpix(ds: xr.Dataset, refs: Any, *, odd_even_columns: bool = True, use_side_ref_pixels: bool = True,
           side_smoothing_length: int = 11, side_gain: float = 1.0, odd_even_rows: bool = True,
           ovr_corr_mitigation_ftr: float = 3.0, preserve_irs2_refpix: bool = False,
           irs2_mean_subtraction: bool = False, refpix_algorithm: str = "median", sigreject: float = 4.0,
           gaussmooth: float = 1.0, halfwidth: int = 30, siglimit: float = 3.0) -> xr.Dataset:
    """Correct ``sci`` with the reference pixels (jwst 3.0 parameters).

    Parameters
    ----------
    odd_even_columns : bool
        Separate statistics for even and odd detector columns.
    use_side_ref_pixels : bool
        Subtract the smoothed side (left/right) reference signal from every row.
    side_smoothing_length : int
        Running-median window [rows] of the side reference signal (>= 2).
    side_gain : float
        Factor applied to the side reference signal.
    odd_even_rows : bool
        MIRI: separate reference levels for even and odd rows.
    ovr_corr_mitigation_ftr, preserve_irs2_refpix, irs2_mean_subtraction : float, bool, bool
        NIRSpec IRS2 frames: outlier threshold [standard deviations] of the interleaved reference
        pixels, keep them (3200 x 2048 out), subtract the top/bottom reference means first (with
        ``odd_even_columns`` and ``siglimit``; no side pixels); see
        :func:`jwdask.detector1.refpix_irs2.refpix_irs2`.
    refpix_algorithm : {"median", "sirs"}
        Side-pixel algorithm of near-IR full frames: running median, or the SIRS convolution
        with the ``sirskernel`` reference (running median when it is N/A or lacks the detector).
    sigreject : float
        SIRS outlier rejection limit [robust standard deviations].
    gaussmooth : float
        Width [rows] of the Gaussian low-pass applied to the SIRS kernels.
    halfwidth : int
        Half-width [rows] of the SIRS kernels.
    siglimit : float
        Sigma-clipping limit [standard deviations] of the reference means.
    """
    require_ramp(ds, "refpix")
    meta = ds.attrs.get("meta", {})
    instrument = str(keywords.get(meta, "instrument.name", "")).upper()
    if instrument == "MIRI":
        module = importlib.import_module("jwdask.detector1.refpix_miri")
        return module.refpix_miri(ds, refs, odd_even_rows=odd_even_rows)
    if max(ds.sizes["y"], ds.sizes["x"]) > DETECTOR_SIZE:
        module = importlib.import_module("jwdask.detector1.refpix_irs2")
        if irs2_mean_subtraction and use_side_ref_pixels:
            log.info("refpix: side reference pixels are not used for IRS2 data")
        return module.refpix_irs2(ds, refs, ovr_corr_mitigation_ftr=ovr_corr_mitigation_ftr,
                                  preserve_irs2_refpix=preserve_irs2_refpix,
                                  irs2_mean_subtraction=irs2_mean_subtraction,
                                  odd_even_columns=odd_even_columns, siglimit=siglimit)
    if refpix_algorithm not in ("median", "sirs"):
        msg = f"refpix: refpix_algorithm must be 'median' or 'sirs', got {refpix_algorithm!r}"
        raise ParameterError(msg)
    if side_smoothing_length < 2:
        msg = f"refpix: side_smoothing_length must be >= 2 rows, got {side_smoothing_length}"
        raise ParameterError(msg)
    if keywords.get(meta, "subarray.multistripe_reads1") not in (None, 0):
        return skipped(ds, "refpix", "multistripe subarrays have no usable reference pixels")
    settings = {
        "fastaxis": int(keywords.get(meta, "subarray.fastaxis", 0) or 0),
        "slowaxis": int(keywords.get(meta, "subarray.slowaxis", 0) or 0),
        "origin": (int(ds.y.values[0]), int(ds.x.values[0])),
        "noutputs": int(keywords.get(meta, "exposure.noutputs", 4) or 4),
        "subarray": str(keywords.get(meta, "subarray.name", "FULL")),
        "odd_even_columns": odd_even_columns, "use_side_ref_pixels": use_side_ref_pixels,
        "side_smoothing_length": side_smoothing_length, "side_gain": side_gain, "siglimit": siglimit,
    }
    if refpix_algorithm == "sirs" and use_side_ref_pixels:
        kernels = _sirs_kernels(ds, refs, gaussmooth=gaussmooth, halfwidth=halfwidth)
        if kernels is not None:
            settings.update(refpix_algorithm="sirs", sirs_kernels=kernels, sigreject=float(sigreject))
    if settings["fastaxis"] == 0 or settings["slowaxis"] == 0:
        msg = "refpix: FASTAXIS/SLOWAXIS keywords are missing"
        raise ParameterError(msg)
    pixeldq = ds.pixeldq.data.rechunk(-1)
    if reads_border_only((ds.sizes["y"], ds.sizes["x"]), settings["noutputs"]):
        corrected = _border_corrected(ds.sci.data, pixeldq, settings)
    else:
        sci = _whole_planes(ds.sci)
        corrected = da.map_blocks(_correct_block, sci.data, pixeldq, dtype=np.float32, settings=settings,
                                  name=f"refpix-{tokenize(sci.data, pixeldq, settings)}").rechunk(ds.sci.data.chunks)
    variables = {"sci": xr.DataArray(corrected, dims=ds.sci.dims, coords=ds.sci.coords, attrs=dict(ds.sci.attrs))}
    if "zeroframe" in ds:
        z = ds.zeroframe
        zdata = z.data.rechunk((1, -1, -1))
        fixed = da.map_blocks(_correct_zeroframe, zdata, pixeldq, dtype=np.float32, settings=settings,
                              name=f"refpix-zeroframe-{tokenize(zdata, pixeldq, settings)}")
        variables["zeroframe"] = xr.DataArray(fixed, dims=z.dims, coords=z.coords).chunk(
            dict(zip(z.dims, z.chunks, strict=True)))
    return completed(ds, "refpix", variables)


def _border_corrected(sci: da.Array, pixeldq: da.Array, settings: dict[str, Any]) -> da.Array:
    """Amplifier mode: statistics from the 4-pixel border strips of the planes (one task per
    integration), then the subtraction tile by tile, so no task holds whole planes."""
    nints, ngroups, ny, nx = sci.shape
    strips = (sci[:, :, :BORDER, :], sci[:, :, ny - BORDER:, :], sci[:, :, :, :BORDER], sci[:, :, :, nx - BORDER:])
    along_x = abs(settings["fastaxis"]) == 1
    sirs = settings.get("refpix_algorithm") == "sirs"
    column_shape = (1, ngroups, 1, nx) if along_x else (1, ngroups, ny, 1)
    amps = AMPLIFIERS if sirs else 1
    row_shape = (1, ngroups, ny, amps) if along_x else (1, ngroups, amps, nx)
    side = settings["use_side_ref_pixels"]
    parts: list[list[da.Array]] = [[], [], []]
    for i in range(nints):
        measured = dask.delayed(_measure_border, pure=True, nout=3)(
            *(as_delayed(s[i]) for s in strips), as_delayed(pixeldq), shape=(ny, nx), settings=settings, starts_exposure=i == 0,
            dask_key_name=f"refpix-measure-{tokenize(sci.name, pixeldq.name, settings)}-{i}")
        for part, value, shape, dtype in zip(parts, measured, (column_shape, row_shape, (1, ngroups, 1, 1)),
                                             (np.float64, np.float64, bool), strict=True):
            part.append(da.from_delayed(value, shape, dtype=dtype))
    tiles = sci.chunks[2:]
    columns, rows, float32 = (da.concatenate(part, axis=0) for part in parts)
    columns = columns.rechunk((-1, -1, *((tiles[0], 1) if not along_x else (1, tiles[1]))))
    arrays = [columns, float32.rechunk(-1)]
    if side and sirs:
        arrays.append(_amplifier_rows(rows, (ny, nx), along_x).rechunk(sci.chunks))
    elif side:
        arrays.append(rows.rechunk((-1, -1, *((tiles[0], 1) if along_x else (1, tiles[1])))))
    return da.map_blocks(_apply_tile, sci, *arrays, dtype=np.float32,
                         name=f"refpix-{tokenize(sci.name, [a.name for a in arrays])}")


def _amplifier_rows(rows: da.Array, shape: tuple[int, int], along_x: bool) -> da.Array:
    """SIRS corrections per row and amplifier repeated over each amplifier's pixels (lazily,
    one amplifier-wide block at a time)."""
    axis = 3 if along_x else 2
    width = shape[axis - 2] // AMPLIFIERS
    return da.repeat(rows.rechunk({axis: 1}), width, axis=axis)


def _sirs_kernels(ds: xr.Dataset, refs: Any, *, gaussmooth: float, halfwidth: int) -> SirsKernels | None:
    """The detector's SIRS kernels when jwst would use them (near-IR full frame, a
    ``sirskernel`` reference holding the detector); None means the running median."""
    meta = ds.attrs.get("meta", {})
    if "FULL" not in str(keywords.get(meta, "subarray.name", "")):
        log.info("refpix: SIRS is not applied to subarray data; using the running median")
        return None
    if (ds.sizes["y"], ds.sizes["x"]) != (DETECTOR_SIZE, DETECTOR_SIZE):
        msg = (f"refpix: SIRS on a {ds.sizes['y']} x {ds.sizes['x']} window named FULL is not implemented "
               "in jwdask (full frames are 2048 x 2048)")
        raise NotImplementedError(msg)
    if refs is None:
        raise ReferenceFileError("sirskernel", "refpix_algorithm='sirs' needs a reference provider")
    if refs.path("sirskernel", meta) is None:
        log.warning("refpix: no sirskernel reference (N/A); using the running median for the side pixels")
        return None
    detector = str(keywords.get(meta, "instrument.detector", ""))
    coefficients = kernel_coefficients(refs.open_asdf("sirskernel", meta), detector)
    if coefficients is None:
        log.info("refpix: sirskernel has no coefficients for %s; using the running median", detector)
        return None
    gamma, zeta = coefficients
    if gamma.ndim != 2 or gamma.shape != zeta.shape or gamma.shape[1] < 2:
        msg = (f"{refs.path('sirskernel', meta)}: {detector}.gamma {gamma.shape} and .zeta {zeta.shape} must be "
               "(amplifiers, n + 1) arrays of the same shape")
        raise ReferenceFileError("sirskernel", msg)
    try:
        return make_sirs_kernels(gamma, zeta, gaussmooth=float(gaussmooth), halfwidth=int(halfwidth))
    except ValueError as exc:
        raise ParameterError(f"refpix: {exc}") from exc


def _measure_border(top: np.ndarray, bottom: np.ndarray, left: np.ndarray, right: np.ndarray, pixeldq: np.ndarray,
                    *, shape: tuple[int, int], settings: dict[str, Any],
                    starts_exposure: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One integration's corrections from its border strips, one plane at a time (the rest
    of each plane is never read, so it stays zero)."""
    ny, nx = shape
    plane = np.zeros((1, 1, ny, nx), np.float32)
    found = []
    for g in range(top.shape[0]):
        plane[0, 0, :BORDER], plane[0, 0, ny - BORDER:] = top[g], bottom[g]
        plane[0, 0, :, :BORDER], plane[0, 0, :, nx - BORDER:] = left[g], right[g]
        found.append(measure_nir(plane, pixeldq, starts_exposure=starts_exposure and g == 0, **settings))
    rows = [c.rows for c in found] if found[0].rows is not None else [np.zeros((1, 1, 1, 1))] * len(found)
    return (np.concatenate([c.columns for c in found], axis=1), np.concatenate(rows, axis=1),
            np.concatenate([c.float32 for c in found], axis=1)[..., np.newaxis, np.newaxis])


def _apply_tile(sci: np.ndarray, columns: np.ndarray, float32: np.ndarray, rows: np.ndarray | None = None
                ) -> np.ndarray:
    return apply_nir(sci, NirCorrections(columns=columns, rows=rows, float32=float32[..., 0, 0]))


def _whole_planes(sci: xr.DataArray) -> xr.DataArray:
    """``sci`` rechunked to whole (y, x) planes, one integration and a few groups per block."""
    plane = sci.sizes["y"] * sci.sizes["x"] * sci.dtype.itemsize
    groups = max(1, min(sci.sizes["group"], BLOCK_BYTES // max(plane, 1)))
    return sci.chunk({"integration": 1, "group": groups, "y": -1, "x": -1})


def _correct_block(sci: np.ndarray, pixeldq: np.ndarray, *, settings: dict[str, Any],
                   block_id: tuple[int, ...] | None = None) -> np.ndarray:
    starts = block_id is None or (block_id[0] == 0 and block_id[1] == 0)
    return correct_nir(sci, pixeldq, starts_exposure=starts, **settings).sci


def _correct_zeroframe(zeroframe: np.ndarray, pixeldq: np.ndarray, *, settings: dict[str, Any]) -> np.ndarray:
    corrected = correct_nir(zeroframe[:, np.newaxis], pixeldq, starts_exposure=False, **settings).sci[:, 0]
    return np.where(zeroframe == 0.0, np.float32(0), corrected).astype(np.float32)
