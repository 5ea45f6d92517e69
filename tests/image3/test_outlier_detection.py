"""outlier_detection (imaging): DQ equal to jwst's OutlierDetectionStep on identical inputs,
surviving simulated cosmic rays flagged, tile kernels equal to stcal's whole-image ones."""

from __future__ import annotations

import os
import re

import dask
import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.table import Table

from jwdask.dqflags import DO_NOT_USE, OUTLIER
from jwdask.errors import ParameterError
from jwdask.image3 import stage
from jwdask.image3.outlier_detection import (
    detect_outliers,
    outlier_detection,
    weight_threshold,
)
from jwdask.io.products import compute_writes, open_product
from jwdask.kernels import outlier_detection as kern
from tests.image2.rate_inputs import no_compute
from tests.image3.test_skymatch import jwst_models, offline_jwst
from tests.resample.helpers import exposure

TILE = (128, 160)
"""Exposure tiles of the inputs: several per 400x400 exposure, so the 2-pixel halo is exercised."""


@pytest.fixture(scope="module")
def sky_files(reduced, tmp_path_factory: pytest.TempPathFactory) -> list:
    """Tweaked cal files with jwst's 'global+match' sky levels recorded, not subtracted (the
    pipeline's input to outlier detection)."""
    pytest.importorskip("jwst")
    out = tmp_path_factory.mktemp("outlier")
    paths = []
    with offline_jwst(reduced.crds):
        from jwst.skymatch import SkyMatchStep

        lib = SkyMatchStep.call([str(p) for p in reduced.tweaked_abs], skymethod="global+match")
        with lib:
            for i, model in enumerate(lib):
                path = out / reduced.tweaked_abs[i].name.replace("_twkabs", "_sky")
                model.save(str(path))
                paths.append(path)
                lib.shelve(model, i, modify=False)
    return paths


def jwst_outliers(paths: list, crds, group_ids: list[str] | None = None,
                  **params) -> list[tuple[np.ndarray, np.ndarray]]:
    """(DQ, SCI) of every exposure after jwst's OutlierDetectionStep."""
    with offline_jwst(crds):
        from jwst.outlier_detection import OutlierDetectionStep

        lib = OutlierDetectionStep.call(jwst_models(paths, group_ids), **params)
        out = []
        with lib:
            for i, model in enumerate(lib):
                out.append((model.dq.copy(), model.data.copy()))
                lib.shelve(model, i, modify=False)
    return out


@pytest.mark.reference
@pytest.mark.parametrize("params", [pytest.param({"tile": (240, 512)}, marks=pytest.mark.slow),
                                    {"tile": 128, "resample_data": False}], ids=["resampled", "direct"])
def test_matches_jwst(reduced, sky_files, params: dict) -> None:
    """Identical DQ and SCI (NaN where flagged) for every exposure, with the median built on
    several output tiles and the flags on several exposure tiles. The first two exposures
    form one group (drizzled together into one median input), as a multi-detector exposure."""
    groups = ["g1", "g1", "g2", "g3"]
    theirs = jwst_outliers(sky_files, reduced.crds, groups, **{k: v for k, v in params.items() if k != "tile"})
    datasets = [open_product(str(p), tile=TILE) for p in sky_files]
    for ds, gid in zip(datasets, groups, strict=True):
        ds.attrs["meta"] = {**ds.attrs["meta"], "group_id": gid}
    ours = outlier_detection(datasets, None, **params)
    computed = dask.compute(*[(ds["dq"].data, ds["sci"].data, ds["var_rnoise"].data) for ds in ours])
    flagged = []
    for ds, (dq, sci, var), (dq_ref, sci_ref) in zip(ours, computed, theirs, strict=True):
        assert ds.attrs["meta"]["cal_step"]["outlier_detection"] == "COMPLETE"
        np.testing.assert_array_equal(dq, dq_ref)
        np.testing.assert_array_equal(sci, sci_ref)
        new = (dq & OUTLIER) != 0
        assert np.all(dq[new] & DO_NOT_USE) and np.all(np.isnan(sci[new])) and np.all(np.isnan(var[new]))
        flagged.append(int(new.sum()))
    assert min(flagged) > 0


