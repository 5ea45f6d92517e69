"""clean_flicker_noise with ``fit_method='fft'`` (NSClean) and ``background_method='median_image'``
on the `tiny` simulated exposure with injected 1/f row noise: graph laziness, noise removal, and
equality with jwst's CleanFlickerNoiseStep on the same ramp (the NIRSpec cases relabel the tiny
NIRCam exposure as a NIRSpec fixed-slit one)."""

from __future__ import annotations

import copy
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
from jwdask.io import keywords
from jwdask.io.uncal import open_uncal
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
    """The same with 1/f row noise added (stripes along NIRCam detector lines)."""
    noisy_nirspec: xr.Dataset
    """The same with column noise added (stripes along NIRSpec detector lines), as NIRSpec."""
    nirspec_refs: dict[str, RefProvider]
    """Per NIRSpec detector, the simulator's gain, readnoise and flat relabelled for it."""


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    prog = simulate_program("tiny", tmp_path_factory.mktemp("sim"), seed=11)
    refs = RefProvider(refs_dir=str(prog.refs_dir))
    pipe = Pipeline.load("detector1")
    names = [s.name for s in pipe.steps]
    pipe = dataclasses.replace(pipe, steps=pipe.steps[:names.index("jump") + 1])
    with dask.config.set(scheduler="threads", num_workers=2):
        clean = pipe.run(open_uncal(str(prog.uncal[0]), tile=(48, 48)), refs).persist()
        nints, ngroups, ny, _ = clean.sci.shape
        rows = np.random.default_rng(5).normal(0, ROW_NOISE, (nints, ngroups, ny, 1)).astype(np.float32)
        noisy = clean.assign(sci=clean.sci + rows).persist()
        nx = clean.sizes["x"]
        cols = np.random.default_rng(4).normal(0, ROW_NOISE, (nints, ngroups, 1, nx)).astype(np.float32)
        noisy_nirspec = _nirspec(clean.assign(sci=clean.sci + cols).persist())
    nirspec_refs = {}
    for detector in ("NRS1", "NRS2"):
        folder = tmp_path_factory.mktemp(detector)
        overrides = {}
        for reftype in ("gain", "readnoise", "flat"):
            source = Path(prog.reference_files[reftype])
            with fits.open(source) as hdul:
                hdul[0].header["INSTRUME"], hdul[0].header["DETECTOR"] = "NIRSPEC", detector
                hdul.writeto(folder / source.name)
            overrides[reftype] = str(folder / source.name)
        nirspec_refs[detector] = RefProvider(overrides)
    return Case(prog, refs, clean, noisy, noisy_nirspec, nirspec_refs)


def _relabel(ds: xr.Dataset, **paths: object) -> xr.Dataset:
    """``ds`` with meta values replaced (``exposure__type="NRS_FIXEDSLIT"`` sets exposure.type)."""
    out = ds.copy()
    out.attrs = copy.deepcopy(ds.attrs)
    for path, value in paths.items():
        keywords.put(out.attrs["meta"], path.replace("__", "."), value)
    return out


def _nirspec(ds: xr.Dataset, detector: str = "NRS1", subarray: str | None = None) -> xr.Dataset:
    extra = {} if subarray is None else {"subarray__name": subarray}
    axes = {"subarray__fastaxis": 2, "subarray__slowaxis": 1} if detector == "NRS1" else \
        {"subarray__fastaxis": -2, "subarray__slowaxis": -1}
    return _relabel(ds, exposure__type="NRS_FIXEDSLIT", instrument__name="NIRSPEC", instrument__detector=detector,
                    **axes, **extra)


def _ours(case: Case, ds: xr.Dataset, **params: object) -> xr.Dataset:
    refs = case.nirspec_refs.get(str(keywords.get(ds.attrs["meta"], "instrument.detector")), case.refs)
    with dask.config.set(scheduler="threads", num_workers=2):
        out = clean_flicker_noise(ds, refs, **params)
        assert out.attrs["meta"]["cal_step"]["clean_flicker_noise"] == "COMPLETE"
        return out.compute()


def _stripe_noise(ramp: np.ndarray, truth: np.ndarray, axis: int) -> float:
    """Scatter [DN] of the medians along array ``axis`` (3: rows, 2: columns) of the group
    differences of ``ramp - truth``."""
    return float(np.nanstd(np.nanmedian(np.diff(ramp - truth, axis=1), axis=axis)))


