"""Which header keywords select a reference file, and how a file's values match an exposure.

The table ``SELECTORS`` gives, per reference type and instrument, the mode keywords CRDS
selects on besides ``INSTRUME`` and the USEAFTER date (``DATE-OBS``/``TIME-OBS``), as listed in
the jwst documentation ``references_general/<reftype>_selection.inc`` and formats.md §4.2/§4.3.
The same table gives the ``parkey`` of the rmaps that :func:`jwdask.refs.write_crds_cache`
writes, so a local folder and an offline CRDS cache built from it select the same files.

Matching follows the CRDS ``Match`` selector (``crds/core/selectors.py``): values are
conditioned (upper case, numbers as floats, ``ANY`` -> ``*``); a file value is a ``|``-separated
list of globs, taken from the ``P_*`` pattern keyword when the file has one; ``N/A`` (and
``GENERIC`` for ``SUBARRAY``) or a missing keyword means "don't care"; every matched keyword
adds one to a file's weight. Among the matching files of the highest weight, the one with the
latest ``USEAFTER`` not later than the exposure's ``DATE-OBS TIME-OBS`` wins; if none of them
is old enough, the next weight is tried.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jwdask.io import keywords

log = logging.getLogger(__name__)

DEFAULT_INSTRUMENT = "*"
"""Key of the row of ``SELECTORS`` that applies to instruments not listed explicitly."""

SELECTORS: dict[str, dict[str, tuple[str, ...]]] = {
    "mask": {"FGS": ("DETECTOR", "SUBARRAY", "EXP_TYPE"), "NIRSPEC": ("DETECTOR", "SUBARRAY", "READPATT"),
             "*": ("DETECTOR", "SUBARRAY")},
    "saturation": {"NIRSPEC": ("DETECTOR", "SUBARRAY"), "*": ("DETECTOR",)},
    "superbias": {"NIRSPEC": ("DETECTOR", "READPATT", "SUBARRAY", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2"),
                  "*": ("DETECTOR", "READPATT", "SUBARRAY")},
    "refpix": {"*": ("DETECTOR", "READPATT")},
    "sirskernel": {"*": ()},
    "linearity": {"MIRI": ("DETECTOR", "SUBARRAY", "BAND", "FILTER"), "*": ("DETECTOR", "SUBARRAY")},
    "dark": {"NIRCAM": ("DETECTOR", "EXP_TYPE", "NOUTPUTS", "SUBARRAY"),
             "NIRSPEC": ("DETECTOR", "READPATT", "SUBARRAY", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2"),
             "*": ("DETECTOR", "READPATT", "SUBARRAY")},
    "gain": {"*": ("DETECTOR", "SUBARRAY")},
    "readnoise": {"*": ("DETECTOR", "READPATT", "SUBARRAY")},
    "ipc": {"*": ("DETECTOR",)},
    "persat": {"*": ("DETECTOR",)},
    "trapdensity": {"*": ("DETECTOR",)},
    "trappars": {"*": ("DETECTOR",)},
    "flat": {"FGS": ("DETECTOR", "EXP_TYPE"), "MIRI": ("DETECTOR", "FILTER", "BAND", "READPATT", "SUBARRAY"),
             "NIRSPEC": ("DETECTOR", "FILTER", "GRATING", "EXP_TYPE"), "*": ("DETECTOR", "FILTER", "PUPIL")},
    "photom": {"MIRI": ("DETECTOR", "BAND"), "NIRSPEC": ("EXP_TYPE",), "*": ("DETECTOR",)},
    "area": {"FGS": ("DETECTOR",), "MIRI": ("DETECTOR", "FILTER", "EXP_TYPE"),
             "NIRSPEC": ("DETECTOR", "FILTER", "GRATING", "EXP_TYPE"), "*": ("DETECTOR", "FILTER", "PUPIL", "EXP_TYPE")},
    "apcorr": {"*": ("EXP_TYPE",)},
    "abvegaoffset": {"*": ("EXP_TYPE",)},
    "distortion": {"FGS": ("DETECTOR", "EXP_TYPE"), "MIRI": ("DETECTOR", "EXP_TYPE", "CHANNEL", "BAND"),
                   "NIRISS": ("EXP_TYPE", "PUPIL"), "*": ("DETECTOR", "EXP_TYPE", "CHANNEL", "FILTER", "PUPIL")},
    "filteroffset": {"NIRCAM": ("CHANNEL", "MODULE"), "MIRI": ("DETECTOR", "EXP_TYPE"), "*": ("EXP_TYPE",)},
    "bkg": {"*": ("EXP_TYPE", "DETECTOR", "FILTER", "PUPIL")},
}
"""``{reftype: {INSTRUME or "*": mode keywords}}``; ``INSTRUME`` and the USEAFTER date always
select too. Reference types not listed select on ``DETECTOR`` only."""

FALLBACK_KEYS: tuple[str, ...] = ("DETECTOR",)
"""Mode keywords of reference types missing from ``SELECTORS``."""

PATTERN_KEYWORDS: dict[str, str] = {
    "DETECTOR": "P_DETECT", "FILTER": "P_FILTER", "PUPIL": "P_PUPIL", "CHANNEL": "P_CHANNE",
    "BAND": "P_BAND", "GRATING": "P_GRATIN", "READPATT": "P_READPA", "SUBARRAY": "P_SUBARR",
    "EXP_TYPE": "P_EXP_TY", "MODULE": "P_MODULE", "NOUTPUTS": "P_NOUTPU",
}
"""The ``P_*`` keyword of a reference file that lists several values of a selector."""

PATTERN_PATHS: dict[str, tuple[str, ...]] = {
    "P_DETECT": ("instrument", "p_detector"), "P_FILTER": ("instrument", "p_filter"),
    "P_PUPIL": ("instrument", "p_pupil"), "P_CHANNE": ("instrument", "p_channel"),
    "P_BAND": ("instrument", "p_band"), "P_GRATIN": ("instrument", "p_grating"),
    "P_READPA": ("exposure", "p_readpatt"), "P_SUBARR": ("subarray", "p_subarray"),
    "P_EXP_TY": ("exposure", "p_exptype"), "P_MODULE": ("instrument", "p_module"),
    "P_NOUTPU": ("exposure", "p_noutputs"),
}
"""Where ASDF references (and the referencefile schemas) keep the ``P_*`` patterns."""

REFERENCE_PATHS: dict[str, tuple[str, ...]] = {
    "REFTYPE": ("reftype",), "USEAFTER": ("useafter",), "PEDIGREE": ("pedigree",),
    "AUTHOR": ("author",), "DESCRIP": ("description",), "DATAMODL": ("model_type",),
    "TELESCOP": ("telescope",),
}
"""Standard reference-file keywords (``SCH/referencefile.schema.yaml``) and their meta paths."""

DATE_KEYS = ("DATE-OBS", "TIME-OBS")
DONT_CARE = frozenset({"N/A", "GENERIC"})
UNDEFINED = "UNDEFINED"
EARLIEST = datetime(1900, 1, 1)
"""USEAFTER assumed for a file that has none: it applies to every exposure."""


def meta_path(keyword: str) -> tuple[str, ...]:
    """The meta path of a PRIMARY keyword (``"READPATT"`` -> ``("exposure", "readpatt")``)."""
    if keyword in REFERENCE_PATHS:
        return REFERENCE_PATHS[keyword]
    if keyword in PATTERN_PATHS:
        return PATTERN_PATHS[keyword]
    known = keywords.by_hdu()["PRIMARY"]
    if keyword not in known:
        msg = f"{keyword} is not a PRIMARY keyword of the jwst schemas"
        raise KeyError(msg)
    return known[keyword].path


def crds_name(keyword: str) -> str:
    """The CRDS parameter name of a keyword (``"READPATT"`` -> ``"META.EXPOSURE.READPATT"``)."""
    return "META." + ".".join(meta_path(keyword)).upper()


def pattern_keyword(keyword: str) -> str:
    """The ``P_*`` keyword that lists several values of ``keyword``."""
    return PATTERN_KEYWORDS.get(keyword, "P_" + keyword.replace("-", "")[:6])


def selector_keys(reftype: str, instrument: str | None) -> tuple[str, ...]:
    """Mode keywords that select a ``reftype`` reference of ``instrument``.

    Parameters
    ----------
    reftype : str
        CRDS reference type, any case (``"dark"``).
    instrument : str or None
        ``INSTRUME`` of the exposure (``"NIRCAM"``).

    Returns
    -------
    tuple of str
        FITS keywords, without ``INSTRUME`` and the USEAFTER date keywords.

    Examples
    --------
    >>> selector_keys("dark", "NIRCAM")
    ('DETECTOR', 'EXP_TYPE', 'NOUTPUTS', 'SUBARRAY')
    >>> selector_keys("gain", "MIRI")
    ('DETECTOR', 'SUBARRAY')
    """
    rows = SELECTORS.get(reftype.lower())
    if rows is None:
        return FALLBACK_KEYS
    return rows.get(str(instrument or "").upper(), rows[DEFAULT_INSTRUMENT])


def condition(value: Any) -> str:
    """A header value as CRDS compares it: upper case, numbers as floats, ``ANY`` as ``*``.

    Examples
    --------
    >>> condition(4), condition("nrcb1"), condition("ANY"), condition(None)
    ('4.0', 'NRCB1', '*', 'UNDEFINED')
    """
    if value is None:
        return UNDEFINED
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, (int, float)):
        return str(float(value))
    text = str(value).strip().upper()
    if text in ("", "NOT APPLICABLE", "NOT_APPLICABLE"):
        return "N/A"
    if text == "ANY":
        return "*"
    try:
        return str(float(text))
    except ValueError:
        return text


def parse_date(text: str) -> datetime:
    """A USEAFTER or ``DATE-OBS TIME-OBS`` value (ISO, with ``T`` or a space, or the legacy
    ``'Jan 01 2000 00:00:00'``) as a datetime.

    Raises
    ------
    ValueError
        If the text is not a date.
    """
    text = " ".join(str(text).replace("T", " ").split())
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return datetime.strptime(text, "%b %d %Y %H:%M:%S")


def observation_time(meta: Mapping[str, Any]) -> datetime | None:
    """The exposure's ``DATE-OBS TIME-OBS`` (``TIME-OBS`` defaults to midnight), or None."""
    date = keywords.get(meta, "observation.date")
    if not date:
        return None
    time = keywords.get(meta, "observation.time") or "00:00:00"
    try:
        return parse_date(f"{date} {time}")
    except ValueError:
        return None


