"""open_uncal: lazy reads of archive-layout raw exposures, and clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
from astropy.io import fits

import jwdask
from jwdask.errors import InputError
from jwdask.io.fitsfile import ImageRegion
from tests.conftest import write_uncal


def test_open_reads_no_pixels(uncal_file, monkeypatch):
    """Opening builds the Dataset from headers alone; pixel reads happen only on compute."""
    path, _ = uncal_file
    reads = []
    original = ImageRegion.__getitem__
    monkeypatch.setattr(ImageRegion, "__getitem__", lambda self, key: reads.append(key) or original(self, key))
    ds = jwdask.open_uncal(str(path), tile=(16, 32))
    assert reads == []
    assert ds.sci.dims == ("integration", "group", "y", "x")
    assert ds.sci.chunks == ((2,), (3,), (16, 16, 8), (32, 24))
    ds.sci.isel(y=slice(0, 16), x=slice(0, 32)).compute()
    assert len(reads) == 1


def test_values_metadata_and_coords(uncal_file):
    path, data = uncal_file
    ds = jwdask.open_uncal(str(path), tile=(16, 16))
    np.testing.assert_array_equal(ds.sci.values, data)
    assert ds.sci.dtype == np.uint16 and ds.sci.values.dtype.isnative
    meta = ds.attrs["meta"]
    assert meta["exposure"]["ngroups"] == 3
    assert meta["instrument"]["detector"] == "NRCB1"
    assert meta["observation"]["program_number"] == "02736"
    assert meta["wcsinfo"]["ra_ref"] == 53.1
    assert ds.sci.attrs["units"] == "DN"
    np.testing.assert_array_equal(ds.y.values, np.arange(200, 240))
    np.testing.assert_array_equal(ds.x.values, np.arange(100, 156))
    assert list(ds["int_times.integration_number"].values) == [1, 2]
    assert ds["group.group_end_time"].values[0] == "2026-01-01T00:00:00.000"


def test_zeroframe(tmp_path):
    path = tmp_path / "z_uncal.fits"
    data = write_uncal(path, zeroframe=True)
    ds = jwdask.open_uncal(str(path))
    np.testing.assert_array_equal(ds.zeroframe.values, data[:, 0])


def test_fsspec_memory_url(uncal_file):
    import fsspec

    path, data = uncal_file
    with fsspec.open("memory://raw/x_uncal.fits", "wb") as f:
        f.write(path.read_bytes())
    ds = jwdask.open_uncal("memory://raw/x_uncal.fits", tile=(8, 8))
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(ds.sci.values, data)


def test_s3_url(uncal_file, s3_server):
    import s3fs

    path, data = uncal_file
    s3fs.S3FileSystem(**s3_server).put(str(path), "jwdask/raw/x_uncal.fits")
    ds = jwdask.open_uncal("s3://jwdask/raw/x_uncal.fits", storage_options=s3_server, tile=(20, 20))
    np.testing.assert_array_equal(ds.sci.values, data)


# ------------------------------------------------------------------ bad input

def _expect(path: Path, field: str, words: str) -> None:
    with pytest.raises(InputError) as info:
        jwdask.open_uncal(str(path))
    assert str(path) in str(info.value)
    assert field in str(info.value)
    assert words in str(info.value)


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope_uncal.fits", "", "no such file")


def test_not_fits(tmp_path):
    path = tmp_path / "text_uncal.fits"
    path.write_text("this is not a FITS file\n" * 200)
    _expect(path, "", "not a FITS file")


def test_truncated(uncal_file):
    path, _ = uncal_file
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    _expect(path, "SCI", "truncated")


def test_missing_sci(tmp_path):
    path = tmp_path / "nosci_uncal.fits"
    fits.HDUList([fits.PrimaryHDU()]).writeto(path)
    _expect(path, "SCI", "no SCI image extension")


@pytest.mark.parametrize("keyword", ["NGROUPS", "SUBSTRT1", "READPATT", "DETECTOR"])
def test_missing_keyword(tmp_path, keyword):
    path = tmp_path / "kw_uncal.fits"
    write_uncal(path, primary={keyword: None})
    _expect(path, f"PRIMARY {keyword}", "missing")


def test_wrong_dtype(tmp_path):
    path = tmp_path / "float_uncal.fits"
    write_uncal(path, sci=np.zeros((2, 3, 40, 56), np.float32))
    _expect(path, "SCI", "uint16")


def test_wrong_shape(tmp_path):
    path = tmp_path / "shape_uncal.fits"
    write_uncal(path, primary={"NGROUPS": 5})
    _expect(path, "SCI", "does not match")
