"""skymatch: sky levels equal to jwst's SkyMatchStep on identical cal files; bookkeeping and errors."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from jwdask.errors import InputError, ParameterError
from jwdask.image3 import skymatch as sm
from jwdask.io import keywords
from jwdask.io.products import open_product


@contextlib.contextmanager
def offline_jwst(crds: Path) -> Iterator[None]:
    """jwst steps run against the session's offline CRDS cache, quietly, without step pars."""
    from jwdask.refs import crds_environment

    quiet = {name: logging.getLogger(name).level for name in ("stpipe", "jwst", "stcal", "crds")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    saved = os.environ.get("STPIPE_DISABLE_CRDS_STEPPARS")
    os.environ["STPIPE_DISABLE_CRDS_STEPPARS"] = "True"
    try:
        with crds_environment(crds, "jwst_9001.pmap"):
            yield
    finally:
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
        if saved is None:
            os.environ.pop("STPIPE_DISABLE_CRDS_STEPPARS", None)
        else:
            os.environ["STPIPE_DISABLE_CRDS_STEPPARS"] = saved


def jwst_models(paths: list[Path], group_ids: list[str] | None) -> list[Any]:
    """The files as jwst datamodels, with ``meta.group_id`` set when ``group_ids`` is given."""
    from stdatamodels.jwst import datamodels

    models = [datamodels.open(str(p)) for p in paths]
    for model, gid in zip(models, group_ids or [None] * len(models), strict=True):
        if gid is not None:
            model.meta.group_id = gid
    return models


def jwst_skymatch(paths: list[Path], crds: Path, group_ids: list[str] | None = None,
                  **params: Any) -> list[tuple[Any, str, np.ndarray]]:
    """(BKGLEVEL, S_SKYMAT, SCI) of every exposure after jwst's SkyMatchStep."""
    with offline_jwst(crds):
        from jwst.skymatch import SkyMatchStep

        lib = SkyMatchStep.call(jwst_models(paths, group_ids), **params)
        out = []
        with lib:
            for i, model in enumerate(lib):
                out.append((model.meta.background.level, model.meta.cal_step.skymatch, model.data.copy()))
                lib.shelve(model, i, modify=False)
    return out


@pytest.fixture(scope="module")
def paths(reduced) -> list[Path]:
    """The four tweaked cal files (skymatch runs after tweakreg in calwebb_image3)."""
    return list(reduced.tweaked_abs)


@pytest.fixture
def cals(paths) -> list[xr.Dataset]:
    return [open_product(str(p), tile=(128, 160)) for p in paths]


def _level(ds: xr.Dataset) -> Any:
    return keywords.get(ds.attrs["meta"], "background.level")


CASES = [
    {},
    {"skymethod": "global+match", "subtract": True, "skystat": "median"},
    {"skymethod": "local", "skystat": "mean", "nclip": 3, "lsigma": 3.0, "usigma": 2.5},
    {"skymethod": "match", "skystat": "midpt", "match_down": False, "dqbits": "~DO_NOT_USE", "upper": 50.0},
]


@pytest.mark.reference
@pytest.mark.parametrize("params", CASES, ids=["match", "global+match-subtract", "local", "match-up-midpt"])
def test_matches_jwst(reduced, paths, cals, params: dict[str, Any]) -> None:
    """Levels within 1e-4 relative / 1e-6 MJy/sr absolute (in practice identical), same status,
    and with ``subtract=True`` the same SCI."""
    pytest.importorskip("jwst")
    theirs = jwst_skymatch(paths, reduced.crds, **params)
    ours = sm.skymatch(cals, None, **params)
    subtract = params.get("subtract", False)
    for ds, cal, (level, status, sci) in zip(ours, cals, theirs, strict=True):
        meta = ds.attrs["meta"]
        assert meta["cal_step"]["skymatch"] == status
        if status == "COMPLETE":
            assert _level(ds) == pytest.approx(level, rel=1e-4, abs=1e-6)
            assert keywords.get(meta, "background.subtracted") is subtract
            assert keywords.get(meta, "background.method") == params.get("skymethod", "match")
        if subtract:
            np.testing.assert_allclose(ds["sci"].values, sci, rtol=1e-6, atol=1e-7, equal_nan=True)
        else:
            assert ds["sci"].data is cal["sci"].data
    levels = [_level(ds) for ds in ours]
    if params.get("skymethod", "match") == "match":
        assert min(levels) == 0.0 if params.get("match_down", True) else max(levels) == 0.0


@pytest.mark.reference
def test_exposure_groups_match_jwst(reduced, paths, cals) -> None:
    """Exposures sharing a group id get one sky (group overlaps: pixel-weighted means; group
    whole-image sky: the minimum), as in jwst."""
    pytest.importorskip("jwst")
    groups = ["g1", "g1", "g2", "g3"]
    for ds, gid in zip(cals, groups, strict=True):
        ds.attrs["meta"] = {**ds.attrs["meta"], "group_id": gid}
    params = {"skymethod": "global+match", "subtract": True}
    theirs = jwst_skymatch(paths, reduced.crds, groups, **params)
    ours = sm.skymatch(cals, None, **params)
    for ds, (level, status, sci) in zip(ours, theirs, strict=True):
        assert ds.attrs["meta"]["cal_step"]["skymatch"] == status == "COMPLETE"
        assert _level(ds) == pytest.approx(level, rel=1e-4, abs=1e-6)
        np.testing.assert_allclose(ds["sci"].values, sci, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert _level(ours[0]) == _level(ours[1])


@pytest.mark.reference
def test_user_skylist_matches_jwst(reduced, paths, cals, tmp_path: Path) -> None:
    """``skymethod='user'`` reads 'file level' lines and subtracts the levels."""
    pytest.importorskip("jwst")
    skylist = tmp_path / "sky.txt"
    values = [0.125, 0.25, 0.0625, 0.5]
    skylist.write_text("".join(f"{p.name} {v}\n" for p, v in reversed(list(zip(paths, values, strict=True)))))
    ours = sm.skymatch(cals, None, skymethod="user", skylist=str(skylist), subtract=True)
    theirs = jwst_skymatch(paths, reduced.crds, skymethod="user", skylist=str(skylist), subtract=True)
    for ds, (level, status, sci), expected in zip(ours, theirs, values, strict=True):
        assert status == "COMPLETE" and ds.attrs["meta"]["cal_step"]["skymatch"] == "COMPLETE"
        assert _level(ds) == level == expected
        np.testing.assert_array_equal(ds["sci"].values, sci)


def test_match_uses_one_statistics_task_per_exposure(cals, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sky statistics are computed as one dask task per exposure, the solve on the client;
    levels are relative to the lowest sky (match_down) and SCI stays lazy and unchanged."""
    import dask

    calls = []
    original = sm.cluster.compute

    def counting(*collections: Any, **kwargs: Any) -> Any:
        calls.append(len(collections))
        graph = dask.delayed(list)(collections).__dask_graph__()
        tasks = [k for k in graph if isinstance(k, str) and k.startswith("exposure_sky")]
        assert len(tasks) == len(collections)
        return original(*collections, **kwargs)

    monkeypatch.setattr(sm.cluster, "compute", counting)
    out = sm.skymatch(cals, None)
    assert calls == [len(cals)]
    levels = np.array([_level(ds) for ds in out])
    assert levels.min() == 0.0 and np.all(levels < 0.05)
    assert all(ds["sci"].data is cal["sci"].data for ds, cal in zip(out, cals, strict=True))


def test_single_exposure_cannot_be_matched(cals) -> None:
    (out,) = sm.skymatch(cals[:1], None)
    assert out.attrs["meta"]["cal_step"]["skymatch"] == "SKIPPED"
    assert _level(out) is None
    (local,) = sm.skymatch(cals[:1], None, skymethod="local")
    assert local.attrs["meta"]["cal_step"]["skymatch"] == "COMPLETE"
    assert 0.1 < _level(local) < 0.3


def test_skylist_names_ignore_product_suffixes(cals, tmp_path: Path) -> None:
    assert sm._strip_suffix("jw01_02101_00001_nrcb1_cal.fits") == "jw01_02101_00001_nrcb1"
    assert sm._strip_suffix("/a/b/jw01_00001_nrcb1_crf.fits") == "jw01_00001_nrcb1"
    skylist = tmp_path / "sky.txt"
    names = [keywords.get(ds.attrs["meta"], "filename") for ds in cals]
    skylist.write_text("".join(f"{sm._strip_suffix(n)}_crf.fits {k}\n" for k, n in enumerate(names)))
    out = sm.skymatch(cals, None, skymethod="user", skylist=str(skylist))
    assert [_level(ds) for ds in out] == [0.0, 1.0, 2.0, 3.0]
    assert all(ds["sci"].data is cal["sci"].data for ds, cal in zip(out, cals, strict=True))
    skylist.write_text("other_cal.fits 1.0\n" * 4)
    with pytest.raises(InputError, match="not found"):
        sm.skymatch(cals, None, skymethod="user", skylist=str(skylist))


def test_bad_input(cals) -> None:
    with pytest.raises(ParameterError, match="unknown skymatch parameter"):
        sm.skymatch(cals, None, skymetod="local")
    with pytest.raises(ParameterError, match="skymethod"):
        sm.skymatch(cals, None, skymethod="median")
    with pytest.raises(ParameterError, match="skylist"):
        sm.skymatch(cals, None, skymethod="user")
    done = sm.skymatch(cals[:2], None, skymethod="local")
    with pytest.raises(InputError, match="BKGSUB"):
        sm.skymatch(done, None, skymethod="local", subtract=True)
    broken = done[0].copy()
    broken.attrs = {**done[0].attrs, "meta": {**done[0].attrs["meta"], "background": {"level": 0.1}}}
    with pytest.raises(InputError, match="BKGSUB"):
        sm.skymatch([broken, done[1]], None)
    no_wcs = cals[0].copy()
    no_wcs.attrs = {k: v for k, v in cals[0].attrs.items() if k != "wcs"}
    with pytest.raises(InputError, match="WCS"):
        sm.skymatch([no_wcs, cals[1]], None)
