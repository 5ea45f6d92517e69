"""clean_flicker_noise and picture_frame kernels (spec §6.13): scene masks, background levels,
1/f stripe fits on group differences, the automatic parameter choice of jwst's ``autoparam``,
and the NIRSpec picture-frame scaling.

Everything here works on whole frames: one 2-D rate image for the scene mask, one integration
``(group, y, x)`` at a time for the corrections. Masks are bool, ``True`` for background pixels
that may be used in a fit. Values are in DN (group differences) or DN/s (rates).
"""

from __future__ import annotations

import logging
import warnings
from fractions import Fraction
from typing import NamedTuple

import numpy as np
from astropy.stats import SigmaClip, sigma_clipped_stats
from astropy.utils.exceptions import AstropyUserWarning

from jwdask import dqflags

__all__ = [
    "AUTO_LIMITS",
    "PICTURE_FRAME_REGIONS",
    "CleanResult",
    "auto_parameters",
    "background_level",
    "clean_image",
    "clean_ramp_integration",
    "clip_to_background",
    "correct_picture_frame_integration",
    "default_box_size",
    "fill_flat",
    "picture_frame_reference_levels",
    "picture_frame_region_masks",
    "scene_mask",
    "stripe_clean",
]

log = logging.getLogger(__name__)

CLIP_SIGMA = 3.0
"""Sigma limit of the iterative clipped statistics (and of the background clip)."""

PICTURE_FRAME_REGIONS = {"lower_edge": (4, 75), "upper_edge": (1985, 2043), "center": (76, 1984)}
"""NIRSpec full-frame index ranges ``[start, stop)`` of the picture-frame edge bands and centre."""

_UNUSABLE = dqflags.DO_NOT_USE | dqflags.JUMP_DET


# ------------------------------------------------------------------------------ statistics

def _clipped_stats(values: np.ndarray, ignore: np.ndarray | None = None) -> tuple[float, float, float]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=AstropyUserWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        return sigma_clipped_stats(values, mask=ignore, sigma=CLIP_SIGMA)


def _histogram_peak(values: np.ndarray, center: float, sigma: float) -> tuple[float, float] | None:
    """Centre and width of a Gaussian fitted to a 2000-bin histogram over ``center +- 4 sigma``."""
    from scipy.optimize import curve_fit

    try:
        counts, edges = np.histogram(values, bins=2000, range=(center - 4.0 * sigma, center + 4.0 * sigma))
    except ValueError:
        log.error("histogram of background values failed; using the clipped centre and sigma")
        return None
    mids = (edges[1:] + edges[:-1]) / 2.0
    peak = int(np.argmax(counts))

    def gauss(x: np.ndarray, amp: float, mean: float, width: float) -> np.ndarray:
        return amp * np.exp(-0.5 * ((x - mean) / width) ** 2)

    bounds = [(0, mids[0], 0), (np.inf, mids[-1], mids[-1] - mids[0])]
    try:
        params, _ = curve_fit(gauss, mids, counts, p0=(counts[peak], mids[peak], sigma), bounds=bounds)
    except RuntimeError:
        log.error("Gaussian fit to the background histogram failed; using the clipped centre and sigma")
        return None
    return float(params[1]), float(params[2])


def clip_to_background(image: np.ndarray, mask: np.ndarray, *, sigma_lower: float = 3.0,
                       sigma_upper: float = 2.0, fit_histogram: bool = False,
                       lower_half_only: bool = False) -> None:
    """Unset ``mask`` (in place) where ``image`` is above ``center + sigma_upper * sigma`` (signal)
    or below ``center - sigma_lower * sigma`` (bad values).

    ``center``/``sigma`` come from 3-sigma clipped statistics of the masked pixels (the median,
    or the mean with ``fit_histogram``); ``lower_half_only`` recomputes them from the values at
    or below the centre mirrored about it; ``fit_histogram`` refines them with a Gaussian fit.
    """
    if not np.any(mask):
        return
    values = image.astype(np.float64)
    mean, median, sigma = _clipped_stats(values, ~mask)
    center = mean if fit_histogram else median
    if lower_half_only:
        low = values[mask & (values <= center)]
        sample = np.concatenate((low - center, center - low)) + center
        mean, median, sigma = _clipped_stats(sample)
        center = mean if fit_histogram else median
    else:
        sample = values[mask]
    if fit_histogram:
        fitted = _histogram_peak(sample, center, sigma)
        if fitted is not None:
            center, sigma = fitted
    mask[values < center - sigma_lower * sigma] = False
    mask[values > center + sigma_upper * sigma] = False


