"""The gwcs of an imaging exposure (NIRCam, NIRISS, MIRI and FGS imaging; image2.md §3).

Frames and transforms, pixel coordinates 0-based in the exposure's own (sub)array::

    detector --[subarray Shift] | [filter-offset Shift] | DISTORTION model--> v2v3 [arcsec]
    v2v3 --velocity-aberration scale--> v2v3vacorr [arcsec] --pointing rotation--> world [deg]

The DISTORTION reference (ASDF) holds the full-frame pixel -> V2/V3 model with its inverse;
the FILTEROFFSET reference shifts pixels per filter (NIRCam, NIRISS: FILTER and PUPIL; MIRI:
FILTER; FGS has none). The bounding box, outside which the WCS gives NaN, is the subarray
for a subarray exposure, else the distortion model's own box, else the array shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy import coordinates
from astropy import units as u
from astropy.modeling import Model, bind_bounding_box
from astropy.modeling.models import Identity, Shift
from gwcs import coordinate_frames as cf
from gwcs.wcs import WCS

from jwdask.errors import InputError, ReferenceFileError
from jwdask.io import keywords
from jwdask.wcs.pointing import Pointing, dva_correction, v2v3_to_sky

log = logging.getLogger(__name__)

IMAGING_EXP_TYPES: dict[str, str] = {
    **dict.fromkeys(("NRC_IMAGE", "NRC_TACQ", "NRC_TACONFIRM", "NRC_CORON", "NRC_FOCUS",
                     "NRC_TSIMAGE"), "NIRCAM"),
    **dict.fromkeys(("NIS_IMAGE", "NIS_AMI", "NIS_TACQ", "NIS_TACONFIRM", "NIS_FOCUS"), "NIRISS"),
    **dict.fromkeys(("MIR_IMAGE", "MIR_TACQ", "MIR_LYOT", "MIR_4QPM", "MIR_CORONCAL",
                     "MIR_TACONFIRM"), "MIRI"),
    **dict.fromkeys(("FGS_IMAGE", "FGS_FOCUS"), "FGS"),
}
"""EXP_TYPEs whose WCS is the imaging chain, and the instrument each belongs to."""

NO_WCS_EXP_TYPES = frozenset({
    "NRC_LED", "NRC_DARK", "NRC_FLAT", "NRC_GRISM", "NIS_DARK", "NIS_LAMP", "MIR_FLATMRS",
    "MIR_FLATIMAGE", "MIR_FLAT-MRS", "MIR_FLAT-IMAGE", "MIR_DARK", "FGS_SKYFLAT", "FGS_INTFLAT",
    "FGS_DARK",
})
"""Calibration EXP_TYPEs that have no sky WCS (the step is SKIPPED for them, as in jwst)."""

FILTER_OFFSET_KEYS: dict[str, tuple[str, ...]] = {
    "NIRCAM": ("filter", "pupil"), "NIRISS": ("filter", "pupil"), "MIRI": ("filter",),
}
"""Row keys of the FILTEROFFSET reference per instrument (FGS has no filter offsets)."""

MAX_SIP_DEGREE = 6
"""SIP degrees tried when the degree is not given: 1 .. MAX_SIP_DEGREE - 1."""


@dataclass(frozen=True)
class Distortion:
    """A DISTORTION reference: full-frame pixel -> (V2, V3) [arcsec] model and its file."""

    model: Model
    path: str


@dataclass(frozen=True)
class FilterOffset:
    """A pixel shift ``(column, row)`` [pixels] applied before the distortion."""

    column: float
    row: float


def _words(value: Any) -> set[str]:
    """The values a reference keyword accepts (``'NRCA1|NRCB1|'`` -> two words)."""
    return {w.strip().upper() for w in str(value).split("|") if w.strip()}


def check_distortion(tree: Mapping[str, Any], path: str, meta: Mapping[str, Any]) -> Distortion:
    """Validate a DISTORTION tree for the exposure in ``meta`` and return its model.

    Raises
    ------
    ReferenceFileError
        If the tree has no 2-in/2-out model or names another instrument or detector.
    """
    model = tree.get("model")
    if not isinstance(model, Model) or model.n_inputs != 2 or model.n_outputs != 2:
        raise ReferenceFileError("distortion", f"{path}: 'model' is not a 2-input, 2-output transform "
                                               f"(got {type(model).__name__})")
    ref_meta = tree.get("meta", {})
    for field in ("name", "detector"):
        exposure = keywords.get(meta, ("instrument", field))
        ref = keywords.get(ref_meta, ("instrument", field))
        accepted = _words(ref) if ref is not None else set()
        accepted |= _words(keywords.get(ref_meta, ("instrument", f"p_{field}"), ""))
        if exposure is None or not accepted or accepted & {"ANY", "N/A", "GENERIC"}:
            continue
        if str(exposure).upper() not in accepted:
            raise ReferenceFileError(
                "distortion", f"{path}: meta.instrument.{field} is {ref!r}, but the exposure has "
                              f"{field.upper()}={exposure!r}")
    return Distortion(model, path)


def filter_offset(tree: Mapping[str, Any], path: str, meta: Mapping[str, Any],
                  instrument: str) -> FilterOffset | None:
    """The FILTEROFFSET row of the exposure's filter (and pupil), or ``None`` if no row matches.

    NIRCam and NIRISS match FILTER and PUPIL exactly (more than one row is an error); MIRI
    takes the first row of its FILTER.

    Raises
    ------
    ReferenceFileError
        If the tree has no ``filters`` list or several rows match.
    """
    rows = tree.get("filters")
    if not isinstance(rows, list):
        raise ReferenceFileError("filteroffset", f"{path}: no 'filters' list")
    keys = FILTER_OFFSET_KEYS[instrument]
    wanted = {k: keywords.get(meta, ("instrument", k)) for k in keys}
    found = [r for r in rows if all(r.get(k) == v for k, v in wanted.items())]
    if instrument == "MIRI":
        found = found[:1]
    if len(found) > 1:
        raise ReferenceFileError("filteroffset", f"{path}: {len(found)} rows match {wanted}")
    if not found:
        log.warning("filteroffset %s: no row for %s; no filter offset applied", path, wanted)
        return None
    column, row = found[0].get("column_offset"), found[0].get("row_offset")
    if column is None or row is None or "N/A" in (column, row):
        return None
    log.info("filter offset for %s: column %s, row %s", wanted, column, row)
    return FilterOffset(float(column), float(row))


def _source(meta: Mapping[str, Any], source: str | None) -> str:
    return source or str(keywords.get(meta, "filename", "exposure"))


def bounding_box_of(model: Model) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """A model's bounding box as ``((x_lo, x_hi), (y_lo, y_hi))``, or ``None`` if it has none."""
    try:
        box = model.bounding_box
    except NotImplementedError:
        return None
    return tuple(tuple(float(v) for v in interval) for interval in box.bounding_box(order="F"))


