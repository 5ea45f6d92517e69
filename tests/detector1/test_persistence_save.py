"""persistence with save_persistence: the ASDF window file, against what jwst's PersistenceStep
writes on the same ramp, and read back through persistence_array_file."""

from __future__ import annotations

from pathlib import Path

import asdf
import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from jwdask import dqflags
from jwdask.detector1.persistence import (
    persistence,
    persistence_file_path,
    read_persistence_array,
)
from jwdask.io.uncal import open_uncal
from jwdask.refs import RefProvider
from tests.conftest import write_uncal

NINTS, NGROUPS, NY, NX = 2, 4, 40, 56
PTIME = 300
KEYS = {"EXPSTART": 60000.25, "EFFINTTM": 42.9, "TGROUP": 10.737, "TFRAME": 10.737,
        "FILENAME": "jw02736001001_02101_00001_nrcb1_uncal.fits"}


@pytest.fixture(scope="module")
def ramp(tmp_path_factory: pytest.TempPathFactory) -> xr.Dataset:
    tmp = tmp_path_factory.mktemp("persave")
    rng = np.random.default_rng(8)
    uncal = tmp / KEYS["FILENAME"]
    write_uncal(uncal, nints=NINTS, ngroups=NGROUPS, ny=NY, nx=NX, primary=KEYS,
                sci=np.zeros((NINTS, NGROUPS, NY, NX), np.uint16))
    ds = open_uncal(str(uncal), tile=(16, 16))
    sci = rng.uniform(0, 4000, (NINTS, NGROUPS, NY, NX)).astype(np.float32)
    sat_from = rng.integers(0, NGROUPS + 6, (NINTS, NY, NX))
    gdq = np.where(np.arange(NGROUPS)[None, :, None, None] >= sat_from[:, None], dqflags.SATURATED, 0).astype(np.uint8)
    chunks = ds.sci.data.chunks
    out = ds.assign(sci=(ds.sci.dims, da.from_array(sci, chunks=chunks)),
                    groupdq=(ds.sci.dims, da.from_array(gdq, chunks=chunks)),
                    pixeldq=(("y", "x"), da.zeros((NY, NX), dtype=np.uint32, chunks=chunks[2:])))
    # the minimal GROUP table of the test uncal does not follow the jwst schema: leave it out
    out = out.drop_vars([v for v in out.data_vars if str(v).startswith("group.")])
    out.attrs["tables"] = {k: v for k, v in out.attrs.get("tables", {}).items() if k != "group"}
    return out


def _run(ramp: xr.Dataset, **params: object) -> xr.Dataset:
    with dask.config.set(scheduler="threads", num_workers=2):
        return persistence(ramp, RefProvider(), persistence_time=PTIME, **params).compute()


def _entry(path: Path, detector: str = "NRCB1") -> dict[str, object]:
    with asdf.open(path, lazy_load=False, memmap=False) as af:
        return {k: (np.asarray(v) if k in ("rows", "cols", "vals") else v) for k, v in af[detector].items()}


def test_graph_is_lazy_and_writes_on_compute(ramp: xr.Dataset, tmp_path: Path) -> None:
    target = tmp_path / "windows.asdf"
    out = persistence(ramp, RefProvider(), persistence_time=PTIME, save_persistence=str(target))
    assert not target.exists()
    with dask.config.set(scheduler="threads", num_workers=2):
        groupdq = out.groupdq.values
    entry = _entry(target)
    window = out.persistence_window_end.values
    rows, cols = np.nonzero(window)
    assert rows.size > 0 and rows.size < NY * NX
    np.testing.assert_array_equal(entry["rows"], rows)
    np.testing.assert_array_equal(entry["cols"], cols)
    np.testing.assert_array_equal(entry["vals"], window[rows, cols])
    assert entry["pers_time"] == PTIME and entry["filename"] == KEYS["FILENAME"]
    np.testing.assert_array_equal(groupdq, _run(ramp).groupdq.values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["windows.asdf"]


def test_suffix_other_detectors_and_reading_back(ramp: xr.Dataset, tmp_path: Path) -> None:
    """A non-.asdf name becomes .asdf (as jwst); other detectors of an existing file stay; the
    file feeds persistence_array_file of the next exposure."""
    target = tmp_path / "windows.fits"
    assert persistence_file_path(str(target)) == tmp_path / "windows.asdf"
    asdf.AsdfFile({"NRCA1": {"filename": "other", "rows": np.array([1]), "cols": np.array([2]),
                             "vals": np.array([5.0]), "pers_time": PTIME}}).write_to(tmp_path / "windows.asdf")
    first = _run(ramp, save_persistence=str(target))
    with asdf.open(tmp_path / "windows.asdf") as af:
        assert set(af.tree) >= {"NRCA1", "NRCB1"}
        assert af["NRCA1"]["filename"] == "other"
    saved = read_persistence_array(str(tmp_path / "windows.asdf"), "NRCB1", PTIME, (NY, NX))
    np.testing.assert_array_equal(saved, first.persistence_window_end.values)
    carried = _run(ramp, persistence_array_file=str(tmp_path / "windows.asdf"))
    assert (carried.persistence_window_end.values >= first.persistence_window_end.values).all()


def test_unreadable_existing_file_is_a_clear_error(ramp: xr.Dataset, tmp_path: Path) -> None:
    from jwdask.errors import InputError

    target = tmp_path / "broken.asdf"
    target.write_text("not asdf")
    with pytest.raises(InputError, match="persistence file"):
        _run(ramp, save_persistence=str(target))


@pytest.mark.reference
def test_equals_jwst(ramp: xr.Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("jwst")
    from jwst.persistence import PersistenceStep

    from jwdask.io.products import write_product
    from tests.official import offline_crds

    offline_crds(tmp_path, monkeypatch)
    ramp_path = tmp_path / KEYS["FILENAME"]
    write_product(ramp, str(ramp_path), "ramp")
    theirs_file = tmp_path / "theirs.asdf"
    result = PersistenceStep.call(str(ramp_path), skip=False, persistence_time=PTIME,
                                  save_persistence=str(theirs_file))
    ours_file = tmp_path / "ours.asdf"
    out = _run(ramp, save_persistence=str(ours_file))
    np.testing.assert_array_equal(out.groupdq.values, np.asarray(result.groupdq))
    assert (out.groupdq.values & dqflags.PERSISTENCE).any()
    ours, theirs = _entry(ours_file), _entry(theirs_file)
    assert theirs["rows"].size > 0
    assert set(ours) == set(theirs)
    for key in ("rows", "cols", "vals"):
        assert ours[key].dtype == theirs[key].dtype
        np.testing.assert_array_equal(ours[key], theirs[key])
    assert ours["pers_time"] == theirs["pers_time"]
    assert ours["filename"] == theirs["filename"]
