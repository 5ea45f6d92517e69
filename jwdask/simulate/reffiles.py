"""CRDS-format reference files of a simulated detector (formats.md §4), plain astropy/asdf.

Every file is named ``jwst_<instrument>_<reftype>_<NNNN>.fits|.asdf`` and carries the
standard reference header (``TELESCOP INSTRUME DETECTOR REFTYPE DATAMODL USEAFTER PEDIGREE
DESCRIP AUTHOR DATE FILENAME HISTORY``) plus the selectors of its type. 2-D references are
full frame (2048 x 2048, float32 / uint32); the dark has the science subarray shape and
``SUBARRAY SUBSTRT SUBSIZE`` keywords (the dark step does not cut).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asdf
import numpy as np
from astropy.io import fits
from astropy.table import Table

from jwdask import dqflags
from jwdask.simulate import fitsstream, scene
from jwdask.simulate.detector import IPC_KERNEL, DetectorProperties, ReadoutGeometry
from jwdask.simulate.geometry import Aperture

log = logging.getLogger(__name__)

__all__ = ["RefContext", "deconvolution_kernel", "write_reference_files"]

SERIAL = "9001"
"""``NNNN`` of every simulated reference file name."""

USEAFTER = "2022-01-01T00:00:00"
"""``USEAFTER`` of every simulated reference."""

EE_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Encircled-energy fractions of the apcorr table."""

ABVEGA: dict[str, float] = {
    "F070W": 0.28, "F090W": 0.51, "F115W": 0.79, "F140M": 1.12, "F150W": 1.23, "F162M": 1.36,
    "F182M": 1.60, "F187N": 1.71, "F200W": 1.70, "F210M": 1.81, "F212N": 1.83,
}
"""AB - Vega magnitude offsets per filter (pupil CLEAR)."""


@dataclass(frozen=True)
class RefContext:
    """What a reference header needs to know about the simulated setup.

    Attributes
    ----------
    instrument, detector, channel, module, exp_type, filter, pupil, readpatt, subarray : str
        Instrument setup of the science exposures.
    noutputs : int
        Amplifiers of the science readout (dark selector).
    fastaxis, slowaxis : int
        Readout direction of the detector.
    pixar_sr, pixar_a2 : float
        Nominal pixel area [sr], [arcsec^2].
    """

    instrument: str
    detector: str
    channel: str
    module: str
    exp_type: str
    filter: str
    pupil: str
    readpatt: str
    subarray: str
    noutputs: int
    fastaxis: int
    slowaxis: int
    pixar_sr: float
    pixar_a2: float


def _name(ctx: RefContext, reftype: str, ext: str) -> str:
    return f"jwst_{ctx.instrument.lower()}_{reftype}_{SERIAL}.{ext}"


def _standard(ctx: RefContext, reftype: str, model: str, descrip: str, filename: str) -> dict[str, Any]:
    return {
        "DATE": datetime.datetime(2026, 1, 1).isoformat(), "FILENAME": filename, "TELESCOP": "JWST",
        "INSTRUME": ctx.instrument, "DETECTOR": ctx.detector, "REFTYPE": reftype.upper(),
        "DATAMODL": model, "USEAFTER": USEAFTER, "PEDIGREE": "DUMMY",
        "DESCRIP": descrip, "AUTHOR": "jwdask.simulate",
    }


def _full_subarray(ctx: RefContext, size: int) -> dict[str, Any]:
    return {"SUBARRAY": "FULL", "SUBSTRT1": 1, "SUBSTRT2": 1, "SUBSIZE1": size, "SUBSIZE2": size,
            "FASTAXIS": ctx.fastaxis, "SLOWAXIS": ctx.slowaxis}


def _dq_def(flags: Mapping[str, str]) -> fits.BinTableHDU:
    names = list(flags)
    values = np.array([dqflags.PIXEL[n] for n in names], np.uint32)
    bits = np.array([int(v).bit_length() - 1 for v in values], np.int32)
    table = Table({"BIT": bits, "VALUE": values, "NAME": np.array(names, "S40"),
                   "DESCRIPTION": np.array([flags[n] for n in names], "S80")})
    return fits.BinTableHDU(table, name="DQ_DEF")


