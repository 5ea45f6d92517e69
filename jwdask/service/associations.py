"""Finding a program's exposures and associations, and building associations from headers.

Inputs are folders (searched recursively for ``*_uncal.fits`` and ``*_asn.json``), raw
exposure files and association files. Association members are matched to exposures by
their file root (``jw..._nrcb1`` of ``jw..._nrcb1_rate.fits``). When no Image2 (Image3)
association is given, one is built from the exposure headers: one Image2 association per
exposure, and one Image3 association per (program, observation, target, instrument, optical
elements, subarray), named like the official level-3 products
(``jw<ppppp>-o<ooo>_t<nnn>_<instrument>_<pupil>-<filter>[-<subarray>]``).
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astropy.io import fits

from jwdask.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["Association", "Exposure", "ProgramPlan", "build_image2", "build_image3", "discover", "file_root"]

GROUP_KEYWORDS = ("PROGRAM", "OBSERVTN", "TARGPROP", "INSTRUME", "FILTER", "PUPIL", "SUBARRAY")
"""Primary-header keywords whose values must agree within one Image3 association."""


@dataclass(frozen=True)
class Exposure:
    """One raw exposure: its file root, path, the header values used for grouping, and
    the reason it cannot be used (``error``) if its header could not be read."""

    root: str
    path: str
    header: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Association:
    """An association: type (``image2``/``image3``), product name, member roots, the file
    it came from (``None`` when built from headers) and its id (part of ``_crf`` names)."""

    asn_type: str
    product: str
    members: tuple[str, ...]
    source: str | None = None
    asn_id: str = "a3001"


@dataclass(frozen=True)
class ProgramPlan:
    """Everything a program run needs to know about its inputs."""

    exposures: dict[str, Exposure]
    image2: list[Association]
    image3: list[Association]
    problems: list[str] = field(default_factory=list)


def file_root(name: str) -> str:
    """``jw..._nrcb1`` from ``.../jw..._nrcb1_uncal.fits`` (the name without its suffix)."""
    stem = posixpath.basename(str(name))
    for ext in (".fits", ".zarr"):
        stem = stem.removesuffix(ext)
    return stem.rsplit("_", 1)[0] if "_" in stem else stem


def discover(inputs: Sequence[str | Path]) -> ProgramPlan:
    """Find the exposures and associations of a program in ``inputs``.

    Parameters
    ----------
    inputs : sequence of str or Path
        Folders, ``*_uncal.fits`` files and ``*_asn.json`` files.

    Returns
    -------
    ProgramPlan
        Exposures by root; Image2 and Image3 associations (given ones, else built from
        headers); ``problems`` lists association members without a raw exposure.

    Raises
    ------
    InputError
        If an input does not exist, is not a folder, raw exposure or association, or an
        association file cannot be parsed.
    """
    uncal: list[Path] = []
    asn_files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            uncal += sorted(path.rglob("*_uncal.fits"))
            asn_files += sorted(path.rglob("*_asn.json"))
        elif path.is_file() and path.name.endswith("_uncal.fits"):
            uncal.append(path)
        elif path.is_file() and path.suffix == ".json":
            asn_files.append(path)
        elif not path.exists():
            raise InputError(str(path), "", "no such file or folder")
        else:
            raise InputError(str(path), "", "not a folder, *_uncal.fits exposure or *_asn.json association")
    exposures: dict[str, Exposure] = {}
    for path in dict.fromkeys(p.resolve() for p in uncal):
        exp = read_exposure(path)
        if exp.root in exposures:
            log.warning("exposure %s found twice; using %s", exp.root, exposures[exp.root].path)
            continue
        exposures[exp.root] = exp
    given = [read_association(p) for p in dict.fromkeys(p.resolve() for p in asn_files)]
    for asn in given:
        if asn.source is not None:
            _add_members_next_to(asn, exposures)
    image2 = [a for a in given if a.asn_type == "image2"]
    image3 = [a for a in given if a.asn_type == "image3"]
    problems = [f"{a.source}: member {m}: no raw exposure {m}_uncal.fits found"
                for a in image2 + image3 for m in a.members if m not in exposures]
    if not image2:
        image2 = build_image2(exposures.values())
    else:
        covered = {m for a in image2 for m in a.members}
        image2 += build_image2(e for e in exposures.values() if e.root not in covered)
    if not image3:
        image3 = build_image3(exposures.values())
    for p in problems:
        log.warning("%s", p)
    return ProgramPlan(exposures, image2, image3, problems)


def read_exposure(path: Path) -> Exposure:
    """An exposure from its primary header; an unreadable file gives an Exposure whose
    ``error`` says why (its jobs fail, the rest of the program goes on)."""
    root = file_root(path.name)
    try:
        header = fits.getheader(path, 0)
    except (OSError, ValueError, TypeError) as exc:
        return Exposure(root, str(path), {}, f"PRIMARY header unreadable: {exc}")
    values = {k: header.get(k) for k in GROUP_KEYWORDS}
    missing = [k for k in ("PROGRAM", "OBSERVTN", "INSTRUME") if values[k] in (None, "")]
    error = f"PRIMARY header lacks {', '.join(missing)}" if missing else None
    return Exposure(root, str(path), values, error)


def read_association(path: Path) -> Association:
    """Parse an association JSON (``asn_type``, ``products[0].name``, science members)."""
    try:
        asn = json.loads(path.read_text())
        product = asn["products"][0]
        members = tuple(file_root(m["expname"]) for m in product["members"]
                        if m.get("exptype", "science") == "science")
        asn_type = str(asn.get("asn_type", "")).lower()
        name = str(product["name"])
        asn_id = str(asn.get("asn_id") or "a3001")
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise InputError(str(path), "products", f"not a readable association: {exc}") from exc
    if asn_type not in ("image2", "image3"):
        raise InputError(str(path), "asn_type", f"'{asn_type}' is not image2 or image3")
    return Association(asn_type, name, members, str(path), asn_id)


def _add_members_next_to(asn: Association, exposures: dict[str, Exposure]) -> None:
    """Pick up members' raw exposures lying next to the association file."""
    folder = Path(asn.source).parent
    for m in asn.members:
        candidate = folder / f"{m}_uncal.fits"
        if m not in exposures and candidate.is_file():
            exposures[m] = read_exposure(candidate.resolve())


