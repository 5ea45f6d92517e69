"""``RefProvider``: resolve a reference type for an exposure to a file, and open it.

Resolution order (architecture.md §4): explicit override (a path or ``'N/A'``) → a local
directory of CRDS-format files chosen by their header selectors (``selectors``) → an offline
CRDS cache through the ``crds`` client (``crds_cache``). Resolutions are cached per
(reftype, selector values), so resolving while building a graph is cheap.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from astropy.table import Table

from jwdask.errors import ReferenceFileError
from jwdask.io import keywords
from jwdask.refs import readers
from jwdask.refs.crds_cache import crds_environment
from jwdask.refs.selectors import Candidate, choose, condition, describe, exposure_values, observation_time

log = logging.getLogger(__name__)

NOT_APPLICABLE = "N/A"


@dataclass(frozen=True)
class Resolution:
    """Where a reference came from.

    Attributes
    ----------
    path : str or None
        Absolute path of the file; ``None`` for ``N/A``.
    source : str
        ``override``, ``directory`` or ``crds``.
    """

    path: str | None
    source: str


def _meta_params(meta: Mapping[str, Any], prefix: str = "META") -> dict[str, str]:
    """Flat ``{'META.A.B': 'value'}`` CRDS parameters of every scalar in ``meta``."""
    out: dict[str, str] = {}
    for key, value in meta.items():
        name = f"{prefix}.{str(key).upper()}"
        if isinstance(value, Mapping):
            out.update(_meta_params(value, name))
        elif isinstance(value, (str, int, float, bool, np.generic)):
            out[name] = str(value)
    return out


class RefProvider:
    """Resolves and opens CRDS reference files for exposures.

    Parameters
    ----------
    overrides : mapping of str to str, optional
        ``{reftype: path or 'N/A'}``; an override always wins.
    refs_dir : str or Path, optional
        Directory (searched recursively) of CRDS-format ``.fits``/``.asdf`` references.
    crds_cache : str or Path, optional
        Offline CRDS cache root; default ``$CRDS_PATH`` if set, else no CRDS lookups.
    crds_context : str, optional
        ``jwst_NNNN.pmap`` to pin; default the cache's ``operational_context``.
    """

    def __init__(self, overrides: Mapping[str, str] | None = None, refs_dir: str | Path | None = None,
                 crds_cache: str | Path | None = None, crds_context: str | None = None) -> None:
        self.overrides = {k.lower(): str(v) for k, v in (overrides or {}).items()}
        self.refs_dir = Path(refs_dir) if refs_dir else None
        cache = crds_cache or os.environ.get("CRDS_PATH")
        self.crds_cache = Path(cache) if cache else None
        self.crds_context = crds_context or (os.environ.get("CRDS_CONTEXT") if not crds_cache else None)
        self._index: list[Candidate] | None = None
        self._resolved: dict[tuple[Any, ...], Resolution] = {}

    def __repr__(self) -> str:
        return (f"RefProvider(overrides={self.overrides!r}, refs_dir={self.refs_dir!r}, "
                f"crds_cache={self.crds_cache!r}, crds_context={self.crds_context!r})")

    def path(self, reftype: str, meta: Mapping[str, Any]) -> str | None:
        """The file of ``reftype`` for the exposure described by ``meta``.

        Parameters
        ----------
        reftype : str
            CRDS reference type (``dark``, ``gain``...).
        meta : mapping
            The exposure's nested metadata.

        Returns
        -------
        str or None
            Absolute path, or ``None`` for ``N/A`` (the step skips itself).

        Raises
        ------
        ReferenceFileError
            If nothing matches, or an override does not fit the exposure.
        """
        return self.resolve(reftype, meta).path

    def record(self, reftype: str, meta: Mapping[str, Any]) -> str:
        """What a product records in ``R_<TYPE>``: ``crds://<name>`` for CRDS files, the
        absolute path for overrides and directory files, ``'N/A'`` for none."""
        found = self.resolve(reftype, meta)
        if found.path is None:
            return NOT_APPLICABLE
        if found.source == "crds":
            return "crds://" + Path(found.path).name
        return found.path

    def open(self, reftype: str, meta: Mapping[str, Any], *, tile: tuple[int, int] = (512, 512)) -> xr.Dataset:
        """The FITS image reference as a lazy Dataset with full-frame ``y``/``x`` coordinates.

        See ``readers.open_image`` for the layout. Raises ``ReferenceFileError`` if the
        reference is ``N/A`` or cannot be read.
        """
        return readers.open_image(reftype, self._require(reftype, meta), tile=tile)

    def open_table(self, reftype: str, meta: Mapping[str, Any], extname: str) -> Table:
        """The binary table ``extname`` (``PHOTOM``, ``APCORR``...) of a FITS reference."""
        return readers.open_table(reftype, self._require(reftype, meta), extname)

    def open_asdf(self, reftype: str, meta: Mapping[str, Any]) -> dict[str, Any]:
        """The tree of an ASDF reference (``distortion``, ``filteroffset``, ``abvegaoffset``)."""
        return readers.open_asdf(reftype, self._require(reftype, meta))

    def _require(self, reftype: str, meta: Mapping[str, Any]) -> str:
        path = self.path(reftype, meta)
        if path is None:
            values = describe(exposure_values(reftype, meta))
            raise ReferenceFileError(reftype, f"is N/A for {values}; nothing to open")
        return path

    def resolve(self, reftype: str, meta: Mapping[str, Any]) -> Resolution:
        """Resolve ``reftype`` for ``meta`` (cached per reftype and selector values).

        Returns
        -------
        Resolution
            The path (``None`` for N/A) and where it came from.
        """
        reftype = reftype.lower()
        values = exposure_values(reftype, meta)
        key = (reftype, tuple((k, str(v)) for k, v in values.items()), exposure_window(meta))
        if key not in self._resolved:
            found = self._resolve(reftype, meta, values)
            log.info("reference %s -> %s (%s)", reftype, found.path or NOT_APPLICABLE, found.source)
            self._resolved[key] = found
        return self._resolved[key]

    def _resolve(self, reftype: str, meta: Mapping[str, Any], values: dict[str, Any]) -> Resolution:
        if reftype in self.overrides:
            return self._override(reftype, values)
        if self.refs_dir is not None:
            found = self._from_directory(reftype, meta, values)
            if found is not None:
                return found
        if self.crds_cache is not None:
            return self._from_crds(reftype, meta, values)
        where = f"no file in {self.refs_dir}/" if self.refs_dir else "no override, reference directory or CRDS cache"
        raise ReferenceFileError(reftype, f"{where} matches {describe(values)}")

    def _override(self, reftype: str, values: dict[str, Any]) -> Resolution:
        value = self.overrides[reftype]
        if value.strip().upper() == NOT_APPLICABLE:
            return Resolution(None, "override")
        path = Path(value).expanduser().resolve()
        try:
            candidate = Candidate(str(path), readers.header_of(path))
        except FileNotFoundError as exc:
            raise ReferenceFileError(reftype, f"override {path}: no such file") from exc
        except (OSError, ValueError) as exc:
            raise ReferenceFileError(reftype, f"override {path}: {exc}") from exc
        wanted = {"REFTYPE": reftype, "INSTRUME": values.get("INSTRUME")}
        if "DETECTOR" in values:
            wanted["DETECTOR"] = values["DETECTOR"]
        for keyword, expected in wanted.items():
            accepted = candidate.pattern(keyword)
            if expected is None or accepted is None or "*" in accepted or condition(expected) in accepted:
                continue
            msg = (f"override {path} has {keyword}={'|'.join(accepted)}, exposure has "
                   f"{keyword}={condition(expected)} ({describe(values)})")
            raise ReferenceFileError(reftype, msg)
        return Resolution(str(path), "override")

    def _directory_index(self) -> list[Candidate]:
        if self._index is None:
            index = []
            folder = Path(str(self.refs_dir))
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() not in (".fits", ".asdf") or not path.is_file():
                    continue
                try:
                    index.append(Candidate(str(path.resolve()), readers.header_of(path)))
                except (OSError, ValueError) as exc:
                    log.warning("reference directory: skipping %s (%s)", path, exc)
            self._index = index
            log.debug("reference directory %s: %d files", folder, len(index))
        return self._index

    def _from_directory(self, reftype: str, meta: Mapping[str, Any], values: dict[str, Any]) -> Resolution | None:
        window = exposure_window(meta)
        candidates = [_covering_as_generic(c, values, window) for c in self._directory_index()]
        when = observation_time(meta) or datetime.max
        choice = choose(candidates, reftype, values, when)
        if choice.candidate is not None:
            return Resolution(choice.candidate.path, "directory")
        if choice.reason.startswith("ambiguous"):
            raise ReferenceFileError(reftype, f"in {self.refs_dir}/ {choice.reason} ({describe(values)})")
        log.debug("reference directory %s: no %s for %s %s", self.refs_dir, reftype, describe(values), choice.reason)
        return None

    def _from_crds(self, reftype: str, meta: Mapping[str, Any], values: dict[str, Any]) -> Resolution:
        import crds

        params = _meta_params(meta)
        params.setdefault("META.OBSERVATION.TIME", "00:00:00")
        try:
            with crds_environment(Path(str(self.crds_cache)), self.crds_context):
                best = crds.getrecommendations(params, reftypes=[reftype], observatory="jwst",
                                               context=self.crds_context)
                name = best.get(reftype, "")
                if name.upper().startswith("NOT FOUND"):
                    if "n/a" in name.lower():
                        return Resolution(None, "crds")
                    raise ReferenceFileError(reftype, f"CRDS cache {self.crds_cache}: {name} for {describe(values)}")
                path = crds.locate_file(name, observatory="jwst")
        except ReferenceFileError:
            raise
        except Exception as exc:
            msg = f"CRDS cache {self.crds_cache} has no match for {describe(values)} ({exc})"
            raise ReferenceFileError(reftype, msg) from exc
        if not Path(path).exists():
            msg = (f"the CRDS rules select {name} for {describe(values)}, but {path} is not in the "
                   f"offline cache {self.crds_cache} (run `crds sync --files {name}` where the "
                   "network is reachable)")
            raise ReferenceFileError(reftype, msg)
        return Resolution(str(Path(path).resolve()), "crds")


@dataclass(frozen=True)
class Window:
    """A detector window: 1-based ``SUBSTRT1/2`` corner and ``SUBSIZE1/2`` size."""

    xstart: int
    ystart: int
    xsize: int
    ysize: int

    def covers(self, other: Window) -> bool:
        """Whether ``other`` lies inside this window."""
        return (self.xstart <= other.xstart and self.ystart <= other.ystart
                and other.xstart + other.xsize <= self.xstart + self.xsize
                and other.ystart + other.ysize <= self.ystart + self.ysize)


def exposure_window(meta: Mapping[str, Any]) -> Window | None:
    """The exposure's window from ``meta["subarray"]``, or ``None`` if incomplete."""
    parts = [keywords.get(meta, f"subarray.{k}") for k in ("xstart", "ystart", "xsize", "ysize")]
    if any(p is None for p in parts):
        return None
    return Window(*(int(p) for p in parts))


