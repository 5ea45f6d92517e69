"""clean_flicker_noise: remove 1/f (flicker) noise stripes from group differences, as jwst 3.0
(off by default; spec §6.13).

A draft rate [DN/s] (the ramp_fit step on the input) gives a scene mask of background pixels;
each group difference [DN] has its background level removed, the noise fitted on its masked
pixels (medians along every detector line, or NSClean's Fourier fit for NIRSpec) subtracted, and
the ramp is rebuilt from the cleaned differences. With ``background_method='median_image'``
every group instead has the median ramp across integrations (scaled per integration) removed
before the fit and restored after. The mask (and the ``autoparam`` choice) is one task on the
2-D rate; the median ramp is one task per (y, x) tile; the cleaning is one task per integration
(all groups of one integration, full frame).
"""

from __future__ import annotations

import logging
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from astropy.io import fits

from jwdask.detector1._ramp import require_ramp
from jwdask.errors import InputError, ParameterError
from jwdask.io import keywords
from jwdask.kernels.clean_flicker_noise import (
    BACKGROUND_CODES,
    NSCLEAN_ALLSLITS_FC,
    NSCLEAN_SUBARRAY_FC,
    auto_parameters,
    clean_ramp_integration,
    clean_ramp_with_median,
    fill_flat,
    integration_scales,
    median_over_integrations,
    plane_medians,
    scene_mask,
)
from jwdask.steps import completed, reference, skipped

log = logging.getLogger(__name__)

STEP = "clean_flicker_noise"
FIT_METHODS = ("median", "fft")
BACKGROUND_METHODS = ("median", "model", "median_image", None)
NSCLEAN_EXP_TYPES = ("NRS_MSASPEC", "NRS_IFU", "NRS_FIXEDSLIT", "NRS_BRIGHTOBJ")
"""Exposure types for which jwst allows ``fit_method='fft'``."""
MEDIAN_IMAGE_TSO_TYPES = ("NIS_SOSS", "NRS_BRIGHTOBJ", "NRC_TSGRISM", "NRC_TSIMAGE")
"""Exposure types whose median image jwst scales by extracted spectra or aperture photometry
(also MIR_IMAGE TSO visits); not implemented here."""
AUTOPARAM_INSTRUMENTS = {"NRC_IMAGE": "NIRCAM", "NIS_IMAGE": "NIRISS"}
"""Exposure types for which jwst 3.0 chooses parameters automatically (``autoparam``)."""
NIR_FULL_FRAME_LINES = 2048
N_AMPLIFIERS = 4