def detector_to_v2v3(meta: Mapping[str, Any], shape: tuple[int, int], distortion: Distortion,
                     offset: FilterOffset | None, *, source: str | None = None) -> Model:
    """The ``detector -> v2v3`` transform [pixels -> arcsec] with its bounding box.

    Parameters
    ----------
    meta : mapping
        Exposure metadata (``subarray.xstart/ystart/xsize/ysize``, 1-based).
    shape : tuple of int
        ``(ny, nx)`` of the science array [pixels].
    distortion : Distortion
        The full-frame pixel -> V2/V3 model.
    offset : FilterOffset or None
        Filter offset [pixels], prepended to the distortion.
    source : str, optional
        File named in errors.
    """
    transform = distortion.model
    box = bounding_box_of(transform)
    if box is None:
        box = ((-0.5, shape[1] - 0.5), (-0.5, shape[0] - 0.5))
    if offset is not None:
        transform = Shift(offset.column) & Shift(offset.row) | transform
    bind_bounding_box(transform, box, order="F")
    xstart = keywords.get(meta, "subarray.xstart")
    ystart = keywords.get(meta, "subarray.ystart")
    for keyword, value in (("SUBSTRT1", xstart), ("SUBSTRT2", ystart)):
        if value is not None and (not float(value).is_integer() or value < 1):
            raise InputError(_source(meta, source), f"PRIMARY {keyword}", f"must be an integer >= 1, got {value}")
    if (xstart is None or xstart == 1) and (ystart is None or ystart == 1):
        return transform
    shift_x = Shift(xstart - 1) if xstart not in (None, 1) else Identity(1)
    shift_y = Shift(ystart - 1) if ystart not in (None, 1) else Identity(1)
    transform = shift_x & shift_y | transform
    xsize = keywords.get(meta, "subarray.xsize", shape[1])
    ysize = keywords.get(meta, "subarray.ysize", shape[0])
    bind_bounding_box(transform, ((-0.5, xsize - 0.5), (-0.5, ysize - 0.5)), order="F")
    return transform