@pytest.fixture(scope="module")
def with_raw_cosmic_rays(reduced, sky_files, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[xr.Dataset], dict]:
    """The sky inputs, but exposure 1 re-reduced by jwst with the jump step skipped, so its
    injected cosmic rays survive Detector1 into the cal file."""
    pytest.importorskip("jwst")
    from tests.official import detector1_overrides

    prog = reduced.program
    out = tmp_path_factory.mktemp("nojump")
    steps = detector1_overrides(prog.reference_files)
    steps["jump"]["skip"] = True
    with offline_jwst(reduced.crds):
        from jwst.pipeline import Detector1Pipeline, Image2Pipeline

        pipe = Detector1Pipeline(steps=steps, output_dir=str(out), save_results=True)
        pipe.prefetch_references = False
        pipe.run(str(prog.uncal[0]))
        rate = out / prog.uncal[0].name.replace("_uncal", "_rate")
        Image2Pipeline(steps={"resample": {"skip": True}, "bkg_subtract": {"skip": True}},
                       output_dir=str(out), save_results=True).run(str(rate))
    cal = open_product(str(rate).replace("_rate", "_cal"), tile=TILE)
    datasets = [open_product(str(p), tile=TILE) for p in sky_files]
    datasets[0] = datasets[0].assign({n: cal[n] for n in ("sci", "err", "dq", "var_poisson", "var_rnoise", "var_flat")})
    with fits.open(rate) as hdul:
        info = {"rate": hdul["SCI"].data.copy(), "err": hdul["ERR"].data.copy(),
                "xstart": hdul[0].header["SUBSTRT1"] - 1, "ystart": hdul[0].header["SUBSTRT2"] - 1}
    return datasets, info


@pytest.mark.slow
def test_flags_cosmic_rays_that_survive_detector1(reduced, with_raw_cosmic_rays) -> None:
    """Every injected cosmic ray left in exposure 1's rate (> 10 sigma from the true rate), off
    sources and seen by at least two other exposures, is flagged OUTLIER | DO_NOT_USE."""
    datasets, info = with_raw_cosmic_rays
    truth_dir = reduced.program.truth_dir
    root = reduced.program.uncal[0].name.replace("_uncal.fits", "")
    true_rate = fits.getdata(truth_dir / f"{root}_truth_rate.fits")
    hits = Table.read(truth_dir / f"{root}_jumps.ecsv")
    x = np.asarray(hits["x"]) - info["xstart"]
    y = np.asarray(hits["y"]) - info["ystart"]
    survived = np.abs(info["rate"][y, x] - true_rate[y, x]) > 10 * info["err"][y, x]
    sky = np.median(true_rate)
    ra, dec = datasets[0].attrs["wcs"](x, y)
    covered = np.zeros(x.size, dtype=int)
    for ds in datasets[1:]:
        xo, _ = ds.attrs["wcs"].invert(ra, dec)
        covered += np.isfinite(xo)
    testable = survived & (covered >= 2) & (true_rate[y, x] < 2 * sky)
    (dq,) = dask.compute(outlier_detection(datasets, None, tile=512)[0]["dq"].data)
    flagged = (dq[y, x] & (OUTLIER | DO_NOT_USE)) == (OUTLIER | DO_NOT_USE)
    assert survived.sum() >= 0.9 * len(hits)
    assert testable.sum() >= 10
    assert np.all(flagged[testable]), np.column_stack([x, y])[testable & ~flagged]
    assert flagged[survived].mean() > 0.85


def test_builds_a_lazy_graph(sky_files) -> None:
    datasets = [open_product(str(p), tile=TILE) for p in sky_files]
    with no_compute():
        out = outlier_detection(datasets, None, tile=256)
        direct = outlier_detection(datasets, None, resample_data=False)
    assert all(isinstance(ds["dq"].data, dask.array.Array) for ds in out + direct)


def test_single_exposure_and_bad_parameters(sky_files) -> None:
    one = open_product(str(sky_files[0]), tile=TILE)
    (out,) = outlier_detection([one], None)
    assert out.attrs["meta"]["cal_step"]["outlier_detection"] == "SKIPPED"
    for bad in ({"snr": "5.0"}, {"kernel": "gaussian"}, {"weight_type": "ivm-sky"}, {"grow": 1}):
        with pytest.raises(ParameterError):
            outlier_detection([one, one], None, **bad)
    with pytest.raises(ParameterError, match="detect_outliers"):
        outlier_detection([one, one], None, save_intermediate_results=True)


