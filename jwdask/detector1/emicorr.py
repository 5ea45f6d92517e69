"""emicorr (MIRI, off by default): fit and subtract EMI waveforms [DN] from the ramps.

For each frequency the EMICORR reference lists for the exposure's SUBARRAY / READPATT
(/ DETECTOR for SLOW), either the reference waveform's phase and amplitude are fitted jointly
with straight ramps of well-behaved pixels (``algorithm="joint"``, jwst 3.0's default), or the
de-sloped data are folded by phase (``"sequential"``, also used for ``onthefly_corr_freq``);
the waveform is subtracted from every sample. Skipped as in jwst for non-MIRI data, READPATT
other than FAST/FASTR1/SLOW/SLOWR1, no reference, fewer than 3 groups, or no matching case.
The sequential algorithm needs whole frames per integration (see
``kernels.miri_emicorr_sequential``); saving an on-the-fly reference file is not offered.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from jwdask.detector1._miri import (
    detector,
    instrument,
    meta_value,
    task_name,
    window_indices,
)
from jwdask.detector1._ramp import exposure, require_ramp
from jwdask.errors import InputError, ParameterError, ReferenceFileError
from jwdask.kernels import miri_emicorr_sequential as seq
from jwdask.kernels.miri_emicorr import (
    EmiSums,
    accumulate,
    fit_waveform,
    pixel_scatter,
    subtract_waveform,
    timing,
)
from jwdask.steps import completed, skipped
from jwdask.tiles import as_delayed, block_delayed, map_tiles

log = logging.getLogger(__name__)

READ_PATTERNS = ("FAST", "FASTR1", "SLOW", "SLOWR1")


def _get(node: Any, key: str) -> Any:
    """``node[key]`` for dicts (ASDF trees) or attribute access; None if absent."""
    if isinstance(node, Mapping):
        return node.get(key)
    return getattr(node, key, None)


def _case(tree: Mapping[str, Any], subarray: str, readpatt: str, det: str) -> tuple[int, int, list[str]] | None:
    """``(rowclocks, frameclocks, frequency names)`` for the exposure, None if not listed."""
    speed = "SLOW" if "SLOW" in readpatt.upper() else "FAST"
    name = f"{subarray}_{speed}" if "FULL" in subarray else subarray
    case = _get(_get(tree, "subarray_cases") or {}, name)
    if case is None:
        return None
    rowclocks, frameclocks = _get(case, "rowclocks"), _get(case, "frameclocks")
    freqs = _get(_get(case, "freqs") or {}, speed)
    if speed == "SLOW" and freqs is not None:
        freqs = _get(freqs, det)
    if rowclocks is None or frameclocks is None or freqs is None:
        return None
    return int(rowclocks), int(frameclocks), [str(f) for f in freqs]


def _scatter(sci: np.ndarray) -> dict[str, np.ndarray]:
    return {"scatter": pixel_scatter(sci)}


def _frequency(tree: Mapping[str, Any], name: str, filename: str) -> tuple[float, np.ndarray]:
    """``(Hz, reference waveform)`` of one frequency entry of the EMICORR tree."""
    entry = _get(_get(tree, "frequencies") or {}, name)
    frequency = _get(entry, "frequency") if entry is not None else None
    wave = _get(entry, "phase_amplitudes") if entry is not None else None
    if frequency is None or wave is None:
        raise ReferenceFileError("emicorr", f"{filename}: frequency {name!r} has no 'frequency' / "
                                            "'phase_amplitudes' entry")
    return float(frequency), np.asarray(wave)


def _median(scatter: np.ndarray) -> np.float32:
    return np.median(scatter)


def _add(parts: list[EmiSums]) -> EmiSums:
    y = parts[0].y.copy()
    n = parts[0].n.copy()
    for part in parts[1:]:
        y += part.y
        n += part.n
    return EmiSums(y=y, n=n)


def _correct_frequency(ds: xr.Dataset, sci: xr.DataArray, rows: xr.DataArray, cols: xr.DataArray,
                       refwave: np.ndarray, frequency: float, *, nsamples: int, rowclocks: int,
                       frameclocks: int, fit_ints_separately: bool) -> xr.DataArray:
    """The graph that removes one frequency from ``sci``."""
    nints, ngroups, ny = sci.sizes["integration"], sci.sizes["group"], sci.sizes["y"]
    geo = timing(frequency, ny=ny, ngroups=ngroups, rowclocks=rowclocks, frameclocks=frameclocks)
    scatter = map_tiles(_scatter, [sci],
                        {"scatter": (("integration", "y", "x"), np.float32)}, like=sci,
                        name=task_name("emicorr-scatter", sci.data))
    median = dask.delayed(_median)(as_delayed(scatter["scatter"].data))
    ychunks, xchunks = sci.chunks[-2], sci.chunks[-1]
    tiled = [a.data.rechunk({**{k: -1 for k in range(a.ndim - 2)}, a.ndim - 2: ychunks, a.ndim - 1: xchunks})
             if isinstance(a.data, da.Array) else da.from_array(np.asarray(a.data), chunks=(ychunks, xchunks))
             for a in (sci, ds.pixeldq, rows, cols)]
    blocks = [block_delayed(t).reshape(-1) for t in tiled]
    parts = [dask.delayed(accumulate)(s, p, r, c, scatter_median=median, nphases=refwave.size,
                                      nsamples=nsamples, rowclocks=rowclocks, period=geo.period)
             for s, p, r, c in zip(*blocks, strict=True)]
    fit = dask.delayed(fit_waveform, nout=2)(dask.delayed(_add)(parts), refwave, dphase=geo.dphase,
                                              dphase_frame=geo.dphase_frame,
                                              fit_ints_separately=fit_ints_separately)
    amplitudes = da.from_delayed(fit[0], shape=(nints,), dtype=np.float64)
    phases = da.from_delayed(fit[1], shape=(nints,), dtype=np.float64)
    out = map_tiles(subtract_waveform, [sci, rows, cols], {"sci": (sci.dims, np.float32)}, like=sci,
                    name=task_name("emicorr", sci.data, frequency, refwave), refwave=refwave,
                    amplitudes=amplitudes, phases=phases,
                    nsamples=nsamples, rowclocks=rowclocks, period=geo.period, dphase=geo.dphase)
    return out["sci"]


def _table(cleaned: list[np.ndarray], refwave: np.ndarray | None, *, scale_reference: bool,
           **timing_kw: Any) -> np.ndarray:
    pa = seq.fold(cleaned, **timing_kw)
    return seq.lookup_table(pa, timing_kw["period"], refwave, scale_reference=scale_reference)


def _sequential(ds: xr.Dataset, waves: list[tuple[float, np.ndarray | None]], *, rowclocks: int,
                frameclocks: int, nsamples: int, nints_to_phase: int | None, nbins: int | None,
                scale_reference: bool, use_n_cycles: int | None) -> xr.DataArray:
    """The graph of jwst's sequential algorithm over all frequencies."""
    nints, ngroups, ny, nx = (ds.sizes[d] for d in ("integration", "group", "y", "x"))
    readpatt = str(exposure(ds, "readpatt")).upper()
    gap = frameclocks if readpatt in ("FASTR1", "SLOWR1") else 0
    xstart, xsize = meta_value(ds, "subarray.xstart"), meta_value(ds, "subarray.xsize")
    if xstart is None or xsize is None:
        raise InputError(ds.attrs.get("source", "exposure"), "PRIMARY SUBSTRT1/SUBSIZE1",
                         "required keyword is missing (the sequential algorithm times the columns)")
    late = seq.late_block(int(xstart), int(xsize), nx)
    rows, cols = window_indices(ds)
    sci = ds.sci
    for frequency, refwave in waves:
        period = (1.0 / frequency) / 10.0e-6
        nints_to_phase = seq.nints_to_phase(nints_to_phase, use_n_cycles, nints=nints, ngroups=ngroups,
                                            period=period, frameclocks=frameclocks)
        nb = int(period / 2.0) if nbins is None else nbins
        nb = 500 if nb > 501 else nb
        cleaned = [dask.delayed(seq.cleaned_frames)(as_delayed(sci.data[i]))
                   for i in range(min(nints_to_phase, nints))]
        kw = {"nsamples": nsamples, "rowclocks": rowclocks, "frameclocks": gap, "late_block": late, "period": period}
        table = dask.delayed(_table)(cleaned, refwave, scale_reference=scale_reference, nbins=nb,
                                     ngroups=ngroups, **kw)
        out = map_tiles(seq.subtract_table, [sci, rows, cols], {"sci": (sci.dims, np.float32)}, like=sci,
                        name=task_name("emicorr-seq", sci.data, frequency, refwave, nb, nints_to_phase),
                        table=table, ny=ny, **kw)
        sci = out["sci"]
    return sci


