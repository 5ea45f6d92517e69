"""The ``ASDF`` BINTABLE HDU that JWST products carry (formats.md §2.7)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import asdf
import numpy as np
from astropy.io import fits

NDARRAY_TAG = "tag:stsci.edu:asdf/core/ndarray-1.1.0"


def fits_array_stub(extname: str, shape: tuple[int, ...], datatype: str) -> asdf.tagged.TaggedDict:
    """An ASDF ndarray node that points at image HDU ``extname`` of the same FITS file.

    ``datatype`` is the logical dtype after BZERO scaling (``"float32"``, ``"uint32"``...).
    """
    return asdf.tagged.TaggedDict(
        {"source": f"fits:{extname},1", "shape": [int(n) for n in shape],
         "datatype": datatype, "byteorder": "big"},
        tag=NDARRAY_TAG,
    )


def asdf_hdu(tree: Mapping[str, Any] | None = None) -> fits.BinTableHDU:
    """A one-row ``ASDF`` BINTABLE HDU holding a complete ASDF file of ``tree``.

    Never writes ``_fits_hash``, so stdatamodels re-reads every keyword from the headers.
    """
    buf = io.BytesIO()
    asdf.AsdfFile(dict(tree or {})).write_to(buf)
    raw = np.frombuffer(buf.getvalue(), np.uint8)
    col = fits.Column(name="ASDF_METADATA", format=f"{raw.size}B", array=raw[None, :])
    return fits.BinTableHDU.from_columns([col], name="ASDF")

