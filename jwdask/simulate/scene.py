"""The sky: a source list (stars, galaxies) and its noise-free image on a detector.

Photometric system: a source of flux ``F`` [Jy] gives ``F / (PHOTMJSR * 1e6 * PIXAR_SR)``
[DN/s] summed over all pixels, with the ``PHOTMJSR`` [MJy/sr per DN/s] and ``PIXAR_SR`` [sr]
that the photom reference holds, so Image2/Image3 photometry returns ``F``. The sky is a
surface brightness [MJy/sr]: ``SKY / PHOTMJSR * area`` [DN/s] per pixel, ``area`` being the
pixel area relative to ``PIXAR_SR``.

Stars are Moffat PSFs (``beta`` = 2.5, FWHM per filter), integrated over pixels by 5 x 5
sub-sampling. Galaxies are elliptical exponential discs (Sersic n = 1) convolved with the
PSF. :func:`aperture_corrections` measures that rendered, pixel-integrated PSF as
source_catalog does (exact-overlap circular apertures, annulus median background), which
is what the simulator's APCORR reference tabulates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from photutils.aperture import CircularAnnulus
from photutils.geometry import circular_overlap_grid
from scipy import optimize, signal

from jwdask.simulate import geometry
from jwdask.simulate.geometry import Aperture, Pointing

log = logging.getLogger(__name__)

__all__ = ["MOFFAT_BETA", "PHOTMJSR", "PSF_FWHM", "ApertureCorrection", "SceneSource",
           "aperture_corrections", "encircled_energy", "make_sources", "moffat_alpha",
           "radius_for_ee", "render", "sources_table"]

PSF_FWHM: dict[str, float] = {
    "F070W": 0.030, "F090W": 0.034, "F115W": 0.040, "F140M": 0.048, "F150W": 0.050,
    "F162M": 0.055, "F182M": 0.062, "F187N": 0.064, "F200W": 0.066, "F210M": 0.071,
    "F212N": 0.072,
}
"""Moffat FWHM [arcsec] of the simulated PSF per NIRCam SW filter."""

PHOTMJSR: dict[str, float] = {
    "F070W": 0.52, "F090W": 0.40, "F115W": 0.34, "F140M": 0.62, "F150W": 0.26,
    "F162M": 0.55, "F182M": 0.45, "F187N": 4.1, "F200W": 0.22, "F210M": 0.50, "F212N": 4.0,
}
"""Calibration factor [MJy/sr per DN/s] per filter (pupil CLEAR)."""

MOFFAT_BETA = 2.5
"""Moffat power-law index of the PSF."""

AB_ZERO_JY = 3631.0
"""AB magnitude zero point [Jy]."""

STAR_HALF_SIZE = 25
"""Half size [pixels] of the stamp a star is rendered on (40 for stars above 1e6 DN/s)."""

PSF_PHASES = 4
"""Sub-pixel source positions per axis over which the rendered PSF's encircled energy is
averaged: offsets ``(k + 0.5) / (2 PSF_PHASES)`` pixel, which by the PSF's symmetry sample the
whole pixel evenly."""


@dataclass(frozen=True)
class SceneSource:
    """One source.

    Attributes
    ----------
    id : int
        1-based identifier.
    kind : str
        ``star`` or ``galaxy``.
    ra, dec : float
        True position [deg].
    flux : float
        Total flux [Jy].
    r_eff : float
        Galaxy half-light radius [arcsec] (0 for stars).
    axis_ratio : float
        Galaxy minor/major axis ratio (1 for stars).
    theta : float
        Galaxy major-axis position angle [deg E of N] (0 for stars).
    """

    id: int
    kind: str
    ra: float
    dec: float
    flux: float
    r_eff: float = 0.0
    axis_ratio: float = 1.0
    theta: float = 0.0

    @property
    def mag_ab(self) -> float:
        """AB magnitude."""
        return float(-2.5 * np.log10(self.flux / AB_ZERO_JY))


def moffat_alpha(fwhm_pix: float, beta: float = MOFFAT_BETA) -> float:
    """Moffat core width ``alpha`` [pixels] of a FWHM [pixels]."""
    return fwhm_pix / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))


def encircled_energy(radius: np.ndarray, alpha: float, beta: float = MOFFAT_BETA) -> np.ndarray:
    """Fraction of a Moffat PSF's flux inside ``radius`` [pixels] (same unit as ``alpha``)."""
    return 1.0 - (1.0 + (np.asarray(radius) / alpha) ** 2) ** (1.0 - beta)


