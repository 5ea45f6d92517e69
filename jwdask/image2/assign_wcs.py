"""assign_wcs: attach the exposure's gwcs, its S_REGION footprint and a FITS TAN-SIP header.

Metadata only: no pixel is touched. The gwcs (``detector -> v2v3 -> v2v3vacorr -> world``,
pixels -> arcsec -> arcsec -> deg) goes to ``attrs["wcs"]`` (written as ``meta.wcs`` in the
ASDF extension); the SIP fit and ``s_region`` go to ``meta["wcsinfo"]`` (SCI header).
"""

from __future__ import annotations

import logging
from typing import Any

import xarray as xr

from jwdask.errors import InputError, ParameterError, ReferenceFileError
from jwdask.io import keywords
from jwdask.steps import completed, skipped
from jwdask.wcs import imaging

log = logging.getLogger(__name__)

STEP = "assign_wcs"


def _check_degree(name: str, value: int | None) -> None:
    limit = imaging.MAX_SIP_DEGREE
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value > limit):
        raise ParameterError(f"{STEP}: {name} must be None or an integer <= {limit}, got {value!r}")


def assign_wcs(ds: xr.Dataset, refs: Any, *, sip_approx: bool = True, sip_max_pix_error: float = 0.01,
               sip_degree: int | None = None, sip_max_inv_pix_error: float = 0.01,
               sip_inv_degree: int | None = None, sip_npoints: int = 12,
               slit_y_low: float = -0.55, slit_y_high: float = 0.55) -> xr.Dataset:
    """Build the imaging gwcs from the DISTORTION/FILTEROFFSET references and the pointing.

    ``sip_*`` control the TAN-SIP approximation (errors in pixels, degrees 1-5 tried when
    None); ``slit_y_low/high`` (slit units) concern NIRSpec only, which is not implemented.
    """
    _check_degree("sip_degree", sip_degree)
    _check_degree("sip_inv_degree", sip_inv_degree)
    meta = ds.attrs.get("meta", {})
    source = str(ds.attrs.get("source") or keywords.get(meta, "filename", "exposure"))
    exp_type = keywords.get(meta, "exposure.type")
    if exp_type is None:
        raise InputError(source, "PRIMARY EXP_TYPE", "missing; assign_wcs dispatches on it")
    exp_type = str(exp_type).upper()
    if exp_type in imaging.NO_WCS_EXP_TYPES:
        return skipped(ds, STEP, f"EXP_TYPE {exp_type} has no sky WCS")
    instrument = imaging.IMAGING_EXP_TYPES.get(exp_type)
    if instrument is None:
        raise NotImplementedError(f"assign_wcs: the WCS of EXP_TYPE {exp_type} is not implemented "
                                  "(imaging modes of NIRCam, NIRISS, MIRI and FGS only)")
    exposure_instrument = str(keywords.get(meta, "instrument.name", "")).upper()
    if exposure_instrument != instrument:
        raise InputError(source, "PRIMARY INSTRUME",
                         f"{exposure_instrument or 'missing'}, but EXP_TYPE {exp_type} is a {instrument} mode")

    if refs is None:
        raise ReferenceFileError("distortion", "no reference provider was given (pass refs=RefProvider(...))")
    distortion_path = refs.path("distortion", meta)
    if distortion_path is None:
        detector = keywords.get(meta, "instrument.detector")
        raise ReferenceFileError("distortion", f"is N/A for {source} (EXP_TYPE={exp_type}, DETECTOR={detector}); "
                                               "an imaging WCS needs it")
    distortion = imaging.check_distortion(refs.open_asdf("distortion", meta), distortion_path, meta)
    ref_files = {"distortion": refs.record("distortion", meta)}
    offset = None
    if instrument in imaging.FILTER_OFFSET_KEYS:
        offset_path = refs.path("filteroffset", meta)
        ref_files["filteroffset"] = refs.record("filteroffset", meta)
        if offset_path is not None:
            offset = imaging.filter_offset(refs.open_asdf("filteroffset", meta), offset_path, meta, instrument)

    shape = (ds.sizes["y"], ds.sizes["x"])
    wcs = imaging.imaging_wcs(meta, shape, distortion, offset, source=source)
    region = imaging.s_region(wcs)
    out = completed(ds, STEP, ref_files=ref_files,
                    meta={"wcsinfo.s_region": region} if region is not None else None)
    if region is not None:
        log.info("%s: S_REGION %s", STEP, region)
    out.attrs["wcs"] = wcs
    if sip_approx:
        _add_sip(out.attrs["meta"], wcs, max_pix_error=sip_max_pix_error, degree=sip_degree,
                 max_inv_pix_error=sip_max_inv_pix_error, inv_degree=sip_inv_degree, npoints=sip_npoints)
    return out


def _add_sip(meta: dict[str, Any], wcs: Any, **fit: Any) -> None:
    """Fit the TAN-SIP header at the level-1 CRPIX and store it in ``meta["wcsinfo"]``;
    a fit that misses its tolerance is logged as a warning and leaves ``wcsinfo`` as it was."""
    crpix = (keywords.get(meta, "wcsinfo.crpix1"), keywords.get(meta, "wcsinfo.crpix2"))
    try:
        sip = imaging.fits_sip(wcs, None if None in crpix else crpix, **fit)
    except (ValueError, RuntimeError) as exc:
        log.warning("%s: no FITS SIP approximation: %s", STEP, exc)
        return
    imaging.apply_sip(meta.setdefault("wcsinfo", {}), sip)
    log.info("%s: TAN-SIP degree %s/%s, max error %.3g/%.3g pix", STEP, sip.get("a_order"),
             sip.get("ap_order"), sip.get("sipmxerr", float("nan")), sip.get("sipiverr", float("nan")))
