"""refpix kernel (near-IR "median" algorithm): hand-made frames and equality with jwst 3.0."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.kernels.refpix import DETECTOR_SIZE, REQUIRED_TILE, correct_nir

N = DETECTOR_SIZE
REF = dqflags.REFERENCE_PIXEL
DNU = dqflags.DO_NOT_USE


def _border_dq(ny: int = N, nx: int = N, y0: int = 0, x0: int = 0) -> np.ndarray:
    y = np.arange(y0, y0 + ny)[:, None]
    x = np.arange(x0, x0 + nx)[None, :]
    ref = (y < 4) | (y >= N - 4) | (x < 4) | (x >= N - 4)
    return np.where(ref, REF, 0).astype(np.uint32)


def test_single_output_subarray_parities():
    """Reference columns of both parities: each parity's mean is removed from its columns."""
    sci = np.zeros((1, 2, 8, 8), np.float32)
    sci[..., 0::2] = 5.0
    sci[..., 1::2] = 7.0
    sci[0, 1] += 100.0
    dq = np.zeros((8, 8), np.uint32)
    dq[:, :2] = REF
    out = correct_nir(sci, dq, fastaxis=1, slowaxis=2, origin=(100, 0), noutputs=1)
    np.testing.assert_array_equal(out.sci, np.zeros_like(sci))
    one = correct_nir(sci, dq, fastaxis=1, slowaxis=2, origin=(100, 0), noutputs=1, odd_even_columns=False)
    np.testing.assert_array_equal(one.sci[0, 0, 0], [-1, 1] * 4)


def test_single_output_without_reference_pixels_is_unchanged():
    sci = np.arange(64, dtype=np.float32).reshape(1, 1, 8, 8)
    out = correct_nir(sci, np.zeros((8, 8), np.uint32), fastaxis=1, slowaxis=2, origin=(500, 500), noutputs=1)
    np.testing.assert_array_equal(out.sci, sci)
    assert out.sci is not sci


def test_amplifier_offsets_removed_and_bad_references_ignored():
    """Full frame: per amplifier and column parity offsets vanish; a DO_NOT_USE reference pixel
    and an unflagged outlier (sigma-clipped) do not disturb the means."""
    offsets = np.array([[10, 11], [20, 21], [30, 31], [40, 41]], np.float32)
    cols = np.arange(N)
    sci = np.broadcast_to(offsets[cols // 512, cols % 2], (1, 1, N, N)).copy()
    dq = _border_dq()
    sci[0, 0, 0, 0] = 1e6
    dq[0, 0] |= DNU
    sci[0, 0, 2045, 600] = 500.0
    out = correct_nir(sci, dq, fastaxis=1, slowaxis=2, use_side_ref_pixels=False)
    expected = np.zeros((N, N), np.float32)
    expected[0, 0] = 1e6 - 10
    expected[2045, 600] = 500.0 - 20
    np.testing.assert_array_equal(out.sci[0, 0], expected)


def test_side_running_median_with_mirrored_edges():
    """Every pixel holds its row number r. Top/bottom remove 1023.5; the side running median
    (11 rows, 4 columns per side) then removes r - 1023.5 inside the frame; at row 0 the
    mirrored window holds rows 5,4,...,0,...,4,5, median 3, leaving -3."""
    sci = np.repeat(np.arange(N, dtype=np.float32), N).reshape(1, 1, N, N)
    out = correct_nir(sci, _border_dq(), fastaxis=1, slowaxis=2)
    np.testing.assert_array_equal(out.sci[0, 0, 5:-5], 0.0)
    assert out.sci[0, 0, 0, 0] == -3.0
    assert out.sci[0, 0, -1, 7] == 3.0


def test_blocks_split_along_groups_equal_whole():
    rng = np.random.default_rng(5)
    sci = rng.normal(1e4, 30, (2, 2, N, N)).astype(np.float32)
    dq = _border_dq()
    kw = {"fastaxis": -1, "slowaxis": 2}
    whole = correct_nir(sci, dq, **kw).sci
    first = correct_nir(sci[:1, :1], dq, **kw).sci
    rest = correct_nir(sci[1:, 1:], dq, starts_exposure=False, **kw).sci
    np.testing.assert_array_equal(first[0, 0], whole[0, 0])
    np.testing.assert_array_equal(rest[0, 0], whole[1, 1])
    assert "whole (y, x)" in REQUIRED_TILE


def test_thread_safe():
    rng = np.random.default_rng(6)
    sci = rng.normal(100, 5, (1, 2, 64, 96)).astype(np.float32)
    dq = _border_dq(64, 96, 1984, 0)
    kw = {"fastaxis": -1, "slowaxis": 2, "origin": (1984, 0)}
    expected = correct_nir(sci, dq, **kw).sci
    results = [None] * 6
    barrier = threading.Barrier(len(results))

    def work(k):
        barrier.wait()
        results[k] = correct_nir(sci, dq, **kw).sci

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, expected)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [({"refpix_algorithm": "sirs"}, NotImplementedError, "sirs"),
     ({"refpix_algorithm": "mean"}, ValueError, "median"),
     ({"side_smoothing_length": 1}, ValueError, "side_smoothing_length"),
     ({"origin": (2040, 0)}, ValueError, "does not fit"),
     ({"slowaxis": -1}, ValueError, "fastaxis")],
)
def test_bad_arguments(kwargs, error, match):
    sci = np.zeros((1, 1, 16, 16), np.float32)
    with pytest.raises(error, match=match):
        correct_nir(sci, np.zeros((16, 16), np.uint32), **{"fastaxis": 1, "slowaxis": 2, **kwargs})


