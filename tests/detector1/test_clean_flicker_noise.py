"""clean_flicker_noise on the `tiny` simulated exposure with injected 1/f row noise: against the
noise-free ramp (truth) and against jwst's CleanFlickerNoiseStep on the same ramp."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from astropy.io import fits

from jwdask.detector1.clean_flicker_noise import clean_flicker_noise
from jwdask.errors import InputError, ParameterError
from jwdask.io.uncal import open_uncal
from jwdask.kernels.clean_flicker_noise import stripe_clean
from jwdask.pipeline import Pipeline
from jwdask.refs import RefProvider
from jwdask.simulate import Program, simulate_program

ROW_NOISE = 8.0
"""Sigma [DN] of the injected per-row offsets, independent in every group read."""


@dataclass
class Case:
    prog: Program
    refs: RefProvider
    clean: xr.Dataset
    """The ramp after jump (before injection), computed."""
    noisy: xr.Dataset
    """The same with 1/f row noise added."""


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    prog = simulate_program("tiny", tmp_path_factory.mktemp("sim"), seed=7)
    refs = RefProvider(refs_dir=str(prog.refs_dir))
    pipe = Pipeline.load("detector1")
    names = [s.name for s in pipe.steps]
    pipe = dataclasses.replace(pipe, steps=pipe.steps[:names.index("jump") + 1])
    with dask.config.set(scheduler="threads", num_workers=2):
        clean = pipe.run(open_uncal(str(prog.uncal[0]), tile=(48, 48)), refs).persist()
        nints, ngroups, ny, _ = clean.sci.shape
        rows = np.random.default_rng(3).normal(0, ROW_NOISE, (nints, ngroups, ny, 1)).astype(np.float32)
        noisy = clean.assign(sci=clean.sci + rows).persist()
    return Case(prog, refs, clean, noisy)


def _ours(case: Case, ds: xr.Dataset | None = None, **params: object) -> np.ndarray:
    with dask.config.set(scheduler="threads", num_workers=2):
        out = clean_flicker_noise(case.noisy if ds is None else ds, case.refs, **params)
        assert out.attrs["meta"]["cal_step"]["clean_flicker_noise"] == "COMPLETE"
        return out.sci.values


def _row_noise(ramp: np.ndarray, truth: np.ndarray) -> float:
    """Scatter [DN] of the row medians of the group differences of ``ramp - truth``."""
    return float(np.nanstd(np.nanmedian(np.diff(ramp - truth, axis=1), axis=3)))


def test_graph_is_lazy_with_one_integration_per_task(case: Case) -> None:
    out = clean_flicker_noise(case.noisy, case.refs)
    data = out.sci.data
    assert isinstance(data, da.Array) and data.chunks == case.noisy.sci.data.chunks
    nints = case.noisy.sizes["integration"]
    graph = dict(data.__dask_graph__())
    cleaning = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("clean_flicker_noise-")]
    assert len(cleaning) == nints


@pytest.mark.parametrize("params", [{}, {"background_method": "model"}, {"background_method": None, "single_mask": False},
                                    {"fit_histogram": True, "apply_flat_field": True}])
def test_removes_injected_row_noise(case: Case, params: dict[str, object]) -> None:
    truth = case.clean.sci.values
    injected = _row_noise(case.noisy.sci.values, truth)
    cleaned = _ours(case, **params)
    assert injected > 0.8 * ROW_NOISE * np.sqrt(2)
    assert _row_noise(cleaned, truth) < 0.25 * injected
    np.testing.assert_array_equal(cleaned[:, 0], case.noisy.sci.values[:, 0])
    # the scene (sky + stars) is kept: the rate-like last-minus-first group is unbiased
    scene = np.nanmedian(cleaned[:, -1] - cleaned[:, 0] - (truth[:, -1] - truth[:, 0]))
    assert abs(scene) < ROW_NOISE


def test_user_mask_and_channels(case: Case, tmp_path: Path) -> None:
    """A user mask replaces the scene mask; fit_by_channel is ignored for subarrays (jwst)."""
    ny, nx = case.noisy.sizes["y"], case.noisy.sizes["x"]
    mask = np.ones((ny, nx), np.uint8)
    mask[60:100, 60:100] = 0
    path = tmp_path / "mask.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(mask, name="SCI")]).writeto(path)
    cleaned = _ours(case, user_mask=str(path), fit_by_channel=True)
    assert _row_noise(cleaned, case.clean.sci.values) < 0.5 * ROW_NOISE
    bad = tmp_path / "bad.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(mask[:10], name="SCI")]).writeto(bad)
    with pytest.raises(InputError, match="user_mask shape"):
        clean_flicker_noise(case.noisy, case.refs, user_mask=str(bad))


def test_unimplemented_and_bad_options(case: Case) -> None:
    for option in ("save_mask", "save_background", "save_noise"):
        with pytest.raises(NotImplementedError, match=option):
            clean_flicker_noise(case.noisy, case.refs, **{option: True})
    with pytest.raises(ParameterError, match="fit_method"):
        clean_flicker_noise(case.noisy, case.refs, fit_method="poly")
    # jwst allows fft for NIRSpec spectra only: other exposures are marked FAILED, data unchanged
    out = clean_flicker_noise(case.noisy, case.refs, fit_method="fft")
    assert out.attrs["meta"]["cal_step"]["clean_flicker_noise"] == "FAILED"
    assert out.sci is case.noisy.sci or out.sci.data is case.noisy.sci.data


def test_stripe_clean_by_channel() -> None:
    """Four amplifier bands along the fast-read axis each get their own line medians."""
    rng = np.random.default_rng(0)
    offsets = rng.normal(0, 5, (8, 4)).astype(np.float32)
    image = np.repeat(offsets, 4, axis=1) + rng.normal(0, 0.01, (8, 16)).astype(np.float32)
    mask = np.ones(image.shape, bool)
    mask[:, 0] = False
    out = stripe_clean(image, mask, axis=1, n_channels=4)
    assert np.abs(out[:, 1:]).max() < 0.05
    whole = stripe_clean(image, mask, axis=1)
    assert np.abs(whole).max() > 1.0


@pytest.mark.reference
@pytest.mark.parametrize("params", [
    {},
    {"background_method": "model", "background_box_size": [32, 20]},
    {"background_method": None, "single_mask": False, "n_sigma": 0.0},
    {"fit_histogram": True, "apply_flat_field": True},
    {"autoparam": True},
])
def test_equals_jwst(case: Case, params: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("jwst")
    import jwst.clean_flicker_noise.clean_flicker_noise as cfn
    from jwst.clean_flicker_noise import CleanFlickerNoiseStep
    from jwst.ramp_fitting import RampFitStep

    from jwdask.io.products import write_product
    from tests.official import offline_crds

    offline_crds(tmp_path, monkeypatch)
    files = case.prog.reference_files

    class DraftRampFit(RampFitStep):
        """jwst's draft-rate ramp fit with the simulator's gain and readnoise (no CRDS lookup)."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.override_gain, self.override_readnoise = str(files["gain"]), str(files["readnoise"])

    monkeypatch.setattr(cfn, "RampFitStep", DraftRampFit)
    ramp_path = tmp_path / Path(case.prog.uncal[0]).name.replace("_uncal", "_ramp")
    write_product(case.noisy, str(ramp_path), "ramp")
    step_params = dict(params)
    if params.get("apply_flat_field") or params.get("autoparam"):
        step_params["override_flat"] = str(files["flat"])
    result = CleanFlickerNoiseStep.call(str(ramp_path), skip=False, **step_params)
    assert result.meta.cal_step.clean_flicker_noise == "COMPLETE"
    theirs = np.asarray(result.data)
    ours = _ours(case, **params)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    ok = ~np.isnan(ours)
    np.testing.assert_allclose(ours[ok], theirs[ok], rtol=1e-5, atol=0)


