"""Truth products of a simulated program.

Files in ``truth_dir``:

``sources.ecsv``
    Every source: ``id, type (star|galaxy), ra, dec [deg], flux [Jy], mag_ab, r_eff [arcsec],
    axis_ratio, theta [deg E of N]``.
``<root>_truth_rate.fits``
    Per exposure, the noise-free count rate [DN/s] that Detector1 should recover in
    ``_rate`` (SCI, float32, array shape): ``(sky * area / PHOTMJSR + sources) * flat``, i.e.
    the photo-electron rate divided by the gain, **without** dark current (the dark step
    removes it), bias, IPC or non-linearity (ipc/superbias/refpix/linearity remove them), and
    0 on reference and dead pixels. Header ``XSTART/YSTART`` = ``SUBSTRT1/2``.
``<root>_positions.ecsv``
    Per exposure, full-frame 0-based pixel ``x, y`` of each source under the **true** pointing
    and its total rate [DN/s] before the flat.
``<root>_jumps.ecsv``
    Injected cosmic rays: ``integration, group`` (0-based; the jump is between reads
    ``group-1`` and ``group``), ``frame``, full-frame 0-based ``x, y``, ``charge`` [e-] and
    ``amplitude`` [DN] (= charge / gain).
``summary.json``
    Preset, seed, files, and per exposure the header (commanded) and true pointing
    (``ra_ref, dec_ref, roll_ref`` [deg], ``v2_ref, v3_ref`` [arcsec]) and their difference
    [arcsec].
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table

from jwdask.simulate.detector import CosmicRay

log = logging.getLogger(__name__)

__all__ = ["jumps_table", "write_rate", "write_summary"]


def write_rate(path: Path, rate: np.ndarray, xstart: int, ystart: int) -> Path:
    """Write a truth rate image [DN/s]."""
    hdu = fits.ImageHDU(rate.astype(np.float32), name="SCI")
    hdu.header["BUNIT"] = "DN/s"
    hdu.header["XSTART"] = (xstart, "SUBSTRT1 of the array (1-based)")
    hdu.header["YSTART"] = (ystart, "SUBSTRT2 of the array (1-based)")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return path


def jumps_table(hits: list[CosmicRay], gain: np.ndarray) -> Table:
    """Cosmic rays as a table; ``gain`` is the full-frame gain [e-/DN]."""
    table = Table({
        "integration": np.array([h.integration for h in hits], np.int32),
        "group": np.array([h.group for h in hits], np.int32),
        "frame": np.array([h.frame for h in hits], np.int32),
        "x": np.array([h.x for h in hits], np.int32),
        "y": np.array([h.y for h in hits], np.int32),
        "charge": np.array([h.charge for h in hits], float),
        "amplitude": np.array([h.charge / gain[h.y, h.x] for h in hits], float),
    })
    table["charge"].unit = "electron"
    table["amplitude"].unit = "DN"
    return table


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_summary(path: Path, summary: Mapping[str, Any]) -> Path:
    """Write the JSON summary."""
    path.write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
    return path
