"""The NIRSpec IRS2 ``refpix`` reference (jwst ``IRS2Model``): check it, then read its tables.

The ``IRS2`` table has float32 columns ``alpha_0..3`` and ``beta_0..3`` whose rows alternate
real and imaginary parts of ``2048 * 712`` complex Fourier coefficients per amplifier; the
optional ``DQ`` table (``OUTPUT``, ``ODD_EVEN``, ``MASK``) names bad interleaved reference
columns. :func:`check_irs2_reference` reads headers only (cheap, at graph-build time);
:func:`read_irs2_reference` loads the tables (about 93 MB) inside a task.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
from astropy.io import fits

from jwdask.errors import ReferenceFileError

log = logging.getLogger(__name__)

REFTYPE = "refpix"
IRS2_SAMPLES = 712 * 2048
"""Complex coefficients per amplifier that jwst 3.0 requires (it skips the step otherwise)."""
COEFFICIENT_COLUMNS = tuple(f"{name}_{amp}" for name in ("alpha", "beta") for amp in range(4))
DQ_COLUMNS = ("OUTPUT", "ODD_EVEN", "MASK")


class Irs2DqTable(NamedTuple):
    """Rows of the ``DQ`` table, in file order."""

    output: np.ndarray
    """int ``(rows,)``: amplifier output 1..4 (0, the reference output, is accepted as in jwst)."""
    odd_even: np.ndarray
    """int ``(rows,)``: 1 or 2, which pair of the 4 interleaved reference columns."""
    mask: np.ndarray
    """uint32 ``(rows,)``: bit ``k`` set = the pair in reference block ``k`` (of 32) is bad."""


class Irs2Reference(NamedTuple):
    """The loaded IRS2 reference."""

    alpha: np.ndarray
    """complex64 ``(4, 712 * 2048)``: transfer of the reference output, per amplifier."""
    beta: np.ndarray
    """complex64 ``(4, 712 * 2048)``: transfer of the interleaved reference pixels."""
    dq: Irs2DqTable | None
    """The bad interleaved reference columns; None when the file has no (or an empty) DQ table."""


def _columns(hdu: fits.BinTableHDU) -> dict[str, str]:
    return {str(c.name).upper(): str(c.name) for c in hdu.columns}


def _open(path: str | Path) -> fits.HDUList:
    try:
        return fits.open(path, memmap=True, lazy_load_hdus=True)
    except FileNotFoundError as exc:
        raise ReferenceFileError(REFTYPE, f"{path}: no such file") from exc
    except (OSError, ValueError) as exc:
        raise ReferenceFileError(REFTYPE, f"{path}: cannot read as FITS ({exc})") from exc


def _table(hdul: fits.HDUList, name: str) -> fits.BinTableHDU | None:
    for hdu in hdul[1:]:
        if str(hdu.header.get("EXTNAME", "")).upper() == name:
            if not isinstance(hdu, fits.BinTableHDU):
                return None
            return hdu
    return None


def _check(hdul: fits.HDUList, path: str | Path) -> tuple[fits.BinTableHDU, fits.BinTableHDU | None]:
    table = _table(hdul, "IRS2")
    if table is None:
        names = [str(h.header.get("EXTNAME", "PRIMARY" if i == 0 else f"HDU{i}")) for i, h in enumerate(hdul)]
        raise ReferenceFileError(REFTYPE, f"{path}: no IRS2 binary table (has {names})")
    columns = _columns(table)
    missing = [c for c in COEFFICIENT_COLUMNS if c.upper() not in columns]
    if missing:
        raise ReferenceFileError(REFTYPE, f"{path}: IRS2 table lacks columns {missing} (has {sorted(columns)})")
    rows = int(table.header.get("NAXIS2", 0))
    if rows != 2 * IRS2_SAMPLES:
        msg = (f"{path}: IRS2 table has {rows} rows, expected {2 * IRS2_SAMPLES} (real and imaginary parts of "
               f"712 x 2048 coefficients)")
        raise ReferenceFileError(REFTYPE, msg)
    dq = _table(hdul, "DQ")
    if dq is not None and int(dq.header.get("NAXIS2", 0)) > 0:
        dq_columns = _columns(dq)
        missing = [c for c in DQ_COLUMNS if c not in dq_columns]
        if missing:
            raise ReferenceFileError(REFTYPE, f"{path}: DQ table lacks columns {missing} (has {sorted(dq_columns)})")
    return table, dq


def check_irs2_reference(path: str | Path) -> None:
    """Check the layout of an IRS2 reference from its headers.

    Raises
    ------
    ReferenceFileError
        If the file is unreadable, has no ``IRS2`` table, lacks a coefficient column, has not
        ``2 * 712 * 2048`` rows, or has a non-empty ``DQ`` table without its three columns.
    """
    with _open(path) as hdul:
        _check(hdul, path)


def _complex(column: np.ndarray) -> np.ndarray:
    out = np.empty(column.size // 2, np.complex64)
    out.real, out.imag = column[0::2], column[1::2]
    return out


def read_irs2_reference(path: str | Path) -> Irs2Reference:
    """Load an IRS2 reference (checked as :func:`check_irs2_reference`).

    Returns
    -------
    Irs2Reference
        ``alpha`` and ``beta`` as complex64 ``(4, 712 * 2048)``; the DQ table or None.
    """
    with _open(path) as hdul:
        table, dq_hdu = _check(hdul, path)
        names = _columns(table)
        data = table.data
        alpha = np.stack([_complex(np.asarray(data[names[f"ALPHA_{a}"]], np.float32)) for a in range(4)])
        beta = np.stack([_complex(np.asarray(data[names[f"BETA_{a}"]], np.float32)) for a in range(4)])
        dq = None
        if dq_hdu is not None and int(dq_hdu.header.get("NAXIS2", 0)) > 0:
            dq_names = _columns(dq_hdu)
            rows = dq_hdu.data
            dq = Irs2DqTable(output=np.asarray(rows[dq_names["OUTPUT"]], np.int64),
                             odd_even=np.asarray(rows[dq_names["ODD_EVEN"]], np.int64),
                             mask=np.asarray(rows[dq_names["MASK"]], np.uint32))
            if not (np.isin(dq.output, (0, 1, 2, 3, 4)).all() and np.isin(dq.odd_even, (1, 2)).all()):
                msg = (f"{path}: DQ table OUTPUT must be 0..4 and ODD_EVEN 1 or 2, got {dq.output.tolist()} "
                       f"and {dq.odd_even.tolist()}")
                raise ReferenceFileError(REFTYPE, msg)
        else:
            log.warning("refpix: %s has no DQ table; no interleaved reference column is masked", path)
    return Irs2Reference(alpha=alpha, beta=beta, dq=dq)