@pytest.mark.reference
def test_kernels_match_stcal() -> None:
    """Weight threshold from 7x5 tiles, derivative and flag rule equal stcal's whole-image ones."""
    utils = pytest.importorskip("stcal.outlier_detection.utils")
    rng = np.random.default_rng(5)
    for trial in range(3):
        w = rng.normal(100.0, 10.0, (300, 257)).astype(np.float32)
        w[rng.random(w.shape) < 0.05] = 0
        w[rng.random(w.shape) < 0.01] *= 5
        w[:20, :30] = np.nan
        if trial == 1:
            w = rng.integers(1, 5, w.shape).astype(np.float32)
        if trial == 2:
            w[:] = 0
        (ours,) = dask.compute(weight_threshold(dask.array.from_array(w, chunks=(45, 52)), 0.7))
        expected = utils.compute_weight_threshold(w, 0.7)
        assert float(ours) == pytest.approx(expected, rel=1e-12, nan_ok=True)
    blot = rng.normal(1.0, 0.1, (60, 70)).astype(np.float32)
    blot[rng.random(blot.shape) < 0.05] = np.nan
    np.testing.assert_array_equal(kern.abs_deriv(blot), utils._abs_deriv(blot))
    sci = blot + rng.normal(0, 0.05, blot.shape).astype(np.float32)
    sci[rng.random(blot.shape) < 0.02] += 5.0
    err = np.full(blot.shape, 0.05, dtype=np.float32)
    err[::7, ::5] = np.nan
    np.testing.assert_array_equal(kern.flag_resampled(sci, err, blot, 5.0, 4.0, 1.2, 0.7, 0.01),
                                  utils.flag_resampled_crs(sci, err, blot, 5.0, 4.0, 1.2, 0.7, 0.01))


def _write_intermediates(datasets: list[xr.Dataset], out, **params) -> tuple[stage.Image3Data, list[str]]:
    data = stage.outlier_detection(stage.Image3Data(tuple(datasets), "mosaic", "o001"), None,
                                   save_intermediate_results=True, **params)
    pending, delayed = stage.prepare_products(data, str(out))
    return data, compute_writes(pending, also=delayed)


def test_intermediate_products(tmp_path) -> None:
    """save_intermediate_results (synthetic exposures; 0 and 1 one exposure group): jwst's
    names and layouts, written atomically next to the crf files; the flags are those of a run
    without them; the median is the median of the group images where all are well covered."""
    offsets = [(0.0, 0.0), (0.0, 0.0), (7.3, 4.1), (-5.2, 9.7)]
    datasets = [exposure(k, offset=o) for k, o in enumerate(offsets)]
    datasets = [ds.assign_attrs(meta={**ds.attrs["meta"], "group_id": gid}) for ds, gid in zip(datasets, "aabc", strict=True)]
    datasets[2]["err"].attrs["units"] = "MJy/sr"
    data, urls = _write_intermediates(datasets, tmp_path, tile=64)
    roots = [ds.attrs["meta"]["filename"].removesuffix("_cal.fits") for ds in datasets]
    names = sorted(p.name for p in tmp_path.iterdir())
    expected = ([f"{r}_o001_{s}.fits" for r in roots for s in ("blot", "crf")]
                + [f"{roots[k]}_o001_outlier_i2d.fits" for k in (0, 2, 3)] + [f"{roots[0]}_o001_median.fits"])
    assert names == sorted(expected) and sorted(os.path.basename(u) for u in urls) == names
    plain = outlier_detection(datasets, None, tile=64)
    for ds, ours in zip(plain, data.exposures, strict=True):
        np.testing.assert_array_equal(*dask.compute(ds["dq"].data, ours["dq"].data))
    groups = []
    for n, k in enumerate((0, 2, 3)):
        with fits.open(tmp_path / f"{roots[k]}_o001_outlier_i2d.fits") as hdul:
            assert [h.name for h in hdul] == ["PRIMARY", "SCI", "WHT", "ASDF"]
            assert hdul[0].header["NDRIZ"] == n + 1 and hdul[0].header["S_RESAMP"] == "COMPLETE"
            assert "S_OUTLIR" not in hdul[0].header
            groups.append((hdul["SCI"].data, hdul["WHT"].data))
    with fits.open(tmp_path / f"{roots[0]}_o001_median.fits") as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "SCI", "ASDF"]
        median = hdul["SCI"].data
    scis = np.stack([g[0] for g in groups])
    whts = np.stack([g[1] for g in groups])
    full = np.all([w > 0.9 * np.median(w[w > 0]) for w in whts], axis=0)
    assert full.sum() > 1000
    np.testing.assert_array_equal(median[full], np.median(scis[:, full], axis=0))
    with fits.open(tmp_path / f"{roots[2]}_o001_blot.fits") as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "SCI", "ERR", "ASDF"] and hdul["SCI"].data.shape == (90, 110)
        assert hdul[0].header["FILENAME"] == f"{roots[2]}_o001_blot.fits"
        assert np.isfinite(hdul["SCI"].data).mean() > 0.9
        assert hdul["ERR"].data is None and hdul["ERR"].header["BUNIT"] == "MJy/sr"  # header only, as jwst
    blot = open_product(str(tmp_path / f"{roots[2]}_o001_blot.fits"))
    assert list(blot.data_vars) == ["sci"] and blot.attrs["meta"]["bunit_err"] == "MJy/sr"
    with fits.open(tmp_path / f"{roots[1]}_o001_blot.fits") as hdul:  # no ERR unit, no ERR
        assert [h.name for h in hdul] == ["PRIMARY", "SCI", "ASDF"]
    _, extras = detect_outliers(datasets, None, resample_data=False, save_intermediate_results=True)
    assert [(x.root, x.suffix, x.kind) for x in extras] == [(roots[0], "median", "median")]


