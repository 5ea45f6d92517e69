"""Round-trip any jwdask Dataset through a zarr store at an fsspec URL.

Chunking and metadata are preserved: ``attrs["meta"]`` is JSON already; a gwcs in
``attrs["wcs"]`` travels as an ASDF document (base64) in ``attrs["wcs_asdf"]``. The store
is written under a temporary name and moved into place when complete.
"""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Mapping
from typing import Any

import asdf
import fsspec
import xarray as xr

from jwdask.errors import InputError


def to_zarr(ds: xr.Dataset, url: str, *, storage_options: Mapping[str, Any] | None = None,
            overwrite: bool = False) -> str:
    """Compute ``ds`` into a zarr store at ``url`` (``file://``, ``memory://``, ``s3://``...).

    Raises
    ------
    FileExistsError
        If ``url`` exists and ``overwrite`` is false.
    """
    options = dict(storage_options or {})
    fs, path = fsspec.core.url_to_fs(url, **options)
    path = path.rstrip("/")
    if fs.exists(path):
        if not overwrite:
            msg = f"{url}: a store exists already (pass overwrite=True to replace it)"
            raise FileExistsError(msg)
    out = ds.copy()
    for var in out.variables.values():
        var.encoding = {}
    wcs = out.attrs.pop("wcs", None)
    if wcs is not None:
        buf = io.BytesIO()
        asdf.AsdfFile({"wcs": wcs}).write_to(buf)
        out.attrs["wcs_asdf"] = base64.b64encode(buf.getvalue()).decode("ascii")
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    tmp_url = tmp if protocol in ("file", "local") else f"{protocol}://{tmp}"
    try:
        out.to_zarr(tmp_url, mode="w", storage_options=options or None, consolidated=False)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        _move(fs, protocol, tmp, path)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp, recursive=True)
        raise
    return url


def _move(fs: fsspec.AbstractFileSystem, protocol: str, src: str, dst: str) -> None:
    """Move a finished store into place: a rename on disk, object copies elsewhere."""
    if protocol in ("file", "local"):
        fs.mv(src, dst, recursive=True)
        return
    for key in fs.find(src):
        fs.copy(key, dst + key[len(src):])
    fs.rm(src, recursive=True)


def open_zarr(url: str, *, storage_options: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Open a store written by :func:`to_zarr` lazily, with its chunks and metadata."""
    try:
        ds = xr.open_zarr(url, storage_options=dict(storage_options or {}) or None, consolidated=False)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise InputError(url, "", f"not a readable zarr store ({exc})") from exc
    encoded = ds.attrs.pop("wcs_asdf", None)
    if encoded is not None:
        with asdf.open(io.BytesIO(base64.b64decode(encoded)), lazy_load=False, memmap=False) as af:
            ds.attrs["wcs"] = af.tree["wcs"]
    return ds
