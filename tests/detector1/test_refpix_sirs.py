"""refpix with refpix_algorithm="sirs" on synthetic full frames (NIRCam and NIRSpec orientation):
against jwst's RefPixStep on the same ramp and a sirskernel reference in the CRDS ASDF layout."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from jwdask import dqflags
from jwdask.detector1.refpix import refpix
from jwdask.errors import ParameterError
from jwdask.io import keywords
from jwdask.io.uncal import open_uncal
from jwdask.kernels.refpix_sirs import make_sirs_kernels, sirs_template
from jwdask.refs import RefProvider
from tests.conftest import write_uncal

N = 2048
NGROUPS = 2
NFREQ = N // 2 + 1
DETECTORS = {
    "nircam": {"INSTRUME": "NIRCAM", "DETECTOR": "NRCB1", "SUBARRAY": "FULL", "FASTAXIS": 1, "SLOWAXIS": -2,
               "NOUTPUTS": 4, "FILENAME": "jw02736001001_02101_00001_nrcb1_uncal.fits"},
    "nirspec": {"INSTRUME": "NIRSPEC", "DETECTOR": "NRS1", "EXP_TYPE": "NRS_FIXEDSLIT", "FILTER": "CLEAR",
                "GRATING": "PRISM", "PUPIL": None, "MODULE": None, "CHANNEL": None, "READPATT": "NRSRAPID",
                "SUBARRAY": "FULL", "FASTAXIS": 2, "SLOWAXIS": 1, "NOUTPUTS": 4,
                "FILENAME": "jw01234001001_01101_00001_nrs1_uncal.fits"},
}


@dataclass
class Case:
    ramp: xr.Dataset
    kernel_file: Path
    name: str


def _coefficients(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Fourier coefficients (4 amplifiers, N/2 + 1) of smooth row kernels, left plus right
    summing to about 1 (so that the side signal is an estimate of the row's)."""
    lags = np.minimum(np.arange(N), N - np.arange(N))
    out = []
    for _ in range(2):
        widths = rng.uniform(2.0, 6.0, 4)[:, None]
        kernels = np.exp(-(lags[None, :] ** 2) / (2 * widths**2))
        kernels *= rng.uniform(0.45, 0.55, (4, 1)) / kernels.sum(axis=1, keepdims=True)
        out.append(np.fft.rfft(kernels, axis=1))
    return out[0], out[1]


def _sirskernel(path: Path, instrument: str, detector: str, rng: np.random.Generator) -> Path:
    """A sirskernel reference as CRDS delivers it (SIRSKernelModel ASDF: meta plus one entry
    per detector with complex ``gamma`` and ``zeta``)."""
    import asdf

    gamma, zeta = _coefficients(rng)
    tree = {"meta": {"telescope": "JWST", "reftype": "SIRSKERNEL", "instrument": {"name": instrument},
                     "author": "jwdask tests", "pedigree": "DUMMY", "description": "synthetic sirskernel",
                     "useafter": "2020-01-01T00:00:00", "model_type": "SIRSKernelModel"},
            detector.lower(): {"gamma": gamma, "zeta": zeta},
            "nrca3": {"gamma": gamma[:, ::-1].copy(), "zeta": zeta}}
    asdf.AsdfFile(tree).write_to(path)
    return path