DQ_DEF = {"DO_NOT_USE": "Bad pixel, do not use", "DEAD": "Dead pixel", "HOT": "Hot pixel",
          "REFERENCE_PIXEL": "Reference pixel"}


def deconvolution_kernel(kernel: np.ndarray, size: int = 3, pad: int = 64) -> np.ndarray:
    """The ``size x size`` kernel whose convolution undoes ``kernel`` (sums to 1).

    The jwst ipc step *convolves* the data with the reference kernel, so the IPC reference
    holds the inverse of the physical IPC kernel, computed by FFT on a ``pad``-wide grid and
    truncated to ``size x size``.
    """
    grid = np.zeros((pad, pad))
    k = kernel.shape[0] // 2
    for j in range(kernel.shape[0]):
        for i in range(kernel.shape[1]):
            grid[(j - k) % pad, (i - k) % pad] = kernel[j, i]
    inverse = np.real(np.fft.ifft2(1.0 / np.fft.fft2(grid)))
    h = size // 2
    out = np.array([[inverse[(j - h) % pad, (i - h) % pad] for i in range(size)] for j in range(size)])
    return (out / out.sum()).astype(np.float32)


def _primary(header: Mapping[str, Any], history: str) -> fits.PrimaryHDU:
    primary = fits.PrimaryHDU()
    for key, value in header.items():
        primary.header[key] = value
    primary.header["HISTORY"] = history
    return primary


def _write_fits(path: Path, header: Mapping[str, Any], hdus: list[fits.hdu.base.ExtensionHDU],
                history: str) -> Path:
    fits.HDUList([_primary(header, history), *hdus]).writeto(path, overwrite=True)
    return path


def _image(data: np.ndarray, name: str, bunit: str | None = None) -> fits.ImageHDU:
    hdu = fits.ImageHDU(data, name=name)
    if bunit:
        hdu.header["BUNIT"] = bunit
    return hdu


def _asdf_meta(ctx: RefContext, reftype: str, model: str, descrip: str, filename: str,
               **extra: Any) -> dict[str, Any]:
    meta = {
        "date": datetime.datetime(2026, 1, 1).isoformat(), "filename": filename, "telescope": "JWST",
        "reftype": reftype, "model_type": model, "useafter": USEAFTER, "pedigree": "DUMMY",
        "description": descrip, "author": "jwdask.simulate",
        "instrument": {"name": ctx.instrument, "detector": ctx.detector, "module": ctx.module,
                       "channel": ctx.channel},
        "exposure": {"type": ctx.exp_type, "p_exptype": f"{ctx.exp_type}|"},
    }
    meta.update(extra)
    return meta


