"""Readers of resolved reference files: lazy FITS images, FITS tables and ASDF trees."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml
from astropy.io import fits
from astropy.table import Table

from jwdask import dqflags
from jwdask.errors import InputError, ReferenceFileError
from jwdask.io import fitsfile, keywords
from jwdask.io.uncal import lazy_image
from jwdask.refs.selectors import (
    PATTERN_KEYWORDS,
    SELECTORS,
    meta_path,
    pattern_keyword,
)

log = logging.getLogger(__name__)

COEFF_HDUS = {"COEFFS": "coeff", "INV_COEFFS": "inv_coeff"}
KERNEL_REFTYPES = frozenset({"ipc"})
FULL_FRAME = {"MIRI": (1024, 1032)}
"""Full-frame ``(ny, nx)`` of instruments whose detectors are not 2048 x 2048."""
NIR_FULL_FRAME = (2048, 2048)
IRS2_ROWS = 3200
"""Rows of an IRS2-layout NIRSpec reference (MASK, SUPERBIAS), whose SUBSIZE2 stays 2048."""
HEADER_KEYWORDS = ("REFTYPE", "INSTRUME", "USEAFTER", "SUBARRAY", "SUBSTRT1", "SUBSTRT2",
                   "SUBSIZE1", "SUBSIZE2")
"""Keywords read from ASDF references besides the selectors and their ``P_*`` patterns."""


def full_frame(instrument: str) -> tuple[int, int]:
    """Full-frame ``(ny, nx)`` of an instrument's detectors."""
    return FULL_FRAME.get(instrument.upper(), NIR_FULL_FRAME)


def _asdf_keywords() -> list[str]:
    names = {k for rows in SELECTORS.values() for keys in rows.values() for k in keys}
    names |= set(HEADER_KEYWORDS)
    return sorted(names | {pattern_keyword(k) for k in names if k in PATTERN_KEYWORDS})


def header_of(path: str | Path) -> dict[str, Any]:
    """The selecting keywords of a reference: FITS PRIMARY cards, or an ASDF ``meta`` tree
    mapped to FITS keyword names.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is neither FITS nor ASDF.
    """
    path = Path(path)
    with path.open("rb") as f:
        magic = f.read(9)
    if magic.startswith(b"SIMPLE  ="):
        header = fits.getheader(path, 0)
        return {k: v for k, v in header.items() if k not in ("COMMENT", "HISTORY", "")}
    if magic.startswith(b"#ASDF"):
        meta = _asdf_yaml_tree(path).get("meta", {})
        values = {key: keywords.get(meta, meta_path(key)) for key in _asdf_keywords()}
        return {k: (str(v) if k == "USEAFTER" else v) for k, v in values.items() if v is not None}
    msg = "not a FITS or ASDF file"
    raise ValueError(msg)


class _TagBlindLoader(yaml.SafeLoader):
    """A YAML loader that reads ASDF-tagged nodes as plain mappings, lists and scalars."""


