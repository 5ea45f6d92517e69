"""The output (mosaic) grid of resample: a plain TAN WCS computed like jwst 3.0 (image3.md §6.2).

The tangent point is the centre of the input footprints (``S_REGION`` polygons) unless
``crval`` is given; the orientation comes from the first input's ``ROLL_REF``, ``V3I_YANG`` and
``VPARITY`` (or ``rotation``); the pixel scale is ``pixel_scale_ratio`` times the first input's
scale at its reference point (or ``pixel_scale`` [arcsec]); ``crpix``/``output_shape`` override
the placement and size. A custom gwcs (``output_wcs``, ASDF file) replaces all of it.
"""

from __future__ import annotations

import copy
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.modeling import models

from jwdask.errors import InputError, ParameterError
from jwdask.io import keywords

log = logging.getLogger(__name__)

ARCSEC_PER_RAD = math.degrees(1.0) * 3600.0


@dataclass(frozen=True)
class OutputGrid:
    """The resampled image's pixel grid and WCS.

    Attributes
    ----------
    wcs : gwcs.WCS
        detector (0-based output pixels) -> world (RA, Dec [deg]), with ``array_shape`` set.
    shape : (int, int)
        ``(ny, nx)`` of the output image.
    pixel_scale : float
        Output pixel scale [arcsec].
    pixel_scale_ratio : float
        Output over input pixel scale (sizes the non-square kernels, divides the variances).
    """

    wcs: Any
    shape: tuple[int, int]
    pixel_scale: float
    pixel_scale_ratio: float

    @property
    def pixel_area_arcsec2(self) -> float:
        """``PIXAR_A2`` [arcsec^2]."""
        return self.pixel_scale**2

    @property
    def pixel_area_sr(self) -> float:
        """``PIXAR_SR`` [sr]."""
        return self.pixel_scale**2 / ARCSEC_PER_RAD**2

    def world_to_pixel(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Output pixel (x, y) [0-based] of sky positions [deg], ignoring the bounding box."""
        return self.wcs.invert(ra, dec, with_bounding_box=False)

    def wcsinfo(self) -> dict[str, Any]:
        """FITS WCS keywords (``meta["wcsinfo"]`` paths) of a TAN grid (no SIP)."""
        from gwcs.fitswcs import FITSImagingWCSTransform

        transform = self.wcs.forward_transform
        if not isinstance(transform, FITSImagingWCSTransform):
            log.warning("resample: custom output WCS is not a FITS imaging transform; "
                        "no FITS WCS keywords are written for it")
            return {}
        pc = np.asarray(transform.pc)
        return {
            "crpix1": float(transform.crpix[0]) + 1.0, "crpix2": float(transform.crpix[1]) + 1.0,
            "cdelt1": float(transform.cdelt[0]), "cdelt2": float(transform.cdelt[1]),
            "crval1": float(transform.crval[0]), "crval2": float(transform.crval[1]),
            "pc1_1": float(pc[0][0]), "pc1_2": float(pc[0][1]),
            "pc2_1": float(pc[1][0]), "pc2_2": float(pc[1][1]),
            "ctype1": "RA---TAN", "ctype2": "DEC--TAN", "cunit1": "deg", "cunit2": "deg",
            "radesys": "ICRS",
        }


def sregion_footprints(s_region: str) -> list[np.ndarray]:
    """The ``(N, 2)`` (RA, Dec) [deg] vertex arrays of an ``S_REGION`` (one per POLYGON)."""
    out = []
    for part in s_region.split("POLYGON")[1:]:
        values = re.sub(r"[a-zA-Z]", "", part).split()
        out.append(np.array(values, dtype=float).reshape(-1, 2))
    return out


def footprint_centre(footprints: Sequence[np.ndarray]) -> tuple[float, float]:
    """Centre (RA, Dec) [deg] of vertices: mid-range of each unit-vector component."""
    lon, lat = np.deg2rad(np.vstack(footprints)).T
    xyz = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    mid = (xyz.max(axis=1) + xyz.min(axis=1)) / 2.0
    ra = np.rad2deg(np.arctan2(mid[1], mid[0])) % 360.0
    dec = np.rad2deg(np.arctan2(mid[2], math.hypot(mid[0], mid[1])))
    return float(ra), float(dec)


def rotation_matrix(theta_deg: float, vparity: int) -> np.ndarray:
    """The PC matrix of an output image whose +y axis is at position angle ``theta`` [deg]."""
    if vparity not in (1, -1):
        msg = f"VPARITY must be 1 or -1, not {vparity!r}"
        raise ParameterError(msg)
    t = math.radians(theta_deg)
    return np.array([[vparity * math.cos(t), math.sin(t)], [-vparity * math.sin(t), math.cos(t)]])


def input_pixel_scale(wcs: Any, ra_ref: float, dec_ref: float) -> float:
    """Pixel scale [deg] of an input at (RA_REF, DEC_REF): ``sqrt(sx * sy)`` from the separations
    of its pixels p0, p0 + (1, 0), p0 + (0, 1) with ``p0 = wcs^-1(RA_REF, DEC_REF)``."""
    x0, y0 = wcs.invert(ra_ref, dec_ref, with_bounding_box=False)
    ra, dec = wcs(np.array([x0, x0 + 1, x0]), np.array([y0, y0, y0 + 1]), with_bounding_box=False)
    sky = SkyCoord(ra=ra, dec=dec, unit="deg")
    sx = abs(sky[0].separation(sky[1]).deg)
    sy = abs(sky[0].separation(sky[2]).deg)
    return float(math.sqrt(sx * sy))


def mean_pixel_area(wcs: Any, shape: tuple[int, int]) -> float:
    """Mean pixel solid angle [sr] over the bounding box (or array) of an input.

    The box outline, sampled every <= 15 pixels, is projected on the sky and its area is
    measured in a Lambert equal-area projection about the box centre.
    """
    ny, nx = shape
    bbox = getattr(wcs, "bounding_box", None)
    if bbox is None:
        (x0, x1), (y0, y1) = (-0.5, nx - 0.5), (-0.5, ny - 0.5)
    else:
        (x0, x1), (y0, y1) = bbox.bounding_box(order="F") if hasattr(bbox, "bounding_box") else bbox
    xmin, xmax = max(0, int(min(x0, x1) + 0.5)), min(nx - 1, int(max(x0, x1) - 0.5))
    ymin, ymax = max(0, int(min(y0, y1) + 0.5)), min(ny - 1, int(max(y0, y1) - 0.5))
    if xmin >= xmax or ymin >= ymax:
        msg = "input image is too small to measure its pixel area"
        raise ParameterError(msg)
    sx = max(1, math.ceil((xmax - xmin + 1) / min((xmax - xmin) // 4, 15)))
    sy = max(1, math.ceil((ymax - ymin + 1) / min((ymax - ymin) // 4, 15)))
    xs = np.concatenate([np.linspace(xmin, xmax, sx, endpoint=False), np.full(sy, xmax),
                         np.linspace(xmax, xmin, sx, endpoint=False), np.full(sy, xmin)])
    ys = np.concatenate([np.full(sx, ymin), np.linspace(ymin, ymax, sy, endpoint=False),
                         np.full(sx, ymax), np.linspace(ymax, ymin, sy, endpoint=False)])
    ra, dec = wcs(xs, ys)
    rac, decc = wcs(0.5 * (xmin + xmax), 0.5 * (ymin + ymax))
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        msg = "input WCS is undefined on the outline of its bounding box"
        raise ParameterError(msg)
    sky_area = _polygon_area(ra, dec, float(rac), float(decc))
    return float(sky_area / ((xmax - xmin) * (ymax - ymin)))


def _polygon_area(ra: np.ndarray, dec: np.ndarray, rac: float, decc: float) -> float:
    """Solid angle [sr] of a sky polygon: ``spherical_geometry`` (what jwst uses) when
    installed, else the shoelace area in a Lambert equal-area projection about its centre."""
    try:
        from spherical_geometry.polygon import SphericalPolygon
    except ImportError:
        u_, v_ = _lambert_equal_area(np.deg2rad(ra), np.deg2rad(dec), math.radians(rac), math.radians(decc))
        return float(0.5 * abs(np.dot(u_, np.roll(v_, -1)) - np.dot(v_, np.roll(u_, -1))))
    area = SphericalPolygon.from_radec(ra, dec, center=(rac, decc)).area()
    return float(4 * np.pi - area if area > 2 * np.pi else area)


def _lambert_equal_area(lon: np.ndarray, lat: np.ndarray, lon0: float,
                        lat0: float) -> tuple[np.ndarray, np.ndarray]:
    cos_c = math.sin(lat0) * np.sin(lat) + math.cos(lat0) * np.cos(lat) * np.cos(lon - lon0)
    k = np.sqrt(2.0 / (1.0 + cos_c))
    x = k * np.cos(lat) * np.sin(lon - lon0)
    y = k * (math.cos(lat0) * np.sin(lat) - math.sin(lat0) * np.cos(lat) * np.cos(lon - lon0))
    return x, y


def _pair(value: Sequence[float] | None, name: str) -> tuple[float, float] | None:
    if value is None:
        return None
    values = list(value)
    if len(values) != 2:
        msg = f"resample: '{name}' must have exactly two values, not {values!r}"
        raise ParameterError(msg)
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        msg = f"resample: both '{name}' values must be given, or neither"
        raise ParameterError(msg)
    return float(values[0]), float(values[1])


def _require(meta: Mapping[str, Any], path: str, source: str, keyword: str) -> Any:
    value = keywords.get(meta, path)
    if value is None:
        raise InputError(source, keyword, f"missing (needed by resample for {path})")
    return value


def output_grid(wcses: Sequence[Any], metas: Sequence[Mapping[str, Any]], first_shape: tuple[int, int], *,
                pixel_scale_ratio: float = 1.0, pixel_scale: float | None = None,
                rotation: float | None = None, crpix: Sequence[float] | None = None,
                crval: Sequence[float] | None = None,
                output_shape: Sequence[int] | None = None,
                sources: Sequence[str] | None = None) -> OutputGrid:
    """The default mosaic grid of a list of inputs (image3.md §6.2).

    Parameters
    ----------
    wcses, metas : sequence
        Input gwcs objects and ``meta`` dicts (``wcsinfo.s_region``, ``ra_ref``, ``dec_ref``,
        ``roll_ref``, ``v3yangle``, ``vparity`` of the first input are used).
    first_shape : (int, int)
        ``(ny, nx)`` of the first input.
    pixel_scale_ratio : float
        Output / input pixel scale; ignored when ``pixel_scale`` [arcsec] is given.
    rotation : float, optional
        Position angle of the output +y axis [deg]; None keeps the detector orientation.
    crpix : (float, float), optional
        0-based output pixel (x, y) of the tangent point.
    crval : (float, float), optional
        Tangent point (RA, Dec) [deg].
    output_shape : (int, int), optional
        ``(nx, ny)`` of the output (FITS order, as the jwst step parameter).
    """
    from gwcs import WCS, Step
    from gwcs.fitswcs import FITSImagingWCSTransform

    sources = list(sources or ["input"] * len(metas))
    crpix_, crval_ = _pair(crpix, "crpix"), _pair(crval, "crval")
    shape_in = _pair(output_shape, "output_shape")
    footprints = []
    for meta, source in zip(metas, sources, strict=True):
        footprints.extend(sregion_footprints(str(_require(meta, "wcsinfo.s_region", source, "S_REGION"))))
    first, src0 = metas[0], sources[0]
    if pixel_scale is None:
        ra_ref = _require(first, "wcsinfo.ra_ref", src0, "RA_REF")
        dec_ref = _require(first, "wcsinfo.dec_ref", src0, "DEC_REF")
        scale_in = input_pixel_scale(wcses[0], ra_ref, dec_ref)
        cdelt = scale_in * pixel_scale_ratio
    else:
        scale_in = math.degrees(math.sqrt(mean_pixel_area(wcses[0], first_shape)))
        cdelt = pixel_scale / 3600.0
        pixel_scale_ratio = cdelt / scale_in
    log.info("resample: output pixel scale %.6f arcsec (ratio %.6f)", 3600 * cdelt, pixel_scale_ratio)
    vparity = int(_require(first, "wcsinfo.vparity", src0, "VPARITY"))
    if rotation is None:
        v3yangle = float(_require(first, "wcsinfo.v3yangle", src0, "V3I_YANG"))
        theta = float(_require(first, "wcsinfo.roll_ref", src0, "ROLL_REF")) - vparity * v3yangle
    else:
        theta = float(rotation)
    pc = rotation_matrix(theta, vparity)
    centre = crval_ if crval_ is not None else footprint_centre(footprints)
    projection = models.Pix2Sky_TAN()
    transform = (models.AffineTransformation2D(matrix=pc) | models.Scale(cdelt) & models.Scale(cdelt)
                 | projection | models.RotateNative2Celestial(centre[0], centre[1], 180.0))
    inverse = transform.inverse
    uv = np.hstack([np.array(inverse(*f.T)) for f in footprints])
    dmin, dmax = uv.min(axis=1), uv.max(axis=1)
    native = np.array(inverse(*centre))
    offsets = native - dmin if crpix_ is None else np.array(crpix_) - native
    dmin, dmax = dmin + offsets, dmax + offsets
    if shape_in is None:
        shape = (int(dmax[1] + 0.5), int(dmax[0] + 0.5))
        bbox = ((-0.5, shape[1] - 0.5), (-0.5, shape[0] - 0.5))
    else:
        shape = (int(shape_in[1]), int(shape_in[0]))
        bbox = tuple((max(0, int(lo + 0.5)) - 0.5, min(int(hi + 0.5), n) - 0.5)
                     for lo, hi, n in zip(dmin, dmax, (shape[1], shape[0]), strict=True))
    if min(shape) < 2:
        msg = f"resample: the output grid would be {shape} pixels; check crpix/output_shape/pixel_scale"
        raise ParameterError(msg)
    fits_transform = FITSImagingWCSTransform(projection, crpix=tuple(offsets), crval=tuple(centre),
                                             cdelt=(cdelt, cdelt), pc=pc)
    wcs0 = wcses[0]
    wcs = WCS([Step(wcs0.input_frame, fits_transform), Step(wcs0.output_frame, None)])
    wcs.bounding_box = bbox
    wcs.pixel_shape = shape[::-1]
    return OutputGrid(wcs=wcs, shape=shape, pixel_scale=3600.0 * cdelt, pixel_scale_ratio=float(pixel_scale_ratio))


def custom_grid(path: str, first_wcs: Any, first_meta: Mapping[str, Any], first_shape: tuple[int, int], *,
                output_shape: Sequence[int] | None = None) -> OutputGrid:
    """The grid of a user gwcs stored under ``"wcs"`` in an ASDF file (``output_wcs``).

    Optional tree keys ``pixel_scale`` [arcsec], ``pixel_area`` [arcsec^2], ``pixel_shape``,
    ``array_shape`` as in jwst. The pixel scale ratio is the output scale over the first
    input's nominal scale (``PIXAR_SR``, else its mean pixel area).
    """
    import asdf

    with asdf.open(path) as af:
        if "wcs" not in af.tree:
            raise InputError(path, "wcs", "the ASDF file has no 'wcs' entry")
        wcs = copy.deepcopy(af.tree["wcs"])
        area = af.tree.get("pixel_area")
        scale = af.tree.get("pixel_scale")
        pixel_shape = af.tree.get("pixel_shape")
        array_shape = af.tree.get("array_shape", None if pixel_shape is None else list(pixel_shape)[::-1])
    if scale is None and area is not None:
        scale = math.sqrt(area)
    shape_in = _pair(output_shape, "output_shape")
    if shape_in is not None:
        wcs.array_shape = (int(shape_in[1]), int(shape_in[0]))
    elif wcs.array_shape is None:
        if array_shape is not None:
            wcs.array_shape = tuple(int(v) for v in array_shape)
        elif getattr(wcs, "bounding_box", None) is not None:
            wcs.array_shape = tuple(int(hi + 0.5) for _, hi in wcs.bounding_box.bounding_box(order="C"))
        else:
            raise InputError(path, "wcs", "output_shape is needed: the WCS has no array_shape, "
                             "pixel_shape or bounding_box")
    shape = tuple(int(v) for v in wcs.array_shape)
    if scale is None:
        scale = 3600.0 * math.degrees(math.sqrt(mean_pixel_area(wcs, shape)))
    nominal = keywords.get(first_meta, "photometry.pixelarea_steradians")
    if not nominal or nominal <= 0:
        nominal = mean_pixel_area(first_wcs, first_shape)
    ratio = float(scale) / (3600.0 * math.degrees(math.sqrt(nominal)))
    return OutputGrid(wcs=wcs, shape=shape, pixel_scale=float(scale), pixel_scale_ratio=ratio)