def default_box_size(shape: tuple[int, ...]) -> list[int]:
    """Per axis, the largest box size <= 32 that divides the image size [pixels]."""
    return [max(b for b in range(1, 33) if n % b == 0) for n in shape]


def background_level(image: np.ndarray, mask: np.ndarray, method: str | None = "median",
                     box_size: tuple[int, int] | list[int] | None = None) -> float | np.ndarray:
    """Background of ``image`` from its masked pixels: 0 (``None``), their median (``'median'``)
    or a ``photutils`` Background2D map (``'model'``; the median if that fit fails).

    ``mask`` is first clipped in place at 3 sigma of the mirrored lower half of the values.
    """
    if method is None:
        return 0.0
    clip_to_background(image, mask, sigma_lower=CLIP_SIGMA, sigma_upper=CLIP_SIGMA, lower_half_only=True)
    if method == "model":
        from photutils.background import Background2D, MedianBackground

        box = list(box_size) if box_size is not None else default_box_size(image.shape)
        if image.shape[0] % box[0] or image.shape[1] % box[1]:
            log.warning("background box size %s does not divide the image shape %s", box, image.shape)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=AstropyUserWarning)
                model = Background2D(image, box_size=box, filter_size=(5, 5), mask=~mask,
                                     sigma_clip=SigmaClip(sigma=CLIP_SIGMA, maxiters=5),
                                     bkg_estimator=MedianBackground())
            return model.background
        except ValueError:
            log.error("background model fit failed; using the median")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        return np.nanmedian(image[mask])


def fill_flat(flat: np.ndarray) -> np.ndarray:
    """A copy of a flat image with zeros and non-finite values replaced by a smoothed local
    level (a background model of the good values; their median if the model fails)."""
    out = np.array(flat, dtype=np.float32)
    bad = (out == 0) | ~np.isfinite(out)
    if np.any(bad):
        smooth = background_level(out, ~bad, "model")
        out[bad] = smooth if np.isscalar(smooth) or np.ndim(smooth) == 0 else smooth[bad]
    return out


def scene_mask(rate: np.ndarray, *, n_sigma: float = 2.0, fit_histogram: bool = False,
               exclude: np.ndarray | None = None) -> np.ndarray:
    """Background mask of a draft rate image [DN/s] ``(y, x)`` or cube ``(integration, y, x)``:
    NaN, zero and ``exclude`` pixels are out; then, per plane, values above ``n_sigma`` clipped
    sigmas (signal) or 3 sigmas below (bad) are out (no clipping when ``n_sigma <= 0``)."""
    mask = ~(np.isnan(rate) | (rate == 0))
    if exclude is not None:
        mask &= ~exclude
    if n_sigma > 0:
        planes = [(rate, mask)] if rate.ndim == 2 else zip(rate, mask, strict=True)
        for plane, plane_mask in planes:
            clip_to_background(plane, plane_mask, sigma_upper=n_sigma, fit_histogram=fit_histogram)
    return mask


# ------------------------------------------------------------------------------ 1/f cleaning

