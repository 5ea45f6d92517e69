"""JWST product layouts (formats.md §2) and their FITS writer and reader.

A product is a Dataset whose variables are named after the lower-cased EXTNAMEs of the
layout (``sci``, ``err``, ``dq``, ``var_poisson``...). Writing computes the arrays block by
block straight into a temporary file next to the destination, which is renamed into place
only when every block is written: a failed run leaves no product behind.
"""

from __future__ import annotations

import datetime
import io
import logging
import os
import posixpath
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asdf
import dask
import dask.array as da
import fsspec
import numpy as np
import xarray as xr
from astropy.io import fits
from dask.delayed import Delayed

from jwdask import __version__, cluster
from jwdask.errors import InputError
from jwdask.io import keywords
from jwdask.io.asdf_hdu import asdf_hdu, fits_array_stub
from jwdask.io.fitsfile import disk_layout, scan
from jwdask.io.tables import dataset_table, with_tables
from jwdask.io.uncal import DEFAULT_TILE, detector_coords, header_meta, lazy_image
from jwdask.tiles import after_blocks, as_delayed

log = logging.getLogger(__name__)

IMAGE = ("y", "x")
CUBE = ("integration", "y", "x")
RAMP = ("integration", "group", "y", "x")


@dataclass(frozen=True)
class ArraySpec:
    """One image HDU of a product: EXTNAME, logical dtype, dims, unit role, optional; a
    ``header_only`` HDU missing from the Dataset is still written, without data (NAXIS = 0),
    when the metadata has keywords for it (as jwst writes an array it never set)."""

    extname: str
    dtype: str
    dims: tuple[str, ...]
    unit: str | None = None  # "data" (SCI's unit), "err" (ERR's unit) or None
    optional: bool = False
    header_only: bool = False

    @property
    def var(self) -> str:
        return self.extname.lower()

    @property
    def asdf_attr(self) -> str:
        return {"SCI": "data"}.get(self.extname, self.extname.lower())


@dataclass(frozen=True)
class ProductSpec:
    """A product layout: datamodel class, image HDUs in order, tables, detector frame."""

    suffix: str
    model_type: str
    arrays: tuple[ArraySpec, ...]
    tables: tuple[str, ...] = ()
    detector_frame: bool = True

    def array(self, extname: str) -> ArraySpec | None:
        return next((a for a in self.arrays if a.extname == extname), None)


def _science(dims: tuple[str, ...], *extra: ArraySpec, var_flat: bool = False) -> tuple[ArraySpec, ...]:
    out = [ArraySpec("SCI", "float32", dims, "data"), ArraySpec("ERR", "float32", dims, "err"),
           ArraySpec("DQ", "uint32", dims), *extra,
           ArraySpec("VAR_POISSON", "float32", dims), ArraySpec("VAR_RNOISE", "float32", dims)]
    if var_flat:
        out.append(ArraySpec("VAR_FLAT", "float32", dims))
    return tuple(out)


