"""Shared by the MIRI step tests: exposures as jwdask Datasets and as jwst RampModels built
from the same arrays, small MIRI reference files, and jwst steps run against an offline CRDS."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from astropy.io import fits

from jwdask.io import keywords

PRIMARY: dict[str, Any] = {
    "INSTRUME": "MIRI", "DETECTOR": "MIRIMAGE", "EXP_TYPE": "MIR_IMAGE", "READPATT": "FAST",
    "NFRAMES": 1, "GROUPGAP": 0, "NSAMPLES": 1, "TFRAME": 2.775, "TGROUP": 2.775, "FILTER": "F770W",
    "FASTAXIS": 1, "SLOWAXIS": 2, "DATE-OBS": "2026-01-01", "TIME-OBS": "00:00:00.000",
}
"""Keywords of a MIRI imager exposure; the tests add the shape and window ones."""

MODEL_PATHS = {
    "INSTRUME": "instrument.name", "DETECTOR": "instrument.detector", "EXP_TYPE": "exposure.type",
    "READPATT": "exposure.readpatt", "NFRAMES": "exposure.nframes", "GROUPGAP": "exposure.groupgap",
    "NSAMPLES": "exposure.nsamples", "TFRAME": "exposure.frame_time", "TGROUP": "exposure.group_time",
    "FILTER": "instrument.filter", "FASTAXIS": "subarray.fastaxis", "SLOWAXIS": "subarray.slowaxis",
    "DATE-OBS": "observation.date", "TIME-OBS": "observation.time", "NINTS": "exposure.nints",
    "NGROUPS": "exposure.ngroups", "INTSTART": "exposure.integration_start",
    "INTEND": "exposure.integration_end", "SUBARRAY": "subarray.name", "SUBSTRT1": "subarray.xstart",
    "SUBSTRT2": "subarray.ystart", "SUBSIZE1": "subarray.xsize", "SUBSIZE2": "subarray.ysize",
}


def header(sci: np.ndarray, *, subarray: str = "SUB64", xstart: int = 1, ystart: int = 1,
           **extra: Any) -> dict[str, Any]:
    """PRIMARY keywords of an exposure with the shape of ``sci``."""
    nints, ngroups, ny, nx = sci.shape
    values = {**PRIMARY, "NINTS": nints, "NGROUPS": ngroups, "SUBARRAY": subarray, "SUBSTRT1": xstart,
              "SUBSTRT2": ystart, "SUBSIZE1": nx, "SUBSIZE2": ny}
    values.update({k.replace("_", "-") if k in ("DATE_OBS", "TIME_OBS") else k: v for k, v in extra.items()})
    return {k: v for k, v in values.items() if v is not None}


def exposure(sci: np.ndarray, gdq: np.ndarray, pdq: np.ndarray, keys: dict[str, Any], *,
             tile: tuple[int, int] = (16, 24)) -> xr.Dataset:
    """A jwdask ramp Dataset (dask, tiled in (y, x)) with ``keys`` as metadata."""
    nints, ngroups, ny, nx = sci.shape
    meta: dict[str, Any] = {}
    hdr = fits.Header()
    for key, value in keys.items():
        hdr[key] = value
    keywords.header_to_meta(hdr, "PRIMARY", meta)
    y0, x0 = keys["SUBSTRT2"] - 1, keys["SUBSTRT1"] - 1
    chunks4 = (nints, ngroups, tile[0], tile[1])
    ds = xr.Dataset(
        {"sci": (("integration", "group", "y", "x"), da.from_array(sci.astype(np.float32), chunks=chunks4)),
         "groupdq": (("integration", "group", "y", "x"), da.from_array(gdq.astype(np.uint8), chunks=chunks4)),
         "pixeldq": (("y", "x"), da.from_array(pdq.astype(np.uint32), chunks=tile))},
        coords={"y": np.arange(y0, y0 + ny), "x": np.arange(x0, x0 + nx)},
        attrs={"meta": meta, "source": "test_uncal.fits"})
    return ds


def ramp_model(sci: np.ndarray, gdq: np.ndarray, pdq: np.ndarray, keys: dict[str, Any]) -> Any:
    """The same exposure as a stdatamodels RampModel."""
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    model = datamodels.RampModel(data=sci.astype(np.float32).copy(), groupdq=gdq.astype(np.uint8).copy(),
                                 pixeldq=pdq.astype(np.uint32).copy())
    for key, value in keys.items():
        node = model.meta
        *parents, leaf = MODEL_PATHS[key].split(".")
        for part in parents:
            node = getattr(node, part)
        setattr(node, leaf, value)
    return model


def ref_meta(model: Any, reftype: str, keys: dict[str, Any]) -> None:
    model.meta.reftype = reftype.upper()
    model.meta.author = "jwdask tests"
    model.meta.pedigree = "DUMMY"
    model.meta.description = f"synthetic {reftype} for tests"
    model.meta.useafter = "2020-01-01T00:00:00"
    model.meta.telescope = "JWST"
    model.meta.instrument.name = "MIRI"
    model.meta.instrument.detector = keys.get("DETECTOR", "MIRIMAGE")
    if hasattr(model.meta, "subarray") and "SUBSTRT1" in keys:
        model.meta.subarray.name = keys["SUBARRAY"]
        model.meta.subarray.xstart = keys["SUBSTRT1"]
        model.meta.subarray.ystart = keys["SUBSTRT2"]
        model.meta.subarray.xsize = keys["SUBSIZE1"]
        model.meta.subarray.ysize = keys["SUBSIZE2"]


def write_reset(path: Path, data: np.ndarray, dq: np.ndarray, keys: dict[str, Any], *,
                nints: int | None = None, ngroups: int | None = None) -> Path:
    """A RESET reference ``(nints, ngroups, y, x)`` on the exposure's window."""
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    model = datamodels.ResetModel(data=data.astype(np.float32), dq=dq.astype(np.uint32),
                                  err=np.zeros(data.shape, np.float32))
    ref_meta(model, "reset", keys)
    model.meta.exposure.nints = data.shape[0] if nints is None else nints
    model.meta.exposure.ngroups = data.shape[1] if ngroups is None else ngroups
    model.meta.exposure.readpatt = keys["READPATT"]
    model.save(path)
    return path


