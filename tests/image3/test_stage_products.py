"""The Image3 stage's extra products: single-group images (resample ``single=True``), the
HDRTAB rows under the crf names and the association's ASNPOOL/ASNTABLE (synthetic exposures,
no jwst needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from astropy.io import fits

from jwdask.asn import load_association
from jwdask.image3 import stage
from jwdask.io.products import compute_writes
from tests.resample.helpers import exposure


def _data() -> stage.Image3Data:
    offsets = [(0.0, 0.0), (7.3, 4.1), (-5.2, 9.7)]
    return stage.Image3Data(tuple(exposure(k, offset=o) for k, o in enumerate(offsets)), "mosaic", "o002")


def test_single_group_images_are_written(tmp_path: Path) -> None:
    """One ``<root>_<asn id>_outlier_i2d.fits`` per group (named, like jwst's, from the crf
    name of its first exposure); with outlier_detection's intermediates it replaces theirs."""
    data = stage.resample(_data(), None, single=True, tile=64)
    assert data.mosaic is None and len(data.singles) == 3
    assert stage.source_catalog(data, None) is data  # no mosaic to measure, as jwst
    pending, delayed = stage.prepare_products(data, str(tmp_path))
    urls = compute_writes(pending, also=delayed)
    roots = [ds.attrs["meta"]["filename"].removesuffix("_cal.fits") for ds in data.exposures]
    singles = sorted(Path(u).name for u in urls if u.endswith("_outlier_i2d.fits"))
    assert singles == sorted(f"{r}_o002_outlier_i2d.fits" for r in roots)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(u).name for u in urls)
    with fits.open(tmp_path / singles[1]) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "SCI", "ERR", "CON", "WHT", "HDRTAB", "ASDF"]
        assert hdul[0].header["NDRIZ"] == 2 and len(hdul["HDRTAB"].data) == 1
        assert np.isfinite(hdul["ERR"].data).sum() == np.isfinite(hdul["SCI"].data).sum() > 5000


def test_mosaic_hdrtab_names_the_crf_files(tmp_path: Path) -> None:
    data = stage.resample(_data(), None, tile=64)
    table = data.mosaic["hdrtab.FILENAME"].values
    assert list(table) == [stage.crf_name(ds, "o002") for ds in data.exposures]
    assert data.mosaic.attrs["meta"]["filename"] == stage.crf_name(data.exposures[0], "o002")
    assert all(ds.attrs["meta"]["filename"].endswith("_cal.fits") for ds in data.exposures)  # untouched


def test_single_images_replace_outlier_intermediates(tmp_path: Path) -> None:
    data = stage.outlier_detection(_data(), None, save_intermediate_results=True, tile=64)
    data = stage.resample(data, None, single=True, tile=64)
    pending, _ = stage.prepare_products(data, str(tmp_path))
    names = [Path(p.url).name for p in pending]
    assert len(names) == len(set(names)) == 3 + 1 + 3 + 3  # crf, median, blot, single images
    urls = compute_writes(pending)
    with fits.open(next(u for u in urls if u.endswith("_outlier_i2d.fits"))) as hdul:
        assert "ERR" in hdul and "HDRTAB" in hdul  # resample's image, not outlier_detection's


def test_association_pool_and_table_reach_every_product(tmp_path: Path) -> None:
    """As jwst's ModelLibrary: every exposure carries the association's pool and file name, so
    the crf files, the mosaic (PRIMARY and each HDRTAB row) and the intermediates have them;
    without ``asn_pool`` each exposure keeps its own pool."""
    exposures = _data().exposures
    members = [{"expname": ds.attrs["meta"]["filename"], "exptype": "science"} for ds in exposures]
    path = tmp_path / "jw00001-o002_image3_00001_asn.json"
    path.write_text(json.dumps({"asn_id": "o002", "asn_pool": "jw00001_pool.csv",
                                "products": [{"name": "mosaic", "members": members}]}))
    asn = load_association(str(path))
    assert (asn.pool_name, asn.table_name) == ("jw00001_pool.csv", path.name)
    data = stage.Image3Data.from_association(asn, exposures)
    assert (data.product_name, data.asn_id) == ("mosaic", "o002")
    assert all("asn" not in ds.attrs["meta"] for ds in exposures)  # inputs untouched
    data = stage.outlier_detection(data, None, save_intermediate_results=True, tile=64)
    data = stage.resample(data, None, tile=64)
    out = tmp_path / "out"
    out.mkdir()
    pending, _ = stage.prepare_products(data, str(out))
    urls = compute_writes(pending)
    assert len(urls) == 3 + 1 + 3 + 3 + 1  # crf, median, blot, outlier_i2d, i2d
    for url in urls:
        header = fits.getheader(url)
        assert (header["ASNPOOL"], header["ASNTABLE"]) == ("jw00001_pool.csv", path.name), url
    hdrtab = fits.getdata(next(u for u in urls if u.endswith("/mosaic_i2d.fits")), "HDRTAB")
    assert list(hdrtab["ASNPOOL"]) == ["jw00001_pool.csv"] * 3 and list(hdrtab["ASNTABLE"]) == [path.name] * 3

    own = [stage.with_association(ds, "own_pool.csv", "image2_asn.json") for ds in exposures]
    kept = stage.Image3Data.from_association(load_association(str(_without_pool(path))), own)
    assert [ds.attrs["meta"]["asn"] for ds in kept.exposures] == [
        {"pool_name": "own_pool.csv", "table_name": "nopool_asn.json"}] * 3


def _without_pool(path: Path) -> Path:
    asn = json.loads(path.read_text())
    del asn["asn_pool"]
    out = path.with_name("nopool_asn.json")
    out.write_text(json.dumps(asn))
    return out