def file_window(header: Mapping[str, Any]) -> Window | None:
    """A reference's window: its SUBSTRT/SUBSIZE keywords; full frame when it has none and
    its SUBARRAY is absent, FULL or GENERIC; else ``None``."""
    parts = [header.get(k) for k in ("SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2")]
    if all(p is not None for p in parts):
        return Window(*(int(p) for p in parts))
    if condition(header.get("SUBARRAY", "FULL")) in ("FULL", "GENERIC", "N/A", "*"):
        ny, nx = readers.full_frame(str(header.get("INSTRUME", "")))
        return Window(1, 1, nx, ny)
    return None


def _covering_as_generic(candidate: Candidate, values: Mapping[str, Any], window: Window | None) -> Candidate:
    """A file whose SUBARRAY names another subarray but whose window covers the exposure's
    becomes a SUBARRAY "don't care" candidate: it fits, below a file naming the exposure's
    subarray (which gains one more matched keyword)."""
    if "SUBARRAY" not in values or window is None:
        return candidate
    accepted = candidate.pattern("SUBARRAY")
    if accepted is None or "*" in accepted or condition(values["SUBARRAY"]) in accepted:
        return candidate
    ref = file_window(candidate.values)
    if ref is None or not ref.covers(window):
        return candidate
    patched = {k: v for k, v in candidate.values.items() if k not in ("SUBARRAY", "P_SUBARR")}
    return replace(candidate, values={**patched, "SUBARRAY": "N/A"})
