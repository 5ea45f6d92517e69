"""linearity kernel: Horner polynomial, coefficient clean-up, ZEROFRAME, read-level path, and
equality with stcal 1.20 / jwst 3.0."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.kernels.linearity import correct_linearity, prepare_coefficients

NLC = dqflags.NO_LIN_CORR
SAT = dqflags.SATURATED


def _coeffs(ny: int, nx: int, values=(0.0, 1.0, 1e-3)) -> np.ndarray:
    return np.broadcast_to(np.array(values, np.float32)[:, None, None], (len(values), ny, nx)).copy()


def test_polynomial_and_saturated_groups():
    """F = 100 -> 100 + 1e-3 * 100^2 = 110; the SATURATED group keeps its value."""
    sci = np.array([100, 200, 300], np.float32).reshape(1, 3, 1, 1)
    gdq = np.array([0, 0, SAT], np.uint8).reshape(1, 3, 1, 1)
    out = correct_linearity(sci, gdq, np.zeros((1, 1), np.uint32), _coeffs(1, 1), np.zeros((1, 1), np.uint32))
    np.testing.assert_allclose(out.sci.ravel(), [110.0, 240.0, 300.0], rtol=1e-6)
    assert out.sci.dtype == np.float32


def test_unusable_coefficients_become_identity():
    """Pixel 0: NaN coefficient -> NO_LIN_CORR; pixel 1: zero linear term -> NO_LIN_CORR;
    pixel 2: NO_LIN_CORR in the reference dq (identity, no new flag needed); pixel 3: fine."""
    coeffs = _coeffs(1, 4)
    coeffs[2, 0, 0] = np.nan
    coeffs[1, 0, 1] = 0.0
    lin_dq = np.array([[0, 0, NLC, dqflags.NONLINEAR]], np.uint32)
    sci = np.full((1, 1, 1, 4), 100.0, np.float32)
    out = correct_linearity(sci, np.zeros(sci.shape, np.uint8), np.zeros((1, 4), np.uint32), coeffs, lin_dq)
    np.testing.assert_allclose(out.sci.ravel(), [100, 100, 100, 110], rtol=1e-6)
    assert out.pixeldq.tolist() == [[NLC, NLC, NLC, dqflags.NONLINEAR]]
    new, flags = prepare_coefficients(coeffs, lin_dq)
    assert new[:, 0, :3].T.tolist() == [[0.0, 1.0, 0.0]] * 3
    assert flags.tolist() == [[NLC, NLC, 0, 0]]
    assert np.isnan(coeffs[2, 0, 0])


def test_zeroframe_zeros_stay_zero():
    zf = np.array([[[0.0, 100.0]]], np.float32)
    out = correct_linearity(np.zeros((1, 1, 1, 2), np.float32), np.zeros((1, 1, 1, 2), np.uint8),
                            np.zeros((1, 2), np.uint32), _coeffs(1, 2), np.zeros((1, 2), np.uint32), zeroframe=zf)
    np.testing.assert_allclose(out.zeroframe, [[[0.0, 110.0]]], rtol=1e-6)


def test_read_level_path_is_exact_for_a_linear_detector():
    """With identity coefficients and inverse coefficients the read-level path returns the
    input; with NFRAMES = 1 inverse coefficients are ignored."""
    sci = np.array([10, 50, 90, 130], np.float32).reshape(1, 4, 1, 1)
    ident = _coeffs(1, 1, (0.0, 1.0, 0.0))
    args = (sci, np.zeros(sci.shape, np.uint8), np.zeros((1, 1), np.uint32), ident, np.zeros((1, 1), np.uint32))
    np.testing.assert_allclose(correct_linearity(*args, inv_coeffs=ident, nframes=4).sci, sci, rtol=1e-6)
    quad = _coeffs(1, 1)
    one = correct_linearity(*args[:3], quad, args[4], inv_coeffs=ident, nframes=1)
    classic = correct_linearity(*args[:3], quad, args[4])
    np.testing.assert_array_equal(one.sci, classic.sci)
    with pytest.raises(ValueError, match="at least 2 groups"):
        correct_linearity(sci[:, :1], np.zeros((1, 1, 1, 1), np.uint8), *args[2:], inv_coeffs=ident, nframes=2)


def _random(seed: int, nints: int = 2, ngroups: int = 5, ny: int = 13, nx: int = 17):
    rng = np.random.default_rng(seed)
    sci = (rng.uniform(0, 3000, (nints, 1, ny, nx)) * np.arange(1, ngroups + 1)[None, :, None, None]).astype(np.float32)
    gdq = np.zeros(sci.shape, np.uint8)
    gdq[sci > 12000] = SAT
    gdq[rng.random(sci.shape) < 0.05] |= dqflags.DO_NOT_USE
    pdq = np.where(rng.random((ny, nx)) < 0.05, dqflags.HOT, 0).astype(np.uint32)
    coeffs = np.stack([rng.normal(0, 1, (ny, nx)), rng.normal(1, 0.01, (ny, nx)),
                       rng.normal(2e-6, 1e-7, (ny, nx)), rng.normal(1e-11, 1e-12, (ny, nx))]).astype(np.float32)
    coeffs[2, 0, 0] = np.nan
    coeffs[1, 0, 1] = 0.0
    lin_dq = np.where(rng.random((ny, nx)) < 0.05, NLC, 0).astype(np.uint32)
    inv = np.stack([-coeffs[0], 2 - coeffs[1], -coeffs[2], np.zeros((ny, nx))]).astype(np.float32)
    inv[3, 1, 1] = np.nan
    zf = (sci[:, 0] * 0.5).astype(np.float32)
    zf[:, 2, :3] = 0.0
    return sci, gdq, pdq, coeffs, lin_dq, inv, zf


@pytest.mark.reference
@pytest.mark.parametrize("read_level", [False, True], ids=["classic", "read-level"])
def test_equal_to_stcal(read_level):
    stcal_lin = pytest.importorskip("stcal.linearity.linearity")
    sci, gdq, pdq, coeffs, lin_dq, inv, zf = _random(1)
    nframes = 3
    pattern = [[x + 1 + g * nframes for x in range(nframes)] for g in range(sci.shape[1])]
    ref_sci, ref_pdq, ref_zf = stcal_lin.linearity_correction(
        sci.copy(), gdq.copy(), pdq.copy(), coeffs.copy(), lin_dq.copy(), dqflags.PIXEL, zframe=zf.copy(),
        ilin_coeffs=inv.copy() if read_level else None, read_pattern=pattern if read_level else None)
    out = correct_linearity(sci, gdq, pdq, coeffs, lin_dq, zeroframe=zf,
                            inv_coeffs=inv if read_level else None, nframes=nframes)
    np.testing.assert_allclose(out.sci, ref_sci, rtol=1e-5)
    assert np.mean(out.sci == ref_sci) > 0.999
    np.testing.assert_array_equal(out.pixeldq, ref_pdq)
    np.testing.assert_array_equal(out.zeroframe, ref_zf)
    assert (out.sci != sci).mean() > 0.5


@pytest.mark.reference
def test_equal_to_jwst_do_correction():
    """jwst decides the read-level path itself (inv_coeffs present, NFRAMES > 1)."""
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    jwst_lin = pytest.importorskip("jwst.linearity.linearity")
    sci, gdq, pdq, coeffs, lin_dq, inv, zf = _random(2, ngroups=4)
    model = datamodels.RampModel(data=sci.copy(), groupdq=gdq.copy(), pixeldq=pdq.copy(), zeroframe=zf.copy())
    model.meta.exposure.nframes, model.meta.exposure.ngroups = 2, sci.shape[1]
    model.meta.exposure.zero_frame = True
    lin_model = datamodels.LinearityModel(coeffs=coeffs.copy(), dq=lin_dq.copy(), inv_coeffs=inv.copy())
    for m in (model, lin_model):
        m.meta.instrument.name = "NIRCAM"
        m.meta.subarray.xstart, m.meta.subarray.ystart = 1, 1
        m.meta.subarray.xsize, m.meta.subarray.ysize = sci.shape[-1], sci.shape[-2]
    result = jwst_lin.do_correction(model, lin_model)
    out = correct_linearity(sci, gdq, pdq, coeffs, lin_dq, zeroframe=zf, inv_coeffs=inv, nframes=2)
    np.testing.assert_allclose(out.sci, result.data, rtol=1e-5)
    np.testing.assert_array_equal(out.pixeldq, result.pixeldq)
    np.testing.assert_array_equal(out.zeroframe, result.zeroframe)