def clean_flicker_noise(ds: xr.Dataset, refs: Any, *, autoparam: bool = False, fit_method: str = "median",
                        fit_by_channel: bool = False, background_method: str | None = "median",
                        background_box_size: list[int] | None = None, mask_science_regions: bool = False,
                        apply_flat_field: bool = False, n_sigma: float = 2.0, fit_histogram: bool = False,
                        single_mask: bool = True, user_mask: str | None = None, save_mask: bool = False,
                        save_background: bool = False, save_noise: bool = False) -> xr.Dataset:
    """Fit and subtract 1/f noise [DN] from every group difference of the ramps.

    Parameters (jwst 3.0 ``CleanFlickerNoiseStep`` defaults)
    ----------
    fit_method : {"median", "fft"}
        Stripe fit: medians along detector lines, or NSClean (Fourier fit in the detector's
        clocking order; jwst allows it for NIRSpec spectra only and marks other exposures FAILED).
    fit_by_channel : bool
        Fit each of the 4 amplifiers separately (NIR full frame and ``median`` only, else ignored).
    background_method : {"median", "model", "median_image", None}
        Background removed before the fit: masked median, photutils Background2D map of
        ``background_box_size`` boxes, none, or ``median_image``: the median ramp across
        integrations scaled by each integration's median draft rate (needs >= 2 integrations,
        else FAILED; per-integration masks; TSO spectra/photometry scalings raise).
    mask_science_regions : bool
        Only a no-op for NIRCam/NIRISS/FGS imaging; for NIRSpec, MIRI imaging and NIRISS SOSS it
        needs the WCS/flat-field machinery and raises NotImplementedError.
    apply_flat_field : bool
        Divide by the FLAT reference before fitting (restored after).
    n_sigma : float
        Clip level [sigma] for signal in the scene mask and in each difference (0: no clip).
    fit_histogram : bool
        Take the clip centre and sigma from a Gaussian fit to the value histogram.
    single_mask : bool
        One mask from the exposure rate; else one per integration (from the rateints).
    user_mask : str, optional
        FITS file whose SCI (or primary) image is the mask (non-zero = background).
    autoparam : bool
        For NIRCam/NIRISS imaging, choose ``background_method`` and ``fit_by_channel`` from the
        draft rate (jwst's heuristics) and apply the FLAT if there is one; ignored otherwise.
    save_mask, save_background, save_noise : bool
        Not implemented (raise NotImplementedError when set).
    """
    require_ramp(ds, STEP)
    _refuse_unimplemented(save_mask=save_mask, save_background=save_background, save_noise=save_noise)
    if fit_method not in FIT_METHODS:
        raise ParameterError(f"{STEP}: fit_method must be one of {FIT_METHODS}, got {fit_method!r}")
    if str(background_method).lower() == "none":
        background_method = None
    if background_method not in BACKGROUND_METHODS:
        raise ParameterError(f"{STEP}: background_method must be one of {BACKGROUND_METHODS}, "
                             f"got {background_method!r}")
    meta = ds.attrs.get("meta", {})
    exp_type = str(keywords.get(meta, "exposure.type", "")).upper()
    subarray = str(keywords.get(meta, "subarray.name", "")).upper()
    detector = str(keywords.get(meta, "instrument.detector", "")).upper()
    miri = exp_type.startswith("MIR")
    auto = autoparam and exp_type in AUTOPARAM_INSTRUMENTS
    if autoparam and not auto:
        log.warning("%s: auto parameters are not available for EXP_TYPE %s; using the input parameters",
                    STEP, exp_type)
    if auto:
        apply_flat_field, background_method = True, "median"
    if miri and exp_type != "MIR_IMAGE":
        return _failed(ds, STEP, f"EXP_TYPE {exp_type} is not supported")
    if fit_method == "fft" and exp_type not in NSCLEAN_EXP_TYPES:
        return _failed(ds, STEP, f"fit_method 'fft' cannot be applied to EXP_TYPE {exp_type}")
    median_image = background_method == "median_image"
    if median_image:
        _check_median_image(ds, exp_type)
        if single_mask:
            log.warning("%s: background_method 'median_image' needs per-integration rates; "
                        "single_mask set to False", STEP)
            single_mask = False
    if mask_science_regions and (exp_type.startswith("NRS") or exp_type in ("MIR_IMAGE", "NIS_SOSS")):
        raise NotImplementedError(f"{STEP}: mask_science_regions for EXP_TYPE {exp_type} needs the "
                                  "WCS / flat-field science-region masks, not implemented in jwdask")
    if background_box_size is not None and len(background_box_size) != 2:
        raise ParameterError(f"{STEP}: background_box_size must be two integers, got {background_box_size!r}")
    axis = _stripe_axis(ds, miri)
    if fit_by_channel and (subarray != "FULL" or miri):
        log.warning("%s: fit_by_channel can only be used for full-frame NIR data; set to False", STEP)
        fit_by_channel = False
    channels_possible = subarray == "FULL" and not miri and ds.sizes[("y", "x")[axis]] == NIR_FULL_FRAME_LINES
    n_channels = N_AMPLIFIERS if fit_by_channel and channels_possible else 1
    fit = {"fit_method": fit_method, "detector": detector,
           "fc": NSCLEAN_ALLSLITS_FC if subarray == "ALLSLITS" else NSCLEAN_SUBARRAY_FC}

    ref_files: dict[str, str] = {}
    flat = None
    if apply_flat_field:
        flat_ds, flat_name = reference(refs, "flat", ds)
        if flat_ds is None:
            log.warning("%s: no FLAT for EXP_TYPE %s; fitting without a flat", STEP, exp_type)
        else:
            ref_files["flat"] = flat_name
            flat = whole_frame(flat_ds["sci"].data).map_blocks(fill_flat, dtype=np.float32)
    if ds.sizes["group"] < 2 and not median_image:
        return completed(ds, STEP, ref_files=ref_files)
    if median_image and ds.sizes["integration"] < 2:
        return _failed(ds, STEP, f"background_method 'median_image' needs several integrations, "
                                 f"got {ds.sizes['integration']}")
    rate = None
    if median_image or user_mask is None or str(user_mask).lower() == "none":
        rate = draft_rate(ds, refs, per_integration=not single_mask)
        if flat is not None:
            rate = rate / (flat if rate.ndim == 2 else flat[None])
    mask = _background_mask(ds, rate, user_mask=user_mask, n_sigma=n_sigma, fit_histogram=fit_histogram)
    if median_image:
        scales = integration_scale(rate)
        cleaned = per_integration(_median_image_block, ds, mask, median_ramp(ds.sci.data), scales, flat,
                                  name=STEP, by_integration=(1,), axis=axis, n_channels=n_channels, **fit)
        return completed(ds, STEP, {"sci": ds.sci.copy(data=cleaned)}, ref_files=ref_files)
    decision = None
    if auto:
        decision = da.from_delayed(
            dask.delayed(_decide, pure=True)(draft_rate(ds, refs), flat, instrument=AUTOPARAM_INSTRUMENTS[exp_type],
                                             axis=axis),
            shape=(2,), dtype=np.int64)
    cleaned = per_integration(
        _clean_block, ds, mask, flat, decision, name=STEP, axis=axis, n_channels=n_channels,
        auto_channels=N_AMPLIFIERS if channels_possible else 1,
        background_method=background_method, background_box_size=None if background_box_size is None else [int(b) for b in background_box_size],
        n_sigma=float(n_sigma), **fit)
    return completed(ds, STEP, {"sci": ds.sci.copy(data=cleaned)}, ref_files=ref_files)


