"""Lazy access to the HDUs of a FITS file at any fsspec URL.

``scan`` reads the headers (and small binary tables) of a file without touching image
data; ``ImageRegion`` describes one image HDU's bytes on disk and reads any block of it,
so Dask tasks read only their own tile.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning

from jwdask.errors import InputError

# (BITPIX, BZERO) of the unsigned types JWST writes, and the sign-bit mask that maps them.
_UNSIGNED = {(16, 32768): (np.uint16, 0x8000), (32, 2147483648): (np.uint32, 0x80000000)}
_DISK = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def disk_layout(dtype: np.dtype) -> tuple[int, float, str, int]:
    """``(BITPIX, BZERO, big-endian disk dtype, sign mask)`` for writing a logical dtype."""
    dtype = np.dtype(dtype)
    for (bitpix, bzero), (logical, mask) in _UNSIGNED.items():
        if dtype == logical:
            return bitpix, bzero, _DISK[bitpix].replace("i", "u"), mask
    for bitpix, disk in _DISK.items():
        if np.dtype(disk).newbyteorder("=") == dtype:
            return bitpix, 0.0, disk, 0
    msg = f"no FITS image layout for dtype {dtype}"
    raise TypeError(msg)


@dataclass(frozen=True)
class ImageRegion:
    """The data of one image HDU: where it lies in the file and how to decode it.

    Behaves as a read-only array (``shape``, ``dtype``, ``ndim``, ``__getitem__`` with
    slices), so ``dask.array.from_array`` can wrap it; each read opens the file, reads the
    contiguous row bands of the requested block and returns native-byte-order values.
    """

    url: str
    offset: int
    shape: tuple[int, ...]
    bitpix: int
    bzero: float = 0.0
    bscale: float = 1.0
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype:
        if (self.bitpix, self.bzero) in _UNSIGNED and self.bscale == 1:
            return np.dtype(_UNSIGNED[(self.bitpix, self.bzero)][0])
        if self.bzero == 0 and self.bscale == 1:
            return np.dtype(_DISK[self.bitpix]).newbyteorder("=")
        return np.dtype(np.float64 if self.bitpix in (32, 64, -64) else np.float32)

    @property
    def nbytes_on_disk(self) -> int:
        return math.prod(self.shape) * abs(self.bitpix) // 8

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        ranges = [range(*k.indices(n)) if isinstance(k, slice) else range(k, k + 1)
                  for k, n in zip(key, self.shape, strict=True)]
        raw = self._read(ranges)
        out = self._decode(raw)
        squeeze = tuple(i for i, k in enumerate(key) if not isinstance(k, slice))
        return out.squeeze(axis=squeeze) if squeeze else out

    def _read(self, ranges: list[range]) -> np.ndarray:
        disk = np.dtype(_DISK[self.bitpix])
        shape_out = tuple(len(r) for r in ranges)
        out = np.empty(shape_out, dtype=disk)
        if 0 in shape_out:
            return out
        row_len = self.shape[-1] * disk.itemsize
        rows = ranges[-2] if self.ndim >= 2 else range(1)
        lead = ranges[:-2]
        fs, path = fsspec.core.url_to_fs(self.url, **self.storage_options)
        with fs.open(path, "rb") as f:
            for index in np.ndindex(*(len(r) for r in lead)):
                plane = 0
                for axis, i in enumerate(index):
                    plane = plane * self.shape[axis] + lead[axis][i]
                first, last = rows[0], rows[-1]
                f.seek(self.offset + (plane * self.shape[-2] + first) * row_len if self.ndim >= 2
                       else self.offset)
                nbytes = (last - first + 1) * row_len
                buf = f.read(nbytes)
                if len(buf) != nbytes:
                    raise InputError(self.url, "data", "file is truncated")
                band = np.frombuffer(buf, dtype=disk).reshape(last - first + 1, self.shape[-1])
                out[index] = band[:: rows.step, ranges[-1].start : ranges[-1].stop : ranges[-1].step]
        return out

    def _decode(self, raw: np.ndarray) -> np.ndarray:
        if (self.bitpix, self.bzero) in _UNSIGNED and self.bscale == 1:
            logical, mask = _UNSIGNED[(self.bitpix, self.bzero)]
            return (raw.view(raw.dtype.str.replace("i", "u")) ^ mask).astype(logical)
        if self.bzero == 0 and self.bscale == 1:
            return raw.astype(raw.dtype.newbyteorder("="))
        return (raw.astype(self.dtype) * self.bscale + self.bzero).astype(self.dtype)


@dataclass
class ScannedFile:
    """Headers, image regions and small tables of one FITS file."""

    url: str
    headers: dict[str, fits.Header]
    images: dict[str, ImageRegion]
    tables: dict[str, Table]
    asdf_bytes: bytes | None


def scan(url: str, storage_options: Mapping[str, Any] | None = None) -> ScannedFile:
    """Read every header of the FITS file at ``url`` (and its binary tables), not its images.

    Raises
    ------
    InputError
        If the URL cannot be opened, is not FITS, or is truncated; the message names it.
    """
    options = dict(storage_options or {})
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
        size = fs.size(path)
        with fs.open(path, "rb") as f:
            return _scan_open(url, f, size, options)
    except InputError:
        raise
    except FileNotFoundError as exc:
        raise InputError(url, "", "no such file") from exc
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise InputError(url, "", f"cannot read as FITS ({exc})") from exc


def _scan_open(url: str, f: Any, size: int, options: dict[str, Any]) -> ScannedFile:
    head = f.read(30)
    if not head.startswith(b"SIMPLE  =") or head[29:30] != b"T":
        raise InputError(url, "", "not a FITS file (no SIMPLE = T card)")
    f.seek(0)
    headers: dict[str, fits.Header] = {}
    images: dict[str, ImageRegion] = {}
    tables: dict[str, Table] = {}
    asdf_bytes = None
    with warnings.catch_warnings(), \
            fits.open(f, do_not_scale_image_data=True, lazy_load_hdus=True, memmap=False) as hdul:
        warnings.simplefilter("ignore", AstropyUserWarning)  # truncation is reported below
        for index, hdu in enumerate(hdul):
            name = "PRIMARY" if index == 0 else str(hdu.header.get("EXTNAME", f"HDU{index}")).upper()
            headers[name] = hdu.header.copy()
            info = hdu.fileinfo()
            naxis = [hdu.header.get(f"NAXIS{i}", 0) for i in range(hdu.header.get("NAXIS", 0), 0, -1)]
            nbytes = abs(hdu.header["BITPIX"]) // 8 * math.prod(naxis) if naxis else 0
            if isinstance(hdu, fits.BinTableHDU):
                nbytes = hdu.header["NAXIS1"] * hdu.header["NAXIS2"] + hdu.header.get("PCOUNT", 0)
            if info["datLoc"] + nbytes > size:
                raise InputError(url, name, f"file is truncated: {name} data needs "
                                 f"{info['datLoc'] + nbytes} bytes, file has {size}")
            if isinstance(hdu, fits.BinTableHDU):
                if name == "ASDF":
                    asdf_bytes = np.asarray(hdu.data["ASDF_METADATA"][0], np.uint8).tobytes()
                else:
                    tables[name] = Table(hdu.data)
            elif naxis:
                images[name] = ImageRegion(
                    url, info["datLoc"], tuple(int(n) for n in naxis), int(hdu.header["BITPIX"]),
                    float(hdu.header.get("BZERO", 0.0)), float(hdu.header.get("BSCALE", 1.0)), options)
    return ScannedFile(url, headers, images, tables, asdf_bytes)
