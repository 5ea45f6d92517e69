"""Source detection on one image with photutils: mesh background, star finders, segmentation.

Shared by tweakreg (per-exposure catalogs) and source_catalog (mosaic catalog), following
image3.md §3.2 and §7.3. Inputs are plain 2-D numpy arrays in one consistent unit (MJy/sr
for cal images, Jy/pixel for the mosaic); outputs are astropy tables with the column names
``id, xcentroid, ycentroid, flux`` plus finder-specific ones (0-based pixel positions).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.convolution import Gaussian2DKernel, convolve
from astropy.stats import SigmaClip, gaussian_fwhm_to_sigma
from astropy.table import QTable
from astropy.utils.exceptions import AstropyUserWarning
from photutils import use_future_column_names
from photutils.background import Background2D, MedianBackground
from photutils.detection import DAOStarFinder, IRAFStarFinder
from photutils.segmentation import SegmentationImage, SourceCatalog, SourceFinder
from photutils.segmentation.catalog import DEFAULT_COLUMNS
from photutils.utils import NoDetectionsWarning

log = logging.getLogger(__name__)

STARFINDERS = ("iraf", "dao", "segmentation")
SEGMENT_COLUMNS = [*DEFAULT_COLUMNS, "ellipticity", "sky_bbox_ll", "sky_bbox_ul", "sky_bbox_lr",
                   "sky_bbox_ur"]
"""photutils SourceCatalog columns kept by the segmentation finder."""

_RENAME = {"pa": "orientation", "npix": "area", "segment_flux": "flux", "label": "id",
           "x_centroid": "xcentroid", "y_centroid": "ycentroid"}


@dataclass(frozen=True)
class FinderParams:
    """Detection parameters (jwst names; image3.md §3.1 and §7.1).

    ``snr_threshold`` [background sigma], ``kernel_fwhm`` [pixels], ``bkg_boxsize`` [pixels];
    ``min_separation`` [pixels], ``sharpness_range``, ``roundness_range``, ``peak_max`` (data
    units) and ``n_brightest`` for the iraf/dao finders; the rest for segmentation.
    """

    starfinder: str = "iraf"
    snr_threshold: float = 10.0
    kernel_fwhm: float = 2.5
    bkg_boxsize: int = 400
    sigma_radius: float = 1.5
    min_separation: int = 2
    sharpness_range: tuple[float, float] = (0.5, 2.0)
    roundness_range: tuple[float, float] = (0.0, 0.2)
    peak_max: float | None = None
    n_brightest: int | None = 200
    n_pixels: int = 10
    connectivity: int = 8
    n_levels: int = 32
    contrast: float = 0.001
    mode: str = "exponential"
    deblend: bool = True
    relabel: bool = True
    local_bkg_width: int = 0
    aperture_mask_method: str = "correct"
    kron_params: tuple[float, ...] = (2.5, 1.4, 0.0)


def finder_params(p: Mapping[str, Any]) -> FinderParams:
    """FinderParams from jwst-named step parameters (``starfinder``, ``snr_threshold``,
    ``kernel_fwhm``, ``bkg_boxsize``, ``minsep_fwhm``, ``sharplo``... ``kron_params``)."""
    kron = tuple(p["kron_params"]) if p["kron_params"] is not None else (2.5, 1.4, 0.0)
    return FinderParams(
        starfinder=p["starfinder"], snr_threshold=float(p["snr_threshold"]), kernel_fwhm=float(p["kernel_fwhm"]),
        bkg_boxsize=int(p["bkg_boxsize"]), sigma_radius=float(p["sigma_radius"]),
        min_separation=max(2, int(p["minsep_fwhm"] * p["kernel_fwhm"] + 0.5)),
        sharpness_range=(p["sharplo"], p["sharphi"]), roundness_range=(p["roundlo"], p["roundhi"]),
        peak_max=p["peakmax"], n_brightest=p["brightest"], n_pixels=int(p["npixels"]),
        connectivity=int(p["connectivity"]), n_levels=int(p["nlevels"]), contrast=float(p["contrast"]),
        mode=p["multithresh_mode"], deblend=bool(p["deblend"]), relabel=True,
        local_bkg_width=int(p["localbkg_width"]), aperture_mask_method=p["apermask_method"], kron_params=kron)


def background(data: np.ndarray, box_size: int | tuple[int, int],
               coverage_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Mesh background and background RMS (same unit as ``data``).

    photutils ``Background2D`` with sigma-clipped (3 sigma) median meshes of ``box_size``
    pixels and a 3x3 median filter; if too few meshes are usable, one mesh covering the
    whole image is used instead. Raises ``ValueError`` if even that fails.
    """
    kwargs = {"filter_size": (3, 3), "coverage_mask": coverage_mask,
              "sigma_clip": SigmaClip(sigma=3.0), "bkg_estimator": MedianBackground()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=AstropyUserWarning)
        try:
            bkg = Background2D(data, box_size, **kwargs)
        except ValueError:
            bkg = Background2D(data, data.shape, exclude_percentile=100.0, **kwargs)
            log.info("background could not be estimated in %s-pixel meshes; used the whole "
                     "unmasked image as one mesh", box_size)
        return np.asarray(bkg.background), np.asarray(bkg.background_rms)