def _check_median_image(ds: xr.Dataset, exp_type: str) -> None:
    """Refuse the median-image scalings by spectral extraction or photometry (TSO modes)."""
    tso_visit = bool(keywords.get(ds.attrs.get("meta", {}), "visit.tsovisit", False))
    if exp_type in MEDIAN_IMAGE_TSO_TYPES or (exp_type == "MIR_IMAGE" and tso_visit and ds.sizes["integration"] > 1):
        raise NotImplementedError(f"{STEP}: background_method='median_image' for EXP_TYPE {exp_type} (TSO) "
                                  "scales the median by extracted spectra or aperture photometry; not "
                                  "implemented in jwdask")


def median_ramp(sci: da.Array) -> da.Array:
    """NaN-ignoring median ramp [DN] across integrations, ``(group, y, x)``, computed tile by
    tile (the integration axis is gathered per tile)."""
    return sci.rechunk({0: -1}).map_blocks(median_over_integrations, drop_axis=0, meta=np.empty((0,) * 3, np.float32))


def integration_scale(rates: da.Array) -> da.Array:
    """Flux scale (1) of each integration for the median image: its median draft rate over the
    median of those, from the ``(integration, y, x)`` draft rates [DN/s]; one small task."""
    empty = np.empty((0,), np.float32)
    medians = rates.map_blocks(plane_medians, drop_axis=(1, 2), meta=empty)
    return medians.rechunk(-1).map_blocks(integration_scales, meta=empty)


# ------------------------------------------------------------------------------ shared graph pieces

def whole_frame(data: da.Array) -> da.Array:
    """``data`` as one chunk over its last two (y, x) axes, one chunk per leading index."""
    return data.rechunk({i: (1 if i < data.ndim - 2 else -1) for i in range(data.ndim)})


def draft_rate(ds: xr.Dataset, refs: Any, *, per_integration: bool = False) -> da.Array:
    """The rate [DN/s] of the ramps by the ramp_fit step with its defaults, ``(y, x)`` (or
    ``(integration, y, x)``), one whole-frame chunk (per integration)."""
    from jwdask.detector1.ramp_fit import ramp_fit

    fitted = ramp_fit(ds, refs)
    return whole_frame(fitted["sci_ints" if per_integration else "sci"].data)


def per_integration(func: Any, ds: xr.Dataset, mask: da.Array, *extra: da.Array | None, name: str,
                    by_integration: tuple[int, ...] = (), **kwargs: Any) -> da.Array:
    """``func(sci, groupdq, mask, *extra, **kwargs)`` on each integration's full ramps (numpy
    ``(group, y, x)``, ``groupdq`` likewise, the 2-D mask of that integration, then the extras:
    whole 1-D, ``(y, x)`` or ``(group, y, x)`` arrays, or for the positions in
    ``by_integration`` the value of a 1-D per-integration array), in tasks named
    ``name-<token>``; returns the new ``sci`` with the input's chunks."""
    one_integration = {0: 1, 1: -1, 2: -1, 3: -1}
    sci = ds.sci.data.rechunk(one_integration)
    gdq = ds.groupdq.data.rechunk(one_integration)
    args = [sci, "igyx", gdq, "igyx", mask, "yx" if mask.ndim == 2 else "iyx"]
    names = []
    for k, arr in enumerate(extra):
        if arr is None:
            continue
        if k in by_integration:
            args += [arr.rechunk(1), "i"]
        else:
            args += [arr.rechunk(-1), {1: "p", 2: "yx", 3: "gyx"}[arr.ndim]]
        names.append(k)
    out = da.blockwise(_call_block, "igyx", *args, dtype=np.float32, token=name, block_func=func, positions=names,
                       n_extra=len(extra), by_integration=tuple(by_integration), kwargs=kwargs, concatenate=True)
    return out.rechunk(ds.sci.data.chunks)


