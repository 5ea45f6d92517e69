"""Telescope pointing: the ``v2v3 -> v2v3vacorr -> world`` part of an imaging WCS.

``(V2, V3)`` are telescope-frame angles [arcsec]; the exposure's pointing says that the
reference point ``(V2_REF, V3_REF)`` sits at ``(RA_REF, DEC_REF)`` [deg] with the V3 axis at
position angle ``ROLL_REF`` [deg] there. Differential velocity aberration (``VA_SCALE``)
scales the field about the reference point before the sky rotation (image2.md §3.3-3.4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.modeling import Model
from astropy.modeling.models import Identity, RotationSequence3D, Scale, Shift
from gwcs.geometry import CartesianToSpherical, SphericalToCartesian

from jwdask.errors import InputError
from jwdask.io import keywords

ARCSEC_PER_DEG = 3600.0

POINTING_KEYWORDS = {
    "v2_ref": "V2_REF", "v3_ref": "V3_REF", "roll_ref": "ROLL_REF",
    "ra_ref": "RA_REF", "dec_ref": "DEC_REF",
}
"""``meta.wcsinfo`` attribute -> SCI keyword of the pointing an imaging WCS needs."""


@dataclass(frozen=True)
class Pointing:
    """Where the telescope pointed during an exposure.

    Attributes
    ----------
    v2_ref, v3_ref : float
        Reference point in the telescope frame [arcsec].
    roll_ref : float
        Position angle of V3 at the reference point, N over E [deg].
    ra_ref, dec_ref : float
        Sky position of the reference point [deg, ICRS].
    va_scale : float or None
        Velocity-aberration plate-scale ratio (``VA_SCALE``); ``None`` means no correction.
    """

    v2_ref: float
    v3_ref: float
    roll_ref: float
    ra_ref: float
    dec_ref: float
    va_scale: float | None = None

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], source: str) -> Pointing:
        """The pointing in ``meta["wcsinfo"]`` and ``meta["velocity_aberration"]``.

        Raises
        ------
        InputError
            If a pointing keyword is missing or not a finite number, or ``VA_SCALE`` is not
            positive (``source`` is the file named in the error).
        """
        values = {}
        for attr, keyword in POINTING_KEYWORDS.items():
            value = keywords.get(meta, ("wcsinfo", attr))
            if value is None:
                raise InputError(source, f"SCI {keyword}",
                                 "missing; assign_wcs needs V2_REF, V3_REF, ROLL_REF, RA_REF and DEC_REF")
            values[attr] = _finite(value, source, keyword)
        scale = keywords.get(meta, "velocity_aberration.scale_factor")
        if scale is not None:
            scale = _finite(scale, source, "VA_SCALE")
            if scale <= 0:
                raise InputError(source, "SCI VA_SCALE", f"must be positive, got {scale}")
        return cls(**values, va_scale=scale)


def _finite(value: Any, source: str, keyword: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = math.nan
    if not math.isfinite(out):
        raise InputError(source, f"SCI {keyword}", f"must be a finite number, got {value!r}")
    return out


def dva_correction(va_scale: float | None, v2_ref: float, v3_ref: float) -> Model:
    """``v2v3 -> v2v3vacorr`` [arcsec]: scale by ``va_scale`` about ``(v2_ref, v3_ref)``.

    ``None`` or 1 gives the identity; with a zero reference point only the scale is applied.
    """
    if va_scale is None or va_scale == 1:
        return Identity(2)
    model = Scale(va_scale, name="dva_scale_v2") & Scale(va_scale, name="dva_scale_v3")
    if v2_ref == 0 and v3_ref == 0:
        return model
    model = model | (Shift((1 - va_scale) * v2_ref, name="dva_v2_shift")
                     & Shift((1 - va_scale) * v3_ref, name="dva_v3_shift"))
    model.name = "DVA_Correction"
    return model


def v2v3_to_sky(pointing: Pointing, wrap_v2_at: float = 180, wrap_lon_at: float = 360) -> Model:
    """``v2v3vacorr`` [arcsec] -> ``(RA, Dec)`` [deg]: the rotation taking the reference point
    to ``(RA_REF, DEC_REF)`` with V3 at ``ROLL_REF`` (passive rotations about z, y, x, y, z by
    ``V2_REF, -V3_REF, ROLL_REF, DEC_REF, -RA_REF``). Invertible.
    """
    angles = np.array([pointing.v2_ref / ARCSEC_PER_DEG, -pointing.v3_ref / ARCSEC_PER_DEG,
                       pointing.roll_ref, pointing.dec_ref, -pointing.ra_ref])
    to_deg = Scale(1 / ARCSEC_PER_DEG) & Scale(1 / ARCSEC_PER_DEG)
    model = (to_deg | SphericalToCartesian(wrap_lon_at=wrap_v2_at)
             | RotationSequence3D(angles, axes_order="zyxyz")
             | CartesianToSpherical(wrap_lon_at=wrap_lon_at))
    model.name = "v23tosky"
    return model
