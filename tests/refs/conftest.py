"""Tiny CRDS-format reference files written with astropy, and exposure metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits


def exposure_meta(**changes: Any) -> dict[str, Any]:
    """Nested exposure ``meta`` of a NIRCam NRCB1 SUB160 RAPID image (SUBSTRT 101/201, 56x40)."""
    meta: dict[str, Any] = {
        "instrument": {"name": "NIRCAM", "detector": "NRCB1", "filter": "F200W", "pupil": "CLEAR",
                       "channel": "SHORT", "module": "B"},
        "exposure": {"type": "NRC_IMAGE", "readpatt": "RAPID", "noutputs": 1},
        "subarray": {"name": "SUB160", "xstart": 101, "ystart": 201, "xsize": 56, "ysize": 40},
        "observation": {"date": "2026-01-01", "time": "00:00:00.000"},
    }
    for path, value in changes.items():
        group, key = path.split("__")
        meta[group][key] = value
    return meta


def write_ref(path: Path, reftype: str, *, shape: tuple[int, ...] = (60, 80),
              window: tuple[int, int] | None = (81, 191), subarray: str | None = "SUB160",
              useafter: str = "2022-01-01T00:00:00", fill: float = 1.0,
              dq: bool = True, header: dict[str, Any] | None = None,
              extra: dict[str, np.ndarray] | None = None) -> Path:
    """Write a NIRCam reference: SCI (+DQ) of ``shape``; ``window`` = (SUBSTRT1, SUBSTRT2)
    or ``None`` for no SUBSTRT/SUBSIZE keywords."""
    primary = fits.PrimaryHDU()
    cards = {"TELESCOP": "JWST", "INSTRUME": "NIRCAM", "DETECTOR": "NRCB1", "REFTYPE": reftype.upper(),
             "DATAMODL": "ReferenceFileModel", "USEAFTER": useafter, "PEDIGREE": "DUMMY",
             "AUTHOR": "jwdask tests", "DESCRIP": "test reference", "FILENAME": path.name}
    if subarray is not None:
        cards["SUBARRAY"] = subarray
    if window is not None:
        cards.update({"SUBSTRT1": window[0], "SUBSTRT2": window[1],
                      "SUBSIZE1": shape[-1], "SUBSIZE2": shape[-2], "FASTAXIS": 1, "SLOWAXIS": -2})
    cards.update(header or {})
    for key, value in cards.items():
        if value is not None:
            primary.header[key] = value
    primary.header["HISTORY"] = "written by the jwdask tests"
    ny, nx = shape[-2:]
    sci = (np.arange(ny)[:, None] * 1000 + np.arange(nx)[None, :]).astype(np.float32) + np.float32(fill)
    sci = np.broadcast_to(sci, shape).astype(np.float32)
    hdus = [primary, fits.ImageHDU(sci, name="SCI")]
    if dq:
        hdus.append(fits.ImageHDU(np.zeros((ny, nx), np.uint32) + 5, name="DQ"))
    for name, data in (extra or {}).items():
        hdus.append(fits.ImageHDU(data, name=name))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


@pytest.fixture
def meta() -> dict[str, Any]:
    return exposure_meta()