def test_irs2_not_implemented():
    with pytest.raises(NotImplementedError, match="IRS2"):
        correct_nir(np.zeros((1, 1, 2048, 3200), np.float32), np.zeros((2048, 3200), np.uint32),
                    fastaxis=2, slowaxis=1)


def _model(nints, ngroups, ny, nx, seed, *, fast, slow, xstart=1, ystart=1, noutputs=4, detector="NRCB1",
           subarray="FULL", zeroframe=False, scale=1.0):
    """A RampModel for jwst and the same arrays for jwdask (refs with bias-like drifts, bad
    pixels, an unflagged outlier and a NaN side reference pixel)."""
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    rng = np.random.default_rng(seed)
    data = rng.normal(100, 5, (nints, ngroups, ny, nx))
    data += rng.normal(0, 20, (nints, ngroups, 1, 1)) + 0.01 * np.arange(ny)[:, None]
    data[rng.random(data.shape) < 0.001] += 500
    data = (data * scale).astype(np.float32)
    pdq = _border_dq(ny, nx, ystart - 1, xstart - 1)
    pdq[rng.random((ny, nx)) < 0.01] |= DNU
    if ny == N and nx == N:
        data[0, 0, 700, 1] = np.nan
    model = datamodels.RampModel(data=data.copy(), pixeldq=pdq.copy(), groupdq=np.zeros(data.shape, np.uint8))
    model.meta.instrument.name = "NIRSPEC" if detector.startswith("NRS") else "NIRCAM"
    model.meta.instrument.detector = detector
    sub = model.meta.subarray
    sub.xstart, sub.ystart, sub.xsize, sub.ysize = xstart, ystart, nx, ny
    sub.fastaxis, sub.slowaxis, sub.name = fast, slow, subarray
    model.meta.exposure.noutputs = noutputs
    model.meta.exposure.zero_frame = zeroframe
    zf = None
    if zeroframe:
        zf = (data[:, 0] + rng.normal(0, 3, (nints, ny, nx))).astype(np.float32)
        zf[rng.random(zf.shape) < 0.01] = 0.0
        model.zeroframe = zf.copy()
    return model, data, pdq, zf