def radius_for_ee(ee: np.ndarray, alpha: float, beta: float = MOFFAT_BETA) -> np.ndarray:
    """Radius [pixels] enclosing the fraction ``ee`` of a Moffat PSF."""
    return alpha * np.sqrt((1.0 - np.asarray(ee)) ** (1.0 / (1.0 - beta)) - 1.0)


def _phase_stamps(alpha: float) -> list[tuple[np.ndarray, float, float]]:
    """Unit-flux stars as :func:`render` draws them, one per sub-pixel phase: ``(stamp, x, y)``
    with the source at 0-based stamp pixel ``(x, y)``."""
    phases = (np.arange(PSF_PHASES) + 0.5) / (2 * PSF_PHASES)
    k = np.arange(-STAR_HALF_SIZE, STAR_HALF_SIZE + 1)
    return [(_moffat_stamp(k[None, :] - px, k[:, None] - py, alpha), STAR_HALF_SIZE + px, STAR_HALF_SIZE + py)
            for py in phases for px in phases]


def _aperture_fraction(stamp: np.ndarray, x: float, y: float, radius: float) -> float:
    """Exact-overlap sum of ``stamp`` inside a circle of ``radius`` [pixels] centred at ``(x, y)``."""
    ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
    m = int(np.ceil(radius)) + 1
    if m > min(ix, iy, stamp.shape[1] - 1 - ix, stamp.shape[0] - 1 - iy):
        raise ValueError(f"aperture radius {radius:.2f} px exceeds the {STAR_HALF_SIZE}-pixel PSF stamp")
    lo_x, lo_y = ix - m - 0.5 - x, iy - m - 0.5 - y
    overlap = circular_overlap_grid(lo_x, lo_x + 2 * m + 1, lo_y, lo_y + 2 * m + 1, 2 * m + 1, 2 * m + 1,
                                    float(radius), 1, 1)
    return float(np.sum(overlap * stamp[iy - m:iy + m + 1, ix - m:ix + m + 1]))


def _mean_fraction(stamps: list[tuple[np.ndarray, float, float]], radius: float) -> float:
    return float(np.mean([_aperture_fraction(st, x, y, radius) for st, x, y in stamps]))


@dataclass(frozen=True)
class ApertureCorrection:
    """One APCORR row of the rendered PSF.

    Attributes
    ----------
    eefraction : float
        Encircled energy of the aperture.
    radius : float
        Aperture radius [pixels] enclosing ``eefraction`` of the rendered PSF.
    apcorr : float
        Total flux over the background-subtracted aperture flux of a star.
    skyin, skyout : float
        Background annulus radii [pixels].
    """

    eefraction: float
    radius: float
    apcorr: float
    skyin: float
    skyout: float


def aperture_corrections(alpha: float, fractions: tuple[float, ...], *, sky_fraction: float = 0.99,
                         sky_width: float = 6.0) -> list[ApertureCorrection]:
    """Aperture radii and corrections of the rendered PSF of Moffat width ``alpha`` [pixels].

    Measured numerically on unit-flux stars drawn as :func:`render` draws them, at
    :data:`PSF_PHASES` squared sub-pixel positions, the way source_catalog measures: a radius
    encloses ``fraction`` of the flux in an exact-overlap aperture; the background is the median
    of the pixels whose centres lie in the annulus from the radius enclosing ``sky_fraction``
    to ``sky_width`` pixels beyond it (the PSF wings there); ``apcorr = 1 / (EE - bkg * pi r^2)``.
    """
    stamps = _phase_stamps(alpha)

    def solve(fraction: float) -> float:
        hi = alpha
        while _mean_fraction(stamps, hi) < fraction:
            hi *= 2.0
        return float(optimize.brentq(lambda r: _mean_fraction(stamps, r) - fraction, 1e-3, hi, xtol=1e-6))

    skyin = solve(sky_fraction)
    skyout = skyin + sky_width
    bkg = float(np.mean([np.median(CircularAnnulus((x, y), skyin, skyout).to_mask(method="center").get_values(st))
                         for st, x, y in stamps]))
    rows = []
    for fraction in fractions:
        radius = solve(fraction)
        flux = _mean_fraction(stamps, radius) - bkg * np.pi * radius**2
        rows.append(ApertureCorrection(float(fraction), radius, 1.0 / flux, skyin, skyout))
    return rows


def _ab_flux(mag: np.ndarray) -> np.ndarray:
    return AB_ZERO_JY * 10.0 ** (-0.4 * np.asarray(mag))


