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
    "NSCleanError",
    "auto_parameters",
    "background_level",
    "clean_image",
    "clean_ramp_integration",
    "clean_ramp_with_median",
    "clip_to_background",
    "correct_picture_frame_integration",
    "default_box_size",
    "fft_clean",
    "fill_flat",
    "integration_scales",
    "median_over_integrations",
    "nsclean_full_frame",
    "nsclean_subarray",
    "picture_frame_reference_levels",
    "picture_frame_region_masks",
    "plane_medians",
    "scene_mask",
    "stripe_clean",
]

log = logging.getLogger(__name__)

CLIP_SIGMA = 3.0
"""Sigma limit of the iterative clipped statistics (and of the background clip)."""

PICTURE_FRAME_REGIONS = {"lower_edge": (4, 75), "upper_edge": (1985, 2043), "center": (76, 1984)}
"""NIRSpec full-frame index ranges ``[start, stop)`` of the picture-frame edge bands and centre."""

_UNUSABLE = dqflags.DO_NOT_USE | dqflags.JUMP_DET

NSCLEAN_SUBARRAY_FC = (1061, 1211, 49943, 49957)
"""NSClean of subarrays: apodizer corners [Hz]: unity below fc0, cosine roll-off to fc1, zero to fc2,
cosine roll-on to fc3, unity above."""
NSCLEAN_ALLSLITS_FC = (150, 200, 49943, 49957)
"""Apodizer corners [Hz] for the ALLSLITS subarray (fewer high 1/f frequencies)."""


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
                n_sigma: float = 2.0, flat: np.ndarray | None = None, fit_method: str = "median",
                detector: str = "", fc: tuple[float, float, float, float] = NSCLEAN_SUBARRAY_FC) -> CleanResult:
    """Remove 1/f stripes from one image [DN]; ``mask`` (a private copy) is modified.

    The image (divided by ``flat`` if given) has its NaNs set to 0 and masked, its background
    level removed, signal clipped again at ``n_sigma`` of the lower half of the background-
    subtracted values, the noise fitted and removed (line medians, :func:`stripe_clean`, or
    with ``fit_method='fft'`` NSClean for NIRSpec ``detector``, :func:`fft_clean` with subarray
    corners ``fc`` [Hz]), and the background (and flat) restored. NSClean failures raise
    :class:`NSCleanError`.
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
    if fit_method == "fft":
        cleaned = fft_clean(subtracted, mask, detector, fc)
    else:
        cleaned = stripe_clean(subtracted, mask, axis, n_channels)
    cleaned += background
    if flat is not None:
        cleaned *= flat
    cleaned[nan] = np.nan
    return CleanResult(cleaned, background)


def clean_ramp_integration(sci: np.ndarray, groupdq: np.ndarray, mask: np.ndarray, *, axis: int,
                           n_channels: int = 1, background_method: str | None = "median",
                           background_box_size: list[int] | None = None, n_sigma: float = 2.0,
                           flat: np.ndarray | None = None, fit_method: str = "median", detector: str = "",
                           fc: tuple[float, float, float, float] = NSCLEAN_SUBARRAY_FC) -> np.ndarray:
    """Clean one integration's ramps ``(group, y, x)`` [DN] of 1/f noise.

    Each difference of consecutive groups is cleaned by :func:`clean_image` with the scene mask
    less the pixels flagged DO_NOT_USE or JUMP_DET in the later group; the output group is the
    previous output group plus the cleaned difference (group 0 is unchanged; a difference with
    no usable pixel leaves its input group as it is). ``fit_method``, ``detector`` and ``fc``
    are passed to :func:`clean_image`.
    """
    out = np.array(sci, dtype=np.float32)
    for g in range(sci.shape[0] - 1):
        diff = sci[g + 1] - sci[g]
        use = mask & ((groupdq[g + 1] & _UNUSABLE) == 0)
        try:
            result = clean_image(diff, use, axis=axis, n_channels=n_channels, background_method=background_method,
                                 background_box_size=background_box_size, n_sigma=n_sigma, flat=flat,
                                 fit_method=fit_method, detector=detector, fc=fc)
        except NSCleanError as exc:
            raise NSCleanError(f"clean_flicker_noise: group difference {g + 1}: {exc} (jwst marks the "
                               "step FAILED and keeps the input; use fit_method='median' or skip)") from exc
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


# ------------------------------------------------------------------------------ NSClean (fft fit)

NSCLEAN_FULL_FRAME = (2048, 2048)
"""Image shape [pixels] fitted line by line (:func:`nsclean_full_frame`); other shapes are
subarrays (:func:`nsclean_subarray`)."""
NSCLEAN_FULL_FC = 1 / (2 * 2048 / 16)
"""Full frame: half-power frequency [1/pixel] of the low-pass filter."""
NSCLEAN_FULL_KILL_WIDTH = NSCLEAN_FULL_FC / 4
"""Full frame: width [1/pixel] of the filter's cosine roll-off."""
NSCLEAN_FULL_WEIGHT_SIGMA = 32
"""Full frame: sigma [pixels] of the Gaussian approximating the local background density."""
NSCLEAN_BUFFER_SIGMA = 1.5
"""Full frame: sigma [pixels] of the smoothing of the model along the dispersion (detector y)."""
NSCLEAN_LINE_SIGREJ = 3.0
"""Full frame: outlier limit [MAD sigmas] of the values of one line."""
NSCLEAN_LINE_OVERHEAD = np.int32(12)
"""New-line overhead [pixel times] of the detector clocking."""
NSCLEAN_PIXEL_TIME = np.float32(10.0e-6)
"""Pixel dwell time [s]."""