def _compare(model, data, pdq, zf, **params):
    reference_pixels = pytest.importorskip("jwst.refpix.reference_pixels")
    p = {"odd_even_columns": True, "use_side_ref_pixels": True, "side_smoothing_length": 11,
         "side_gain": 1.0, **params}
    conv = {"refpix_algorithm": "median", "sirs_kernel_model": None, "sigreject": 4.0,
            "gaussmooth": 1.0, "halfwidth": 30}
    status = reference_pixels.correct_model(model, p["odd_even_columns"], p["use_side_ref_pixels"],
                                            p["side_smoothing_length"], p["side_gain"], True, conv, 3.0)
    assert status == reference_pixels.REFPIX_OK
    sub = model.meta.subarray
    out = correct_nir(data, pdq, fastaxis=sub.fastaxis, slowaxis=sub.slowaxis,
                      origin=(sub.ystart - 1, sub.xstart - 1), noutputs=model.meta.exposure.noutputs,
                      subarray=sub.name, zeroframe=zf, **p)
    np.testing.assert_allclose(out.sci, model.data, rtol=0, atol=1e-4)
    assert out.sci.dtype == np.float32
    if zf is not None:
        np.testing.assert_allclose(out.zeroframe, model.zeroframe, rtol=0, atol=1e-4)
    return out


@pytest.mark.reference
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(
    ("model_kw", "params"),
    [({"nints": 1, "ngroups": 2, "fast": 1, "slow": -2, "zeroframe": True}, {}),
     ({"nints": 2, "ngroups": 1, "fast": -2, "slow": -1, "detector": "NRS1", "scale": 100.0},
      {"odd_even_columns": False, "side_gain": 0.7}),
     ({"nints": 1, "ngroups": 2, "fast": 2, "slow": 1, "detector": "NRS2"}, {"use_side_ref_pixels": False})],
    ids=["nircam-zeroframe", "nirspec-no-odd-even", "no-side"],
)
def test_full_frame_equals_jwst(model_kw, params):
    """Includes a NaN reference pixel (jwst turns its amplifier or side median to NaN)."""
    model, data, pdq, zf = _model(ny=N, nx=N, seed=1, **model_kw)
    _compare(model, data, pdq, zf, **params)


@pytest.mark.reference
@pytest.mark.parametrize(
    ("model_kw", "params"),
    [({"ny": 160, "nx": 200, "xstart": 1, "ystart": 1801, "fast": -1, "slow": 2, "zeroframe": True},
      {"side_smoothing_length": 4}),
     ({"ny": 64, "nx": 2048, "xstart": 1, "ystart": 1, "fast": -2, "slow": -1, "detector": "NRS1",
       "subarray": "SUB2048"}, {}),
     ({"ny": 64, "nx": 64, "xstart": 1985, "ystart": 1, "fast": 1, "slow": -2, "noutputs": 1,
       "subarray": "SUB64", "zeroframe": True}, {}),
     ({"ny": 64, "nx": 100, "xstart": 1949, "ystart": 300, "fast": -2, "slow": -1, "noutputs": 1,
       "detector": "NRS1", "subarray": "SUB2048"}, {"odd_even_columns": False}),
     ({"ny": 32, "nx": 32, "xstart": 1000, "ystart": 1000, "fast": 2, "slow": 1, "noutputs": 1,
       "detector": "NRS1", "subarray": "SUB32", "zeroframe": True}, {})],
    ids=["4-output-corner", "4-output-stripe", "1-output", "1-output-single-mean", "nirspec-sub32-edgeless"],
)
def test_subarrays_equal_jwst(model_kw, params):
    model, data, pdq, zf = _model(nints=2, ngroups=2, seed=2, **model_kw)
    before = data.copy()
    out = _compare(model, data, pdq, zf, **params)
    np.testing.assert_array_equal(data, before)
    assert np.abs(out.sci - data).max() > 1.0
