"""Write large FITS images piece by piece, so big exposures never sit whole in memory.

:func:`write_fits` lays out a file of image HDUs whose data come from plane generators
(written as produced, in file order) or are reserved on disk and filled later through
:func:`open_image` (a writable memory map). Headers are made by astropy; tables and other
HDUs are appended with astropy after the images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

__all__ = ["RawImage", "StreamedImage", "open_image", "write_fits"]

BLOCK = 2880
"""FITS block size [bytes]."""

_BITPIX = {np.dtype(np.uint16): 16, np.dtype(np.int16): 16, np.dtype(np.uint32): 32, np.dtype(np.int32): 32,
           np.dtype(np.float32): -32, np.dtype(np.float64): -64, np.dtype(np.uint8): 8}
_BZERO = {np.dtype(np.uint16): 32768, np.dtype(np.uint32): 2**31}


@dataclass
class StreamedImage:
    """An image HDU whose data are the planes a callable yields, in order.

    Attributes
    ----------
    name : str
        EXTNAME.
    shape : tuple of int
        Array shape (C order); the planes stack along the first axis.
    dtype : numpy dtype
        Logical dtype (uint16/uint32 are stored with BZERO like astropy does).
    planes : callable, optional
        Returns an iterable of arrays of ``shape[1:]`` (or blocks of whole planes);
        None reserves the data area (zero bytes) to be filled through :func:`open_image`.
    header : mapping
        Extra keywords.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    planes: Callable[[], Iterable[np.ndarray]] | None = None
    header: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RawImage:
    """Where the data of an image HDU of a written file lie."""

    path: Path
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype


def _image_header(image: StreamedImage) -> fits.Header:
    dtype = np.dtype(image.dtype)
    header = fits.Header()
    header["XTENSION"] = "IMAGE"
    header["BITPIX"] = _BITPIX[dtype]
    header["NAXIS"] = len(image.shape)
    for axis, size in enumerate(reversed(image.shape), start=1):
        header[f"NAXIS{axis}"] = int(size)
    header["PCOUNT"] = 0
    header["GCOUNT"] = 1
    if dtype in _BZERO:
        header["BSCALE"] = 1
        header["BZERO"] = _BZERO[dtype]
    header["EXTNAME"] = image.name
    for key, value in image.header.items():
        header[key] = value
    return header


def _on_disk(block: np.ndarray, dtype: np.dtype) -> bytes:
    """Big-endian FITS bytes of ``block`` (BZERO-shifted unsigned integers)."""
    data = np.asarray(block, dtype=dtype)
    if dtype in _BZERO:
        data = data ^ dtype.type(_BZERO[dtype])
    return data.astype(dtype.newbyteorder(">"), copy=False).tobytes()


def write_fits(path: Path, primary: fits.PrimaryHDU, images: Sequence[StreamedImage],
               others: Sequence[fits.hdu.base.ExtensionHDU] = ()) -> dict[str, RawImage]:
    """Write ``primary``, the ``images`` and then the ``others`` HDUs to ``path``.

    Returns
    -------
    dict
        EXTNAME -> :class:`RawImage` of every image (for :func:`open_image`).
    """
    raw = {}
    with open(path, "wb") as f:
        primary.writeto(f)
        for image in images:
            dtype = np.dtype(image.dtype)
            f.write(_image_header(image).tostring().encode("ascii"))
            offset = f.tell()
            nbytes = int(np.prod(image.shape)) * dtype.itemsize
            if image.planes is None:
                f.truncate(offset + nbytes)
                f.seek(offset + nbytes)
            else:
                f.writelines(_on_disk(block, dtype) for block in image.planes())
                if f.tell() != offset + nbytes:
                    msg = f"{path}: {image.name} planes hold {f.tell() - offset} bytes, expected {nbytes}"
                    raise ValueError(msg)
            pad = -nbytes % BLOCK
            f.write(b"\0" * pad)
            raw[image.name] = RawImage(Path(path), offset, tuple(image.shape), dtype)
    if others:
        with fits.open(path, mode="append") as hdul:
            for hdu in others:
                hdul.append(hdu)
    return raw


class _Writable:
    """Assignment-only view of a memory-mapped FITS image in logical values."""

    def __init__(self, raw: RawImage) -> None:
        self.shape = raw.shape
        self.dtype = raw.dtype
        self._map = np.memmap(raw.path, dtype=raw.dtype.newbyteorder(">"), mode="r+", offset=raw.offset,
                              shape=raw.shape)

    def __setitem__(self, index: Any, value: np.ndarray) -> None:
        data = np.asarray(value, dtype=self.dtype)
        if self.dtype in _BZERO:
            data = data ^ self.dtype.type(_BZERO[self.dtype])
        self._map[index] = data

    def flush(self) -> None:
        self._map.flush()


def open_image(raw: RawImage) -> _Writable:
    """A writable view of an image written by :func:`write_fits`: ``view[index] = values``."""
    return _Writable(raw)
