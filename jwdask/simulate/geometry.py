"""Detector geometry from the SIAF: pixel <-> V2/V3 <-> sky, as astropy models.

The distortion model maps **full-frame, 0-based science pixels** ``(x, y)`` to telescope
``(V2, V3)`` [arcsec] exactly like a CRDS NIRCam ``distortion`` reference::

    Shift(1 - XSciRef) & Shift(1 - YSciRef)      # 0-based pixel -> SIAF science offsets
    | Sci2Idl polynomials (x, y)                 # -> ideal frame [arcsec]
    | affine(VIdlParity, V3IdlYAngle, V2Ref/V3Ref)  # -> V2, V3 [arcsec]

with the analytic SIAF ``Idl2Sci`` polynomials as inverse and a full-frame bounding box.
The sky transform is the one of ``jwst/assign_wcs/pointing.py::v23tosky``: a 3-D rotation by
``(V2_REF, -V3_REF, ROLL_REF, DEC_REF, -RA_REF)`` about axes ``zyxyz``.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
from astropy.modeling import models
from astropy.modeling.core import Model
from gwcs.geometry import CartesianToSpherical, SphericalToCartesian

log = logging.getLogger(__name__)

__all__ = ["Aperture", "Pointing", "aperture", "distortion_model", "pixel_to_sky",
           "nominal_pixel_area", "pointing_keywords", "position_angle", "relative_area",
           "sky_to_pixel", "v2v3_to_sky_model"]


@dataclass(frozen=True)
class Aperture:
    """The SIAF facts the simulator needs about one aperture.

    Attributes
    ----------
    name : str
        SIAF aperture name (``NRCB1_SUB160``).
    v2_ref, v3_ref : float
        Reference point of the full-frame aperture in the telescope frame [arcsec].
    v3_idl_yangle : float
        ``V3IdlYAngle`` [deg].
    vparity : int
        ``VIdlParity`` (+1 or -1).
    x_sci_ref, y_sci_ref : float
        Full-frame reference pixel, 1-based science frame.
    sci2idl_x, sci2idl_y, idl2sci_x, idl2sci_y : numpy.ndarray
        SIAF polynomial coefficients (pysiaf ordering: ``x**(i-j) * y**j``).
    degree : int
        Polynomial degree.
    xstart, ystart : int
        1-based full-frame corner of the subarray (``SUBSTRT1/2``).
    xsize, ysize : int
        Subarray size (``SUBSIZE1/2``) [pixels].
    sub_xref, sub_yref : float
        Reference pixel of the subarray aperture, 1-based full-frame science frame
        (where ``V2_REF``/``V3_REF`` of the exposure header point).
    sub_v2_ref, sub_v3_ref : float
        V2/V3 of the subarray reference point [arcsec].
    """

    name: str
    v2_ref: float
    v3_ref: float
    v3_idl_yangle: float
    vparity: int
    x_sci_ref: float
    y_sci_ref: float
    sci2idl_x: np.ndarray
    sci2idl_y: np.ndarray
    idl2sci_x: np.ndarray
    idl2sci_y: np.ndarray
    degree: int
    xstart: int
    ystart: int
    xsize: int
    ysize: int
    sub_xref: float
    sub_yref: float
    sub_v2_ref: float
    sub_v3_ref: float


@dataclass(frozen=True)
class Pointing:
    """Sky pointing of an aperture reference point.

    Attributes
    ----------
    ra_ref, dec_ref : float
        Sky position of ``(v2_ref, v3_ref)`` [deg].
    roll_ref : float
        Local roll: position angle of the V3 axis at the reference point [deg, E of N].
    v2_ref, v3_ref : float
        Telescope-frame reference point [arcsec].
    """

    ra_ref: float
    dec_ref: float
    roll_ref: float
    v2_ref: float
    v3_ref: float


@functools.cache
def aperture(siaf_name: str, detector: str, subarray: str) -> Aperture:
    """Read an aperture and its full-frame parent from pysiaf.

    Parameters
    ----------
    siaf_name : str
        ``NIRCam``.
    detector, subarray : str
        ``NRCB1`` and ``SUB160`` (``FULL`` for full frame).
    """
    import pysiaf

    siaf = pysiaf.Siaf(siaf_name)
    full = siaf[f"{detector}_FULL"]
    sub = siaf[f"{detector}_{subarray}"]
    coeffs = full.get_polynomial_coefficients()
    # pysiaf's dms_corner() is in the raw detector frame; derive the science-frame corner
    # from where the subarray reference point falls on the full-frame aperture.
    xref_full, yref_full = full.tel_to_sci(sub.V2Ref, sub.V3Ref)
    xstart = int(round(xref_full - sub.XSciRef + 1))
    ystart = int(round(yref_full - sub.YSciRef + 1))
    ap = Aperture(
        name=sub.AperName, v2_ref=float(full.V2Ref), v3_ref=float(full.V3Ref),
        v3_idl_yangle=float(full.V3IdlYAngle), vparity=int(full.VIdlParity),
        x_sci_ref=float(full.XSciRef), y_sci_ref=float(full.YSciRef),
        sci2idl_x=np.asarray(coeffs["Sci2IdlX"], float), sci2idl_y=np.asarray(coeffs["Sci2IdlY"], float),
        idl2sci_x=np.asarray(coeffs["Idl2SciX"], float), idl2sci_y=np.asarray(coeffs["Idl2SciY"], float),
        degree=int(full.Sci2IdlDeg), xstart=xstart, ystart=ystart,
        xsize=int(sub.XSciSize), ysize=int(sub.YSciSize),
        sub_xref=float(sub.XSciRef) + xstart - 1, sub_yref=float(sub.YSciRef) + ystart - 1,
        sub_v2_ref=float(sub.V2Ref), sub_v3_ref=float(sub.V3Ref),
    )
    log.debug("aperture %s corner (%d, %d) size %dx%d", ap.name, xstart, ystart, ap.xsize, ap.ysize)
    return ap


def _polynomial(coeffs: np.ndarray, degree: int, name: str) -> models.Polynomial2D:
    """A :class:`~astropy.modeling.models.Polynomial2D` from SIAF-ordered coefficients."""
    params = {}
    k = 0
    for i in range(degree + 1):
        for j in range(i + 1):
            params[f"c{i - j}_{j}"] = float(coeffs[k])
            k += 1
    return models.Polynomial2D(degree, name=name, **params)


def distortion_model(ap: Aperture, full_size: int = 2048) -> Model:
    """Full-frame 0-based science pixel ``(x, y)`` -> ``(V2, V3)`` [arcsec], with inverse.

    Parameters
    ----------
    ap : Aperture
        Aperture geometry (only the full-frame parent's parameters are used).
    full_size : int
        Detector size [pixels] for the bounding box ``(-0.5, full_size - 0.5)`` on both axes.
    """
    ang = np.deg2rad(ap.v3_idl_yangle)
    p = ap.vparity
    matrix = np.array([[p * np.cos(ang), np.sin(ang)], [-p * np.sin(ang), np.cos(ang)]])
    idl2v = models.AffineTransformation2D(matrix=matrix, translation=[ap.v2_ref, ap.v3_ref],
                                          name="idl2v2v3")
    to_offset = models.Shift(1 - ap.x_sci_ref, name="xsci") & models.Shift(1 - ap.y_sci_ref, name="ysci")
    sci2idl = models.Mapping((0, 1, 0, 1)) | (_polynomial(ap.sci2idl_x, ap.degree, "sci2idl_x")
                                              & _polynomial(ap.sci2idl_y, ap.degree, "sci2idl_y"))
    idl2sci = models.Mapping((0, 1, 0, 1)) | (_polynomial(ap.idl2sci_x, ap.degree, "idl2sci_x")
                                              & _polynomial(ap.idl2sci_y, ap.degree, "idl2sci_y"))
    from_offset = models.Shift(ap.x_sci_ref - 1) & models.Shift(ap.y_sci_ref - 1)
    forward = to_offset | sci2idl | idl2v
    forward.inverse = idl2v.inverse | idl2sci | from_offset
    forward.bounding_box = ((-0.5, full_size - 0.5), (-0.5, full_size - 0.5))
    forward.name = f"{ap.name.split('_')[0]}_distortion"
    return forward


def v2v3_to_sky_model(pointing: Pointing) -> Model:
    """``(V2, V3)`` [arcsec] -> ``(RA, Dec)`` [deg] for a pointing (invertible)."""
    angles = np.array([pointing.v2_ref / 3600, -pointing.v3_ref / 3600, pointing.roll_ref,
                       pointing.dec_ref, -pointing.ra_ref])
    rot = models.RotationSequence3D(angles, axes_order="zyxyz")
    model = ((models.Scale(1 / 3600) & models.Scale(1 / 3600))
             | SphericalToCartesian(wrap_lon_at=180) | rot
             | CartesianToSpherical(wrap_lon_at=360))
    model.name = "v23tosky"
    return model


def pixel_to_sky(ap: Aperture, pointing: Pointing, x: np.ndarray, y: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Full-frame 0-based pixel -> ``(RA, Dec)`` [deg]."""
    v2, v3 = _forward(ap)(x, y)
    return v2v3_to_sky_model(pointing)(v2, v3)


def _forward(ap: Aperture) -> Model:
    model = distortion_model(ap)
    model.bounding_box = None
    return model


def sky_to_pixel(ap: Aperture, pointing: Pointing, ra: np.ndarray, dec: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(RA, Dec)`` [deg] -> full-frame 0-based pixel ``(x, y)``.

    Uses the SIAF ``Idl2Sci`` polynomials followed by two Newton refinements on the forward
    model, so the result inverts :func:`pixel_to_sky` to better than 1e-6 pixel.
    """
    v2, v3 = v2v3_to_sky_model(pointing).inverse(ra, dec)
    forward = _forward(ap)
    x, y = forward.inverse(v2, v3)
    x, y = np.asarray(x, float), np.asarray(y, float)
    eps = 0.01
    for _ in range(2):
        f2, f3 = forward(x, y)
        a2, a3 = forward(x + eps, y)
        b2, b3 = forward(x, y + eps)
        j11, j21 = (a2 - f2) / eps, (a3 - f3) / eps
        j12, j22 = (b2 - f2) / eps, (b3 - f3) / eps
        r2, r3 = v2 - f2, v3 - f3
        det = j11 * j22 - j12 * j21
        x = x + (j22 * r2 - j12 * r3) / det
        y = y + (-j21 * r2 + j11 * r3) / det
    return x, y


def position_angle(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Position angle [deg, E of N, 0..360) of point 2 as seen from point 1 (all deg)."""
    r1, d1, r2, d2 = np.deg2rad([ra1, dec1, ra2, dec2])
    pa = np.arctan2(np.sin(r2 - r1), np.cos(d1) * np.tan(d2) - np.sin(d1) * np.cos(r2 - r1))
    return float(np.rad2deg(pa) % 360.0)


def pointing_keywords(ap: Aperture, pointing: Pointing) -> dict[str, float]:
    """Attitude keywords of a pointing: ``RA_V1 DEC_V1 PA_V3 PA_APER`` [deg]."""
    sky = v2v3_to_sky_model(pointing)
    ra_v1, dec_v1 = sky(0.0, 0.0)
    ra_n, dec_n = sky(0.0, 60.0)
    pa_v3 = position_angle(ra_v1, dec_v1, ra_n, dec_n)
    ang = np.deg2rad(ap.v3_idl_yangle)
    ra_y, dec_y = sky(pointing.v2_ref + 10 * np.sin(ang), pointing.v3_ref + 10 * np.cos(ang))
    pa_aper = position_angle(pointing.ra_ref, pointing.dec_ref, ra_y, dec_y)
    return {"RA_V1": float(ra_v1), "DEC_V1": float(dec_v1), "PA_V3": pa_v3, "PA_APER": pa_aper}


def _jacobian_area(forward: Model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pixel area [arcsec^2]: Jacobian determinant of ``forward`` by central differences."""
    ax2, ax3 = forward(x + 0.5, y)
    bx2, bx3 = forward(x - 0.5, y)
    ay2, ay3 = forward(x, y + 0.5)
    by2, by3 = forward(x, y - 0.5)
    return np.abs((ax2 - bx2) * (ay3 - by3) - (ay2 - by2) * (ax3 - bx3))


def nominal_pixel_area(ap: Aperture) -> float:
    """Pixel area at the full-frame reference pixel [arcsec^2]."""
    return float(_jacobian_area(_forward(ap), np.array(ap.x_sci_ref - 1), np.array(ap.y_sci_ref - 1)))


def relative_area(ap: Aperture, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pixel area at full-frame 0-based ``(x, y)`` relative to :func:`nominal_pixel_area`."""
    return _jacobian_area(_forward(ap), np.asarray(x, float), np.asarray(y, float)) / nominal_pixel_area(ap)
