"""Association files of a simulated program (formats.md §3).

One ``image2`` association per exposure (product = the exposure root, member = its
``_rate.fits``), one ``image3`` association of all ``_cal.fits``. Member names are bare file
names: they resolve relative to the association's folder, where the products are expected.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["VERSION_ID", "write_image2", "write_image3"]

VERSION_ID = "20260101t000000"
"""Association version/time stamp used in names and ``asn_pool``."""


def _write(path: Path, asn: dict) -> Path:
    path.write_text(json.dumps(asn, indent=2) + "\n")
    log.debug("wrote %s", path.name)
    return path


def write_image2(out: Path, program: str, roots: list[str]) -> list[Path]:
    """Write one image2 association per exposure root (``jw..._nrcb1``).

    Returns the paths, named ``jw<ppppp>-o<ooo>_<version>_image2_<NNNNN>_asn.json``.
    """
    paths = []
    for i, root in enumerate(roots, start=1):
        asn = {"asn_type": "image2", "asn_rule": "candidate_Asn_Lv2Image", "asn_id": "o001",
               "program": program, "asn_pool": f"jw{program}_{VERSION_ID}_pool.csv",
               "version_id": VERSION_ID, "code_version": "jwdask",
               "products": [{"name": root, "members": [
                   {"expname": f"{root}_rate.fits", "exptype": "science"}]}]}
        paths.append(_write(out / f"jw{program}-o001_{VERSION_ID}_image2_{i:05d}_asn.json", asn))
    return paths


def write_image3(out: Path, program: str, roots: list[str], product_name: str) -> Path:
    """Write the image3 association of all exposures' ``_cal.fits``."""
    asn = {"asn_type": "image3", "asn_rule": "candidate_Asn_Lv3Image", "asn_id": "o001",
           "program": program, "target": "t001", "version_id": VERSION_ID, "code_version": "jwdask",
           "asn_pool": f"jw{program}_{VERSION_ID}_pool.csv",
           "products": [{"name": product_name, "members": [
               {"expname": f"{root}_cal.fits", "exptype": "science"} for root in roots]}]}
    return _write(out / f"jw{program}-o001_{VERSION_ID}_image3_00001_asn.json", asn)
