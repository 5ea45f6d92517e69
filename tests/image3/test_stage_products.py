"""The Image3 stage's extra products: single-group images (resample ``single=True``) and the
HDRTAB rows under the crf names (synthetic exposures, no jwst needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

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
