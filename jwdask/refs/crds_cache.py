"""An offline CRDS cache: write one from reference files, and run ``crds`` against it.

``write_crds_cache`` lays out formats.md §4.5: ``mappings/jwst/`` with a ``.pmap`` context,
one ``.imap`` per instrument and one ``.rmap`` per (instrument, reftype) whose ``Match``
keys are the files' selector values (``selectors.selector_keys``) and whose ``UseAfter``
dates are their ``USEAFTER``; the files under ``references/jwst/<instrument>/``; and
``config/jwst/server_config`` + ``ref_cache_subdir_mode``. Mapping checksums are real
``sha1sum`` lines, so the cache also works without ``CRDS_IGNORE_MAPPING_CHECKSUM``.

``crds_environment`` points the ``crds`` client (and jwst) at such a cache in serverless,
read-only mode for the duration of a ``with`` block, then restores the environment.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
import pprint
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from jwdask.refs.readers import header_of
from jwdask.refs.selectors import Candidate, crds_name, selector_keys

log = logging.getLogger(__name__)

SERVERLESS_URL = "https://jwst-serverless-mode.stsci.edu"
DERIVED_FROM = "jwdask.refs.write_crds_cache"
DATE_PARKEY = ("META.OBSERVATION.DATE", "META.OBSERVATION.TIME")
CRDS_NAME = re.compile(r"^jwst_[a-z]+_[a-z0-9-]+_\d{4}\.(fits|asdf)$")


def _crds_environ(cache_root: str | Path, context: str | None) -> dict[str, str | None]:
    return {
        "CRDS_PATH": str(Path(cache_root).resolve()),
        "CRDS_SERVER_URL": SERVERLESS_URL,
        "CRDS_CONTEXT": context,
        "CRDS_MODE": "local",
        "CRDS_READONLY_CACHE": "1",
        "CRDS_OBSERVATORY": "jwst",
        "CRDS_CONFIG_URI": "none",
        "CRDS_MAPPING_URI": "none",
        "CRDS_REFERENCE_URI": "none",
        "CRDS_PICKLE_URI": "none",
    }


def _clear_crds_caches() -> None:
    """Forget mappings and processing modes ``crds`` memoised for another cache."""
    from crds.core import utils

    utils.clear_function_caches()


@contextlib.contextmanager
def crds_environment(cache_root: str | Path, context: str | None = None) -> Iterator[Path]:
    """Run ``crds`` (and jwst) offline against the cache at ``cache_root``.

    Sets ``CRDS_PATH``, ``CRDS_SERVER_URL`` (the serverless URL: no network calls),
    ``CRDS_CONTEXT`` (if given), ``CRDS_MODE=local``, ``CRDS_READONLY_CACHE=1`` and
    ``CRDS_OBSERVATORY=jwst``, sets the ``CRDS_*_URI`` download sources to ``none``, clears ``crds``'s memoised
    mappings, and restores all of it on exit.

    Parameters
    ----------
    cache_root : str or Path
        The cache (``CRDS_PATH``).
    context : str, optional
        A ``jwst_NNNN.pmap`` in ``mappings/jwst``; default: ``operational_context`` of
        ``config/jwst/server_config``.

    Yields
    ------
    Path
        The resolved cache root.
    """
    wanted = _crds_environ(cache_root, context)
    saved = {k: os.environ.get(k) for k in wanted}
    for key, value in wanted.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _clear_crds_caches()
    try:
        yield Path(wanted["CRDS_PATH"])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _clear_crds_caches()


def _sha1_of_mapping(text: str) -> str:
    """The CRDS mapping checksum: sha1 of the text without its ``sha1sum`` line."""
    body = "".join(line for line in text.splitlines(keepends=True) if "sha1sum" not in line)
    return hashlib.sha1(body.encode("utf-8")).hexdigest()


def _write_mapping(path: Path, header: dict[str, Any], selector: str, comment: str = "") -> None:
    lines = ["header = {"]
    for key in sorted({**header, "sha1sum": ""}):
        value = header.get(key, "")
        lines.append(f"    {key!r} : {value!r},")
    lines.append("}")
    if comment:
        lines.append(f'\ncomment = """\n{comment}\n"""')
    lines.append(f"\nselector = {selector}\n")
    text = "\n".join(lines)
    text = text.replace("'sha1sum' : '',", f"'sha1sum' : {_sha1_of_mapping(text)!r},")
    path.write_text(text)


def _match_value(candidate: Candidate, keyword: str) -> str:
    """A file's rmap Match value for one selector: ``'A|B'`` (conditioned) or ``'N/A'``."""
    values = candidate.pattern(keyword)
    return "N/A" if values is None else "|".join(values)


def _rmap_selector(entries: list[tuple[tuple[str, ...], str, str]], match: bool) -> str:
    """``Match({key: UseAfter({date: name})})`` text, or a bare ``UseAfter`` without keys."""
    groups: dict[tuple[str, ...], dict[str, str]] = {}
    for key, date, name in entries:
        dates = groups.setdefault(key, {})
        if date in dates:
            log.warning("CRDS cache: %s replaces %s for %s %s", name, dates[date], key, date)
        dates[date] = name

    def use_after(dates: dict[str, str], indent: str) -> str:
        rows = "".join(f"{indent}    {d!r} : {n!r},\n" for d, n in sorted(dates.items()))
        return "UseAfter({\n" + rows + indent + "})"

    if not match:
        return use_after(groups.get((), {}), "")
    rows = []
    for key, dates in sorted(groups.items()):
        rows.append(f"    {key!r} : {use_after(dates, '    ')},\n")
    return "Match({\n" + "".join(rows) + "})"