def emicorr(ds: xr.Dataset, refs: Any, *, algorithm: str = "joint", nints_to_phase: int | None = None,
            nbins: int | None = None, scale_reference: bool = True,
            onthefly_corr_freq: list[float] | None = None, use_n_cycles: int | None = 3,
            fit_ints_separately: bool = False) -> xr.Dataset:
    """Remove EMI from ``sci`` [DN].

    Parameters
    ----------
    algorithm : {"joint", "sequential"}
        Joint ramp + waveform fit, or the older sequential phase folding.
    nints_to_phase, nbins, scale_reference, use_n_cycles : optional
        Options of the sequential algorithm (integrations, bins per period, scale the
        reference to the data, cycles used).
    onthefly_corr_freq : list of float, optional
        Frequencies [Hz] to correct without a reference file (forces "sequential").
    fit_ints_separately : bool
        Joint algorithm: fit phase and amplitude per integration.
    """
    require_ramp(ds, "emicorr")
    if algorithm not in ("joint", "sequential"):
        raise ParameterError(f"emicorr: algorithm must be 'joint' or 'sequential', got {algorithm!r}")
    inst = instrument(ds)
    if inst != "MIRI":
        return skipped(ds, "emicorr", f"EMI correction is only for MIRI (INSTRUME={inst or 'missing'})")
    readpatt = str(exposure(ds, "readpatt"))
    if readpatt.upper() not in READ_PATTERNS:
        return skipped(ds, "emicorr", f"EMI correction not available for READPATT={readpatt}")
    if nbins is not None and nbins < 1:
        raise ParameterError(f"emicorr: nbins must be >= 1, got {nbins}")
    ref_files: dict[str, str] = {}
    tree = None
    if onthefly_corr_freq is None:
        if refs is None:
            raise ReferenceFileError("emicorr", "no reference provider was given (pass refs=RefProvider(...))")
        meta = ds.attrs.get("meta", {})
        if refs.path("emicorr", meta) is None:
            return skipped(ds, "emicorr", "no emicorr reference", ref_files={"emicorr": "N/A"})
        ref_files["emicorr"] = refs.record("emicorr", meta)
        tree = refs.open_asdf("emicorr", meta)
    if ds.sizes["group"] < 3:
        return skipped(ds, "emicorr", f"EMI correction needs >= 3 groups, got {ds.sizes['group']}",
                       ref_files=ref_files)
    subarray = str(meta_value(ds, "subarray.name", ""))
    if onthefly_corr_freq is not None:
        algorithm = "sequential"
        name = subarray
        if name == "FULL":
            name += "_SLOW" if "SLOW" in readpatt.upper() else "_FAST"
        clocks = seq.SUBARRAY_CLOCKS.get(name)
        case = None if clocks is None else (*clocks, [repr(float(f)) for f in onthefly_corr_freq])
    else:
        case = _case(tree, subarray, readpatt, detector(ds))
    if case is None or not case[2]:
        return skipped(ds, "emicorr", f"no EMICORR case for SUBARRAY={subarray} READPATT={readpatt} "
                       f"DETECTOR={detector(ds)}", ref_files=ref_files)
    rowclocks, frameclocks, names = case
    if ds.sizes["x"] % 4:
        raise InputError(ds.attrs.get("source", "exposure"), "SCI",
                         f"EMI correction needs a width divisible by 4 (4 amplifiers), got {ds.sizes['x']}")
    nsamples = int(exposure(ds, "nsamples"))
    if onthefly_corr_freq is not None:
        waves = [(float(f), None) for f in onthefly_corr_freq]
    else:
        waves = [_frequency(tree, n, ref_files["emicorr"]) for n in names]
    if algorithm == "sequential":
        sci = _sequential(ds, waves, rowclocks=rowclocks, frameclocks=frameclocks, nsamples=nsamples,
                          nints_to_phase=nints_to_phase, nbins=nbins, scale_reference=bool(scale_reference),
                          use_n_cycles=use_n_cycles)
        sci.attrs = dict(ds.sci.attrs)
        return completed(ds, "emicorr", {"sci": sci}, ref_files=ref_files)
    extra_frame = frameclocks if readpatt.upper() in ("FASTR1", "SLOWR1") else 0
    rows, cols = window_indices(ds)
    sci = ds.sci
    for frequency, wave in waves:
        log.info("emicorr: correcting %s Hz", frequency)
        sci = _correct_frequency(ds, sci, rows, cols, wave, frequency, nsamples=nsamples,
                                 rowclocks=rowclocks, frameclocks=extra_frame,
                                 fit_ints_separately=bool(fit_ints_separately))
    sci.attrs = dict(ds.sci.attrs)
    return completed(ds, "emicorr", {"sci": sci}, ref_files=ref_files)