def write_reference_files(out: Path, ctx: RefContext, props: DetectorProperties,
                          geom: ReadoutGeometry, distortion: Any, ap: Aperture) -> dict[str, Path]:
    """Write every reference file of the simulated program.

    Parameters
    ----------
    out : pathlib.Path
        Folder (created).
    ctx : RefContext
        Setup.
    props : DetectorProperties
        Full-frame pixel truth: every reference is consistent with it.
    geom : ReadoutGeometry
        Science readout (dark shape and frame count, SUBARRAY keywords).
    distortion : astropy.modeling.Model
        Pixel -> V2/V3 model (:func:`jwdask.simulate.geometry.distortion_model`).
    ap : Aperture
        Aperture (informational keywords).

    Returns
    -------
    dict
        reftype -> path.
    """
    out.mkdir(parents=True, exist_ok=True)
    n = props.gain.shape[0]
    refs: dict[str, Path] = {}
    hist = "Simulated by jwdask.simulate; consistent with the simulator's detector truth."

    def fits_ref(reftype: str, model: str, descrip: str, hdus: list, extra: Mapping[str, Any]) -> None:
        name = _name(ctx, reftype, "fits")
        header = {**_standard(ctx, reftype, model, descrip, name), **extra}
        refs[reftype] = _write_fits(out / name, header, hdus, hist)

    full = _full_subarray(ctx, n)
    bad = (props.dq & dqflags.DO_NOT_USE).astype(np.uint32)
    no_dq = np.zeros((n, n), np.uint32)

    fits_ref("mask", "MaskModel", "Bad pixel mask", [_image(props.dq, "DQ"), _dq_def(DQ_DEF)],
             {**full, "EXP_TYPE": ctx.exp_type, "P_EXP_TY": f"{ctx.exp_type}|"})
    fits_ref("saturation", "SaturationModel", "Saturation thresholds [DN, raw incl. bias]",
             [_image(props.saturation, "SCI", "DN"), _image(no_dq, "DQ"), _dq_def(DQ_DEF)], full)
    fits_ref("superbias", "SuperBiasModel", "Superbias [DN]",
             [_image(props.superbias, "SCI", "DN"), _image(np.full((n, n), 2.0, np.float32), "ERR", "DN"),
              _image(bad, "DQ"), _dq_def(DQ_DEF)], {**full, "READPATT": "ANY"})
    coeffs = np.stack([np.zeros((n, n), np.float32), np.ones((n, n), np.float32), props.c2, props.c3])
    fits_ref("linearity", "LinearityModel", "Linearity correction: lin = sum COEFFS[k] raw^k",
             [_image(coeffs, "COEFFS"), _image(no_dq, "DQ"), _dq_def(DQ_DEF)], full)
    fits_ref("gain", "GainModel", "Gain [e-/DN]", [_image(props.gain, "SCI", "electron/DN")], full)
    fits_ref("readnoise", "ReadnoiseModel", "CDS read noise [DN]",
             [_image(props.readnoise, "SCI", "DN")], {**full, "READPATT": "ANY"})
    fits_ref("ipc", "IPCModel", "3x3 IPC deconvolution kernel (data are convolved with it)",
             [_image(deconvolution_kernel(IPC_KERNEL), "SCI")], {})
    fits_ref("flat", "FlatModel", "Flat field (science is divided by it)",
             [_image(props.flat, "SCI"), _image(np.full((n, n), 0.005, np.float32), "ERR"),
              _image(no_dq, "DQ"), _dq_def(DQ_DEF)],
             {**full, "FILTER": ctx.filter, "PUPIL": ctx.pupil, "EXP_TYPE": ctx.exp_type})
    fits_ref("area", "PixelAreaModel", "Pixel area relative to PIXAR_SR (from the distortion)",
             [_image(props.area, "SCI")],
             {**full, "FILTER": ctx.filter, "PUPIL": ctx.pupil, "EXP_TYPE": ctx.exp_type,
              "PIXAR_SR": ctx.pixar_sr, "PIXAR_A2": ctx.pixar_a2})

    ys, xs = geom.slices
    frames = np.arange(1, geom.nframes_read + 1, dtype=np.float32) * np.float32(geom.tframe)
    dark_rate, dark_gain = props.dark[ys, xs], props.gain[ys, xs]

    def dark_planes() -> Iterator[np.ndarray]:
        for t in frames:
            yield dark_rate * t

    def dark_err_planes() -> Iterator[np.ndarray]:
        for plane in dark_planes():
            err = plane / dark_gain
            np.sqrt(err, out=err)
            err *= np.float32(0.1)
            yield err

    dark_hdr = {"SUBARRAY": ctx.subarray, "SUBSTRT1": geom.xstart, "SUBSTRT2": geom.ystart,
                "SUBSIZE1": geom.xsize, "SUBSIZE2": geom.ysize, "FASTAXIS": ctx.fastaxis,
                "SLOWAXIS": ctx.slowaxis, "READPATT": "RAPID", "NFRAMES": 1, "GROUPGAP": 0,
                "NGROUPS": geom.nframes_read, "NINTS": 1, "NOUTPUTS": ctx.noutputs,
                "EXP_TYPE": ctx.exp_type, "P_EXP_TY": f"{ctx.exp_type}|"}
    # Written plane by plane: a long readout's frame-resolved dark can be several GB.
    dark_name = _name(ctx, "dark", "fits")
    dark_shape = (geom.nframes_read, geom.ysize, geom.xsize)
    fitsstream.write_fits(
        out / dark_name,
        _primary({**_standard(ctx, "dark", "DarkModel", "Frame-resolved dark [DN] = dark_rate * (k+1) * TFRAME",
                              dark_name), **dark_hdr}, hist),
        [fitsstream.StreamedImage("SCI", dark_shape, np.float32, dark_planes, {"BUNIT": "DN"}),
         fitsstream.StreamedImage("ERR", dark_shape, np.float32, dark_err_planes, {"BUNIT": "DN"})],
        [_image((props.dq[ys, xs] & dqflags.HOT).astype(np.uint32), "DQ"), _dq_def(DQ_DEF)])
    refs["dark"] = out / dark_name

    filters = list(scene.PHOTMJSR)
    photom = Table({"filter": np.array(filters, "S12"), "pupil": np.array(["CLEAR"] * len(filters), "S12"),
                    "photmjsr": np.array([scene.PHOTMJSR[f] for f in filters], np.float32),
                    "uncertainty": np.array([0.01 * scene.PHOTMJSR[f] for f in filters], np.float32)})
    fits_ref("photom", "NrcImgPhotomModel", "Imaging flux conversion (MJy/sr per DN/s)",
             [fits.BinTableHDU(photom, name="PHOTOM")],
             {"EXP_TYPE": ctx.exp_type, "P_EXP_TY": f"{ctx.exp_type}|",
              "PIXAR_SR": ctx.pixar_sr, "PIXAR_A2": ctx.pixar_a2})

    # Measured on the rendered, pixel-integrated PSF as source_catalog measures a star.
    pixscale = np.sqrt(ctx.pixar_a2)
    rows: list[tuple] = []
    for f in filters:
        alpha = scene.moffat_alpha(scene.PSF_FWHM[f] / pixscale)
        for row in scene.aperture_corrections(alpha, EE_FRACTIONS):
            rows.append((f, "CLEAR", row.eefraction, row.radius, row.apcorr, row.skyin, row.skyout))
    apcorr = Table(rows=rows, names=("filter", "pupil", "eefraction", "radius", "apcorr", "skyin", "skyout"),
                   dtype=("S12", "S15", "f4", "f4", "f4", "f4", "f4"))
    fits_ref("apcorr", "NrcImgApcorrModel", "Aperture corrections of the rendered pixel-integrated Moffat PSF",
             [fits.BinTableHDU(apcorr, name="APCORR")],
             {"EXP_TYPE": ctx.exp_type, "P_EXP_TY": f"{ctx.exp_type}|"})

    def asdf_ref(reftype: str, tree: dict[str, Any]) -> None:
        path = out / _name(ctx, reftype, "asdf")
        tree["meta"]["filename"] = path.name
        tree["history"] = {"entries": [{"description": hist,
                                        "time": datetime.datetime(2026, 1, 1)}]}
        asdf.AsdfFile(tree).write_to(path)
        refs[reftype] = path

    dist_meta = _asdf_meta(ctx, "distortion", "DistortionModel",
                           f"SIAF {ap.name.split('_')[0]}_FULL distortion: 0-based pixel -> V2V3 arcsec",
                           "", input_units="pixel", output_units="arcsec")
    dist_meta["instrument"].update({"filter": "N/A", "pupil": "ANY", "p_pupil": "ANY|"})
    asdf_ref("distortion", {"meta": dist_meta, "model": distortion})
    off_meta = _asdf_meta(ctx, "filteroffset", "FilteroffsetModel", "Filter offsets (zero)", "")
    asdf_ref("filteroffset", {"meta": off_meta, "filters": [
        {"filter": f, "pupil": "CLEAR", "column_offset": 0.0, "row_offset": 0.0} for f in filters]})
    abvega = Table({"filter": filters, "pupil": ["CLEAR"] * len(filters),
                    "abvega_offset": np.array([ABVEGA[f] for f in filters], np.float32)})
    ab_meta = _asdf_meta(ctx, "abvegaoffset", "ABVegaOffsetModel", "AB - Vega offsets", "")
    asdf_ref("abvegaoffset", {"meta": ab_meta, "abvega_offset": abvega})
    log.info("wrote %d reference files to %s", len(refs), out)
    return refs