class NSCleanError(RuntimeError):
    """The NSClean fit of one image failed (singular normal matrix or no usable pixel); jwst
    then marks the whole step FAILED."""


def to_detector_frame(image: np.ndarray, detector: str) -> np.ndarray:
    """View of a NIRSpec DMS-oriented image in detector orientation (fast read along x, the
    IRS2 zipper at the bottom): transposed for NRS1, transposed and flipped otherwise."""
    return image.transpose() if detector.upper() == "NRS1" else image.transpose()[::-1]


def from_detector_frame(image: np.ndarray, detector: str) -> np.ndarray:
    """Inverse of :func:`to_detector_frame`."""
    return image.transpose() if detector.upper() == "NRS1" else image[::-1].transpose()


def lowpass_filter(f_half_power: float, w_cutoff: float, n: int) -> np.ndarray:
    """Gain at the ``rfft`` frequencies [1/sample] of ``n`` samples: 1 up to
    ``f_half_power - w_cutoff/2``, a half-cosine to 0 over ``w_cutoff``, 0 beyond."""
    freq = np.fft.rfftfreq(n)
    roll = (1 + np.cos(np.pi * (freq - f_half_power) / w_cutoff + np.pi / 2)) / 2
    gain = np.where(freq <= f_half_power - w_cutoff / 2, 1, roll)
    return np.where(freq <= f_half_power + w_cutoff / 2, gain, 0)