def write_rscd(path: Path, rows: list[tuple[str, str, int, int]]) -> Path:
    """An RSCD reference with a group-skip table of ``(subarray, readpatt, skip1, skip)`` rows."""
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    table = np.array(rows, dtype=[("subarray", "S17"), ("readpatt", "S12"), ("group_skip1", "<i4"),
                                  ("group_skip", "<i4")])
    model = datamodels.RSCDModel(rscd_group_skip_table=table)
    ref_meta(model, "rscd", {})
    model.save(path)
    return path


def write_dark_miri(path: Path, data: np.ndarray, dq: np.ndarray, keys: dict[str, Any]) -> Path:
    """A MIRI DARK ``(nints, ngroups, y, x)`` with 4-D dq on the exposure's window."""
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    model = datamodels.DarkMIRIModel(data=data.astype(np.float32), dq=dq.astype(np.uint32),
                                     err=np.zeros(data.shape, np.float32))
    ref_meta(model, "dark", keys)
    model.meta.exposure.nframes = 1
    model.meta.exposure.groupgap = 0
    model.meta.exposure.ngroups = data.shape[1]
    model.meta.exposure.nints = data.shape[0]
    model.meta.exposure.readpatt = keys["READPATT"]
    model.meta.exposure.type = keys["EXP_TYPE"]
    model.save(path)
    return path


def write_emicorr(path: Path, frequencies: dict[str, tuple[float, np.ndarray]],
                  cases: dict[str, dict[str, Any]]) -> Path:
    """An EMICORR (ASDF) reference: ``{name: (Hz, waveform)}`` and subarray cases."""
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    model = datamodels.EmiModel()
    model.frequencies = {name: {"frequency": hz, "phase_amplitudes": np.asarray(wave, np.float32)}
                         for name, (hz, wave) in frequencies.items()}
    model.subarray_cases = cases
    ref_meta(model, "emicorr", {})
    model.meta.instrument.detector = "ANY"
    model.save(path)
    return path


def run_jwst(step_class: type, model: Any, tmp_path: Path, **params: Any) -> Any:
    """``step_class(**params).run(model)`` against an empty offline CRDS cache (references
    come from ``override_<reftype>`` parameters)."""
    from jwdask.refs import crds_environment, write_crds_cache

    cache = write_crds_cache([], tmp_path / "crds_cache")
    with crds_environment(cache):
        return step_class(**params).run(model)


def _refuse(*args: Any, **kwargs: Any) -> Any:
    msg = "a step computed dask arrays while building its graph"
    raise AssertionError(msg)


@contextlib.contextmanager
def no_compute() -> Iterator[None]:
    """Fail if anything is computed inside the block (steps must only build graphs)."""
    with dask.config.set(scheduler=_refuse):
        yield