def _untagged(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_TagBlindLoader.add_multi_constructor("", _untagged)


def _asdf_yaml_tree(path: Path) -> dict[str, Any]:
    """The YAML tree of an ASDF file, read as plain data (no asdf extensions loaded, which
    takes seconds; selectors are plain strings). Binary blocks after the tree are not read."""
    lines = []
    with path.open("rb") as f:
        for line in f:
            if line.startswith(b"#"):
                continue
            lines.append(line)
            if line.rstrip() == b"...":
                break
    text = b"".join(lines).decode("utf-8")
    try:
        tree = yaml.load(text, Loader=_TagBlindLoader)
    except yaml.YAMLError as exc:
        msg = f"unreadable ASDF tree ({exc})"
        raise ValueError(msg) from exc
    return tree if isinstance(tree, dict) else {}


def _scan(reftype: str, path: str) -> fitsfile.ScannedFile:
    try:
        return fitsfile.scan(path)
    except InputError as exc:
        raise ReferenceFileError(reftype, f"{path}: {exc.reason}") from exc


def image_dims(reftype: str, hdu: str, ndim: int) -> tuple[str, ...]:
    """Dimension names of one image HDU of a reference.

    Parameters
    ----------
    reftype : str
        CRDS reference type.
    hdu : str
        EXTNAME (upper case).
    ndim : int
        Number of axes.

    Returns
    -------
    tuple of str
        ``(y, x)``; 3-D: ``coeff`` (COEFFS), ``inv_coeff`` (INV_COEFFS; the counts may differ), ``group`` (dark SCI/ERR) or ``plane``
        first; 4-D: ``(integration, group, y, x)`` (a MIRI dark's DQ: ``(integration,
        dq_plane, y, x)``), or ``(ky, kx, y, x)`` for a per-pixel ipc.
    """
    if ndim == 2:
        return ("y", "x")
    if ndim == 3:
        if hdu in COEFF_HDUS:
            lead = COEFF_HDUS[hdu]
        elif reftype == "dark" and hdu in ("SCI", "ERR"):
            lead = "group"
        else:
            lead = "plane"
        return (lead, "y", "x")
    if ndim == 4:
        if reftype in KERNEL_REFTYPES:
            return ("ky", "kx", "y", "x")
        if reftype == "dark" and hdu == "DQ":
            return ("integration", "dq_plane", "y", "x")
        return ("integration", "group", "y", "x")
    return tuple(f"axis{i}" for i in range(ndim - 2)) + ("y", "x")


def flat_header(header: fits.Header) -> dict[str, Any]:
    """A JSON-able ``{keyword: value}`` dict of a header (no COMMENT/HISTORY/blank cards)."""
    out: dict[str, Any] = {}
    for card in header.cards:
        if card.keyword in ("COMMENT", "HISTORY", ""):
            continue
        value = card.value
        if isinstance(value, fits.card.Undefined):
            value = None
        elif isinstance(value, np.generic):
            value = value.item()
        out[card.keyword] = value
    return out


def _origin(reftype: str, path: str, scanned: fitsfile.ScannedFile, shape: tuple[int, int]) -> tuple[int, int] | None:
    """0-based full-frame ``(y0, x0)`` of the reference's pixels, ``None`` for a small kernel."""
    primary = scanned.headers["PRIMARY"]
    sci = scanned.headers.get("SCI", fits.Header())
    starts = [primary.get(k, sci.get(k)) for k in ("SUBSTRT2", "SUBSTRT1")]
    if all(s is not None for s in starts):
        sizes = [primary.get(k, sci.get(k)) for k in ("SUBSIZE2", "SUBSIZE1")]
        if all(s is not None for s in sizes):
            declared = tuple(int(s) for s in sizes)
            irs2 = declared[0] == NIR_FULL_FRAME[0] and shape[0] == IRS2_ROWS  # as jwst, silently
            if declared != shape and not irs2:
                log.warning("%s: SUBSIZE2/1 %s differ from the image shape %s; using the shape",
                            path, declared, shape)
        return int(starts[0]) - 1, int(starts[1]) - 1
    expected = full_frame(str(primary.get("INSTRUME", "")))
    if shape == expected:
        return 0, 0
    if reftype in KERNEL_REFTYPES:
        return None
    msg = (f"{path}: image shape {shape} has no SUBSTRT1/2 keywords and is not the "
           f"full frame {expected}")
    raise ReferenceFileError(reftype, msg)


def open_image(reftype: str, path: str, *, tile: tuple[int, int] = (512, 512)) -> xr.Dataset:
    """A lazy Dataset of every image HDU of a FITS reference, with full-frame coordinates.

    Parameters
    ----------
    reftype : str
        CRDS reference type (decides dimension names).
    path : str
        The reference file.
    tile : tuple of int
        ``(y, x)`` chunk size of the dask arrays.

    Returns
    -------
    xarray.Dataset
        One variable per image HDU named in lower case; ``y``/``x`` are full-frame 0-based
        pixel indices (``SUBSTRT-1 + arange``). Small kernels (ipc 3x3) keep dims
        ``(ky, kx)`` and have no coordinates. ``attrs``: ``meta``, ``header`` (PRIMARY),
        ``filename``, ``reftype``.

    Raises
    ------
    ReferenceFileError
        If the file is unreadable, has no image, or is neither full frame nor has SUBSTRT.
    """
    scanned = _scan(reftype, path)
    images = {name: region for name, region in scanned.images.items() if region.ndim >= 2}
    if not images:
        raise ReferenceFileError(reftype, f"{path}: no image HDU")
    first = next(iter(images.values()))
    shape = (int(first.shape[-2]), int(first.shape[-1]))
    origin = _origin(reftype, path, scanned, shape)
    planes = dq_def_planes(reftype, path, scanned)
    variables: dict[str, xr.DataArray] = {}
    for name, region in images.items():
        dims = image_dims(reftype, name, region.ndim)
        if origin is None:
            dims = (*dims[:-2], "ky", "kx")
        elif (int(region.shape[-2]), int(region.shape[-1])) != shape:
            msg = f"{path}: {name} shape {region.shape} does not match the first image {shape}"
            raise ReferenceFileError(reftype, msg)
        chunk_dims = dims if origin is not None else tuple("kernel" for _ in dims)
        data = lazy_image(region, chunk_dims, tile, f"ref-{reftype}-{name.lower()}")
        if name == "DQ" and planes is not None:
            data = data.map_blocks(decode_dq, planes=planes, dtype=np.uint32)
        variables[name.lower()] = xr.DataArray(data, dims=dims)
    coords = {}
    if origin is not None:
        coords = {"y": np.arange(origin[0], origin[0] + shape[0]), "x": np.arange(origin[1], origin[1] + shape[1])}
    meta: dict[str, Any] = {}
    for hdu, header in scanned.headers.items():
        if hdu in keywords.by_hdu():
            keywords.header_to_meta(header, hdu, meta)
    attrs = {"meta": meta, "header": flat_header(scanned.headers["PRIMARY"]),
             "filename": Path(path).name, "path": str(path), "reftype": reftype}
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def dq_def_planes(reftype: str, path: str,
                  scanned: fitsfile.ScannedFile) -> tuple[tuple[int, int], ...] | None:
    """``(VALUE, standard flag)`` pairs of the reference's DQ_DEF table, None without one.

    stdatamodels decodes every reference dq through DQ_DEF, keeping only the bits a row
    names; rows with unknown names are ignored (with a warning), as there.
    """
    table = scanned.tables.get("DQ_DEF")
    if table is None or len(table) == 0:
        return None
    names = {c.upper(): c for c in table.colnames}
    if "VALUE" not in names or "NAME" not in names:
        raise ReferenceFileError(reftype, f"{path}: DQ_DEF has no VALUE/NAME columns ({table.colnames})")
    planes = []
    for row in table:
        name = row[names["NAME"]]
        name = (name.decode() if isinstance(name, bytes) else str(name)).strip()
        if name not in dqflags.PIXEL:
            log.warning("%s: DQ_DEF flag %s is not a known DQ mnemonic and is ignored", path, name)
            continue
        planes.append((int(row[names["VALUE"]]), dqflags.PIXEL[name]))
    return tuple(planes)


def decode_dq(dq: np.ndarray, planes: tuple[tuple[int, int], ...]) -> np.ndarray:
    """A reference dq translated through its DQ_DEF table (stdatamodels ``dynamic_mask``).

    Parameters
    ----------
    dq : ndarray
        Integer dq of a reference file, as stored.
    planes : tuple of (int, int)
        ``(VALUE, standard flag)`` per DQ_DEF row whose NAME is a known flag.

    Returns
    -------
    ndarray
        uint32: the standard flag wherever the stored dq has that row's VALUE bits; bits no row
        describes are dropped.

    Examples
    --------
    >>> decode_dq(np.array([1, 2, 6], np.uint32), ((2, 262144),)).tolist()
    [0, 262144, 262144]
    """
    out = np.zeros(dq.shape, np.uint32)
    dq = dq.astype(np.uint32)
    for value, standard in planes:
        out[(dq & np.uint32(value)) != 0] |= np.uint32(standard)
    return out


def open_table(reftype: str, path: str, extname: str) -> Table:
    """The binary table ``extname`` of a FITS reference.

    Raises
    ------
    ReferenceFileError
        If the file is unreadable or has no such table.
    """
    scanned = _scan(reftype, path)
    table = scanned.tables.get(extname.upper())
    if table is None:
        msg = f"{path}: no table HDU {extname.upper()} (has {sorted(scanned.tables)})"
        raise ReferenceFileError(reftype, msg)
    table.meta.update(flat_header(scanned.headers["PRIMARY"]))
    return table


def open_asdf(reftype: str, path: str) -> dict[str, Any]:
    """The whole tree of an ASDF reference, with arrays loaded into memory.

    Raises
    ------
    ReferenceFileError
        If the file cannot be read as ASDF.
    """
    import asdf

    try:
        with asdf.open(path, lazy_load=False, memmap=False) as af:
            return {k: v for k, v in af.tree.items() if not k.startswith("asdf_")}
    except (OSError, ValueError) as exc:
        raise ReferenceFileError(reftype, f"{path}: cannot read as ASDF ({exc})") from exc


def _span(ref_axis: np.ndarray, want: np.ndarray) -> slice | None:
    """Index slice of ``want`` in the contiguous axis ``ref_axis``; ``None`` if not covered."""
    if want.size == 0 or ref_axis.size == 0:
        return None
    lo = int(want[0]) - int(ref_axis[0])
    contiguous = bool(np.all(np.diff(want) == 1))
    if not contiguous or lo < 0 or lo + want.size > ref_axis.size:
        return None
    return slice(lo, lo + want.size)


def cut_to(ref: xr.Dataset, ds: xr.Dataset) -> xr.Dataset:
    """The part of a full-frame-coordinate reference under the exposure's pixels.

    Parameters
    ----------
    ref : xarray.Dataset
        From ``RefProvider.open``; a reference without ``y``/``x`` coordinates (a small
        kernel) is returned unchanged.
    ds : xarray.Dataset
        The exposure, with full-frame ``y``/``x`` coordinates.

    Returns
    -------
    xarray.Dataset
        ``ref.sel(y=ds.y, x=ds.x)``, still lazy.

    Raises
    ------
    ReferenceFileError
        If the reference does not cover the exposure's window; names the file and both windows.
    """
    if "y" not in ref.coords or "x" not in ref.coords:
        return ref
    ry, rx = ref["y"].values, ref["x"].values
    wy, wx = ds["y"].values, ds["x"].values
    ys, xs = _span(ry, wy), _span(rx, wx)
    if ys is None or xs is None:
        def extent(a: np.ndarray) -> str:
            return f"{int(a[0])}..{int(a[-1])}" if a.size else "empty"
        msg = (f"{ref.attrs.get('path', ref.attrs.get('filename', '?'))} covers y={extent(ry)} x={extent(rx)} "
               f"(0-based full frame), exposure needs y={extent(wy)} x={extent(wx)}")
        if wy.size > ry.size and wy.size == IRS2_ROWS:
            msg += ("; a NIRSpec IRS2 exposure needs this reference in the IRS2 layout (3200 rows, as CRDS "
                    "supplies for READPATT NRSIRS2*): jwst does not reformat 2048-row ones")
        raise ReferenceFileError(str(ref.attrs.get("reftype", "?")), msg)
    return ref.isel(y=ys, x=xs)