def _build(tmp: Path, name: str) -> Case:
    keys = DETECTORS[name]
    rng = np.random.default_rng(41 if name == "nircam" else 42)
    uncal = tmp / keys["FILENAME"]
    write_uncal(uncal, nints=1, ngroups=NGROUPS, ny=N, nx=N, xstart=1, ystart=1, primary=keys, zeroframe=True,
                sci=np.zeros((1, NGROUPS, N, N), np.uint16))
    ds = open_uncal(str(uncal), tile=(512, 512))
    # detector frame: rows along the slow axis, 4 amplifiers of 512 columns with parity offsets
    cols = np.arange(N)
    offsets = rng.uniform(-50, 50, (NGROUPS, 4, 2)).astype(np.float32)
    drift = np.cumsum(rng.normal(0, 0.8, (NGROUPS, N)), axis=1)
    det = (1e4 + offsets[:, cols // 512, cols % 2][:, None, :] + drift[:, :, None]
           + rng.normal(0, 5.0, (NGROUPS, N, N))).astype(np.float32)
    det[:, rng.integers(0, N, 20), rng.integers(0, 4, 20)] += 3000.0
    det[:, rng.integers(0, N, 20), rng.integers(N - 4, N, 20)] -= 3000.0
    sci = (det[:, ::-1, :] if keys["SLOWAXIS"] < 0 else det) if keys["FASTAXIS"] == 1 else np.swapaxes(det, 1, 2)
    sci = np.ascontiguousarray(sci)[None]
    pixeldq = np.zeros((N, N), np.uint32)
    pixeldq[:2, 100:140] = dqflags.DO_NOT_USE
    zeroframe = sci[:, 0] - np.float32(3.0)
    zeroframe[0, 50:60, 700] = 0.0
    chunks = ds.sci.data.chunks
    ramp = ds.assign(
        sci=(ds.sci.dims, da.from_array(sci, chunks=chunks)),
        zeroframe=(ds.zeroframe.dims, da.from_array(zeroframe, chunks=ds.zeroframe.data.chunks)),
        groupdq=(ds.sci.dims, da.zeros(sci.shape, dtype=np.uint8, chunks=chunks)),
        pixeldq=(("y", "x"), da.from_array(pixeldq, chunks=chunks[2:])))
    # the minimal GROUP table of the test uncal does not follow the jwst schema: leave it out
    ramp = ramp.drop_vars([v for v in ramp.data_vars if str(v).startswith("group.")])
    ramp.attrs["tables"] = {k: v for k, v in ramp.attrs.get("tables", {}).items() if k != "group"}
    kernel_file = _sirskernel(tmp / f"{name}_sirskernel.asdf", keys["INSTRUME"], keys["DETECTOR"], rng)
    return Case(ramp, kernel_file, name)


@pytest.fixture(scope="module", params=sorted(DETECTORS))
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Case:
    return _build(tmp_path_factory.mktemp(f"sirs_{request.param}"), request.param)


def _ours(case: Case, sirskernel: str | None = None, **params: object) -> xr.Dataset:
    refs = RefProvider(overrides={"sirskernel": sirskernel or str(case.kernel_file)})
    with dask.config.set(scheduler="threads", num_workers=2):
        out = refpix(case.ramp, refs, **params)
        return out.compute()


def test_sirs_removes_row_correlated_signal(case: Case) -> None:
    """The row drift common to a whole row (what the side pixels see) mostly disappears."""
    out = _ours(case, refpix_algorithm="sirs").sci.values[0, 1]
    before = case.ramp.sci.values[0, 1]
    science = (slice(8, N - 8), slice(8, N - 8))
    axis = 1 if abs(DETECTORS[case.name]["FASTAXIS"]) == 1 else 0
    drift_before = np.std(np.median(before[science], axis=axis))
    drift_after = np.std(np.median(out[science], axis=axis))
    assert drift_after < 0.5 * drift_before
    assert out.dtype == np.float32


def test_sirs_kernel_not_applicable_falls_back_to_median(case: Case) -> None:
    median = _ours(case).sci.values
    fallback = _ours(case, sirskernel="N/A", refpix_algorithm="sirs")
    np.testing.assert_array_equal(fallback.sci.values, median)
    assert fallback.attrs["meta"]["cal_step"]["refpix"] == "COMPLETE"


def test_when_jwst_uses_the_running_median_and_bad_parameters(case: Case, tmp_path: Path) -> None:
    """A kernel file without the detector, or a subarray name without FULL, give the running
    median as in jwst; unusable kernel parameters are parameter errors."""
    import asdf

    median = _ours(case).sci.values
    with asdf.open(case.kernel_file, lazy_load=False, memmap=False) as af:
        tree = {k: v for k, v in af.tree.items() if k in ("meta", "nrca3")}
    other = tmp_path / "other_sirskernel.asdf"
    asdf.AsdfFile(tree).write_to(other)
    np.testing.assert_array_equal(_ours(case, sirskernel=str(other), refpix_algorithm="sirs").sci.values, median)
    renamed = case.ramp.copy()
    renamed.attrs = copy.deepcopy(case.ramp.attrs)
    keywords.put(renamed.attrs["meta"], "subarray.name", "SUBGRISM2048")
    refs = RefProvider(overrides={"sirskernel": str(case.kernel_file)})
    np.testing.assert_array_equal(refpix(renamed, refs, refpix_algorithm="sirs").sci.values, median)
    for bad in ({"halfwidth": NFREQ}, {"gaussmooth": 0.0}):
        with pytest.raises(ParameterError, match=next(iter(bad))):
            refpix(case.ramp, refs, refpix_algorithm="sirs", **bad)


def test_graph_is_lazy_and_tiled(case: Case) -> None:
    refs = RefProvider(overrides={"sirskernel": str(case.kernel_file)})
    out = refpix(case.ramp, refs, refpix_algorithm="sirs")
    assert out.sci.data.chunks == case.ramp.sci.data.chunks


def test_template_equals_jwst_convolution() -> None:
    """The kernel functions against jwst's make_kernels/apply_conv_kernel on one plane."""
    pytest.importorskip("jwst")
    from jwst.refpix.optimized_convolution import apply_conv_kernel

    rng = np.random.default_rng(3)
    gamma, zeta = _coefficients(rng)
    plane = rng.normal(100.0, 5.0, (N, N))
    plane[rng.integers(0, N, 30), rng.integers(0, 4, 30)] = 1e4
    for gaussmooth, halfwidth in ((1.0, 30), (2.5, 12)):
        kernels = make_sirs_kernels(gamma, zeta, gaussmooth=gaussmooth, halfwidth=halfwidth)
        template = sirs_template(plane[:, :4], plane[:, -4:], kernels, sigreject=3.0)
        ours = plane - np.repeat(template, N // 4, axis=1)
        theirs = apply_conv_kernel(plane.copy(), [list(kernels.left), list(kernels.right)], sigreject=3.0)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-9)


@pytest.mark.reference
def test_equals_jwst(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("jwst")
    from jwst.refpix import RefPixStep

    from jwdask.io.products import write_product
    from tests.official import offline_crds

    offline_crds(tmp_path, monkeypatch)
    ramp_path = tmp_path / DETECTORS[case.name]["FILENAME"].replace("_uncal", "_ramp")
    write_product(case.ramp, str(ramp_path), "ramp")
    params = {"sigreject": 3.5, "gaussmooth": 1.5, "halfwidth": 25}
    result = RefPixStep.call(str(ramp_path), refpix_algorithm="sirs", override_sirskernel=str(case.kernel_file),
                             override_refpix="N/A", **params)
    assert result.meta.cal_step.refpix == "COMPLETE"
    theirs = np.asarray(result.data)
    ours_ds, median_ds = _ours(case, refpix_algorithm="sirs", **params), _ours(case)
    ours, median = ours_ds.sci.values, median_ds.sci.values
    assert np.abs(median - ours).max() > 1.0, "SIRS must differ from the running median"
    # same operations in the same precision (float32 first plane, then float64): bit-identical
    np.testing.assert_array_equal(ours, theirs)
    ours_zero = ours_ds.zeroframe.values
    assert np.abs(median_ds.zeroframe.values - ours_zero).max() > 1.0
    np.testing.assert_array_equal(ours_zero, np.asarray(result.zeroframe))
    assert (ours_zero[0, 50:60, 700] == 0).all()