def _call_block(sci: np.ndarray, gdq: np.ndarray, mask: np.ndarray, *given: np.ndarray, block_func: Any,
                positions: list[int], n_extra: int, by_integration: tuple[int, ...],
                kwargs: dict[str, Any]) -> np.ndarray:
    extra: list[Any] = [None] * n_extra
    for k, arr in zip(positions, given, strict=True):
        extra[k] = arr[0] if k in by_integration else arr
    return block_func(sci[0], gdq[0], mask if mask.ndim == 2 else mask[0], *extra, **kwargs)[np.newaxis]


def _clean_block(sci: np.ndarray, gdq: np.ndarray, mask: np.ndarray, flat: np.ndarray | None,
                 decision: np.ndarray | None, *, auto_channels: int, **kwargs: Any) -> np.ndarray:
    if decision is not None:
        kwargs["background_method"] = BACKGROUND_CODES[int(decision[0])]
        kwargs["n_channels"] = auto_channels if decision[1] else 1
    return clean_ramp_integration(sci, gdq, mask, flat=flat, **kwargs)


def _median_image_block(sci: np.ndarray, gdq: np.ndarray, mask: np.ndarray, median: np.ndarray, scale: np.floating,
                        flat: np.ndarray | None, **kwargs: Any) -> np.ndarray:
    return clean_ramp_with_median(sci, mask, median, scale, flat=flat, **kwargs)


def _decide(rate: np.ndarray, flat: np.ndarray | None, *, instrument: str, axis: int) -> np.ndarray:
    """``[background code, fit_by_channel]`` chosen by :func:`auto_parameters`."""
    chosen = auto_parameters(rate, flat, instrument=instrument, axis=axis)
    return np.array([BACKGROUND_CODES.index(chosen["background_method"]), int(chosen["fit_by_channel"])])


def _failed(ds: xr.Dataset, step: str, reason: str) -> xr.Dataset:
    log.warning("%s: %s; step will be skipped", step, reason)
    out = skipped(ds, step, reason)
    keywords.put(out.attrs["meta"], ("cal_step", step), "FAILED")
    return out


# ------------------------------------------------------------------------------ helpers

def _refuse_unimplemented(**flags: bool) -> None:
    for name, value in flags.items():
        if value:
            raise NotImplementedError(f"{STEP}: {name}=True (saving this diagnostic product) is not "
                                      "implemented in jwdask")


def _stripe_axis(ds: xr.Dataset, miri: bool) -> int:
    """Array axis of the 2-D image along which stripes are medianed: MIRI 0 (y); near-IR
    ``|SLOWAXIS| - 1``."""
    if miri:
        return 0
    slowaxis = keywords.get(ds.attrs.get("meta", {}), "subarray.slowaxis")
    if slowaxis is None or abs(int(slowaxis)) not in (1, 2):
        raise InputError(ds.attrs.get("source", "exposure"), "PRIMARY SLOWAXIS",
                         f"must be +-1 or +-2 for {STEP}, got {slowaxis!r}")
    return abs(int(slowaxis)) - 1


def _background_mask(ds: xr.Dataset, rate: da.Array | None, *, user_mask: str | None, n_sigma: float,
                     fit_histogram: bool) -> da.Array:
    """bool ``(y, x)`` (or ``(integration, y, x)``) mask of background pixels, whole-frame chunks:
    the user mask if given, else the scene mask of the draft ``rate`` [DN/s] (flat-divided)."""
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    if user_mask is not None and str(user_mask).lower() != "none":
        path = str(user_mask)
        shape = _user_mask_shape(path)
        nints = ds.sizes["integration"]
        if shape[-2:] != (ny, nx) or len(shape) not in (2, 3) or (len(shape) == 3 and shape[0] != nints):
            raise InputError(path, "SCI", f"user_mask shape {shape} does not match the exposure "
                                          f"({nints} integrations of {(ny, nx)})")
        return whole_frame(da.from_delayed(dask.delayed(_read_user_mask)(path), shape=shape, dtype=bool))
    assert rate is not None
    return rate.map_blocks(scene_mask, dtype=bool, n_sigma=float(n_sigma), fit_histogram=bool(fit_histogram))


def _user_mask_hdu(hdul: fits.HDUList) -> fits.ImageHDU | fits.PrimaryHDU:
    return hdul["SCI"] if "SCI" in hdul else hdul[0]


def _user_mask_shape(path: str) -> tuple[int, ...]:
    try:
        with fits.open(path) as hdul:
            header = _user_mask_hdu(hdul).header
            return tuple(int(header[f"NAXIS{i}"]) for i in range(int(header["NAXIS"]), 0, -1))
    except (OSError, KeyError) as exc:
        raise InputError(path, "SCI", f"user_mask is not a readable FITS image: {exc}") from exc


def _read_user_mask(path: str) -> np.ndarray:
    with fits.open(path) as hdul:
        return np.asarray(_user_mask_hdu(hdul).data).astype(bool)
