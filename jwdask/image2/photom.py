"""photom (imaging): DN/s to MJy/sr with the PHOTOM row of the exposure's optical elements
(image2.md §5), and the pixel-area map attached as ``area``.

The conversion ``C`` [(MJy/sr)/(DN/s)] is the ``photmjsr`` of the PHOTOM row matching FILTER
and PUPIL (NIRCam, + SUBARRAY if the table has it; NIRISS), SUBARRAY and FILTER (MIRI imager,
retried with SUBARRAY=GENERIC) or the only row (FGS), divided by the throughput-loss factor of
the ``TIMECOEFF_*`` tables at EXPMID. The AREA reference is attached, never multiplied in;
``PIXAR_SR``/``PIXAR_A2`` come from its header (from the PHOTOM header without an AREA).

Unlike jwst, which warns and leaves the data in DN/s while still marking the step COMPLETE,
a PHOTOM table without a row for the exposure is an error here.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import xarray as xr
from astropy import units as u
from astropy.table import Table

from jwdask.errors import InputError, ReferenceFileError
from jwdask.image2.flat_field import require_image, task_name
from jwdask.io import keywords
from jwdask.io.fitsfile import scan
from jwdask.kernels.photom import apply_conversion, time_correction
from jwdask.refs import cut_to
from jwdask.steps import completed, skipped
from jwdask.tiles import map_tiles

log = logging.getLogger(__name__)

MJSR_TO_UJA2 = (u.megajansky / u.steradian).to(u.microjansky / u.arcsecond / u.arcsecond)
"""MJy/sr -> uJy/arcsec^2 (PHOTUJA2 = PHOTMJSR x this)."""
TIME_TABLES = {"linear": "TIMECOEFF_LINEAR", "exponential": "TIMECOEFF_EXPONENTIAL",
               "powerlaw": "TIMECOEFF_POWERLAW"}
CAL_VARS = ("sci", "err", "dq", "area", "var_poisson", "var_rnoise", "var_flat")


def _source(ds: xr.Dataset) -> str:
    return str(ds.attrs.get("source", keywords.get(ds.attrs.get("meta", {}), "filename", "exposure")))


def _required(ds: xr.Dataset, path: str) -> Any:
    value = keywords.get(ds.attrs.get("meta", {}), path)
    if value is None:
        kw = keywords.by_path().get(tuple(path.split(".")))
        raise InputError(_source(ds), f"PRIMARY {kw.name if kw else path}",
                         "required keyword is missing (photom selects its PHOTOM row with it)")
    return value


def _text(column: Any) -> np.ndarray:
    values = np.asarray(column)
    if values.dtype.kind == "S":
        values = np.char.decode(values, "ascii")
    return np.char.upper(np.char.rstrip(values.astype(str)))


def find_row(table: Table, fields: dict[str, str], path: str) -> int | None:
    """Index of the one PHOTOM row whose columns equal ``fields`` (upper case), or None.

    Raises
    ------
    ReferenceFileError
        If a column is missing or several rows match.
    """
    match = np.ones(len(table), dtype=bool)
    for column, value in fields.items():
        if column not in table.colnames:
            raise ReferenceFileError("photom", f"{path}: PHOTOM has no '{column}' column ({table.colnames})")
        match &= _text(table[column]) == str(value).upper()
    rows = np.flatnonzero(match)
    if len(rows) > 1:
        raise ReferenceFileError("photom", f"{path}: {len(rows)} PHOTOM rows match {fields}; expected one")
    return int(rows[0]) if len(rows) else None


def select_row(ds: xr.Dataset, table: Table, path: str) -> int:
    """The PHOTOM row of the exposure (selection rules of jwst ``DataSet.calc_<instrument>``).

    Raises
    ------
    InputError
        If a keyword the selection needs is missing from the exposure.
    ReferenceFileError
        If no row or several rows match.
    NotImplementedError
        For NIRSpec and MIRI MRS (spectroscopic photom).
    """
    instrument = str(_required(ds, "instrument.name")).upper()
    fields: dict[str, str]
    if instrument == "FGS":
        if len(table) == 0:
            raise ReferenceFileError("photom", f"{path}: the PHOTOM table is empty")
        return 0
    if instrument in ("NIRCAM", "NIRISS"):
        fields = {"filter": _required(ds, "instrument.filter"), "pupil": _required(ds, "instrument.pupil")}
        if instrument == "NIRCAM" and "subarray" in table.colnames:
            fields["subarray"] = _required(ds, "subarray.name")
        row = find_row(table, fields, path)
    elif instrument == "MIRI":
        detector = str(_required(ds, "instrument.detector")).upper()
        if detector != "MIRIMAGE":
            msg = f"photom for MIRI {detector} (MRS) is not implemented in jwdask; imaging only"
            raise NotImplementedError(msg)
        fields = {"subarray": _required(ds, "subarray.name"), "filter": _required(ds, "instrument.filter")}
        row = find_row(table, fields, path)
        if row is None:
            fields = {**fields, "subarray": "GENERIC"}
            row = find_row(table, fields, path)
    else:
        msg = f"photom for {instrument} is not implemented in jwdask (NIRCam, NIRISS, MIRI imager, FGS)"
        raise NotImplementedError(msg)
    if row is None:
        wanted = " ".join(f"{k}={str(v).upper()}" for k, v in fields.items())
        raise ReferenceFileError("photom", f"{path}: no PHOTOM row for {wanted}")
    return row


def _area_info(ds: xr.Dataset, refs: Any, photom_header: dict[str, Any], photom_path: str
               ) -> tuple[xr.DataArray | None, str | None, float | None, float | None]:
    """The AREA map cut to the exposure, its recorded name, PIXAR_SR and PIXAR_A2."""
    meta = ds.attrs.get("meta", {})
    if refs.path("area", meta) is None:
        log.info("photom: no AREA reference; PIXAR_SR/PIXAR_A2 from %s", photom_path)
        header, source, area, name = photom_header, photom_path, None, "N/A"
    else:
        ref = refs.open("area", meta)
        name = refs.record("area", meta)
        if "sci" not in ref:
            raise ReferenceFileError("area", f"{name}: no SCI image")
        ref = cut_to(ref, ds).chunk({d: ds.chunks[d] for d in ("y", "x") if d in ds.chunks})
        area = ref.sci.astype(np.float32).reset_coords(drop=True)
        header, source = ref.attrs.get("header", {}), name
    sr, a2 = header.get("PIXAR_SR"), header.get("PIXAR_A2")
    for key, value in (("PIXAR_SR", sr), ("PIXAR_A2", a2)):
        if value is None:
            log.warning("photom: the %s keyword is missing from %s", key, source)
    return area, name, None if sr is None else float(sr), None if a2 is None else float(a2)


def _read_photom(path: str) -> tuple[Table, dict[str, Table], dict[str, Any]]:
    try:
        scanned = scan(path)
    except InputError as exc:
        raise ReferenceFileError("photom", f"{path}: {exc.reason}") from exc
    if "PHOTOM" not in scanned.tables:
        raise ReferenceFileError("photom", f"{path}: no table HDU PHOTOM (has {sorted(scanned.tables)})")
    table = scanned.tables["PHOTOM"]
    timed = {kind: scanned.tables[ext] for kind, ext in TIME_TABLES.items() if ext in scanned.tables}
    for kind, t in timed.items():
        if len(t) != len(table):
            msg = f"{path}: {TIME_TABLES[kind]} has {len(t)} rows, PHOTOM has {len(table)}"
            raise ReferenceFileError("photom", msg)
    header = {k: v for k, v in scanned.headers["PRIMARY"].items() if k not in ("COMMENT", "HISTORY", "")}
    return table, timed, header


def photom(ds: xr.Dataset, refs: Any, *, inverse: bool = False, source_type: str | None = None,
           apply_time_correction: bool = True) -> xr.Dataset:
    """Convert rates [DN/s] to surface brightness [MJy/sr] (jwst ``PhotomStep``, imaging).

    Parameters
    ----------
    inverse : bool
        Divide by the conversion instead (MJy/sr back to DN/s).
    source_type : {None, "POINT", "EXTENDED"}
        Only for PHOTOM tables in MJy per DN/s (``photmj``): POINT keeps MJy, anything else
        divides by PIXAR_SR; default the exposure's SRCTYPE.
    apply_time_correction : bool
        Divide by the ``TIMECOEFF_*`` throughput loss at EXPMID when the reference has it.
    """
    require_image(ds, "photom")
    meta = ds.attrs.get("meta", {})
    if refs is None:
        raise ReferenceFileError("photom", "no reference provider was given (pass refs=RefProvider(...))")
    instrument = str(_required(ds, "instrument.name")).upper()
    path = refs.path("photom", meta)
    if path is None:
        return skipped(ds, "photom", "no photom reference", ref_files={"photom": "N/A"})
    name = refs.record("photom", meta)
    if instrument == "NIRISS" and ds.sci.ndim == 3:
        return skipped(ds, "photom", "NIRISS photom does not take per-integration cubes (as jwst)",
                       ref_files={"photom": name})
    table, timed, header = _read_photom(path)
    area, area_name, pixar_sr, pixar_a2 = _area_info(ds, refs, header, name)
    row = select_row(ds, table, path)
    conversion, surface_brightness = _conversion(ds, table, row, pixar_sr, source_type, path)
    if apply_time_correction and timed:
        mid_time = float(_required(ds, "exposure.mid_time"))
        coefficients = {k: {c: np.asarray(t[c], np.float32) for c in t.colnames if c not in ("filter", "pupil")}
                        for k, t in timed.items()}
        factor = time_correction(mid_time, coefficients, len(table))[row]
        if factor != 1.0:
            log.info("photom: multiplicative time dependence correction %.6g", factor)
            conversion = conversion / factor
    log.info("photom: PHOTMJSR %.6g from row %d of %s", conversion, row, name)
    dims = ds.sci.dims
    names = ["sci", "err", "dq"] + [v for v in ("var_poisson", "var_rnoise", "var_flat") if v in ds]
    outputs = {k: (dims, np.uint32 if k == "dq" else np.float32) for k in names}
    inputs = [ds[v] if v in ds else None for v in ("sci", "err", "dq", "var_poisson", "var_rnoise", "var_flat")]
    out = map_tiles(apply_conversion, inputs, outputs, like=ds.sci,
                    name=task_name("photom", inputs, float(conversion), inverse),
                    conversion=conversion, inverse=bool(inverse))
    unit = "DN/s" if inverse else ("MJy/sr" if surface_brightness else "MJy")
    out["sci"].attrs = {**ds.sci.attrs, "units": unit}
    out["err"].attrs = {**ds.err.attrs, "units": unit}
    if area is not None:
        out["area"] = area
    new_meta: dict[str, Any] = {
        "photometry.conversion_megajanskys": float(conversion),
        "photometry.conversion_microjanskys": float(conversion * MJSR_TO_UJA2),
        "photometry.pixelarea_steradians": pixar_sr, "photometry.pixelarea_arcsecsq": pixar_a2,
        "bunit_data": unit, "bunit_err": unit,
    }
    result = completed(ds, "photom", out, ref_files={"photom": name, "area": area_name},
                       meta={k: v for k, v in new_meta.items() if v is not None})
    photometry = result.attrs["meta"].get("photometry", {})
    for key in ("pixelarea_steradians", "pixelarea_arcsecsq"):
        if new_meta[f"photometry.{key}"] is None:
            photometry.pop(key, None)
    return result


def _conversion(ds: xr.Dataset, table: Table, row: int, pixar_sr: float | None, source_type: str | None,
                path: str) -> tuple[np.floating, bool]:
    """``C`` (float32, the schema type of the column) and whether the result is a surface
    brightness."""
    if "photmjsr" in table.colnames:
        return np.float32(table["photmjsr"][row]), True
    if "photmj" not in table.colnames:
        raise ReferenceFileError("photom", f"{path}: PHOTOM has neither 'photmjsr' nor 'photmj' ({table.colnames})")
    conversion = np.float32(table["photmj"][row])
    kind = source_type or keywords.get(ds.attrs.get("meta", {}), "target.source_type")
    if kind is not None and str(kind).upper() == "POINT":
        return conversion, False
    if pixar_sr is None:
        log.warning("photom: pixel area is None, so can't convert flux to surface brightness")
        return conversion, True
    return conversion / pixar_sr, True


def cal_product(ds: xr.Dataset) -> xr.Dataset:
    """The ``_cal`` product (ImageModel layout) of a calibrated 2-D Dataset."""
    return ds[[v for v in CAL_VARS if v in ds]].assign_attrs(ds.attrs)


def calints_product(ds: xr.Dataset) -> xr.Dataset:
    """The ``_calints`` product (CubeModel layout, with INT_TIMES) of a calibrated cube."""
    tables = [v for v in ds.data_vars if str(v).startswith("int_times.")]
    out = ds[[v for v in CAL_VARS if v in ds] + tables]
    out.attrs = dict(ds.attrs)
    out.attrs["tables"] = {k: v for k, v in ds.attrs.get("tables", {}).items() if k == "int_times"}
    return out
