"""to_zarr/open_zarr: chunking and metadata survive local, memory and S3 stores."""

from __future__ import annotations

import numpy as np
import pytest

import jwdask
from jwdask.io.zarr_store import open_zarr, to_zarr


@pytest.mark.parametrize("scheme", ["file", "memory", "s3"])
def test_round_trip(uncal_file, tmp_path, scheme, request):
    path, data = uncal_file
    ds = jwdask.open_uncal(str(path), tile=(16, 24))
    options = None
    url = {"file": str(tmp_path / "x.zarr"), "memory": f"memory://{tmp_path.name}/x.zarr",
           "s3": f"s3://jwdask/{tmp_path.name}/x.zarr"}[scheme]
    if scheme == "s3":
        options = request.getfixturevalue("s3_server")
    to_zarr(ds, url, storage_options=options)
    back = open_zarr(url, storage_options=options)
    assert back.sci.chunks == ds.sci.chunks
    np.testing.assert_array_equal(back.sci.values, data)
    assert back.attrs["meta"] == ds.attrs["meta"]
    assert back.attrs["tables"] == ds.attrs["tables"]
    np.testing.assert_array_equal(back.y.values, ds.y.values)
    np.testing.assert_array_equal(back["group.group_end_time"].values, ds["group.group_end_time"].values)
    with pytest.raises(FileExistsError):
        to_zarr(ds, url, storage_options=options)


def test_wcs_travels(uncal_file, tmp_path):
    from astropy.modeling import models
    from gwcs import WCS, coordinate_frames as cf

    path, _ = uncal_file
    ds = jwdask.open_uncal(str(path))
    ds.attrs["wcs"] = WCS([(cf.Frame2D(name="detector"), models.Shift(1) & models.Shift(2)),
                           (cf.Frame2D(name="world"), None)])
    to_zarr(ds, str(tmp_path / "w.zarr"))
    back = open_zarr(str(tmp_path / "w.zarr"))
    assert back.attrs["wcs"](0, 0) == (1.0, 2.0)