def _intermediate_key(name: str) -> str:
    """``<exposure number>:<suffix>`` of an intermediate product's file name."""
    suffix = next(s for s in ("outlier_i2d", "median", "blot") if name.endswith(f"_{s}.fits"))
    exposure = re.search(r"^jw\d+_\d+_(\d+)_", name).group(1)
    return f"{exposure}:{suffix}"


@pytest.mark.reference
@pytest.mark.slow
def test_intermediate_products_match_jwst(reduced, sky_files, tmp_path) -> None:
    """The _outlier_i2d, _median and _blot products equal those jwst's OutlierDetectionStep
    writes with save_intermediate_results (exposures 1 and 2 one group), extension for
    extension (imaging passes no median error to the blot, so jwst's _blot has no ERR)."""
    groups = ["g1", "g1", "g2", "g3"]
    theirs = tmp_path / "jwst"
    with offline_jwst(reduced.crds):
        from jwst.outlier_detection import OutlierDetectionStep

        OutlierDetectionStep.call(jwst_models(sky_files, groups), save_intermediate_results=True,
                                  output_dir=str(theirs))
    datasets = [open_product(str(p), tile=TILE) for p in sky_files]
    datasets = [ds.assign_attrs(meta={**ds.attrs["meta"], "group_id": g}) for ds, g in zip(datasets, groups, strict=True)]
    ours = tmp_path / "ours"
    _write_intermediates(datasets, ours, tile=(240, 512))
    jwst_files = {_intermediate_key(f.name): f for f in theirs.glob("*.fits")}
    our_files = {_intermediate_key(f.name): f for f in ours.glob("*.fits") if not f.name.endswith("_crf.fits")}
    assert sorted(our_files) == sorted(jwst_files) and len(our_files) == 3 + 1 + 4
    for key, path in our_files.items():
        with fits.open(path) as a, fits.open(jwst_files[key]) as b:
            assert [h.name for h in a] == [h.name for h in b], key
            for hdu in b[1:]:
                if hdu.is_image and hdu.data is None:  # jwst's header-only ERR of the blot images
                    assert a[hdu.name].data is None and a[hdu.name].header.get("BUNIT") == hdu.header.get("BUNIT"), key
            for name in ("SCI", "ERR", "WHT"):
                if name in b and b[name].data is not None:
                    np.testing.assert_array_equal(np.isnan(a[name].data), np.isnan(b[name].data), err_msg=key)
                    np.testing.assert_allclose(a[name].data, b[name].data, rtol=1e-6, atol=1e-7, equal_nan=True,
                                               err_msg=f"{key} {name}")
            for card in ("EXPSTART", "EFFEXPTM", "NDRIZ", "S_RESAMP", "BKGLEVEL", "PIXAR_SR", "FILTER"):
                assert a[0].header.get(card) == pytest.approx(b[0].header.get(card)), (key, card)
            assert a[1].header.get("S_REGION") == b[1].header.get("S_REGION"), key