def exposure_values(reftype: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The selector values of an exposure for ``reftype``, as found in ``meta``.

    Returns
    -------
    dict
        ``{"INSTRUME": ..., <mode keywords>..., "DATE-OBS": ..., "TIME-OBS": ...}``, raw
        values (None where ``meta`` has none).
    """
    instrument = keywords.get(meta, "instrument.name")
    values: dict[str, Any] = {"INSTRUME": instrument}
    for key in (*selector_keys(reftype, instrument), *DATE_KEYS):
        values[key] = keywords.get(meta, meta_path(key))
    return values


def describe(values: Mapping[str, Any]) -> str:
    """``KEY=value`` pairs of selector values, the date and time joined as ``DATE-OBS=dateTtime``.

    Examples
    --------
    >>> describe({"INSTRUME": "NIRCAM", "DETECTOR": "NRCB1", "DATE-OBS": "2026-01-01",
    ...           "TIME-OBS": "00:00:00"})
    'INSTRUME=NIRCAM DETECTOR=NRCB1 DATE-OBS=2026-01-01T00:00:00'
    """
    parts = [f"{k}={v}" for k, v in values.items() if k not in DATE_KEYS]
    if "DATE-OBS" in values:
        date, time = values.get("DATE-OBS"), values.get("TIME-OBS")
        parts.append(f"DATE-OBS={date}T{time}" if time else f"DATE-OBS={date}")
    return " ".join(parts)


@dataclass(frozen=True)
class Candidate:
    """A reference file as a selection candidate: its selector keywords and USEAFTER.

    Attributes
    ----------
    path : str
        Absolute path of the file.
    values : dict
        Its header values by FITS keyword, ``P_*`` patterns included (missing keys absent).
    """

    path: str
    values: Mapping[str, Any] = field(default_factory=dict)

    @property
    def reftype(self) -> str:
        return str(self.values.get("REFTYPE", "")).strip().lower()

    @property
    def instrument(self) -> str:
        return str(self.values.get("INSTRUME", "")).strip().upper()

    @property
    def useafter(self) -> datetime:
        """USEAFTER as a datetime (1900-01-01 when the file has none or it is unreadable)."""
        text = self.values.get("USEAFTER")
        if not text:
            return EARLIEST
        try:
            return parse_date(str(text))
        except ValueError:
            log.warning("%s: unreadable USEAFTER %r, treated as %s", self.path, text, EARLIEST.date())
            return EARLIEST

    def pattern(self, keyword: str) -> list[str] | None:
        """Conditioned values this file applies to for ``keyword``, or None for "any"."""
        raw = self.values.get(pattern_keyword(keyword))
        if raw is None or str(raw).strip() == "":
            raw = self.values.get(keyword)
        if raw is None:
            return None
        parts = [condition(p) for p in str(raw).split("|") if p.strip()] if isinstance(raw, str) else [condition(raw)]
        if not parts or any(p in DONT_CARE for p in parts):
            return None
        return parts


def match_weight(candidate: Candidate, keys: Sequence[str], values: Mapping[str, Any]) -> int | None:
    """How well a file matches the exposure on ``keys``: the number of keys matched
    (a "don't care" adds nothing), or None when a key rules the file out."""
    weight = 0
    for key in keys:
        allowed = candidate.pattern(key)
        if allowed is None:
            continue
        value = condition(values.get(key))
        if not any(part == "*" or fnmatch.fnmatchcase(value, part) for part in allowed):
            return None
        weight += 1
    return weight


@dataclass(frozen=True)
class Choice:
    """The outcome of a selection: the file, or why there is none."""

    candidate: Candidate | None
    matched: int
    reason: str = ""


def choose(candidates: Iterable[Candidate], reftype: str, values: Mapping[str, Any],
           when: datetime) -> Choice:
    """Select the best reference of ``reftype`` for an exposure (CRDS Match + UseAfter rules).

    Parameters
    ----------
    candidates : iterable of Candidate
        Every reference file known (any type and instrument).
    reftype : str
        The requested type.
    values : mapping
        The exposure's selector values (:func:`exposure_values`).
    when : datetime
        The exposure's ``DATE-OBS TIME-OBS``.

    Returns
    -------
    Choice
        ``candidate`` None when no file fits; ``matched`` counts the files whose keywords
        fit (maybe all too recent), ``reason`` says why none was chosen.
    """
    instrument = condition(values.get("INSTRUME"))
    keys = [k for k in values if k not in ("INSTRUME", *DATE_KEYS)]
    by_weight: dict[int, list[Candidate]] = {}
    for cand in candidates:
        if cand.reftype != reftype.lower() or condition(cand.instrument) != instrument:
            continue
        weight = match_weight(cand, keys, values)
        if weight is not None:
            by_weight.setdefault(weight, []).append(cand)
    matched = sum(len(group) for group in by_weight.values())
    for weight in sorted(by_weight, reverse=True):
        usable = [c for c in by_weight[weight] if c.useafter <= when]
        if not usable:
            continue
        latest = max(c.useafter for c in usable)
        best = sorted(c.path for c in usable if c.useafter == latest)
        if len(best) > 1:
            return Choice(None, matched, f"ambiguous: {', '.join(best)} match equally well "
                                         f"with USEAFTER {latest.isoformat()}")
        return Choice(next(c for c in usable if c.path == best[0]), matched)
    if matched:
        return Choice(None, matched, f"{matched} file(s) match but all have USEAFTER later than "
                                     f"{when.isoformat()}")
    return Choice(None, 0)
