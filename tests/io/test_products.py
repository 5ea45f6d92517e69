"""Product writers: JWST layouts that stdatamodels opens, atomic writes, round trips."""

from __future__ import annotations

import os

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from astropy.io import fits

import jwdask
from jwdask.errors import InputError
from jwdask.io.products import PRODUCTS, open_product, prepare_write, product_url, write_product


def rate_dataset(uncal, *, ints: bool = False, seed: int = 1) -> xr.Dataset:
    """A rate-like (or rateints-like) Dataset on the uncal's pixel grid."""
    ds = jwdask.open_uncal(str(uncal), tile=(16, 16))
    rng = np.random.default_rng(seed)
    dims = ("integration", "y", "x") if ints else ("y", "x")
    shape = (ds.sizes["integration"], ds.sizes["y"], ds.sizes["x"]) if ints else (ds.sizes["y"], ds.sizes["x"])
    chunks = (-1, 16, 16) if ints else (16, 16)
    out = xr.Dataset(coords={"y": ds.y, "x": ds.x}, attrs=ds.attrs)
    for name in ("sci", "err", "var_poisson", "var_rnoise"):
        out[name] = (dims, da.from_array(rng.normal(size=shape).astype(np.float32), chunks=chunks))
    out["dq"] = (dims, da.from_array(rng.integers(0, 2**32, shape, dtype=np.uint32), chunks=chunks))
    out["sci"].attrs["units"] = out["err"].attrs["units"] = "DN/s"
    if ints:
        out = out.assign({k: ds[k] for k in ds.data_vars if k.startswith("int_times.")})
        out.attrs["tables"] = {"int_times": ds.attrs["tables"]["int_times"]}
    return out


@pytest.mark.parametrize("kind", ["rate", "rateints"])
def test_layout(uncal_file, tmp_path, kind):
    path, _ = uncal_file
    ds = rate_dataset(path, ints=kind == "rateints")
    url = write_product(ds, str(tmp_path / f"x_{kind}.fits"), kind)
    with fits.open(url) as hdul:
        names = [h.name for h in hdul]
        expected = ["PRIMARY", "SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE"]
        assert names[: len(expected)] == expected and names[-1] == "ASDF"
        if kind == "rateints":
            assert "INT_TIMES" in names
        assert hdul[0].header["DATAMODL"] == PRODUCTS[kind].model_type
        assert hdul[0].header["NGROUPS"] == 3 and hdul[0].header["PROGRAM"] == "02736"
        assert hdul["SCI"].header["BUNIT"] == "DN/s" and hdul["SCI"].header["RA_REF"] == 53.1
        assert hdul["SCI"].data.dtype == np.dtype(">f4")
        assert hdul["DQ"].header["BITPIX"] == 32 and hdul["DQ"].header["BZERO"] == 2**31
        np.testing.assert_array_equal(hdul["SCI"].data, ds.sci.values)
        np.testing.assert_array_equal(hdul["DQ"].data, ds.dq.values)
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]


@pytest.mark.reference
@pytest.mark.parametrize("kind", ["rate", "rateints"])
def test_stdatamodels_opens(uncal_file, tmp_path, kind):
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    path, _ = uncal_file
    ds = rate_dataset(path, ints=kind == "rateints")
    url = write_product(ds, str(tmp_path / f"x_{kind}.fits"), kind)
    with datamodels.open(url) as model:
        assert type(model).__name__ == PRODUCTS[kind].model_type
        assert model.meta.instrument.detector == "NRCB1"
        assert model.meta.exposure.ngroups == 3
        assert model.meta.subarray.xstart == 101
        assert model.meta.bunit_data == "DN/s"
        np.testing.assert_array_equal(model.data, ds.sci.values)
        np.testing.assert_array_equal(model.dq, ds.dq.values)
        np.testing.assert_array_equal(model.var_rnoise, ds.var_rnoise.values)
        if kind == "rateints":
            assert len(model.int_times) == 2


@pytest.mark.reference
def test_jwst_read_metadata_accepts(uncal_file, tmp_path):
    """jwst pipelines fed a path call read_metadata, which needs DATAMODL and an ASDF HDU."""
    pytest.importorskip("jwst")
    from stdatamodels.jwst.datamodels import read_metadata

    path, _ = uncal_file
    url = write_product(rate_dataset(path), str(tmp_path / "x_rate.fits"), "rate")
    meta = read_metadata(url)
    assert meta["meta.model_type"] == "ImageModel"


def test_round_trip(uncal_file, tmp_path):
    path, _ = uncal_file
    ds = rate_dataset(path, ints=True)
    url = write_product(ds, str(tmp_path / "x_rateints.fits"), "rateints")
    back = open_product(url, tile=(16, 16))
    assert back.attrs["kind"] == "rateints"
    for name in ("sci", "err", "dq", "var_poisson", "var_rnoise"):
        assert back[name].dims == ds[name].dims
        np.testing.assert_array_equal(back[name].values, ds[name].values)
    np.testing.assert_array_equal(back.x.values, ds.x.values)
    assert back.attrs["meta"]["instrument"] == ds.attrs["meta"]["instrument"]
    np.testing.assert_array_equal(back["int_times.int_mid_MJD_UTC"].values, ds["int_times.int_mid_MJD_UTC"].values)


def test_failed_write_leaves_nothing(uncal_file, tmp_path):
    path, _ = uncal_file
    ds = rate_dataset(path)

    def explode(block):
        raise RuntimeError("worker died")

    ds["sci"] = ds.sci.copy(data=ds.sci.data.map_blocks(explode, dtype=np.float32))
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="worker died"):
        write_product(ds, str(out / "x_rate.fits"), "rate")
    assert os.listdir(out) == []


def test_missing_variable(uncal_file, tmp_path):
    path, _ = uncal_file
    ds = rate_dataset(path).drop_vars("var_rnoise")
    with pytest.raises(InputError, match="VAR_RNOISE"):
        prepare_write(ds, str(tmp_path / "x_rate.fits"), "rate")
    assert not (tmp_path / "x_rate.fits").exists()
    assert not [f for f in tmp_path.iterdir() if ".tmp-" in f.name]


def test_wrong_dims(uncal_file, tmp_path):
    path, _ = uncal_file
    ds = rate_dataset(path, ints=True)
    with pytest.raises(InputError, match="dims"):
        prepare_write(ds, str(tmp_path / "x_rate.fits"), "rate")


def test_s3_write(uncal_file, s3_server):
    path, _ = uncal_file
    ds = rate_dataset(path)
    url = write_product(ds, "s3://jwdask/products/x_rate.fits", "rate", storage_options=s3_server)
    back = open_product(url, storage_options=s3_server)
    np.testing.assert_array_equal(back.sci.values, ds.sci.values)


def test_product_url():
    meta = {"filename": "jw02736001001_02101_00001_nrcb1_uncal.fits"}
    assert product_url("out", meta, "rate") == "out/jw02736001001_02101_00001_nrcb1_rate.fits"
