"""skymatch: sky levels [MJy/sr] of the exposures of an association (image3.md §4).

Footprints are ``spherical_geometry`` spherical polygons of the array corners (as jwst); the
overlap of two exposures is their exact spherical intersection, mapped back to pixels with the
inverse WCS and rasterised. The sky statistics of every exposure (whole image and/or each
overlap) are one dask task per exposure; only the small ``(value, npix)`` results come back to
the client, which solves the ``match`` system (or takes minima for ``local``/``global``). The
levels go to ``meta.background`` (BKGLEVEL, BKGSUB, BKGMETH); with ``subtract=True`` SCI is
reduced lazily.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr
from astropy.nddata.bitmask import interpret_bit_flags

from jwdask import cluster, dqflags
from jwdask.errors import InputError, ParameterError
from jwdask.image3.tweakreg import group_id
from jwdask.io import keywords
from jwdask.kernels.skymatch import (
    SKYSTATS,
    SkyStatParams,
    exposure_sky,
    solve_sky_deltas,
)
from jwdask.steps import completed, skipped
from jwdask.tiles import as_delayed

log = logging.getLogger(__name__)

__all__ = ["DEFAULTS", "SKYMETHODS", "skymatch"]

SKYMETHODS = ("local", "global", "match", "global+match", "user")

DEFAULTS: dict[str, Any] = {
    "skymethod": "match", "match_down": True, "subtract": False, "skylist": None, "stepsize": None,
    "skystat": "mode", "dqbits": "~DO_NOT_USE+NON_SCIENCE", "lower": None, "upper": None, "nclip": 5,
    "lsigma": 4.0, "usigma": 4.0, "binwidth": 0.1, "in_memory": True,
}
"""skymatch parameters and their jwst 3.0 code defaults (image3.md §4.1)."""

PRODUCT_SUFFIXES = ("uncal", "ramp", "rate", "rateints", "cal", "calints", "crf", "crfints", "i2d",
                    "segm", "bsub", "bsubints", "twkabs", "twkrel", "skymatch", "tweakreg",
                    "outlier_detection", "resample")
"""File-name suffixes removed before matching names in a ``skylist`` (jwst's remove_suffix)."""


@dataclass
class _Exposure:
    """Sky bookkeeping of one exposure: current sky, validity, levels subtracted from SCI.

    Sky values keep jwst's scalar types (python float, or the numpy ``float32`` a statistic
    returns), since its in-place updates round through them.
    """

    index: int
    polygon: Any
    sky: Any = 0.0
    valid: bool = False
    offsets: list[Any] = field(default_factory=list)


@dataclass
class _Item:
    """One unknown of the sky solution: an exposure, or the exposures of one group."""

    members: list[_Exposure]
    sky: Any = 0.0

    @property
    def is_group(self) -> bool:
        return len(self.members) > 1


def skymatch(datasets: Sequence[xr.Dataset], refs: Any = None, **params: Any) -> list[xr.Dataset]:
    """Measure (and optionally subtract) the sky of cal exposures [MJy/sr].

    ``params`` as :data:`DEFAULTS` (jwst SkyMatchStep names; ``lower``/``upper`` in MJy/sr,
    ``binwidth``/``lsigma``/``usigma`` in sigma, ``stepsize`` in pixels). Returns new Datasets
    with ``meta.background.{level,subtracted,method}`` and ``S_SKYMAT``; SCI is lazily reduced
    by the level when ``subtract=True``. ``refs`` is unused.
    """
    del refs  # skymatch uses no reference file
    p = _parameters(params)
    datasets = list(datasets)
    if not datasets:
        raise ParameterError("skymatch needs at least one exposure")
    for ds in datasets:
        _check_input(ds)
    if p["skymethod"] == "user":
        return _user_sky(datasets, p)

    subtract = bool(p["subtract"])
    exposures = [_Exposure(i, _footprint(ds, p["stepsize"]), sky=_previous_level(ds, subtract))
                 for i, ds in enumerate(datasets)]
    groups = [group_id(ds) for ds in datasets]
    items = [_Item([e for e, g in zip(exposures, groups, strict=True) if g == gid]) for gid in dict.fromkeys(groups)]
    stat = SkyStatParams(skystat=p["skystat"], lower=p["lower"], upper=p["upper"], nclip=int(p["nclip"]),
                         lsigma=float(p["lsigma"]), usigma=float(p["usigma"]), binwidth=float(p["binwidth"]))
    dqbits = interpret_bit_flags(p["dqbits"], flag_name_map=dqflags.PIXEL)
    method = p["skymethod"]
    do_match, do_global = "match" in method, "global" in method
    whole_now = not do_match or (do_global and not subtract)

    overlaps = _overlap_regions(items, datasets) if do_match else {}
    results = _measure(datasets, exposures, overlaps, whole_now, stat, dqbits)
    if do_match:
        deltas = _match(items, overlaps, results, subtract, p["match_down"])
        _apply(items, deltas, do_global=False, subtract=subtract)
    if do_global or not do_match:
        if do_match and subtract:
            results = _measure(datasets, exposures, {}, True, stat, dqbits)
        skies = [_whole_sky(item, results, subtract) for item in items]
        if do_global:
            found = [s for s in skies if s is not None]
            minsky = min(found) if found else None
            if minsky is None:
                log.warning("skymatch: unable to compute the 'global' sky value")
            log.info("skymatch: 'global' sky value correction: %s", minsky)
            skies = [minsky] * len(items)
        _apply(items, skies, do_global=do_global, subtract=subtract)
    return [_record(ds, e, method, subtract) for ds, e in zip(datasets, exposures, strict=True)]


# ------------------------------------------------------------------------------ parameters and input

def _parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ParameterError(f"unknown skymatch parameter(s) {unknown}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    p["skymethod"] = str(p["skymethod"]).lower()
    if p["skymethod"] not in SKYMETHODS:
        raise ParameterError(f"skymatch skymethod={p['skymethod']!r}: choose one of {SKYMETHODS}")
    if p["skystat"] not in SKYSTATS:
        raise ParameterError(f"skymatch skystat={p['skystat']!r}: choose one of {SKYSTATS}")
    if int(p["nclip"]) < 0:
        raise ParameterError(f"skymatch nclip={p['nclip']!r} must be >= 0")
    for key in ("lsigma", "usigma", "binwidth"):
        if float(p[key]) < 0:
            raise ParameterError(f"skymatch {key}={p[key]!r} must be >= 0")
    if p["stepsize"] is not None and int(p["stepsize"]) <= 0:
        raise ParameterError(f"skymatch stepsize={p['stepsize']!r} must be a positive number of pixels")
    return p


def _source(ds: xr.Dataset) -> str:
    return str(ds.attrs.get("source", keywords.get(ds.attrs.get("meta", {}), "filename", "exposure")))


def _check_input(ds: xr.Dataset) -> None:
    for var in ("sci", "dq"):
        if var not in ds:
            raise InputError(_source(ds), var.upper(), "skymatch needs a cal Dataset with sci and dq")
    if ds["sci"].dims != ("y", "x"):
        raise InputError(_source(ds), "SCI", f"skymatch needs a 2-D (y, x) image, not dims {ds['sci'].dims}")
    if ds.attrs.get("wcs") is None:
        raise InputError(_source(ds), "ASDF meta.wcs", "no WCS: run assign_wcs first")


def _previous_level(ds: xr.Dataset, subtract: bool) -> float:
    """Starting sky of an exposure: its earlier level when subtracting again, else 0; an
    earlier run inconsistent with ``subtract`` is an error (as jwst)."""
    meta = ds.attrs.get("meta", {})
    done = keywords.get(meta, "background.subtracted")
    level = keywords.get(meta, "background.level")
    if done is None:
        if level is not None:
            raise InputError(_source(ds), "BKGSUB", "BKGLEVEL is set but BKGSUB (meta.background.subtracted) is not")
        return 0.0
    if level is None:
        raise InputError(_source(ds), "BKGLEVEL", "BKGSUB is set but BKGLEVEL (meta.background.level) is not")
    if bool(done) != subtract:
        raise InputError(_source(ds), "BKGSUB", f"the sky was already measured with subtract={bool(done)}; "
                         f"skymatch cannot run again with subtract={subtract}")
    return float(level) if subtract else 0.0


# ------------------------------------------------------------------------------ geometry

def _footprint(ds: xr.Dataset, stepsize: int | None) -> Any:
    """Spherical polygon through the array corners (pixel edges, WCS without bounding box),
    with a vertex every ``stepsize`` pixels along each side if given."""
    from spherical_geometry.polygon import SphericalPolygon

    ny, nx = (int(n) for n in ds["sci"].shape)
    nint_x = 2 if stepsize is None else max(2, int(np.ceil((nx + 1.0) / stepsize)))
    nint_y = 2 if stepsize is None else max(2, int(np.ceil((ny + 1.0) / stepsize)))
    xs = np.linspace(-0.5, nx - 0.5, nint_x)
    ys = np.linspace(-0.5, ny - 0.5, nint_y)[1:-1]
    x = np.concatenate([xs, np.full(ys.size, nx - 0.5), xs[::-1], np.full(ys.size, -0.5), xs[:1]])
    y = np.concatenate([np.full(xs.size, -0.5), ys, np.full(xs.size, ny - 0.5), ys[::-1], [-0.5]])
    ra, dec = ds.attrs["wcs"](x, y, with_bounding_box=False)
    ra, dec = np.array(ra, dtype=float), np.array(dec, dtype=float)
    ra[-1], dec[-1] = ra[0], dec[0]
    return SphericalPolygon.from_radec(ra, dec)


def _intersection(a: _Exposure, b: _Exposure) -> Any:
    from spherical_geometry.polygon import MalformedPolygonError

    try:
        return a.polygon.intersection(b.polygon)
    except MalformedPolygonError as err:
        log.debug("skymatch: intersection of exposures %d and %d failed (%s); using the first "
                  "footprint, as jwst", a.index, b.index, err)
        return a.polygon.copy()


def _overlap_regions(items: list[_Item], datasets: Sequence[xr.Dataset]
                     ) -> dict[tuple[int, int], tuple[list[np.ndarray], float]]:
    """For every exposure m and every other item J: the pixel polygons of m's overlap with
    J's members and the overlap area [sr] (keyed by (m, J)). The sky vertices of all of an
    exposure's overlaps go through its inverse WCS in one evaluation."""
    out: dict[tuple[int, int], tuple[list[np.ndarray], float]] = {}
    vertices: dict[int, list[tuple[tuple[int, int], np.ndarray, np.ndarray]]] = {}
    for jdx, other in enumerate(items):
        for item in items:
            if item is other:
                continue
            for m in item.members:
                area = 0.0
                for n in other.members:
                    inter = _intersection(m, n)
                    part = float(np.fabs(inter.area()))
                    if part == 0.0:
                        continue
                    area += part
                    vertices.setdefault(m.index, []).extend(
                        ((m.index, jdx), np.asarray(ra), np.asarray(dec))
                        for ra, dec in inter.to_radec() if len(ra) >= 4)
                out[(m.index, jdx)] = ([], area)
    for index, polygons in vertices.items():
        ra = np.concatenate([p[1] for p in polygons])
        dec = np.concatenate([p[2] for p in polygons])
        x, y = datasets[index].attrs["wcs"].invert(ra, dec, with_bounding_box=False)
        xy = np.column_stack([x, y])
        ends = np.cumsum([len(p[1]) for p in polygons])
        for (key, _, _), part in zip(polygons, np.split(xy, ends[:-1]), strict=True):
            out[key][0].append(part)
    return out


# ------------------------------------------------------------------------------ statistics

def _measure(datasets: Sequence[xr.Dataset], exposures: Sequence[_Exposure],
             overlaps: Mapping[tuple[int, int], tuple[list[np.ndarray], float]], whole: bool,
             stat: SkyStatParams, dqbits: int | None) -> dict[tuple[int, int | None], tuple[Any, Any]]:
    """Run one statistics task per exposure; ``(exposure, item or None) -> (sky, npix)``."""
    tasks = []
    keys = []
    for e in exposures:
        regions: list[list[np.ndarray] | None] = []
        names: list[int | None] = []
        if whole:
            regions.append(None)
            names.append(None)
        for (m, jdx), (polygons, area) in overlaps.items():
            if m == e.index and area > 0.0:
                regions.append(polygons)
                names.append(jdx)
        if not regions:
            continue
        ds = datasets[e.index]
        offsets = list(e.offsets)
        tasks.append(dask.delayed(exposure_sky, pure=True)(as_delayed(ds["sci"].data), as_delayed(ds["dq"].data), regions, stat,
                                                          dqbits, offsets))
        keys.append([(e.index, name) for name in names])
    computed = cluster.compute(*tasks) if tasks else ()
    out = {}
    for names, values in zip(keys, computed, strict=True):
        out.update(zip(names, values, strict=True))
    return out


def _item_overlap_sky(item: _Item, jdx: int, overlaps: Mapping[tuple[int, int], tuple[list[np.ndarray], float]],
                      results: Mapping[tuple[int, int | None], tuple[Any, Any]],
                      delta: bool) -> tuple[Any, Any, float]:
    """``(sky, npix, area)`` of an image or group in its overlap with item ``jdx``
    (group: pixel-count-weighted mean of its members)."""
    def one(e: _Exposure) -> tuple[Any, Any, float]:
        area = overlaps[(e.index, jdx)][1]
        if area == 0.0:
            return None, 0, 0.0
        value, npix = results.get((e.index, jdx), (None, 0))
        if value is None:
            return None, 0, 0.0
        return (value - e.sky if delta else value), npix, area

    if not item.is_group:
        return one(item.members[0])
    wsky, weight, area = 0.0, 0, 0.0
    for e in item.members:
        value, npix, part = one(e)
        area += part
        if value is not None and npix > 0:
            wsky += value * npix
            weight += npix
    if weight == 0 or area == 0.0:
        return None, weight, area
    return wsky / weight, weight, area


def _whole_sky(item: _Item, results: Mapping[tuple[int, int | None], tuple[Any, Any]], subtract: bool) -> Any:
    """Sky of an image over its whole area (group: the minimum over its members)."""
    best = None
    for e in item.members:
        value, _ = results.get((e.index, None), (None, 0))
        if value is None:
            continue
        if not subtract:
            value = value - e.sky
        if best is None or best > value:
            best = value
    return best


def _match(items: list[_Item], overlaps: Mapping[tuple[int, int], tuple[list[np.ndarray], float]],
           results: Mapping[tuple[int, int | None], tuple[Any, Any]], subtract: bool,
           match_down: bool) -> list[float | None]:
    """Sky offsets of the items from their pairwise overlaps (``match``), lowest (or highest) 0."""
    n = len(items)
    a = np.zeros((n, n))
    w = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            s1, w1, area1 = _item_overlap_sky(items[i], j, overlaps, results, delta=not subtract)
            s2, w2, area2 = _item_overlap_sky(items[j], i, overlaps, results, delta=not subtract)
            if area1 == 0.0 or area2 == 0.0 or s1 is None or s2 is None:
                continue
            a[j, i], w[j, i], a[i, j], w[i, j] = s1, w1, s2, w2
    deltas = solve_sky_deltas(a, w)
    good = np.isfinite(deltas)
    if good.any():
        deltas[good] -= np.amin(deltas[good]) if match_down else np.amax(deltas[good])
    return [float(d) if np.isfinite(d) else None for d in deltas]


def _apply(items: list[_Item], skies: Sequence[Any], *, do_global: bool, subtract: bool) -> None:
    """Add each item's sky change to its members (jwst's ``_apply_sky``, including its scalar
    types: a group's change reaches its members as ``(old + change) - old``)."""
    for item, sky in zip(items, skies, strict=True):
        if do_global:
            valid = item.members[0].valid if sky is None else True
        else:
            valid = sky is not None
            if not valid:
                log.warning("skymatch: unable to compute the sky of exposure(s) %s",
                            [e.index for e in item.members])
        change = 0.0 if sky is None else sky
        if item.is_group:
            new = item.sky + change
            step = new - item.sky
            item.sky = new
        else:
            step = change
        for e in item.members:
            if subtract:
                e.offsets.append(change)
            e.sky += step
            e.valid = valid
            log.info("skymatch: exposure %d sky background %g (delta %g)", e.index, float(e.sky), float(change))


# ------------------------------------------------------------------------------ results

def _record(ds: xr.Dataset, e: _Exposure, method: str, subtract: bool) -> xr.Dataset:
    if not e.valid:
        return skipped(ds, "skymatch", f"no sky value for exposure {_source(ds)}")
    variables = {}
    if subtract:
        sci = ds["sci"].data
        for offset in e.offsets:
            sci = (sci - offset).astype(np.float32)
        variables["sci"] = ds["sci"].copy(data=sci)
    return completed(ds, "skymatch", variables, meta={"background.method": method, "background.level": float(e.sky),
                                                      "background.subtracted": subtract})


def _strip_suffix(name: str) -> str:
    stem = Path(name).stem
    match = re.match(r"^(?P<root>.+?)([_-](" + "|".join(PRODUCT_SUFFIXES) + "))?$", stem)
    return match.group("root") if match else stem


def _user_sky(datasets: Sequence[xr.Dataset], p: Mapping[str, Any]) -> list[xr.Dataset]:
    """``skymethod='user'``: levels read from ``skylist`` (two columns: file name, sky)."""
    skylist = p["skylist"]
    if not skylist:
        raise ParameterError("skymatch skymethod='user' needs skylist (a file of 'filename sky' lines)")
    if not Path(skylist).is_file():
        raise InputError(str(skylist), "", "skylist file not found")
    try:
        table = np.genfromtxt(skylist, dtype=[("fname", "<S128"), ("sky", "f")], ndmin=1)
    except ValueError as err:
        raise InputError(str(skylist), "", f"cannot read the sky list: {err}") from err
    names = np.array([_strip_suffix(n) for n in table["fname"].astype(str)])
    if len(table) != len(datasets):
        raise InputError(str(skylist), "", f"{len(table)} entries for {len(datasets)} input exposures")
    subtract = bool(p["subtract"])
    out = []
    for ds in datasets:
        name = _strip_suffix(str(keywords.get(ds.attrs.get("meta", {}), "filename", "")))
        found = table["sky"][names == name]
        if len(found) != 1:
            reason = "not found" if len(found) == 0 else "listed more than once"
            raise InputError(str(skylist), name, f"exposure {reason} in the sky list")
        level = float(found[0])
        variables = {}
        if subtract:
            variables["sci"] = ds["sci"].copy(data=ds["sci"].data - np.float32(level))
        out.append(completed(ds, "skymatch", variables, meta={
            "background.level": level, "background.subtracted": subtract, "background.method": "user"}))
    return out

