"""Aperture photometry and DAOFind-style shape statistics at given source positions.

image3.md §7.4–7.5. All functions take a 2-D image (Jy/pixel for the mosaic catalog) and
0-based ``(x, y)`` positions of shape (n, 2); non-finite positions should be replaced by a
far-away value (``-1000``) by the caller so their results come out NaN.
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy.convolution import Gaussian2DKernel
from astropy.nddata.utils import NoOverlapError, extract_array
from astropy.stats import SigmaClip, gaussian_fwhm_to_sigma
from astropy.utils.exceptions import AstropyUserWarning
from photutils.aperture import CircularAnnulus, CircularAperture, aperture_photometry
from scipy import ndimage
from scipy.spatial import KDTree


def local_background(data: np.ndarray, xy: np.ndarray, r_in: float, r_out: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel local background and its error in a circular annulus [data unit].

    Pixels whose centres fall in the annulus ``r_in..r_out`` [pixels] are 3-sigma clipped;
    the background is their median, the error the standard error of the median
    ``sqrt(pi / (2 N)) * std``.
    """
    masks = CircularAnnulus(xy, r_in, r_out).to_mask(method="center")
    clip = SigmaClip(sigma=3.0)
    median = np.empty(len(xy))
    error = np.empty(len(xy))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", AstropyUserWarning)
        for i, mask in enumerate(masks):
            values = clip(mask.get_values(data), masked=False)
            median[i] = np.median(values)
            error[i] = np.sqrt(np.pi / (2.0 * values.size)) * np.std(values)
    return median, error


def aperture_sums(data: np.ndarray, error: np.ndarray, xy: np.ndarray, radii: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact-overlap circular aperture sums and errors for each radius [pixels].

    Returns ``(sums, errors, areas)`` with shapes (n_radii, n), (n_radii, n), (n_radii,);
    errors are ``sqrt(sum(error**2))`` over the aperture (photutils).
    """
    apertures = [CircularAperture(xy, float(r)) for r in radii]
    table = aperture_photometry(data, apertures, error=error)
    sums = np.array([np.asarray(table[f"aperture_sum_{i}"], float) for i in range(len(radii))])
    errs = np.array([np.asarray(table[f"aperture_sum_err_{i}"], float) for i in range(len(radii))])
    return sums, errs, np.array([a.area for a in apertures])


def abmag(flux: np.ndarray, flux_err: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """AB magnitude ``-2.5 log10(F/Jy) + 8.9`` and error ``2.5 log10(1 + err/F)``
    (NaN for negative fluxes or missing errors)."""
    flux = np.asarray(flux, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mag = -2.5 * np.log10(flux) + 8.9
        if flux_err is None or np.all(np.isnan(flux_err)):
            err = np.full_like(mag, np.nan)
        else:
            err = 2.5 * np.log10(1.0 + np.asarray(flux_err, float) / flux)
    negative = flux < 0
    mag[negative] = np.nan
    err[negative] = np.nan
    return mag, err


def daofind_kernel(kernel_fwhm: float) -> tuple[np.ndarray, np.ndarray]:
    """DAOFind zero-sum Gaussian kernel and its circular mask (1 inside).

    Size ``2 int(max(2, 1.5 sigma)) + 1``; the peak-normalised Gaussian inside the mask is
    made zero-sum: ``K = (G - sum(G)/n) / (sum(G^2) - sum(G)^2/n) * mask``.
    """
    sigma = kernel_fwhm * gaussian_fwhm_to_sigma
    radius = max(2.0, 1.5 * sigma)
    size = 2 * int(radius) + 1
    centre = (size - 1) // 2
    yy, xx = np.mgrid[0:size, 0:size]
    mask = (np.hypot(xx - centre, yy - centre) <= radius).astype(int)
    gauss = Gaussian2DKernel(sigma, x_size=size, y_size=size).array
    gauss = gauss / gauss.max() * mask
    n = mask.sum()
    denom = np.sum(gauss**2) - np.sum(gauss) ** 2 / n
    return (gauss - gauss.sum() / n) / denom * mask, mask


def _cutouts(image: np.ndarray, shape: tuple[int, int], xy: np.ndarray) -> np.ndarray:
    out = []
    for x, y in xy:
        try:
            out.append(extract_array(image, shape, (y, x), fill_value=0.0))
        except NoOverlapError:
            out.append(np.zeros(shape))
    return np.array(out, dtype=float).reshape(len(xy), *shape)


def sharpness_roundness(data: np.ndarray, xy: np.ndarray, kernel_fwhm: float
                        ) -> tuple[np.ndarray, np.ndarray]:
    """DAOFind sharpness and symmetry roundness on kernel-sized cutouts at ``xy``.

    ``sharpness = (peak - mean of the other masked pixels) / convolved peak``;
    ``roundness = 2 (-Q1 + Q2 - Q3 + Q4) / sum|C|`` over the convolved cutout quadrants
    with the centre pixel zeroed. ``data`` NaNs are treated as given (they propagate).
    """
    kernel, mask = daofind_kernel(kernel_fwhm)
    c = (kernel.shape[0] - 1) // 2
    conv = ndimage.convolve(np.asarray(data), kernel, mode="constant", cval=0.0)
    cut = _cutouts(np.asarray(data), kernel.shape, xy)
    cut_conv = _cutouts(conv, kernel.shape, xy)
    peak = cut[:, c, c]
    mean_other = (np.sum(cut * mask, axis=(1, 2)) - peak) / (mask.sum() - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sharp = (peak - mean_other) / cut_conv[:, c, c]
    cut_conv[:, c, c] = 0.0
    q1 = cut_conv[:, 0:c + 1, c + 1:].sum(axis=(1, 2))
    q2 = cut_conv[:, 0:c, 0:c + 1].sum(axis=(1, 2))
    q3 = cut_conv[:, c:, 0:c].sum(axis=(1, 2))
    q4 = cut_conv[:, c + 1:, c:].sum(axis=(1, 2))
    total = np.abs(cut_conv).sum(axis=(1, 2))
    total[total == 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        round_ = 2.0 * (-q1 + q2 - q3 + q4) / total
    return sharp, round_


def nearest_neighbours(xy: np.ndarray, labels: np.ndarray, finite: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Label of and distance [pixels] to each source's nearest other source; -1/NaN for
    a lone source or a source with non-finite position (``finite`` False)."""
    if len(xy) == 1:
        return np.array([-1]), np.array([np.nan])
    dist, idx = KDTree(xy).query(xy, k=[2])
    dist, idx = dist[:, 0], idx[:, 0]
    nn_label = np.asarray(labels)[idx].copy()
    nn_label[~finite] = -1
    dist[~finite] = np.nan
    return nn_label, dist
