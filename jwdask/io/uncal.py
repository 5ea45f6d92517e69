"""Read raw ``*_uncal.fits`` exposures (formats.md §1) into lazy exposure Datasets."""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping
from typing import Any

import dask.array as da
import fsspec
import numpy as np
import xarray as xr
from dask.base import tokenize

from jwdask.errors import InputError
from jwdask.io import keywords
from jwdask.io.fitsfile import ImageRegion, ScannedFile, scan
from jwdask.io.tables import with_tables

log = logging.getLogger(__name__)

DEFAULT_TILE = (512, 512)
"""Default (y, x) tile of exposure cubes, in pixels: every integration and group of a
tile live in one chunk, so a ramp never spans two tasks."""

REQUIRED_PRIMARY = (
    "INSTRUME", "DETECTOR", "EXP_TYPE", "READPATT", "NINTS", "NGROUPS", "NFRAMES", "GROUPGAP",
    "TFRAME", "TGROUP", "SUBARRAY", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2",
    "DATE-OBS", "TIME-OBS",
)
"""PRIMARY keywords without which Detector1 cannot run (formats.md §1.4)."""
FULL_FRAME = 2048
"""Rows and columns of a near-IR full frame [pixels]."""
IRS2_ROWS = 3200
"""Rows of a full-frame NIRSpec IRS2 readout in DMS orientation (SUBSIZE2 stays 2048)."""