def _gaussian(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return np.exp(-((x - mu) ** 2) / sigma**2 / 2) / sigma / np.sqrt(2 * np.pi)


def _density_weights(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Full frame: reciprocal of the local density of background pixels along each line (a
    Gaussian of ``sigma`` pixels convolved with the mask by FFT); 0 off the mask or where
    not finite."""
    ny, nx = mask.shape
    kernel = np.zeros((ny, nx), dtype=np.float32)
    kernel[ny // 2 + 1] = _gaussian(np.arange(nx), nx // 2 + 1, sigma)
    kernel_fft = np.fft.rfft2(np.fft.ifftshift(kernel))
    with np.errstate(divide="ignore"):
        weights = 1 / np.fft.irfft2(np.fft.rfft2(np.array(mask, dtype=np.float32)) * kernel_fft, (ny, nx))
    weights = np.where(mask, weights, 0.0)
    weights[~np.isfinite(weights)] = 0.0
    return weights


def _fit_line(values: np.ndarray, weights: np.ndarray, columns: np.ndarray, gain: np.ndarray,
              nx: int) -> np.ndarray:
    """Full frame: model of one detector line of ``nx`` pixels from its background ``values``
    at ``columns``: outliers (beyond ``NSCLEAN_LINE_SIGREJ`` MAD sigmas) set to the median,
    then a weighted least-squares fit of the ``gain.size`` lowest Fourier modes, apodized."""
    center = np.median(values)
    spread = 1.4826 * np.median(np.abs(values - center))
    keep = np.logical_and(center - NSCLEAN_LINE_SIGREJ * spread <= values,
                          values <= center + NSCLEAN_LINE_SIGREJ * spread)
    values = np.where(keep, values, center)
    nvec = gain.size
    m = columns.reshape((-1, 1))
    k = np.arange(nvec).reshape((1, -1))
    basis = np.array(np.exp(2 * np.pi * 1j * m * k / nx) / m.shape[0], dtype=np.complex64)
    design = basis * weights[:, np.newaxis]
    adjoint = np.conjugate(design.transpose())
    pseudo_inverse = np.matmul(np.linalg.inv(np.matmul(adjoint, design)), adjoint)
    spectrum = np.zeros(nx // 2 + 1, dtype=np.complex64)
    spectrum[:nvec] = np.matmul(pseudo_inverse, weights * values)
    spectrum *= nx / m.shape[0]
    spectrum[:nvec] *= gain
    return np.fft.irfft(spectrum, nx)


def nsclean_full_frame(image: np.ndarray, mask: np.ndarray, detector: str) -> np.ndarray:
    """NSClean of a full-frame NIRSpec image [DN] (jwst ``fft_clean_full_frame``).

    In detector orientation, every line but the 4 first and last is fitted (:func:`_fit_line`)
    with the modes below the low-pass cut, weighted by the reciprocal local density of the
    ``mask`` background pixels; the model is smoothed along the dispersion by a Gaussian of
    ``NSCLEAN_BUFFER_SIGMA`` pixels and subtracted. ``image`` is modified in place and returned.
    Raises :class:`NSCleanError` if a normal matrix is singular.
    """
    data = to_detector_frame(image, detector)
    use = to_detector_frame(mask, detector)
    ny, nx = use.shape
    gain = np.array(lowpass_filter(NSCLEAN_FULL_FC, NSCLEAN_FULL_KILL_WIDTH, nx))
    gain = gain[:int(np.sum(gain > 0))]
    weights = _density_weights(use, NSCLEAN_FULL_WEIGHT_SIGMA)
    model = np.zeros((ny, nx), dtype=np.float32)
    columns = np.arange(nx)
    for y in range(4, ny - 4):
        line = use[y]
        if not np.any(line):
            continue
        try:
            model[y] = _fit_line(data[y][line], weights[y][line], columns[line], gain, nx)
        except np.linalg.LinAlgError as exc:
            raise NSCleanError(f"NSClean fit of detector line {y} failed: {exc}") from exc
    buffer = np.zeros((ny, nx), dtype=np.float32)
    offset = (np.arange(ny) - (nx // 2 + 1)) / NSCLEAN_BUFFER_SIGMA
    buffer[:, nx // 2 + 1] = np.exp(-(offset**2) / 2) / NSCLEAN_BUFFER_SIGMA / np.sqrt(2 * np.pi)
    buffer_fft = np.array(np.fft.rfft2(np.fft.ifftshift(buffer)), dtype=np.complex64)
    model = np.fft.irfft2(np.fft.rfft2(model) * buffer_fft, s=model.shape)
    data -= model
    return from_detector_frame(data, detector)


def _subarray_apodizer(freq: np.ndarray, fc: np.ndarray) -> np.ndarray:
    """Subarray filter gain at clocking frequencies ``freq`` [Hz] for corners ``fc`` [Hz]."""
    gain = np.zeros(len(freq), dtype=np.float32)
    gain[freq < fc[0]] = 1.0
    off = np.logical_and(fc[0] <= freq, freq < fc[1])
    gain[off] = 0.5 * (np.cos((np.pi / (fc[1] - fc[0])) * (freq[off] - fc[0])) + 1)
    on = np.logical_and(fc[2] <= freq, freq < fc[3])
    gain[on] = 0.5 * (np.cos((np.pi / (fc[3] - fc[2])) * (freq[on] - fc[2]) + np.pi) + 1)
    gain[freq >= fc[3]] = 1.0
    return gain


def _fit_subarray_section(section: np.ndarray, mask: np.ndarray, fc: tuple[float, float, float, float]) -> np.ndarray:
    """NSClean model [DN] of a band of detector lines ``(lines, nx)`` in the time domain.

    The pixels are placed on the clocking time line (``nx + NSCLEAN_LINE_OVERHEAD`` ticks of
    ``NSCLEAN_PIXEL_TIME`` per line); the Fourier modes the apodizer passes are fitted to the
    ``mask`` pixels by least squares weighted by the reciprocal local sample density (a
    Gaussian of ``1 / mean(fc0, fc1) / 8`` seconds), apodized and transformed back.
    """
    data = np.array(section, dtype=np.float32)
    use = np.array(mask, dtype=np.bool_)
    ny = np.int32(data.shape[0])
    nx = np.int32(data.shape[1])
    corners = np.array(fc, dtype=np.float32)
    n = np.int32(ny * (nx + NSCLEAN_LINE_OVERHEAD))
    freq = np.array(np.fft.rfftfreq(n, NSCLEAN_PIXEL_TIME), dtype=np.float32)
    sigma = 1 / ((fc[0] + fc[1]) / 2) / NSCLEAN_PIXEL_TIME / 2 / 4
    use[np.isnan(data)] = False
    gain = _subarray_apodizer(freq, corners)
    fitted = gain > 0.0

    x = np.arange(nx).reshape((1, -1))
    y = np.arange(ny).reshape((-1, 1))
    ticks = (y * (nx + NSCLEAN_LINE_OVERHEAD) + x)[use].reshape((-1, 1))
    k = np.arange(len(freq))[fitted].reshape((1, -1))
    basis = np.array(np.exp(2 * np.pi * 1j * ticks * k / n) / ticks.shape[0], dtype=np.complex64)

    t = np.arange(n, dtype=np.float32)
    density = _gaussian(t, np.float32(n // 2 + 1), np.float32(sigma))
    density_fft = np.fft.rfft(np.fft.ifftshift(density))
    timeline = np.hstack((use, np.zeros((ny, NSCLEAN_LINE_OVERHEAD), dtype=np.bool_))).flatten()
    with np.errstate(divide="ignore"):
        weights = 1 / np.fft.irfft(np.fft.rfft(np.array(timeline, dtype=np.float32)) * density_fft, n)
    weights = weights[timeline]
    weights[~np.isfinite(weights)] = 0.0

    design = weights.reshape((-1, 1)) * basis
    adjoint = np.conjugate(design.transpose())
    pseudo_inverse = np.matmul(np.linalg.inv(np.matmul(adjoint, design)), adjoint)
    spectrum = np.zeros(len(freq), dtype=np.complex64)
    spectrum[fitted] = np.matmul(pseudo_inverse * weights.reshape((1, -1)), data[use])
    spectrum *= n / ticks.shape[0]
    return np.fft.irfft(spectrum * gain, n).reshape((ny, -1))[:, :nx]


def _exclude_outliers(image: np.ndarray, mask: np.ndarray, sigrej: float) -> np.ndarray:
    """``mask`` less the pixels beyond ``sigrej`` MAD sigmas of the masked median, and their
    4 nearest neighbours."""
    center = np.median(image[mask])
    spread = 1.4825 * np.median(np.abs((image - center)[mask]))
    outlier = mask & (np.abs(image - center) > sigrej * spread)
    out = mask & (~outlier)
    out[1:] = out[1:] & (~outlier[:-1])
    out[:-1] = out[:-1] & (~outlier[1:])
    out[:, 1:] = out[:, 1:] & (~outlier[:, :-1])
    out[:, :-1] = out[:, :-1] & (~outlier[:, 1:])
    return out


def _section_end(counts: np.ndarray, start: int, last: int, npix_iter: int) -> int:
    """First line index after ``start`` whose band holds more than ``npix_iter`` mask pixels
    (when at least ``1.5 npix_iter`` remain), else ``last + 1``."""
    end = 0
    for end in range(start + 1, last + 2):
        if counts[end] - counts[start] > npix_iter and counts[-1] - counts[start] > 1.5 * npix_iter:
            break
    return end


def nsclean_subarray(image: np.ndarray, mask: np.ndarray, detector: str,
                     fc: tuple[float, float, float, float] = NSCLEAN_SUBARRAY_FC, *, npix_iter: int = 512,
                     sigrej: float = 4.0, minfrac: float = 0.05) -> np.ndarray:
    """NSClean of a NIRSpec subarray image [DN] (jwst ``fft_clean_subarray``): returns a new
    (float64) cleaned image.

    In detector orientation, outliers (and neighbours) leave the mask; overlapping bands of
    lines holding about ``npix_iter`` mask pixels each (stepping by half a band) are fitted
    by :func:`_fit_subarray_section` when more than ``minfrac`` of their pixels are masked
    (else their model is 0); the band models are averaged with weights ``1.001 - |u|``
    (``u`` from -1 to 1 across the band) and subtracted. Raises :class:`NSCleanError` when no
    pixel is usable or a normal matrix is singular.
    """
    data = to_detector_frame(image, detector)
    use = _exclude_outliers(data, to_detector_frame(mask, detector), sigrej)
    per_line = np.sum(use, axis=1)
    counts = np.array([0] + list(np.cumsum(per_line)))
    lines = np.flatnonzero(per_line > 0)
    if lines.size == 0:
        raise NSCleanError("no usable pixel in the mask after outlier rejection")
    start, last = int(lines[0]), int(lines[-1])
    bands: list[tuple[int, int, np.ndarray]] = []
    while start <= last:
        end = _section_end(counts, start, last, npix_iter)
        size = end - start
        band = slice(start, start + size)
        if np.mean(use[band]) > minfrac:
            try:
                bands.append((start, size, _fit_subarray_section(data[band], use[band], fc)))
            except np.linalg.LinAlgError as exc:
                raise NSCleanError(f"NSClean fit of detector lines {start}-{start + size - 1} failed: {exc}") from exc
        else:
            log.warning("too few background pixels for NSClean around detector line %d; "
                        "no correction there", start)
            bands.append((start, size, np.zeros(data[band].shape)))
        if end == last + 1:
            break
        start += max(int(np.round(size / 2)), 1)
    model = np.zeros(data.shape)
    total = np.zeros(data.shape)
    for start, size, band_model in bands:
        weight = 1.001 - np.abs(np.linspace(-1, 1, size))[:, np.newaxis]
        model[start:start + size] += weight * band_model
        total[start:start + size] += weight
    total[model == 0] = 1
    model /= total
    return from_detector_frame(data - model, detector)


def fft_clean(image: np.ndarray, mask: np.ndarray, detector: str,
              fc: tuple[float, float, float, float] = NSCLEAN_SUBARRAY_FC) -> np.ndarray:
    """NSClean (``fit_method='fft'``) of a background-subtracted NIRSpec image [DN]: the
    full-frame line fit for 2048 x 2048 images, the subarray time-domain fit otherwise."""
    if image.shape == NSCLEAN_FULL_FRAME:
        return nsclean_full_frame(image, mask, detector)
    return nsclean_subarray(image, mask, detector, fc)


# ------------------------------------------------------------------------------ median image background

def median_over_integrations(sci: np.ndarray) -> np.ndarray:
    """NaN-ignoring median [DN] over the integration axis 0 of ``(integration, ...)`` data;
    per pixel, so it can run tile by tile."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        return np.nanmedian(sci, axis=0)


def plane_medians(rates: np.ndarray) -> np.ndarray:
    """NaN-ignoring median [DN/s] of every plane of a rate cube ``(integration, y, x)``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        return np.nanmedian(rates, axis=(1, 2))


def integration_scales(medians: np.ndarray) -> np.ndarray:
    """Per-integration flux scale of the median image: each plane median over their median;
    non-finite scales are set to the median of the finite ones. All NaN if none is finite
    (the median image cannot be made)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        scale = medians / np.nanmedian(medians)
    bad = ~np.isfinite(scale)
    if np.all(bad):
        log.error("clean_flicker_noise: no finite integration flux for the median image")
        return np.full(scale.shape, np.nan, dtype=scale.dtype)
    if np.any(bad):
        log.warning("clean_flicker_noise: %d of %d integrations have no finite flux; scaled by the "
                    "median scale", int(np.sum(bad)), scale.size)
        scale[bad] = np.median(scale[~bad])
    return scale


def clean_ramp_with_median(sci: np.ndarray, mask: np.ndarray, median: np.ndarray, scale: float, *, axis: int,
                           n_channels: int = 1, flat: np.ndarray | None = None, fit_method: str = "median",
                           detector: str = "", fc: tuple[float, float, float, float] = NSCLEAN_SUBARRAY_FC) -> np.ndarray:
    """Clean one integration's ramps ``(group, y, x)`` [DN] against the median ramp across
    integrations (``background_method='median_image'``).

    Every group (group 0 included) minus ``scale * median`` of that group is cleaned by
    :func:`clean_image` with no further background and the scene ``mask`` only (no DQ), and
    the scaled median added back; a group with no usable pixel is left as it is. A NaN
    ``scale`` (no median image possible) leaves the whole integration as it is.
    """
    out = np.array(sci, dtype=np.float32)
    if np.isnan(scale):
        return out
    background = np.float32(scale) * median
    for g in range(sci.shape[0]):
        try:
            result = clean_image(sci[g] - background[g], mask.copy(), axis=axis, n_channels=n_channels,
                                 background_method=None, flat=flat, fit_method=fit_method, detector=detector, fc=fc)
        except NSCleanError as exc:
            raise NSCleanError(f"clean_flicker_noise: group {g + 1}: {exc} (jwst marks the step FAILED and "
                               "keeps the input; use fit_method='median' or skip)") from exc
        if result.cleaned is None:
            log.warning("clean_flicker_noise: no usable background pixel in group %d; left uncorrected", g + 1)
            continue
        out[g] = background[g] + result.cleaned
    return out