_AREA = ArraySpec("AREA", "float32", IMAGE, optional=True)
PRODUCTS: dict[str, ProductSpec] = {
    "ramp": ProductSpec("ramp", "RampModel", (
        ArraySpec("SCI", "float32", RAMP, "data"), ArraySpec("PIXELDQ", "uint32", IMAGE),
        ArraySpec("GROUPDQ", "uint8", RAMP),
        ArraySpec("ZEROFRAME", "float32", CUBE, optional=True)), ("GROUP", "INT_TIMES")),
    "rate": ProductSpec("rate", "ImageModel", _science(IMAGE)),
    "rateints": ProductSpec("rateints", "CubeModel", _science(CUBE), ("INT_TIMES",)),
    "cal": ProductSpec("cal", "ImageModel", _science(IMAGE, _AREA, var_flat=True)),
    "calints": ProductSpec("calints", "CubeModel", _science(CUBE, _AREA, var_flat=True), ("INT_TIMES",)),
    "crf": ProductSpec("crf", "ImageModel", _science(IMAGE, _AREA, var_flat=True)),
    "i2d": ProductSpec("i2d", "ImageModel", (
        ArraySpec("SCI", "float32", IMAGE, "data"), ArraySpec("ERR", "float32", IMAGE, "err", optional=True),
        ArraySpec("CON", "int32", ("plane", "y", "x"), optional=True), ArraySpec("WHT", "float32", IMAGE),
        ArraySpec("VAR_POISSON", "float32", IMAGE, optional=True),
        ArraySpec("VAR_RNOISE", "float32", IMAGE, optional=True),
        ArraySpec("VAR_FLAT", "float32", IMAGE, optional=True), ArraySpec("DQ", "uint32", IMAGE, optional=True)),
        ("HDRTAB",), detector_frame=False),
    "median": ProductSpec("median", "ImageModel", (ArraySpec("SCI", "float32", IMAGE, "data"),),
                          detector_frame=False),
    "blot": ProductSpec("blot", "ImageModel", (
        ArraySpec("SCI", "float32", IMAGE, "data"),
        ArraySpec("ERR", "float32", IMAGE, "err", optional=True, header_only=True))),
    "segm": ProductSpec("segm", "SegmentationMapModel", (ArraySpec("SCI", "uint32", IMAGE),),
                        detector_frame=False),
    "combinedbackground": ProductSpec("combinedbackground", "ImageModel", (
        ArraySpec("SCI", "float32", IMAGE, "data"), ArraySpec("ERR", "float32", IMAGE, "err"),
        ArraySpec("DQ", "uint32", IMAGE))),
}
"""Every product jwdask writes, keyed by its file-name suffix."""


def product_url(out_dir: str, meta: Mapping[str, Any], suffix: str) -> str:
    """``<out_dir>/<exposure root>_<suffix>.fits`` from the input's file name."""
    name = posixpath.basename(str(keywords.get(meta, "filename", "exposure.fits")))
    stem = name.removesuffix(".fits")
    root = stem.rsplit("_", 1)[0] if "_" in stem else stem
    return posixpath.join(str(out_dir).rstrip("/"), f"{root}_{suffix}.fits")


# ------------------------------------------------------------------------------ writing

@dataclass
class PendingWrite:
    """A product whose file skeleton exists under a temporary name; computing ``delayed``
    fills its arrays and renames it into place."""

    url: str
    tmp: str | None
    delayed: Delayed

    def cleanup(self) -> None:
        """Remove the temporary file of a write that did not complete."""
        if self.tmp and os.path.exists(self.tmp):
            os.remove(self.tmp)


def write_product(ds: xr.Dataset, url: str, kind: str, *,
                  storage_options: Mapping[str, Any] | None = None) -> str:
    """Compute and write one product; returns its URL. See :func:`prepare_write`."""
    return compute_writes([prepare_write(ds, url, kind, storage_options=storage_options)])[0]


def compute_writes(pending: Iterable[PendingWrite], *, also: Iterable[Any] = (),
                   progress: bool = False) -> list[str]:
    """Compute several prepared writes in one ``dask.compute`` (they share the graph and
    interleave on the cluster), with ``also``: delayed writers each returning a list of the
    URLs they wrote (a catalog). On any failure every temporary file is removed.

    Returns the URLs of the writes, then those of ``also``."""
    pending = list(pending)
    try:
        results = cluster.compute(*[p.delayed for p in pending], *also, progress=progress)
    except BaseException:
        for p in pending:
            p.cleanup()
        raise
    urls = [str(u) for u in results[:len(pending)]]
    for written in results[len(pending):]:
        urls += [str(u) for u in written]
    return urls