@pytest.mark.reference
def test_detector1_rate_equals_jwst(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole stage with clean_flicker_noise on: the _rate products are equal."""
    pytest.importorskip("jwst")
    import jwst.clean_flicker_noise.clean_flicker_noise as cfn
    from jwst.ramp_fitting import RampFitStep

    from jwdask.commands import run_pipeline
    from tests.official import run_official_detector1

    files = case.prog.reference_files

    class DraftRampFit(RampFitStep):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.override_gain, self.override_readnoise = str(files["gain"]), str(files["readnoise"])

    monkeypatch.setattr(cfn, "RampFitStep", DraftRampFit)
    (tmp_path / "jwst").mkdir()
    theirs = run_official_detector1(case.prog.uncal[0], files, tmp_path / "jwst", monkeypatch,
                                    clean_flicker_noise={"skip": False})
    pipe = Pipeline.load("detector1").with_params(clean_flicker_noise={"skip": False})
    with dask.config.set(scheduler="threads", num_workers=2):
        urls = run_pipeline(pipe, [str(case.prog.uncal[0])], str(tmp_path / "ours"), case.refs, tile=48)
    ours = next(u for u in urls if u.endswith("_rate.fits"))
    with fits.open(ours) as a, fits.open(theirs) as b:
        assert a[0].header["S_CLNFNS"] == b[0].header["S_CLNFNS"] == "COMPLETE"
        np.testing.assert_array_equal(a["DQ"].data, b["DQ"].data)
        for name in ("SCI", "ERR", "VAR_POISSON", "VAR_RNOISE"):
            x, y = a[name].data, b[name].data
            np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=name)
            np.testing.assert_allclose(x[~np.isnan(x)], y[~np.isnan(y)], rtol=1e-5, atol=1e-7, err_msg=name)


def _striped_image(rng: np.random.Generator, shape: tuple[int, int], axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Sky + sources + line stripes along ``axis`` (one offset per line across it), and NaNs."""
    image = rng.normal(20.0, 3.0, shape).astype(np.float32)
    stripe_shape = (1, shape[1]) if axis == 0 else (shape[0], 1)
    image += rng.normal(0, 4.0, stripe_shape).astype(np.float32)
    ys, xs = rng.integers(0, shape[0], 40), rng.integers(0, shape[1], 40)
    image[ys, xs] += rng.uniform(100, 1000, 40).astype(np.float32)
    image[rng.integers(0, shape[0], 5), rng.integers(0, shape[1], 5)] = np.nan
    mask = rng.random(shape) > 0.05
    return image, mask


@pytest.mark.reference
@pytest.mark.parametrize(("shape", "axis", "fit_by_channel", "background", "flat"), [
    ((96, 2048), 1, True, "median", False),   # NIR full-frame width: 4 amplifiers
    ((120, 80), 0, False, "model", True),     # MIRI: stripes along y
    ((64, 64), 1, False, None, False),
])
def test_clean_image_equals_jwst(shape: tuple[int, int], axis: int, fit_by_channel: bool, background: str | None,
                                 flat: bool) -> None:
    cfn = pytest.importorskip("jwst.clean_flicker_noise.clean_flicker_noise")
    from jwdask.kernels.clean_flicker_noise import clean_image

    rng = np.random.default_rng(4)
    image, mask = _striped_image(rng, shape, axis)
    flat_image = rng.uniform(0.8, 1.2, shape).astype(np.float32) if flat else None
    theirs, their_bkg, ok = cfn._clean_one_image(image.copy(), mask.copy(), background, None, 2.0, "median",
                                                 "NRCA1", None, axis + 1, fit_by_channel, flat_image)
    n_channels = 4 if fit_by_channel else 1
    ours = clean_image(image, mask.copy(), axis=axis, n_channels=n_channels, background_method=background,
                       n_sigma=2.0, flat=flat_image)
    assert ok
    np.testing.assert_array_equal(np.isnan(ours.cleaned), np.isnan(theirs))
    np.testing.assert_allclose(ours.cleaned, theirs, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(ours.background, their_bkg, rtol=1e-6)


@pytest.mark.reference
@pytest.mark.parametrize(("fit_histogram", "lower_half_only"), [(False, False), (True, False), (True, True)])
def test_clip_to_background_equals_jwst(fit_histogram: bool, lower_half_only: bool) -> None:
    bl = pytest.importorskip("jwst.clean_flicker_noise.background_level")
    from jwdask.kernels.clean_flicker_noise import clip_to_background

    rng = np.random.default_rng(9)
    image, mask = _striped_image(rng, (100, 90), 1)
    image = np.where(np.isnan(image), 0.0, image).astype(np.float32)
    theirs, ours = mask.copy(), mask.copy()
    bl.clip_to_background(image, theirs, sigma_upper=2.0, fit_histogram=fit_histogram, lower_half_only=lower_half_only)
    clip_to_background(image, ours, sigma_upper=2.0, fit_histogram=fit_histogram, lower_half_only=lower_half_only)
    np.testing.assert_array_equal(ours, theirs)
    assert ours.sum() < mask.sum()


@pytest.mark.reference
def test_flat_fill_equals_jwst(tmp_path: Path) -> None:
    """Zero and NaN flat pixels are replaced by a smoothed local level, as jwst's read_flat_file."""
    cfn = pytest.importorskip("jwst.clean_flicker_noise.clean_flicker_noise")
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    from jwdask.kernels.clean_flicker_noise import fill_flat

    rng = np.random.default_rng(2)
    flat = rng.normal(1.0, 0.02, (64, 96)).astype(np.float32)
    flat[10:14, 20:30] = 0.0
    flat[40, 50] = np.nan
    model = datamodels.FlatModel(data=flat.copy())
    model.meta.subarray.xstart = model.meta.subarray.ystart = 1
    model.meta.subarray.xsize, model.meta.subarray.ysize = 96, 64
    path = tmp_path / "flat.fits"
    model.save(str(path))
    science = datamodels.ImageModel(data=np.zeros((64, 96), np.float32))
    science.meta.subarray.xstart = science.meta.subarray.ystart = 1
    science.meta.subarray.xsize, science.meta.subarray.ysize = 96, 64
    theirs = cfn.read_flat_file(science, str(path))
    np.testing.assert_allclose(fill_flat(flat), theirs, rtol=1e-6)


@pytest.mark.reference
@pytest.mark.parametrize(("instrument", "slowaxis", "size", "kind", "expected"), [
    ("NIRCAM", -2, 2048, "offsets", ("median", True)), ("NIRISS", -1, 2048, "offsets", ("median", True)),
    ("NIRCAM", 2, 256, "gradient", ("model", False)), ("NIRISS", 1, 256, "sources", ("model", False)),
])
def test_auto_parameters_equal_jwst(instrument: str, slowaxis: int, size: int, kind: str,
                                    expected: tuple[str, bool]) -> None:
    """The automatic choice of background method and per-amplifier fit, as jwst's autoparam:
    amplifier offsets -> per-amplifier fit; a gradient or many sources -> background model."""
    autoparam = pytest.importorskip("jwst.clean_flicker_noise.autoparam")
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    from jwdask.kernels.clean_flicker_noise import auto_parameters

    rng = np.random.default_rng(12)
    rate = rng.normal(1.0, 0.2, (size, size)).astype(np.float32)
    y, x = np.indices(rate.shape)
    along = x if slowaxis in (2, -2) else y
    if kind == "offsets":
        rate += np.array([0.0, 0.1, 0.15, 0.05], np.float32)[along // 512]
    elif kind == "gradient":
        rate += (1e-3 * along + 2e-4 * (x + y)).astype(np.float32)
    else:
        rate[rng.random(rate.shape) < 0.15] += 5.0
    model = datamodels.ImageModel(data=rate.copy())
    model.meta.subarray.slowaxis = slowaxis
    choose = autoparam.nircam_image_parameters if instrument == "NIRCAM" else autoparam.niriss_image_parameters
    theirs = choose(model, None)
    ours = auto_parameters(rate, None, instrument=instrument, axis=abs(slowaxis) - 1)
    assert ours == {k: theirs[k] for k in ("background_method", "fit_by_channel")}
    assert (ours["background_method"], ours["fit_by_channel"]) == expected
