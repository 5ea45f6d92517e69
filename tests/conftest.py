"""Shared fixtures: small raw exposures written with plain astropy, an S3 server on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

PRIMARY = {
    "DATAMODL": "Level1bModel", "TELESCOP": "JWST", "INSTRUME": "NIRCAM", "DETECTOR": "NRCB1",
    "MODULE": "B", "CHANNEL": "SHORT", "FILTER": "F200W", "PUPIL": "CLEAR", "EXP_TYPE": "NRC_IMAGE",
    "READPATT": "RAPID", "NFRAMES": 1, "GROUPGAP": 0, "TFRAME": 1.0, "TGROUP": 1.0,
    "SUBARRAY": "SUB160", "FASTAXIS": 1, "SLOWAXIS": -2, "DATE-OBS": "2026-01-01",
    "TIME-OBS": "00:00:00.000", "PROGRAM": "02736", "OBSERVTN": "001", "VISIT": "001",
    "NOUTPUTS": 1, "EFFEXPTM": 10.0, "FILENAME": "jw02736001001_02101_00001_nrcb1_uncal.fits",
}


def write_uncal(path: Path, *, nints: int = 2, ngroups: int = 3, ny: int = 40, nx: int = 56,
                xstart: int = 101, ystart: int = 201, seed: int = 0, zeroframe: bool = False,
                primary: dict[str, Any] | None = None, sci: np.ndarray | None = None) -> np.ndarray:
    """Write an archive-layout uncal file and return its SCI cube (uint16)."""
    rng = np.random.default_rng(seed)
    data = sci if sci is not None else rng.integers(0, 65535, (nints, ngroups, ny, nx), dtype=np.uint16)
    header = {**PRIMARY, "NINTS": nints, "NGROUPS": ngroups, "SUBSTRT1": xstart, "SUBSTRT2": ystart,
              "SUBSIZE1": nx, "SUBSIZE2": ny, "ZEROFRAM": zeroframe, **(primary or {})}
    hdu0 = fits.PrimaryHDU()
    for key, value in header.items():
        if value is not None:
            hdu0.header[key] = value
    sci_hdu = fits.ImageHDU(data, name="SCI")
    sci_hdu.header["BUNIT"] = "DN"
    sci_hdu.header["RA_REF"] = 53.1
    sci_hdu.header["DEC_REF"] = -27.8
    hdus = [hdu0, sci_hdu]
    if zeroframe:
        hdus.append(fits.ImageHDU(data[:, 0], name="ZEROFRAME"))
    times = Table({"integration_number": np.arange(1, nints + 1, dtype=np.int32)})
    for column in ("int_start_MJD_UTC", "int_mid_MJD_UTC", "int_end_MJD_UTC",
                   "int_start_BJD_TDB", "int_mid_BJD_TDB", "int_end_BJD_TDB"):
        times[column] = 60000.0 + np.arange(nints)
    groups = Table({"integration_number": np.repeat(np.arange(1, nints + 1, dtype=np.int32), ngroups),
                    "group_number": np.tile(np.arange(1, ngroups + 1, dtype=np.int16), nints),
                    "group_end_time": np.array(["2026-01-01T00:00:00.000"] * nints * ngroups, dtype="S26")})
    hdus += [fits.BinTableHDU(groups, name="GROUP"), fits.BinTableHDU(times, name="INT_TIMES")]
    from jwdask.io.asdf_hdu import asdf_hdu

    hdus.append(asdf_hdu({}))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return data


@pytest.fixture
def uncal_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A small raw exposure and its SCI cube."""
    path = tmp_path / "jw02736001001_02101_00001_nrcb1_uncal.fits"
    return path, write_uncal(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, Any]]:
    """A moto S3 server on 127.0.0.1 with bucket ``jwdask``; yields fsspec storage options."""
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options = {"key": "testing", "secret": "testing",
               "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket="jwdask")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield options
    finally:
        server.stop()