def prepare_write(ds: xr.Dataset, url: str, kind: str, *,
                  storage_options: Mapping[str, Any] | None = None) -> PendingWrite:
    """Lay out product ``kind`` of ``ds`` at ``url`` and return the pending write.

    For a local path, headers are written now to a hidden temporary file in the target
    folder and every array block is stored into it by its own task; the file is renamed
    to ``url`` once all blocks are in. For other fsspec URLs the arrays are computed and
    the file is uploaded in one piece by a single task.
    """
    spec = PRODUCTS[kind]
    arrays = _product_arrays(ds, spec, url)
    meta = _product_meta(ds, spec, url, arrays)
    tables = {name: dataset_table(ds, name.lower()) for name in spec.tables
              if name.lower() in ds.attrs.get("tables", {})}
    tree = _asdf_tree(meta, spec, arrays, ds.attrs.get("wcs"))
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    if "file" in fs.protocol or "local" in fs.protocol:
        return _prepare_local(path, meta, spec, arrays, tables, tree)
    write = dask.delayed(_write_remote, pure=False)(
        url, dict(storage_options or {}), meta, spec, list(arrays), [as_delayed(a) for a in arrays.values()],
        tables, tree)
    return PendingWrite(url, None, write)


def _product_arrays(ds: xr.Dataset, spec: ProductSpec, url: str) -> dict[str, da.Array]:
    out = {}
    for a in spec.arrays:
        if a.var not in ds:
            if a.optional:
                continue
            raise InputError(url, a.extname, f"the Dataset has no '{a.var}' variable for a {spec.suffix} product")
        var = ds[a.var]
        if var.dims != a.dims:
            raise InputError(url, a.extname, f"dims {var.dims} are not {a.dims} for a {spec.suffix} product")
        data = var.data if isinstance(var.data, da.Array) else da.from_array(np.asarray(var.data))
        out[a.extname] = data.astype(a.dtype)
    return out


def _product_meta(ds: xr.Dataset, spec: ProductSpec, url: str, arrays: Mapping[str, da.Array]) -> dict[str, Any]:
    meta = _deepcopy(ds.attrs.get("meta", {}))
    meta["model_type"] = spec.model_type
    meta["filename"] = posixpath.basename(url)
    meta["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    meta["calibration_software_name"] = "jwdask"
    meta["calibration_software_version"] = __version__
    for extname, role in (("SCI", "data"), ("ERR", "err")):
        if extname in arrays and (unit := ds[extname.lower()].attrs.get("units")):
            meta[f"bunit_{role}"] = unit
    return meta


def _deepcopy(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deepcopy(v) if isinstance(v, Mapping) else v for k, v in meta.items()}


def _asdf_tree(meta: Mapping[str, Any], spec: ProductSpec, arrays: Mapping[str, da.Array],
               wcs: Any) -> dict[str, Any]:
    tree_meta: dict[str, Any] = {"model_type": spec.model_type}
    for key in ("bunit_data", "bunit_err"):
        if key in meta:
            tree_meta[key] = meta[key]
    if wcs is not None:
        tree_meta["wcs"] = wcs
    tree: dict[str, Any] = {"meta": tree_meta}
    for extname, data in arrays.items():
        a = spec.array(extname)
        tree[a.asdf_attr] = fits_array_stub(extname, data.shape, a.dtype)
    return tree


def _headers(meta: Mapping[str, Any], spec: ProductSpec,
             arrays: Mapping[str, Any]) -> tuple[fits.Header, list[tuple[fits.Header, np.dtype | None, str, int]]]:
    primary = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("EXTEND", True)])
    _add_cards(primary, keywords.meta_to_cards(meta, "PRIMARY"))
    images = []
    for a in spec.arrays:
        if a.extname not in arrays:
            cards = list(keywords.meta_to_cards(meta, a.extname)) if a.header_only else []
            if cards:
                header = fits.Header([("XTENSION", "IMAGE"), ("BITPIX", 8), ("NAXIS", 0), ("PCOUNT", 0),
                                      ("GCOUNT", 1), ("EXTNAME", a.extname), ("EXTVER", 1)])
                _add_cards(header, cards)
                images.append((header, None, a.extname, 0))
            continue
        extname, data = a.extname, arrays[a.extname]
        bitpix, bzero, disk, mask = disk_layout(np.dtype(a.dtype))
        header = fits.Header([("XTENSION", "IMAGE"), ("BITPIX", bitpix), ("NAXIS", data.ndim)])
        for i, n in enumerate(reversed(data.shape), start=1):
            header[f"NAXIS{i}"] = int(n)
        header["PCOUNT"], header["GCOUNT"] = 0, 1
        if bzero:
            header["BZERO"], header["BSCALE"] = int(bzero), 1
        header["EXTNAME"], header["EXTVER"] = extname, 1
        if extname in ("SCI", "ERR"):
            _add_cards(header, keywords.meta_to_cards(meta, extname))
        images.append((header, np.dtype(disk), extname, mask))
    return primary, images


