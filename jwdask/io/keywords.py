"""The one FITS keyword <-> metadata path table, used by every reader and writer.

``ds.attrs["meta"]`` is a nested, JSON-serialisable dict whose paths are those of the jwst
datamodel schemas without the leading ``meta.`` (``meta["exposure"]["ngroups"]`` is
``NGROUPS`` in PRIMARY, ``meta["wcsinfo"]["ra_ref"]`` is ``RA_REF`` in SCI). Keywords the
table does not know are kept verbatim under ``meta["extra_fits"][<HDU>]`` so that nothing
is lost between products.

The table ``keywords.tsv`` lists every ``fits_keyword`` of the stdatamodels 6 schemas of
Level1bModel, RampModel, ImageModel, CubeModel and SegmentationMapModel; regenerate it with
``python -m jwdask.io.keywords`` (needs the ``reference`` extra) and check it with the test
``tests/io/test_keywords.py``.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astropy.io import fits

TABLE_PATH = Path(__file__).with_name("keywords.tsv")
SCHEMA_MODELS = ("Level1bModel", "RampModel", "ImageModel", "CubeModel", "SegmentationMapModel")

# Structural keywords astropy writes itself; they never enter ``meta``.
STRUCTURAL = frozenset({
    "SIMPLE", "BITPIX", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", "TFIELDS", "EXTNAME",
    "EXTVER", "BZERO", "BSCALE", "CHECKSUM", "DATASUM", "COMMENT", "HISTORY", "",
})


@dataclass(frozen=True)
class Keyword:
    """One FITS keyword of a JWST product.

    Attributes
    ----------
    hdu : str
        EXTNAME of the HDU that holds it (``PRIMARY``, ``SCI``, ``ERR``...).
    name : str
        The FITS keyword.
    path : tuple of str
        Its place in ``meta`` (``("exposure", "ngroups")``).
    type : str
        JSON-schema type: ``string``, ``number``, ``integer`` or ``boolean``.
    """

    hdu: str
    name: str
    path: tuple[str, ...]
    type: str

    def coerce(self, value: Any) -> Any:
        """Convert a header value to the schema type (FITS stores 1 for 1.0, T for true)."""
        if value is None or isinstance(value, fits.card.Undefined):
            return None
        if self.type == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if self.type == "integer" and isinstance(value, float) and value.is_integer():
            return int(value)
        if self.type == "string" and not isinstance(value, str):
            return str(value)
        return value


@functools.cache
def table() -> tuple[Keyword, ...]:
    """All known keywords, in schema order."""
    with TABLE_PATH.open(newline="") as f:
        rows = csv.DictReader(f, delimiter="\t")
        return tuple(
            Keyword(r["hdu"], r["keyword"], tuple(r["path"].split(".")), r["type"]) for r in rows
        )


@functools.cache
def by_hdu() -> dict[str, dict[str, Keyword]]:
    """``{hdu: {keyword: Keyword}}``."""
    out: dict[str, dict[str, Keyword]] = {}
    for kw in table():
        out.setdefault(kw.hdu, {})[kw.name] = kw
    return out


@functools.cache
def by_path() -> dict[tuple[str, ...], Keyword]:
    """``{path: Keyword}``."""
    return {kw.path: kw for kw in table()}


def get(meta: Mapping[str, Any], path: str | Iterable[str], default: Any = None) -> Any:
    """Value at a dotted path (``"exposure.ngroups"``) of a nested meta dict, or ``default``."""
    node: Any = meta
    for part in path.split(".") if isinstance(path, str) else path:
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def put(meta: dict[str, Any], path: str | Iterable[str], value: Any) -> None:
    """Set a dotted path of a nested meta dict in place, creating the levels it needs."""
    parts = path.split(".") if isinstance(path, str) else list(path)
    node = meta
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def header_to_meta(header: fits.Header, hdu: str, meta: dict[str, Any]) -> None:
    """Merge one HDU's header into ``meta``: known keywords at their schema paths, the rest
    under ``meta["extra_fits"][hdu]``."""
    known = by_hdu().get(hdu, {})
    extra: dict[str, Any] = {}
    for card in header.cards:
        key = card.keyword
        if key in STRUCTURAL or key.startswith(("NAXIS", "TTYPE", "TFORM", "TUNIT", "TDIM", "TNULL", "TSCAL", "TZERO")):
            continue
        if key in known:
            value = known[key].coerce(card.value)
            if value is not None:
                put(meta, known[key].path, value)
        elif not isinstance(card.value, fits.card.Undefined):
            extra[key] = card.value
    if extra:
        meta.setdefault("extra_fits", {}).setdefault(hdu, {}).update(extra)


def meta_to_cards(meta: Mapping[str, Any], hdu: str) -> Iterator[tuple[str, Any]]:
    """``(keyword, value)`` pairs of ``meta`` that belong in ``hdu``, schema keywords first,
    then that HDU's ``extra_fits``."""
    for name, kw in by_hdu().get(hdu, {}).items():
        value = get(meta, kw.path)
        if value is not None and not isinstance(value, Mapping):
            yield name, value
    yield from get(meta, ("extra_fits", hdu), {}).items()


def regenerate() -> None:
    """Rewrite ``keywords.tsv`` from the installed stdatamodels schemas."""
    from stdatamodels.jwst import datamodels

    found: dict[tuple[str, str], tuple[str, str]] = {}

    def walk(node: Any, path: list[str]) -> None:
        if not isinstance(node, dict):
            return
        if "fits_keyword" in node and "[]" not in path:
            key = (node.get("fits_hdu", "PRIMARY"), node["fits_keyword"])
            found.setdefault(key, (".".join(path), node.get("type", "string")))
        for name, child in node.get("properties", {}).items():
            walk(child, [*path, name])
        for combo in ("allOf", "anyOf", "oneOf"):
            for child in node.get(combo, []):
                walk(child, path)
        if isinstance(node.get("items"), dict):
            walk(node["items"], [*path, "[]"])

    for name in SCHEMA_MODELS:
        walk(getattr(datamodels, name)().schema, [])
    with TABLE_PATH.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["hdu", "keyword", "path", "type"])
        for (hdu, key), (path, typ) in found.items():
            if path.startswith("meta."):
                writer.writerow([hdu, key, path[len("meta."):], typ if isinstance(typ, str) else typ[0]])


if __name__ == "__main__":
    regenerate()