def open_uncal(
    url: str,
    *,
    tile: tuple[int, int] = DEFAULT_TILE,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Open a raw exposure lazily: headers are read, pixel data is not.

    Parameters
    ----------
    url : str
        Local path or any fsspec URL (``s3://``, ``memory://``...) of a ``*_uncal.fits``.
    tile : (int, int)
        Chunk size in (y, x) pixels; integrations and groups are never split.
    storage_options : dict, optional
        Passed to fsspec (credentials, endpoint...).

    Returns
    -------
    xarray.Dataset
        ``sci (integration, group, y, x)`` uint16 [DN] backed by dask; ``zeroframe
        (integration, y, x)`` [DN] when present; ``group.*`` and ``int_times.*`` table
        variables; ``attrs["meta"]`` with the PRIMARY and SCI header metadata. ``y``/``x``
        are full-frame 0-based detector pixel indices; a full-frame NIRSpec IRS2 readout keeps
        its 3200 rows (``y`` 0..3199, interleaved reference rows included) while SUBSIZE2 says 2048.

    Raises
    ------
    InputError
        Unreadable or non-FITS file, truncated data, missing SCI, missing required
        keyword, or a SCI array of the wrong dtype or shape; the message names the field.
    """
    scanned = scan(url, storage_options)
    sci = scanned.images.get("SCI")
    if sci is None:
        raise InputError(url, "SCI", "no SCI image extension")
    primary = scanned.headers["PRIMARY"]
    for key in REQUIRED_PRIMARY:
        if key not in primary:
            raise InputError(url, f"PRIMARY {key}", "required keyword is missing")
    if sci.dtype != np.uint16:
        raise InputError(url, "SCI", f"raw data must be uint16 (BITPIX=16, BZERO=32768); found "
                         f"BITPIX={sci.bitpix} BZERO={sci.bzero:g}")
    nints = _expected_nints(url, primary)
    expected = (nints, int(primary["NGROUPS"]), int(primary["SUBSIZE2"]), int(primary["SUBSIZE1"]))
    if sci.shape != expected and not _irs2_rows(sci.shape, expected):
        raise InputError(url, "SCI", f"shape {sci.shape} does not match (NINTS, NGROUPS, SUBSIZE2, "
                         f"SUBSIZE1) = {expected} from the PRIMARY header")
    zeroframe = scanned.images.get("ZEROFRAME")
    if zeroframe is not None and zeroframe.shape != (nints, *sci.shape[2:]):
        raise InputError(url, "ZEROFRAME", f"shape {zeroframe.shape} is not {(nints, *sci.shape[2:])}")
    return exposure_dataset(scanned, tile=tile, kind="uncal")


def _irs2_rows(shape: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    """Whether SCI is a full-frame NIRSpec IRS2 readout: 3200 rows (interleaved reference rows
    and the reference output included) where SUBSIZE2 says 2048, as jwst accepts."""
    return (shape[:2] == expected[:2] and shape[2:] == (IRS2_ROWS, FULL_FRAME)
            and expected[2:] == (FULL_FRAME, FULL_FRAME))


def _expected_nints(url: str, primary: Any) -> int:
    """Integrations in this file: a segment of a split exposure holds INTSTART..INTEND."""
    if "INTSTART" in primary and "INTEND" in primary:
        return int(primary["INTEND"]) - int(primary["INTSTART"]) + 1
    try:
        return int(primary["NINTS"])
    except (TypeError, ValueError) as exc:
        raise InputError(url, "PRIMARY NINTS", f"not an integer: {primary['NINTS']!r}") from exc


def lazy_image(region: ImageRegion, dims: tuple[str, ...], tile: tuple[int, int], name: str) -> da.Array:
    """A dask array over one image HDU, chunked in (y, x) tiles and whole along other dims."""
    chunks = tuple(
        tile[0] if d == "y" else tile[1] if d == "x" else -1 for d in dims
    )
    fs, path = fsspec.core.url_to_fs(region.url, **region.storage_options)
    token = tokenize(region.url, region.offset, region.shape, region.bitpix, fs.ukey(path), chunks)
    return da.from_array(
        region, chunks=chunks, name=f"{name}-{token}", asarray=False, lock=False,
        meta=np.empty((0,) * region.ndim, dtype=region.dtype),
    )


def detector_coords(meta: Mapping[str, Any], ny: int, nx: int) -> dict[str, np.ndarray]:
    """Full-frame 0-based ``y``/``x`` pixel coordinates of a (sub)array, from SUBSTRT1/2."""
    y0 = int(keywords.get(meta, "subarray.ystart", 1)) - 1
    x0 = int(keywords.get(meta, "subarray.xstart", 1)) - 1
    return {"y": np.arange(y0, y0 + ny), "x": np.arange(x0, x0 + nx)}


def header_meta(scanned: ScannedFile) -> dict[str, Any]:
    """``meta`` from every header of a scanned file (PRIMARY, SCI, ERR...)."""
    meta: dict[str, Any] = {}
    for hdu, header in scanned.headers.items():
        if hdu in keywords.by_hdu():
            keywords.header_to_meta(header, hdu, meta)
    meta.setdefault("filename", posixpath.basename(scanned.url))
    return meta


IMAGE_DIMS = {
    "uncal": {"SCI": ("integration", "group", "y", "x"), "ZEROFRAME": ("integration", "y", "x"),
              "REFOUT": ("integration", "group", "y", "refout_x")},
}


def exposure_dataset(scanned: ScannedFile, *, tile: tuple[int, int], kind: str) -> xr.Dataset:
    """A lazy Dataset of every image HDU of a scanned exposure file, named in lower case."""
    meta = header_meta(scanned)
    dims_of = IMAGE_DIMS[kind]
    ny, nx = scanned.images["SCI"].shape[-2:]
    variables = {}
    for extname, region in scanned.images.items():
        dims = dims_of.get(extname)
        if dims is None:
            log.warning("%s: ignoring unexpected image extension %s", scanned.url, extname)
            continue
        data = lazy_image(region, dims, tile, f"{kind}-{extname.lower()}")
        unit = scanned.headers[extname].get("BUNIT")
        variables[extname.lower()] = xr.DataArray(data, dims=dims, attrs={"units": unit} if unit else {})
    ds = xr.Dataset(variables, coords=detector_coords(meta, ny, nx),
                    attrs={"meta": meta, "kind": kind, "source": scanned.url})
    return with_tables(ds, scanned.tables)