def convolve_gaussian(data: np.ndarray, fwhm: float, mask: np.ndarray | None = None) -> np.ndarray:
    """``data`` convolved with a normalised circular Gaussian of ``fwhm`` pixels (astropy
    ``convolve``: NaN and masked pixels are interpolated over)."""
    kernel = Gaussian2DKernel(fwhm * gaussian_fwhm_to_sigma)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=AstropyUserWarning)
        return convolve(data, kernel, mask=mask)


def empty_catalog() -> QTable:
    """A catalog with no rows and the four columns every finder returns."""
    return QTable(names=["id", "xcentroid", "ycentroid", "flux"], dtype=(int, float, float, float))


def find_sources(data: np.ndarray, coverage_mask: np.ndarray, params: FinderParams, *,
                 error: np.ndarray | None = None, wcs: Any = None
                 ) -> tuple[QTable, SegmentationImage | None]:
    """Detect sources in one image.

    Parameters
    ----------
    data : ndarray (y, x)
        Image (any flux unit; NaN allowed where ``coverage_mask`` is set).
    coverage_mask : ndarray of bool (y, x)
        True where the image has no data (never part of a source).
    params : FinderParams
        Finder and its settings.
    error : ndarray (y, x), optional
        1-sigma error of ``data`` (segmentation only: ``segment_flux_err``).
    wcs : gwcs.WCS, optional
        For the sky columns of the segmentation catalog.

    Returns
    -------
    catalog : QTable
        ``id, xcentroid, ycentroid, flux`` [0-based pixels, data unit] plus the finder's
        other columns; empty if nothing was found or the background failed.
    segmentation : SegmentationImage or None
        Segmentation labels (segmentation finder only).
    """
    if params.starfinder not in STARFINDERS:
        msg = f"unknown starfinder {params.starfinder!r}; choose one of {STARFINDERS}"
        raise ValueError(msg)
    try:
        bkg, rms = background(data, params.bkg_boxsize, coverage_mask)
    except ValueError as err:
        log.warning("error determining the sky background: %s", err)
        return empty_catalog(), None
    threshold = params.snr_threshold * rms
    data_bs = data - bkg
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=NoDetectionsWarning)
        if params.starfinder == "segmentation":
            sources, segm = _segmentation(data_bs, threshold, coverage_mask, params, error, wcs)
        else:
            sources, segm = _starfinder(data_bs, threshold, coverage_mask, params), None
    if sources is None or len(sources) == 0:
        log.warning("no sources found in the image")
        return empty_catalog(), None
    for old, new in _RENAME.items():
        if old in sources.colnames:
            sources.rename_column(old, new)
    return sources, segm


def _starfinder(data_bs: np.ndarray, threshold: np.ndarray, mask: np.ndarray,
                params: FinderParams) -> QTable | None:
    """IRAF/DAO star finder with one scalar threshold: the median of the threshold image
    (masked pixels, where the RMS is 0, included as jwst does)."""
    finder_cls = IRAFStarFinder if params.starfinder == "iraf" else DAOStarFinder
    finder = finder_cls(float(np.median(threshold)), params.kernel_fwhm, sigma_radius=params.sigma_radius,
                        min_separation=params.min_separation, sharpness_range=params.sharpness_range,
                        roundness_range=params.roundness_range, peak_max=params.peak_max,
                        n_brightest=params.n_brightest)
    with use_future_column_names():
        return finder(data_bs, mask=mask)


def _segmentation(data_bs: np.ndarray, threshold: np.ndarray, mask: np.ndarray, params: FinderParams,
                  error: np.ndarray | None, wcs: Any) -> tuple[QTable | None, SegmentationImage | None]:
    """Segmentation + deblending on the Gaussian-convolved image, per-pixel threshold."""
    conv = convolve_gaussian(data_bs, params.kernel_fwhm, mask) if params.kernel_fwhm > 0 else data_bs
    finder = SourceFinder(params.n_pixels, connectivity=params.connectivity, deblend=params.deblend,
                          n_levels=params.n_levels, contrast=params.contrast, mode=params.mode,
                          relabel=params.relabel, progress_bar=False)
    segm = finder(conv, threshold, mask=mask)
    if segm is None:
        return None, None
    with use_future_column_names():
        cat = SourceCatalog(data_bs, segm, convolved_data=conv, error=error, mask=mask, wcs=wcs,
                            local_bkg_width=params.local_bkg_width,
                            aperture_mask_method=params.aperture_mask_method,
                            kron_params=params.kron_params)
        return cat.to_table(columns=SEGMENT_COLUMNS), segm