def build_image2(exposures: Iterable[Exposure]) -> list[Association]:
    """One Image2 association per usable exposure (product = the exposure root)."""
    return [Association("image2", e.root, (e.root,)) for e in exposures if e.error is None]


def build_image3(exposures: Iterable[Exposure]) -> list[Association]:
    """Image3 associations grouping exposures whose :data:`GROUP_KEYWORDS` agree."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for e in exposures:
        if e.error is None:
            groups.setdefault(tuple(e.header.get(k) for k in GROUP_KEYWORDS), []).append(e.root)
    targets: dict[tuple[Any, ...], dict[Any, int]] = {}
    out = []
    for key, roots in groups.items():
        values = dict(zip(GROUP_KEYWORDS, key, strict=True))
        per_obs = targets.setdefault((values["PROGRAM"], values["OBSERVTN"]), {})
        target = per_obs.setdefault(values["TARGPROP"], len(per_obs) + 1)
        out.append(Association("image3", level3_name(values, target), tuple(sorted(roots))))
    return out


def level3_name(values: dict[str, Any], target: int) -> str:
    """The level-3 product name of a group of exposures."""
    optical = "-".join(str(values[k]).lower() for k in ("PUPIL", "FILTER") if values.get(k) not in (None, "", "N/A"))
    name = (f"jw{str(values['PROGRAM']).zfill(5)}-o{str(values['OBSERVTN']).zfill(3)}_t{target:03d}_"
            f"{str(values['INSTRUME']).lower()}")
    if optical:
        name += f"_{optical}"
    subarray = values.get("SUBARRAY")
    if subarray not in (None, "", "FULL", "N/A"):
        name += f"-{str(subarray).lower()}"
    return name


def association_json(asn: Association, members: dict[str, str], program: str = "") -> dict[str, Any]:
    """The association file content with members as product paths (``{root: path}``)."""
    return {"asn_type": asn.asn_type, "asn_rule": f"jwdask_{asn.asn_type}", "asn_id": asn.asn_id,
            "program": program, "code_version": "jwdask",
            "products": [{"name": asn.product, "members": [
                {"expname": members[m], "exptype": "science"} for m in asn.members if m in members]}]}