def _user_mask(case: Case, path: Path) -> str:
    ny, nx = case.noisy.sizes["y"], case.noisy.sizes["x"]
    mask = np.ones((ny, nx), np.uint8)
    mask[50:110, 40:120] = 0
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(mask, name="SCI")]).writeto(path)
    return str(path)


def test_median_image_graph_is_lazy_and_tiled(case: Case) -> None:
    """The median ramp is one task per (y, x) tile (per-pixel median over integrations); the
    cleaning one task per integration; nothing is computed while building."""
    out = clean_flicker_noise(case.noisy, case.refs, background_method="median_image")
    data = out.sci.data
    assert isinstance(data, da.Array) and data.chunks == case.noisy.sci.data.chunks
    graph = dict(data.__dask_graph__())
    medians = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("median_over_integrations-")]
    tiles = len(case.noisy.sci.data.chunks[2]) * len(case.noisy.sci.data.chunks[3])
    assert len(medians) == tiles * len(case.noisy.sci.data.chunks[1])
    cleaning = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("clean_flicker_noise-")]
    assert len(cleaning) == case.noisy.sizes["integration"]


def _check_noise_removed(cleaned: np.ndarray, noisy: np.ndarray, truth: np.ndarray, factor: float,
                         axis: int) -> None:
    injected = _stripe_noise(noisy, truth, axis)
    assert injected > 0.8 * ROW_NOISE * np.sqrt(2)
    assert _stripe_noise(cleaned, truth, axis) < factor * injected
    # the scene (sky + stars) is kept: the rate-like last-minus-first group is unbiased
    scene = np.nanmedian(cleaned[:, -1] - cleaned[:, 0] - (truth[:, -1] - truth[:, 0]))
    assert abs(scene) < ROW_NOISE


@pytest.mark.parametrize("detector", ["NRS1", "NRS2"])
def test_fft_removes_injected_row_noise(case: Case, detector: str) -> None:
    """NSClean on the (relabelled NIRSpec) subarray removes column stripes (NIRSpec reads
    along DMS y)."""
    noisy = _nirspec(case.noisy_nirspec, detector)
    cleaned = _ours(case, noisy, fit_method="fft").sci.values
    _check_noise_removed(cleaned, noisy.sci.values, case.clean.sci.values, 0.3, axis=2)


def test_median_image_removes_injected_row_noise(case: Case) -> None:
    """Five integrations of the same scene (with their own white read noise): the stripes left
    are those of the median ramp (the median of the 5 integrations' stripes, restored with it);
    all others are removed. (NSClean with the median image is checked against jwst below.)"""
    nints = 5
    one = case.clean.isel(integration=[0])
    clean = xr.concat([one] * nints, dim="integration", data_vars="minimal", coords="minimal",
                      compat="override").chunk({"integration": -1})
    rng = np.random.default_rng(8)
    clean = clean.assign(sci=clean.sci + rng.normal(0, 3.0, clean.sci.shape).astype(np.float32))
    stripes = rng.normal(0, ROW_NOISE, (nints, clean.sizes["group"], clean.sizes["y"], 1)).astype(np.float32)
    noisy = _relabel(clean.assign(sci=clean.sci + stripes), exposure__nints=nints)
    cleaned = _ours(case, noisy, background_method="median_image").sci.values
    kept = clean.sci.values + np.median(stripes, axis=0)
    _check_noise_removed(cleaned, noisy.sci.values, kept, 0.3, axis=3)


def test_median_image_refusals(case: Case) -> None:
    """One integration: FAILED as jwst (no median across integrations); TSO scalings raise."""
    one = case.noisy.isel(integration=[0])
    out = clean_flicker_noise(one, case.refs, background_method="median_image")
    assert out.attrs["meta"]["cal_step"]["clean_flicker_noise"] == "FAILED"
    assert out.sci.data is one.sci.data
    for exp_type in ("NRC_TSIMAGE", "NRS_BRIGHTOBJ", "NIS_SOSS"):
        with pytest.raises(NotImplementedError, match="median_image"):
            clean_flicker_noise(_relabel(case.noisy, exposure__type=exp_type), case.refs,
                                background_method="median_image")