def _add_cards(header: fits.Header, cards: Iterable[tuple[str, Any]]) -> None:
    for key, value in cards:
        if key not in header:
            header[key] = value


def _table_bytes(tables: Mapping[str, Any], tree: Mapping[str, Any]) -> bytes:
    """The bytes of the table HDUs (and the final ASDF HDU), without a primary HDU."""
    hdus = [fits.BinTableHDU(table, name=name) for name, table in tables.items()]
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), *hdus, asdf_hdu(tree)]).writeto(buf)
    return buf.getvalue()[len(fits.PrimaryHDU().header.tostring()):]


def _pad(n: int) -> int:
    return -(-n // 2880) * 2880


def _prepare_local(path: str, meta: dict[str, Any], spec: ProductSpec, arrays: dict[str, da.Array],
                   tables: dict[str, Any], tree: dict[str, Any]) -> PendingWrite:
    final = os.path.abspath(path)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    tmp = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.tmp-{uuid.uuid4().hex[:8]}")
    primary, images = _headers(meta, spec, arrays)
    targets, sources = [], []
    try:
        with open(tmp, "wb") as f:
            f.write(primary.tostring().encode("ascii"))
            for header, disk, extname, mask in images:
                f.write(header.tostring().encode("ascii"))
                if disk is None:  # a header-only HDU
                    continue
                offset = f.tell()
                data = arrays[extname]
                targets.append(FitsBlockTarget(tmp, offset, data.shape, disk.str, mask))
                sources.append(data)
                f.seek(offset + _pad(data.size * disk.itemsize))
            f.truncate(f.tell())
            f.write(_table_bytes(tables, tree))
    except BaseException:
        os.remove(tmp)
        raise
    stored = da.store(sources, targets, lock=False, compute=False, optimize_graph=False)
    if isinstance(stored, da.Array):  # one image HDU (median, segm...): the array, not a tuple
        stored = (stored,)
    # The block tasks by their own keys: handing dask the arrays would give each a renamed,
    # separately optimized copy of its graph, and the products' shared upstream tasks (the
    # ramp fit, for rate and rateints) would run once per array.
    return PendingWrite(final, tmp, after_blocks(_commit, tmp, final, arrays=stored, name=f"commit-{uuid.uuid4().hex}"))


def _commit(tmp: str, final: str, _stored: Any) -> str:
    os.replace(tmp, final)
    log.info("wrote %s", final)
    return final


@dataclass(frozen=True)
class FitsBlockTarget:
    """A ``da.store`` target: one image HDU's data region in a FITS file on a shared disk.

    Each block is encoded to big-endian (with the BZERO sign flip for unsigned types) and
    written at its place in the file by the task that computed it, with one ``pwrite`` per
    contiguous run of the block on disk (the whole block when it spans the trailing axes;
    else one per row): no memory map to flush.
    """

    path: str
    offset: int
    shape: tuple[int, ...]
    disk: str
    mask: int

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        data = np.ascontiguousarray(encode(value, np.dtype(self.disk), self.mask))
        if data.ndim == 0 or data.size == 0:
            return
        starts = [0 if k.start is None else int(k.start) for k in key]
        # axes from `lead` on are written in one run: all full but the first of them
        lead = data.ndim - 1
        while lead > 0 and data.shape[lead] == self.shape[lead]:
            lead -= 1
        strides = np.cumprod((1, *self.shape[::-1][:-1]))[::-1]
        itemsize = data.dtype.itemsize
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for index in np.ndindex(*data.shape[:lead]):
                position = sum((s + i) * int(st) for s, i, st in zip(starts, index, strides, strict=False))
                position += starts[lead] * int(strides[lead])
                os.pwrite(fd, data[index].tobytes(), self.offset + position * itemsize)
        finally:
            os.close(fd)


def encode(value: np.ndarray, disk: np.dtype, mask: int) -> np.ndarray:
    """Logical values -> on-disk big-endian values (unsigned types get the sign bit flipped)."""
    out = np.asarray(value).astype(disk)
    if mask:
        out ^= np.array(mask, dtype=disk)
    return out


def _write_remote(url: str, storage_options: dict[str, Any], meta: dict[str, Any], spec: ProductSpec,
                  names: list[str], values: list[np.ndarray], tables: dict[str, Any],
                  tree: dict[str, Any]) -> str:
    by_name = dict(zip(names, values, strict=True))
    primary, images = _headers(meta, spec, by_name)
    buf = io.BytesIO()
    buf.write(primary.tostring().encode("ascii"))
    for header, disk, extname, mask in images:
        buf.write(header.tostring().encode("ascii"))
        if disk is None:  # a header-only HDU
            continue
        raw = encode(by_name[extname], disk, mask).tobytes()
        buf.write(raw + b"\0" * (_pad(len(raw)) - len(raw)))
    buf.write(_table_bytes(tables, tree))
    with fsspec.open(url, "wb", **storage_options) as f:
        f.write(buf.getvalue())
    return url


# ------------------------------------------------------------------------------ reading

def product_kind(url: str, model_type: str | None) -> str:
    """The product kind of a file, from its suffix, else from its DATAMODL."""
    stem = posixpath.basename(url).removesuffix(".fits")
    suffix = stem.rsplit("_", 1)[-1]
    if suffix in PRODUCTS:
        return suffix
    by_model = {"ImageModel": "cal", "CubeModel": "calints", "RampModel": "ramp",
                "SegmentationMapModel": "segm"}
    if model_type in by_model:
        return by_model[model_type]
    raise InputError(url, "PRIMARY DATAMODL", f"unknown product type {model_type!r}")


def open_product(url: str, *, tile: tuple[int, int] = DEFAULT_TILE,
                 storage_options: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Open any product written by jwdask or jwst (rate, rateints, cal, i2d...) lazily.

    Returns a Dataset like the one the product was written from: image HDUs as dask-backed
    variables chunked in (y, x) tiles, tables as ``<table>.<column>`` variables,
    ``attrs["meta"]`` from the headers and ``attrs["wcs"]`` (a gwcs) when the ASDF
    extension holds one.
    """
    scanned = scan(url, storage_options)
    if "SCI" not in scanned.images:
        raise InputError(url, "SCI", "no SCI image extension")
    meta = header_meta(scanned)
    kind = product_kind(url, meta.get("model_type"))
    spec = PRODUCTS[kind]
    variables = {}
    for extname, region in scanned.images.items():
        a = spec.array(extname)
        dims = a.dims if a is not None and len(a.dims) == region.ndim else _generic_dims(region.ndim)
        unit = scanned.headers[extname].get("BUNIT")
        variables[extname.lower()] = xr.DataArray(
            lazy_image(region, dims, tile, f"{kind}-{extname.lower()}"), dims=dims,
            attrs={"units": unit} if unit else {})
    ny, nx = scanned.images["SCI"].shape[-2:]
    coords = detector_coords(meta, ny, nx) if spec.detector_frame else {"y": np.arange(ny), "x": np.arange(nx)}
    attrs: dict[str, Any] = {"meta": meta, "kind": kind, "source": url}
    wcs = _asdf_wcs(scanned.asdf_bytes)
    if wcs is not None:
        attrs["wcs"] = wcs
    ds = xr.Dataset(variables, coords=coords, attrs=attrs)
    return with_tables(ds, scanned.tables)


def _generic_dims(ndim: int) -> tuple[str, ...]:
    return ("integration", "group", "y", "x")[-ndim:] if ndim <= 4 else tuple(f"dim_{i}" for i in range(ndim))


def _asdf_wcs(raw: bytes | None) -> Any:
    if not raw:
        return None
    with asdf.open(io.BytesIO(raw), lazy_load=True, lazy_tree=True, memmap=False) as af:
        meta = af.tree.get("meta", {})
        return meta.get("wcs") if hasattr(meta, "get") else None