def imaging_wcs(meta: Mapping[str, Any], shape: tuple[int, int], distortion: Distortion,
                offset: FilterOffset | None = None, *, source: str | None = None) -> WCS:
    """The gwcs ``detector -> v2v3 -> v2v3vacorr -> world`` of an imaging exposure.

    Parameters
    ----------
    meta : mapping
        Exposure metadata: pointing (``wcsinfo``), ``velocity_aberration`` and ``subarray``.
    shape : tuple of int
        ``(ny, nx)`` of the science array [pixels].
    distortion, offset
        From :func:`check_distortion` and :func:`filter_offset`.
    source : str, optional
        File named in errors.

    Raises
    ------
    InputError
        If a pointing or subarray keyword is missing or invalid.
    """
    src = _source(meta, source)
    pointing = Pointing.from_meta(meta, src)
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    v2v3 = cf.Frame2D(name="v2v3", axes_order=(0, 1), axes_names=("v2", "v3"),
                      unit=(u.arcsec, u.arcsec))
    v2v3vacorr = cf.Frame2D(name="v2v3vacorr", axes_order=(0, 1), axes_names=("v2", "v3"),
                            unit=(u.arcsec, u.arcsec))
    world = cf.CelestialFrame(reference_frame=coordinates.ICRS(), name="world")
    pipeline = [
        (detector, detector_to_v2v3(meta, shape, distortion, offset, source=src)),
        (v2v3, dva_correction(pointing.va_scale, pointing.v2_ref, pointing.v3_ref)),
        (v2v3vacorr, v2v3_to_sky(pointing)),
        (world, None),
    ]
    return WCS(pipeline)


def s_region(wcs: WCS) -> str | None:
    """``POLYGON ICRS  ra dec ...`` of the bounding-box corners (pixel edges), clockwise from
    the lower left, RA in [0, 360) [deg], 9 decimals; ``None`` if a corner is NaN."""
    corners = np.asarray(wcs.footprint(center=False, axis_type="spatial"), dtype=float)
    corners[:, 0] = np.mod(corners[:, 0], 360)
    if not np.isfinite(corners).all():
        log.info("S_REGION not updated: a footprint corner is NaN")
        return None
    return "POLYGON ICRS  " + " ".join(f"{v:.9f}" for v in corners.ravel())


def fits_sip(wcs: WCS, crpix: tuple[float, float] | None, *, max_pix_error: float = 0.01,
             degree: int | None = None, max_inv_pix_error: float = 0.01, inv_degree: int | None = None,
             npoints: int = 12) -> dict[str, Any]:
    """A TAN-SIP FITS approximation of ``wcs`` over its bounding box (gwcs ``to_fits_sip``).

    Parameters
    ----------
    crpix : tuple of float or None
        1-based reference pixel; ``None`` lets gwcs pick the box centre.
    max_pix_error, max_inv_pix_error : float
        Largest forward / inverse error allowed [pixels].
    degree, inv_degree : int or None
        SIP degrees; ``None`` takes the lowest of 1..5 that meets the error.
    npoints : int
        Grid points per axis of the fit.

    Returns
    -------
    dict
        Lower-case keyword -> value (``ctype1``, ``crval1``, ``cd1_1``, ``a_order``,
        ``a_2_0``..., ``sipmxerr``, ``sipiverr``), without ``naxis*``.

    Raises
    ------
    ValueError, RuntimeError
        If the accuracy cannot be reached.
    """
    header = wcs.to_fits_sip(
        max_pix_error=max_pix_error,
        degree=range(1, MAX_SIP_DEGREE) if degree is None else degree,
        max_inv_pix_error=max_inv_pix_error,
        inv_degree=range(1, MAX_SIP_DEGREE) if inv_degree is None else inv_degree,
        npoints=npoints, crpix=None if crpix is None else list(crpix), projection="TAN")
    return {key.lower(): _plain(value) for key, value in header.items() if not key.upper().startswith("NAXIS")}


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (``meta`` stays JSON-serialisable)."""
    return value.item() if isinstance(value, np.generic) else value


SIP_REMOVED = ("naxis", "cdelt1", "cdelt2", "pc1_1", "pc1_2", "pc2_1", "pc2_2",
               "a_order", "b_order", "ap_order", "bp_order")


def apply_sip(wcsinfo: dict[str, Any], sip: Mapping[str, Any]) -> None:
    """Replace the linear/SIP keywords of ``meta["wcsinfo"]`` by the fitted ``sip`` (in place):
    ``cdelt*``, ``pc*_*`` and every ``a_/b_/ap_/bp_`` term are removed first."""
    for key in list(wcsinfo):
        prefix, _, rest = key.partition("_")
        sip_term = prefix in ("a", "b", "ap", "bp") and rest.replace("_", "").isdigit()
        if key in SIP_REMOVED or sip_term:
            del wcsinfo[key]
    wcsinfo.update(sip)