@pytest.mark.reference
@pytest.mark.parametrize(("nirspec", "params"), [
    ({"detector": "NRS1"}, {"fit_method": "fft"}),
    ({"detector": "NRS2", "subarray": "ALLSLITS"}, {"fit_method": "fft", "background_method": "model",
                                                    "single_mask": False}),
    ({"detector": "NRS1"}, {"fit_method": "fft", "user_mask": "mask", "background_method": None}),
    (None, {"background_method": "median_image"}),
    (None, {"background_method": "median_image", "apply_flat_field": True, "user_mask": "mask"}),
    ({"detector": "NRS2"}, {"fit_method": "fft", "background_method": "median_image"}),
])
def test_equals_jwst(case: Case, nirspec: dict[str, str] | None, params: dict[str, object], tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("jwst")
    import jwst.clean_flicker_noise.clean_flicker_noise as cfn
    from jwst.assign_wcs import AssignWcsStep
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

    class DraftWcs(AssignWcsStep):
        """jwst's WCS for the draft rateints of median_image, from the simulator's references."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            for reftype in self.reference_file_types:
                setattr(self, f"override_{reftype}", str(files.get(reftype, "N/A")))

    monkeypatch.setattr(cfn, "RampFitStep", DraftRampFit)
    monkeypatch.setattr(cfn, "AssignWcsStep", DraftWcs)
    ds = case.noisy if nirspec is None else _nirspec(case.noisy_nirspec, **nirspec)
    if nirspec is not None and params.get("background_method") == "median_image":
        # jwst assigns a NIRSpec WCS to the draft rateints here (the relabelled NIRCam exposure
        # has none); without mask_science_regions it only adds metadata, never data or mask.
        monkeypatch.setattr(cfn, "post_process_rate", lambda model, **kwargs: model)
    step_params = dict(params)
    if params.get("user_mask") == "mask":
        step_params["user_mask"] = _user_mask(case, tmp_path / "mask.fits")
    if params.get("apply_flat_field"):
        step_params["override_flat"] = str(files["flat"])
    ramp_path = tmp_path / Path(case.prog.uncal[0]).name.replace("_uncal", "_ramp")
    write_product(ds, str(ramp_path), "ramp")
    result = CleanFlickerNoiseStep.call(str(ramp_path), skip=False, **step_params)
    assert result.meta.cal_step.clean_flicker_noise == "COMPLETE"
    ours = _ours(case, ds, **{k: v for k, v in step_params.items() if k != "override_flat"})
    theirs = np.asarray(result.data)
    sci = ours.sci.values
    np.testing.assert_array_equal(np.isnan(sci), np.isnan(theirs))
    ok = ~np.isnan(sci)
    np.testing.assert_allclose(sci[ok], theirs[ok], rtol=1e-5, atol=0)
    assert np.abs(sci - case.noisy.sci.values).max() > 1.0  # the correction did something
    np.testing.assert_array_equal(ours.groupdq.values, np.asarray(result.groupdq))
    np.testing.assert_array_equal(ours.pixeldq.values, np.asarray(result.pixeldq))


@pytest.mark.reference
@pytest.mark.parametrize("detector", ["NRS1", "NRS2"])
def test_full_frame_nsclean_equals_jwst(detector: str) -> None:
    """The 2048 x 2048 line-by-line NSClean fit (mask on ~100 detector lines to stay fast)."""
    cfn = pytest.importorskip("jwst.clean_flicker_noise.clean_flicker_noise")
    from jwdask.kernels.clean_flicker_noise import nsclean_full_frame

    rng = np.random.default_rng(21)
    image = rng.normal(0, 3, (2048, 2048)).astype(np.float32)
    image += rng.normal(0, 4, (1, 2048)).astype(np.float32)  # 1/f along the NIRSpec fast axis (y)
    image[rng.integers(0, 2048, 200), rng.integers(0, 2048, 200)] += 300.0
    mask = np.zeros(image.shape, bool)
    mask[:, 900:1000] = rng.random((2048, 100)) > 0.2  # DMS columns = detector lines
    theirs = cfn.fft_clean_full_frame(image.copy(), mask.copy(), detector)
    ours = nsclean_full_frame(image.copy(), mask.copy(), detector)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-4)
    assert np.std(ours[:, 900:1000] - image[:, 900:1000]) > 1.0