def write_crds_cache(files: Iterable[str | Path], cache_root: str | Path,
                     context: str = "jwst_9001.pmap",
                     not_applicable: Mapping[str, Iterable[str]] | None = None) -> Path:
    """Build an offline CRDS cache holding ``files``, selectable by their headers.

    Parameters
    ----------
    files : iterable of str or Path
        FITS or ASDF references with the standard header (``INSTRUME``, ``REFTYPE``,
        ``USEAFTER``, selector keywords or ``P_*`` patterns). Files not already named
        ``jwst_<instr>_<reftype>_NNNN.<ext>`` are renamed so when copied.
    cache_root : str or Path
        Directory to create (``CRDS_PATH``); existing content is kept.
    context : str
        Name of the context ``jwst_NNNN.pmap``; ``NNNN`` also numbers the imaps and rmaps.
    not_applicable : mapping of str to iterable of str, optional
        ``{instrument: [reftype, ...]}`` mapped to ``'N/A'`` in the imap (CRDS then answers
        "NOT FOUND n/a", jwst skips the step, ``RefProvider.path`` returns ``None``).

    Returns
    -------
    Path
        ``cache_root``. Use it with ``crds_environment(cache_root, context)``.
    """
    found = re.fullmatch(r"jwst_(\d{4})\.pmap", context)
    if found is None:
        msg = f"context must be named jwst_NNNN.pmap, got {context!r}"
        raise ValueError(msg)
    serial = found.group(1)
    root = Path(cache_root)
    maps = root / "mappings" / "jwst"
    cfg = root / "config" / "jwst"
    maps.mkdir(parents=True, exist_ok=True)
    cfg.mkdir(parents=True, exist_ok=True)

    rmaps: dict[tuple[str, str], list[tuple[tuple[str, ...], str, str]]] = {}
    counters: dict[tuple[str, str], int] = {}
    extensions: dict[tuple[str, str], str] = {}
    for source in map(Path, files):
        header = header_of(source)
        instrument = str(header["INSTRUME"]).strip().lower()
        reftype = str(header["REFTYPE"]).strip().lower()
        name = source.name
        if not CRDS_NAME.match(name):
            counters[(instrument, reftype)] = counters.get((instrument, reftype), 0) + 1
            name = f"jwst_{instrument}_{reftype}_{counters[(instrument, reftype)]:04d}{source.suffix}"
        target = root / "references" / "jwst" / instrument / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        candidate = Candidate(str(target), header)
        key = tuple(_match_value(candidate, k) for k in selector_keys(reftype, instrument))
        date = candidate.useafter.strftime("%Y-%m-%d %H:%M:%S")
        rmaps.setdefault((instrument, reftype), []).append((key, date, name))
        extensions[(instrument, reftype)] = source.suffix
        log.debug("CRDS cache: %s as %s key=%s useafter=%s", source, name, key, date)

    imaps: dict[str, dict[str, str]] = {}
    for (instrument, reftype), entries in sorted(rmaps.items()):
        keys = selector_keys(reftype, instrument)
        rmap_name = f"jwst_{instrument}_{reftype}_{serial}.rmap"
        match = bool(keys)
        parkey = (tuple(crds_name(k) for k in keys), DATE_PARKEY) if match else (DATE_PARKEY,)
        header = {
            "classes": ("Match", "UseAfter") if match else ("UseAfter",),
            "derived_from": DERIVED_FROM,
            "file_ext": extensions[(instrument, reftype)],
            "filekind": reftype.upper(),
            "filetype": reftype.upper(),
            "instrument": instrument.upper(),
            "mapping": "REFERENCE",
            "name": rmap_name,
            "observatory": "JWST",
            "parkey": parkey,
            "suffix": reftype,
        }
        _write_mapping(maps / rmap_name, header, _rmap_selector(entries, match))
        imaps.setdefault(instrument, {})[reftype.upper()] = rmap_name

    for instrument, reftypes in (not_applicable or {}).items():
        table = imaps.setdefault(instrument.lower(), {})
        for reftype in reftypes:
            table.setdefault(reftype.upper(), "N/A")

    pmap_selector: dict[str, str] = {}
    for instrument, table in sorted(imaps.items()):
        imap_name = f"jwst_{instrument}_{serial}.imap"
        header = {"derived_from": DERIVED_FROM, "instrument": instrument.upper(), "mapping": "INSTRUMENT",
                  "name": imap_name, "observatory": "JWST", "parkey": ("REFTYPE",)}
        _write_mapping(maps / imap_name, header, pprint.pformat(table))
        pmap_selector[instrument.upper()] = imap_name
    header = {"derived_from": DERIVED_FROM, "mapping": "PIPELINE", "name": context, "observatory": "JWST",
              "parkey": ("META.INSTRUMENT.NAME",)}
    _write_mapping(maps / context, header, pprint.pformat(pmap_selector))

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    server_config = {
        "observatory": "jwst", "operational_context": context, "edit_context": context,
        "versions_context": context, "bad_files": "", "bad_files_list": [],
        "force_remote_mode": False, "last_synced": now, "crds_version": {},
        "reference_url": {}, "mapping_url": {}, "download_metadata_chunks": 50,
    }
    (cfg / "server_config").write_text(pprint.pformat(server_config))
    (cfg / "ref_cache_subdir_mode").write_text("instrument")
    (cfg / "bad_files.txt").write_text("")
    log.info("CRDS cache %s: context %s, %d rmaps", root, context, len(rmaps))
    return root