def stripe_clean(image: np.ndarray, mask: np.ndarray, axis: int, n_channels: int = 1) -> np.ndarray:
    """``image`` minus the median of its masked pixels along array ``axis`` (one value per line
    across it; 0 where a line has no masked pixel), taken separately in ``n_channels`` equal
    bands along ``axis`` (amplifiers)."""
    out = image.copy()
    size = image.shape[axis] // n_channels
    for c in range(n_channels):
        band = [slice(None), slice(None)]
        band[axis] = slice(c * size, (c + 1) * size)
        sel = tuple(band)
        values = np.where(mask[sel], image[sel], np.nan)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            stripes = np.nanmedian(values, axis=axis, keepdims=True)
        stripes = np.where(np.isnan(stripes), 0.0, stripes).astype(image.dtype)
        out[sel] = image[sel] - stripes
    return out


class CleanResult(NamedTuple):
    """Output of :func:`clean_image`."""

    cleaned: np.ndarray | None
    """The image with the stripes removed (float32; float64 with a background model), NaN where
    the input was NaN; ``None`` if the mask left no usable pixel (the image is left as it is)."""
    background: float | np.ndarray
    """The background level removed before the stripe fit and restored after it."""


def clean_image(image: np.ndarray, mask: np.ndarray, *, axis: int, n_channels: int = 1,
                background_method: str | None = "median", background_box_size: list[int] | None = None,
                n_sigma: float = 2.0, flat: np.ndarray | None = None) -> CleanResult:
    """Remove 1/f stripes from one image [DN]; ``mask`` (a private copy) is modified.

    The image (divided by ``flat`` if given) has its NaNs set to 0 and masked, its background
    level removed, signal clipped again at ``n_sigma`` of the lower half of the background-
    subtracted values, the stripes fitted (:func:`stripe_clean`) and removed, and the background
    (and flat) restored.
    """
    work = image.astype(np.float32)
    if flat is not None:
        work /= flat
    nan = np.isnan(work)
    work[nan] = 0.0
    mask[nan] = False
    if not np.any(mask):
        return CleanResult(None, 0.0)
    if background_method is None:
        background: float | np.ndarray = 0.0
        subtracted = work
    else:
        background = background_level(work, mask, background_method, background_box_size)
        subtracted = work - background
        if n_sigma > 0:
            clip_to_background(subtracted, mask, sigma_lower=n_sigma, sigma_upper=n_sigma, lower_half_only=True)
    cleaned = stripe_clean(subtracted, mask, axis, n_channels)
    cleaned += background
    if flat is not None:
        cleaned *= flat
    cleaned[nan] = np.nan
    return CleanResult(cleaned, background)


def clean_ramp_integration(sci: np.ndarray, groupdq: np.ndarray, mask: np.ndarray, *, axis: int,
                           n_channels: int = 1, background_method: str | None = "median",
                           background_box_size: list[int] | None = None, n_sigma: float = 2.0,
                           flat: np.ndarray | None = None) -> np.ndarray:
    """Clean one integration's ramps ``(group, y, x)`` [DN] of 1/f noise.

    Each difference of consecutive groups is cleaned by :func:`clean_image` with the scene mask
    less the pixels flagged DO_NOT_USE or JUMP_DET in the later group; the output group is the
    previous output group plus the cleaned difference (group 0 is unchanged; a difference with
    no usable pixel leaves its input group as it is).
    """
    out = np.array(sci, dtype=np.float32)
    for g in range(sci.shape[0] - 1):
        diff = sci[g + 1] - sci[g]
        use = mask & ((groupdq[g + 1] & _UNUSABLE) == 0)
        result = clean_image(diff, use, axis=axis, n_channels=n_channels, background_method=background_method,
                             background_box_size=background_box_size, n_sigma=n_sigma, flat=flat)
        if result.cleaned is None:
            log.warning("clean_flicker_noise: no usable background pixel in group difference %d; "
                        "left uncorrected", g + 1)
            continue
        out[g + 1] = out[g] + result.cleaned
    return out


# ------------------------------------------------------------------------------ automatic parameters