def make_sources(rng: np.random.Generator, ap: Aperture, pointing: Pointing, *, n_stars: int,
                 star_mag: tuple[float, float], n_bright: int, bright_mag: float,
                 n_galaxies: int, galaxy_mag: tuple[float, float], margin: float = 12.0
                 ) -> list[SceneSource]:
    """Draw sources uniformly over the array of the first exposure.

    Positions are drawn in that exposure's pixel frame (``margin`` pixels from the edges,
    bright stars ``3 * margin``) and converted to sky with its **true** pointing.
    """
    x0, y0 = ap.xstart - 1, ap.ystart - 1

    def positions(count: int, edge: float) -> tuple[np.ndarray, np.ndarray]:
        x = rng.uniform(x0 + edge, x0 + ap.xsize - 1 - edge, count)
        y = rng.uniform(y0 + edge, y0 + ap.ysize - 1 - edge, count)
        return geometry.pixel_to_sky(ap, pointing, x, y)

    sources: list[SceneSource] = []
    ra, dec = positions(n_bright, min(3 * margin, ap.xsize / 4))
    for r, d in zip(np.atleast_1d(ra), np.atleast_1d(dec)):
        sources.append(SceneSource(len(sources) + 1, "star", float(r), float(d),
                                   float(_ab_flux(bright_mag + rng.uniform(-0.3, 0.3)))))
    ra, dec = positions(n_stars, margin)
    mags = rng.uniform(*star_mag, n_stars)
    for r, d, m in zip(np.atleast_1d(ra), np.atleast_1d(dec), mags):
        sources.append(SceneSource(len(sources) + 1, "star", float(r), float(d), float(_ab_flux(m))))
    ra, dec = positions(n_galaxies, margin)
    mags = rng.uniform(*galaxy_mag, n_galaxies)
    for r, d, m in zip(np.atleast_1d(ra), np.atleast_1d(dec), mags):
        sources.append(SceneSource(len(sources) + 1, "galaxy", float(r), float(d), float(_ab_flux(m)),
                                   r_eff=float(rng.uniform(0.08, 0.3)),
                                   axis_ratio=float(rng.uniform(0.35, 1.0)),
                                   theta=float(rng.uniform(0.0, 180.0))))
    return sources


def sources_table(sources: list[SceneSource]) -> Table:
    """The source list as a table (ra/dec deg, flux Jy, mag AB, r_eff arcsec, theta deg)."""
    table = Table({
        "id": np.array([s.id for s in sources], np.int64),
        "type": np.array([s.kind for s in sources], dtype="U6"),
        "ra": np.array([s.ra for s in sources], float),
        "dec": np.array([s.dec for s in sources], float),
        "flux": np.array([s.flux for s in sources], float),
        "mag_ab": np.array([s.mag_ab for s in sources], float),
        "r_eff": np.array([s.r_eff for s in sources], float),
        "axis_ratio": np.array([s.axis_ratio for s in sources], float),
        "theta": np.array([s.theta for s in sources], float),
    })
    for name, unit in (("ra", "deg"), ("dec", "deg"), ("flux", "Jy"), ("r_eff", "arcsec"),
                       ("theta", "deg")):
        table[name].unit = unit
    return table


def _moffat_stamp(dx: np.ndarray, dy: np.ndarray, alpha: float, sub: int = 5) -> np.ndarray:
    """Pixel-integrated unit-flux Moffat on pixel centres offset ``(dx, dy)`` from the source."""
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    total = np.zeros(np.broadcast(dx, dy).shape)
    norm = (MOFFAT_BETA - 1.0) / (np.pi * alpha**2)
    for ox in offsets:
        for oy in offsets:
            r2 = (dx + ox) ** 2 + (dy + oy) ** 2
            total += norm * (1.0 + r2 / alpha**2) ** (-MOFFAT_BETA)
    return total / sub**2


def _local_jacobian(ap: Aperture, pointing: Pointing, x: float, y: float) -> np.ndarray:
    """d(pixel)/d(east, north arcsec) at a pixel: 2x2 matrix."""
    ra, dec = geometry.pixel_to_sky(ap, pointing, np.array([x, x + 1.0, x]), np.array([y, y, y + 1.0]))
    cosd = np.cos(np.deg2rad(dec[0]))
    de = (ra[1:] - ra[0]) * cosd * 3600.0
    dn = (dec[1:] - dec[0]) * 3600.0
    sky_per_pix = np.array([[de[0], de[1]], [dn[0], dn[1]]])
    return np.linalg.inv(sky_per_pix)


