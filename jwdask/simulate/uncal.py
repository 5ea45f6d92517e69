"""Write raw exposures in the archive ``_uncal.fits`` layout (formats.md §1).

HDUs: PRIMARY (header only), SCI uint16 ``(nints, ngroups, ny, nx)`` [DN] (on disk
``BITPIX=16, BZERO=32768``), ZEROFRAME uint16 ``(nints, ny, nx)`` when ``ZEROFRAM=T``, GROUP
and INT_TIMES tables with every schema column, and the ASDF HDU (empty tree).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from jwdask.io.asdf_hdu import asdf_hdu
from jwdask.simulate import fitsstream
from jwdask.simulate.detector import ReadoutGeometry

log = logging.getLogger(__name__)

__all__ = ["ExposureId", "create_uncal", "exposure_times", "file_root"]

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class ExposureId:
    """The fields of a JWST exposure name (formats.md §0.1).

    Attributes
    ----------
    program, observation, visit, visit_group, seq_id, act_id, exposure : str
        Zero-padded ids (``09001``, ``001``, ``001``, ``02``, ``1``, ``01``, ``00001``).
    detector : str
        ``NRCB1``.
    """

    program: str
    observation: str
    visit: str
    visit_group: str
    seq_id: str
    act_id: str
    exposure: str
    detector: str

    @property
    def visit_id(self) -> str:
        """``VISIT_ID`` (``09001001001``)."""
        return f"{self.program}{self.observation}{self.visit}"

    @property
    def obs_id(self) -> str:
        """``OBS_ID`` (``V09001001001P0000000002101``)."""
        return f"V{self.visit_id}P{0:09d}{self.visit_group}{self.seq_id}{self.act_id}"


def file_root(eid: ExposureId) -> str:
    """``jw<ppppp><ooo><vvv>_<gg><s><aa>_<eeeee>_<detector>``."""
    return (f"jw{eid.program}{eid.observation}{eid.visit}_{eid.visit_group}{eid.seq_id}{eid.act_id}"
            f"_{eid.exposure}_{eid.detector.lower()}")


def exposure_times(geom: ReadoutGeometry, start_mjd: float) -> dict[str, Any]:
    """Timing keywords of an exposure starting at ``start_mjd`` [MJD UTC].

    Each integration is one reset frame plus ``nframes_read`` frames; ``EFFINTTM =
    (NGROUPS - 1) * TGROUP`` (the slope baseline), ``EFFEXPTM = NINTS * EFFINTTM``.
    """
    int_frames = geom.nframes_read + 1
    int_duration = int_frames * geom.tframe
    duration = geom.nints * int_duration
    effint = (geom.ngroups - 1) * geom.tgroup
    end_mjd = start_mjd + duration / SECONDS_PER_DAY
    mid_mjd = 0.5 * (start_mjd + end_mjd)
    return {"EXPSTART": start_mjd, "EXPMID": mid_mjd, "EXPEND": end_mjd,
            "MJD-BEG": start_mjd, "MJD-AVG": mid_mjd, "MJD-END": end_mjd,
            "EFFINTTM": effint, "EFFEXPTM": geom.nints * effint, "DURATION": duration,
            "TMEASURE": effint, "XPOSURE": geom.nints * effint, "TELAPSE": duration,
            "int_duration": int_duration}


def _iso(mjd: float) -> str:
    return Time(mjd, format="mjd", scale="utc").isot


def _group_table(geom: ReadoutGeometry, start_mjd: float, int_duration: float) -> Table:
    nrows = geom.nints * geom.ngroups
    ints = np.repeat(np.arange(1, geom.nints + 1), geom.ngroups)
    groups = np.tile(np.arange(1, geom.ngroups + 1), geom.nints)
    period = geom.nframes + geom.groupgap
    end_s = ((ints - 1) * int_duration
             + (1 + (groups - 1) * period + geom.nframes) * geom.tframe)
    end_mjd = start_mjd + end_s / SECONDS_PER_DAY
    days_since_2000 = end_mjd - 51544.0
    end_day = np.floor(days_since_2000)
    ms = (days_since_2000 - end_day) * SECONDS_PER_DAY * 1e3
    return Table({
        "integration_number": ints.astype(np.int32),
        "group_number": groups.astype(np.int16),
        "end_day": end_day.astype(np.int16),
        "end_milliseconds": np.floor(ms).astype(np.int32),
        "end_submilliseconds": np.floor((ms % 1) * 1e3).astype(np.int16),
        "group_end_time": np.array([_iso(m) for m in end_mjd], dtype="S26"),
        "number_of_columns": np.full(nrows, geom.xsize, np.int16),
        "number_of_rows": np.full(nrows, geom.ysize, np.int16),
        "number_of_gaps": np.zeros(nrows, np.int16),
        "completion_code_number": np.zeros(nrows, np.int16),
        "completion_code_text": np.array(["Normal Completion"] * nrows, dtype="S36"),
        "bary_end_time": end_mjd.astype(np.float64),
        "helio_end_time": end_mjd.astype(np.float64),
    })


def _int_times(geom: ReadoutGeometry, start_mjd: float, int_duration: float) -> Table:
    ints = np.arange(1, geom.nints + 1)
    start = start_mjd + ((ints - 1) * int_duration + geom.tframe) / SECONDS_PER_DAY
    end = start_mjd + ints * int_duration / SECONDS_PER_DAY
    mid = 0.5 * (start + end)
    return Table({"integration_number": ints.astype(np.int32),
                  "int_start_MJD_UTC": start, "int_mid_MJD_UTC": mid, "int_end_MJD_UTC": end,
                  "int_start_BJD_TDB": start, "int_mid_BJD_TDB": mid, "int_end_BJD_TDB": end})


def create_uncal(path: Path, primary: Mapping[str, Any], sci_header: Mapping[str, Any],
                 geom: ReadoutGeometry, start_mjd: float, int_duration: float, *,
                 zeroframe: bool) -> tuple[Any, Any | None]:
    """Write one raw exposure's file with its SCI (and ZEROFRAME) data still to be filled.

    Headers, tables and the ASDF HDU are written now; the pixel data are filled afterwards
    through the returned views (``sci[i, g, rows] = uint16 values``), which write straight
    into the file, so an exposure of any size never sits whole in memory.

    Parameters
    ----------
    path : pathlib.Path
        Output file.
    primary, sci_header : mapping
        PRIMARY and SCI keywords (values of the schema types).
    geom : ReadoutGeometry
        Readout (array shapes, table rows and times).
    start_mjd, int_duration : float
        Exposure start [MJD UTC] and integration duration including the reset [s].
    zeroframe : bool
        Whether the file has a ZEROFRAME (``(nints, ny, nx)``) extension.

    Returns
    -------
    (sci, zeroframe)
        Writable views of SCI uint16 ``(nints, ngroups, ny, nx)`` [DN] and ZEROFRAME uint16
        ``(nints, ny, nx)`` [DN] (None without one).
    """
    hdu0 = fits.PrimaryHDU()
    for key, value in primary.items():
        hdu0.header[key] = value
    images = [fitsstream.StreamedImage("SCI", (geom.nints, geom.ngroups, geom.ysize, geom.xsize), np.uint16,
                                       header=sci_header)]
    if zeroframe:
        images.append(fitsstream.StreamedImage("ZEROFRAME", (geom.nints, geom.ysize, geom.xsize), np.uint16))
    tables = [fits.BinTableHDU(_group_table(geom, start_mjd, int_duration), name="GROUP"),
              fits.BinTableHDU(_int_times(geom, start_mjd, int_duration), name="INT_TIMES"),
              asdf_hdu({})]
    raw = fitsstream.write_fits(path, hdu0, images, tables)
    sci = fitsstream.open_image(raw["SCI"])
    zero = fitsstream.open_image(raw["ZEROFRAME"]) if zeroframe else None
    log.info("laid out %s %s", path.name, raw["SCI"].shape)
    return sci, zero