AUTO_LIMITS = {
    "NIRCAM": {"mask_frac": 0.1, "max_offset_high_mask": 0.07, "max_slope_low_offset": 1e-5,
               "max_slope_high_offset": 1e-5, "slope_ratio": 3.0, "channel_sigma": 0.02},
    "NIRISS": {"mask_frac": 0.07, "max_offset_high_mask": 0.07, "max_slope_low_offset": 1e-5,
               "max_slope_high_offset": 1e-4, "slope_ratio": 5.0, "channel_sigma": 0.02},
}
"""Heuristic limits of the jwst 3.0 ``autoparam`` decision tree, per instrument (imaging)."""

BACKGROUND_CODES = ("median", "model")
"""Background methods :func:`auto_parameters` may choose, by their code in its output."""


def _quick_clean(rate: np.ndarray, flat: np.ndarray | None, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Default median clean of a rate image [DN/s]: the cleaned image and its background mask."""
    image = np.array(rate, dtype=np.float32)
    if flat is not None:
        image /= flat
    mask = np.ones(image.shape, bool)
    nan = np.isnan(image)
    image[nan] = 0.0
    mask[nan] = False
    background = background_level(image, mask)
    image -= background
    clip_to_background(image, mask, lower_half_only=True)
    image = stripe_clean(image, mask, axis)
    image += background
    image[nan] = np.nan
    return image, mask


def _band_mean(image: np.ndarray, axis: int, start: Fraction, stop: Fraction) -> np.ndarray:
    """NaN-ignoring mean along ``axis`` over the lines ``[start, stop)`` fraction of that axis."""
    n = image.shape[axis]
    lines = [slice(None), slice(None)]
    lines[axis] = slice(round(start * n), round(stop * n))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        return np.nanmean(image[tuple(lines)], axis=axis)


def _line_fit(values: np.ndarray) -> tuple[float, float]:
    """Slope of a least-squares line through the finite ``values`` (vs index) and the
    10-sigma-clipped standard deviation of its residuals."""
    good = np.isfinite(values)
    x = np.arange(values.size)
    fit = np.polynomial.Polynomial.fit(x[good], values[good], deg=1)
    coef = fit.convert().coef
    slope = coef[1] if len(coef) > 1 else 0.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=AstropyUserWarning)
        _, _, sigma = sigma_clipped_stats(values[good] - fit(x[good]), sigma=10.0)
    return slope, sigma


def _max_channel_offset(values: np.ndarray) -> float:
    """Largest jump between the clipped means of the 4 amplifier bands of a 2048-long profile
    (0 for other lengths)."""
    if values.size != 2048:
        return 0.0
    means = [_clipped_stats(band)[0] for band in np.split(values, 4)]
    return float(np.max(np.abs(np.diff(means))))


def auto_parameters(rate: np.ndarray, flat: np.ndarray | None, *, instrument: str, axis: int) -> dict[str, object]:
    """``background_method`` and ``fit_by_channel`` chosen from a draft rate image [DN/s], as
    jwst 3.0 ``autoparam`` does for NIRCam and NIRISS imaging.

    The rate (divided by ``flat``) is median-cleaned with defaults, its masked pixels replaced
    by a background model, and the decision tree of :data:`AUTO_LIMITS` applied to the masked
    fraction, the slopes of the central row/column profiles, their ratio, the amplifier offsets
    and the scatter about the profile fit.
    """
    instrument = instrument.upper()
    if instrument not in AUTO_LIMITS:
        raise ValueError(f"automatic parameters are defined for NIRCAM and NIRISS, not {instrument}")
    limits = AUTO_LIMITS[instrument]
    image, mask = _quick_clean(rate, flat, axis)
    model = background_level(image, mask, "model")
    image[~mask] = model if np.ndim(model) == 0 else model[~mask]
    mask_frac = np.sum(~mask) / mask.size
    over_rows = _band_mean(image, 0, Fraction(3, 8), Fraction(5, 8))
    over_cols = _band_mean(image, 1, Fraction(3, 8), Fraction(5, 8))
    col_slope, sigma = _line_fit(over_rows)
    row_slope, _ = _line_fit(over_cols)
    slopes = np.abs([row_slope, col_slope])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        slope_ratio = np.max(slopes) / np.min(slopes)
    max_slope = np.max(slopes)
    if instrument == "NIRISS":
        _, sigma = _line_fit(_band_mean(image, 0, Fraction(10, 12), Fraction(11, 12)))
        max_offset = _max_channel_offset(over_cols)
    else:
        max_offset = _max_channel_offset(over_rows)
    high_mask = mask_frac >= limits["mask_frac"]
    high_offset = max_offset >= limits["max_offset_high_mask"]
    slope_low = max_slope >= limits["max_slope_low_offset"]
    slope_high = max_slope >= limits["max_slope_high_offset"]
    if not high_mask and high_offset:
        chosen = {"background_method": "median", "fit_by_channel": True}
    elif high_mask:
        steep = slope_high if high_offset else slope_low
        chosen = {"background_method": "model" if steep else "median", "fit_by_channel": False}
    else:
        if slope_high or (slope_low and not slope_ratio >= limits["slope_ratio"]):
            method = "model"
        else:
            method = "median"
        chosen = {"background_method": method,
                  "fit_by_channel": bool(max_offset > 0 and sigma >= limits["channel_sigma"])}
    log.info("clean_flicker_noise autoparam: mask fraction %.5g, max offset %.5g, max slope %.5g, "
             "slope ratio %.5g, sigma %.5g -> %s", mask_frac, max_offset, max_slope, slope_ratio, sigma, chosen)
    return chosen


# ------------------------------------------------------------------------------ picture frame

def picture_frame_region_masks(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(center, edge)``: background pixels of a full-frame NIRSpec mask in the central region
    and in the four edge bands (reference pixels excluded)."""
    y, x = np.indices(mask.shape)
    lo, hi, mid = (PICTURE_FRAME_REGIONS[k] for k in ("lower_edge", "upper_edge", "center"))
    center = mask & (y >= mid[0]) & (y < mid[1]) & (x >= mid[0]) & (x < mid[1])
    inside = (y >= lo[0]) & (y < hi[1]) & (x >= lo[0]) & (x < hi[1])
    band = ((y >= lo[0]) & (y < lo[1])) | ((y >= hi[0]) & (y < hi[1])) \
        | ((x >= lo[0]) & (x < lo[1])) | ((x >= hi[0]) & (x < hi[1]))
    return center, mask & band & inside


def picture_frame_reference_levels(reference: np.ndarray, center: np.ndarray,
                                   edge: np.ndarray) -> tuple[float, float]:
    """NaN-ignoring medians of the picture-frame reference over the centre and edge pixels."""
    return np.nanmedian(reference[center]), np.nanmedian(reference[edge])


def correct_picture_frame_integration(sci: np.ndarray, reference: np.ndarray, center: np.ndarray,
                                      edge: np.ndarray, ref_center: float, ref_edge: float) -> np.ndarray:
    """Subtract the scaled picture-frame pattern from one integration ``(group, y, x)`` [DN].

    For each group after the first, relative to the first: the pattern ``reference - ref_edge``
    is scaled by ``(median_center - median_edge) / (ref_center - ref_edge)`` and offset by
    ``median_edge`` (NaN-ignoring medians of the group over the centre/edge pixels), then
    subtracted. Group 0 is unchanged.
    """
    out = np.array(sci, dtype=np.float32)
    zero = out[0]
    pattern = reference - ref_edge
    for g in range(1, out.shape[0]):
        rel = out[g] - zero
        med_center = np.nanmedian(rel[center])
        med_edge = np.nanmedian(rel[edge])
        scale = (med_center - med_edge) / (ref_center - ref_edge)
        correction = scale * pattern + med_edge
        out[g] = rel + (zero - correction)
    return out