def _galaxy_stamp(src: SceneSource, ap: Aperture, pointing: Pointing, x: float, y: float,
                  psf: np.ndarray, half: int) -> tuple[np.ndarray, int, int]:
    """Unit-flux PSF-convolved exponential disc on a ``(2 half + 1)^2`` stamp at (x, y)."""
    jac = _local_jacobian(ap, pointing, x, y)
    theta = np.deg2rad(src.theta)
    major = np.array([np.sin(theta), np.cos(theta)])
    minor = np.array([np.cos(theta), -np.sin(theta)])
    ix, iy = int(np.round(x)), int(np.round(y))
    sub = 3
    grid = (np.arange(-half, half + 1)[:, None] + ((np.arange(sub) + 0.5) / sub - 0.5)[None, :]).ravel()
    gy, gx = np.meshgrid(grid + iy - y, grid + ix - x, indexing="ij")
    sky = np.linalg.inv(jac) @ np.stack([gx.ravel(), gy.ravel()])
    a = (major @ sky) / src.r_eff
    b = (minor @ sky) / (src.r_eff * src.axis_ratio)
    profile = np.exp(-1.678 * np.sqrt(a**2 + b**2)).reshape(gx.shape)
    n = 2 * half + 1
    img = profile.reshape(n, sub, n, sub).sum(axis=(1, 3))
    img = signal.fftconvolve(img / img.sum(), psf, mode="same")
    return img / img.sum(), ix, iy


def render(sources: list[SceneSource], ap: Aperture, pointing: Pointing, *, filter_name: str,
           pixar_sr: float, sky: float, area: np.ndarray) -> tuple[np.ndarray, Table]:
    """Noise-free image of the array [DN/s], before the flat field.

    Parameters
    ----------
    sources : list of SceneSource
        The scene.
    ap : Aperture
        Array geometry (subarray of ``ap``).
    pointing : Pointing
        True pointing of the exposure.
    filter_name : str
        Filter (PSF width and ``PHOTMJSR``).
    pixar_sr : float
        Nominal pixel area [sr].
    sky : float
        Sky surface brightness [MJy/sr].
    area : numpy.ndarray
        ``(ysize, xsize)`` relative pixel area of the array.

    Returns
    -------
    image : numpy.ndarray
        ``(ysize, xsize)`` float64 [DN/s].
    positions : astropy.table.Table
        ``id, x, y`` (full-frame 0-based pixel of each source, also those off the array)
        and ``rate`` [DN/s].
    """
    photmjsr = PHOTMJSR[filter_name]
    dn_per_jy = 1.0 / (photmjsr * 1e6 * pixar_sr)
    image = sky / photmjsr * area.astype(np.float64)
    pixscale = np.sqrt(pixar_sr) * (180 / np.pi * 3600)
    fwhm_pix = PSF_FWHM[filter_name] / pixscale
    alpha = moffat_alpha(fwhm_pix)
    ra = np.array([s.ra for s in sources])
    dec = np.array([s.dec for s in sources])
    xs, ys = geometry.sky_to_pixel(ap, pointing, ra, dec) if sources else (np.empty(0), np.empty(0))
    x0, y0 = ap.xstart - 1, ap.ystart - 1
    half_psf = 12
    k = np.arange(-half_psf, half_psf + 1)
    psf = _moffat_stamp(k[None, :], k[:, None], alpha)
    for src, x, y in zip(sources, np.atleast_1d(xs), np.atleast_1d(ys)):
        rate = src.flux * dn_per_jy
        if src.kind == "star":
            half = 40 if rate > 1e6 else STAR_HALF_SIZE
            ix, iy = int(np.round(x)), int(np.round(y))
            k = np.arange(-half, half + 1)
            stamp = _moffat_stamp(k[None, :] + ix - x, k[:, None] + iy - y, alpha)
        else:
            half = int(np.clip(8 * src.r_eff / pixscale, 15, 60))
            stamp, ix, iy = _galaxy_stamp(src, ap, pointing, x, y, psf, half)
        ly0, lx0 = iy - half - y0, ix - half - x0
        sy = slice(max(0, ly0), min(ap.ysize, ly0 + stamp.shape[0]))
        sx = slice(max(0, lx0), min(ap.xsize, lx0 + stamp.shape[1]))
        if sy.start >= sy.stop or sx.start >= sx.stop:
            continue
        image[sy, sx] += rate * stamp[sy.start - ly0:sy.stop - ly0, sx.start - lx0:sx.stop - lx0]
    positions = Table({"id": np.array([s.id for s in sources], np.int64),
                       "x": np.atleast_1d(xs).astype(float), "y": np.atleast_1d(ys).astype(float),
                       "rate": np.array([s.flux * dn_per_jy for s in sources], float)})
    return image, positions
