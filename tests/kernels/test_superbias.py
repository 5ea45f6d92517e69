"""superbias kernel: hand-made frames and equality with jwst 3.0's bias_sub."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.kernels.superbias import subtract_bias

UB = dqflags.UNRELIABLE_BIAS


def test_bias_subtracted_from_every_group_nan_as_zero():
    sci = np.arange(8, dtype=np.float32).reshape(2, 2, 1, 2) + 100
    bias = np.array([[10.0, np.nan]], np.float32)
    out = subtract_bias(sci, np.array([[1, 0]], np.uint32), bias, np.array([[0, UB]], np.uint32))
    np.testing.assert_array_equal(out.sci, sci - np.array([10.0, 0.0], np.float32))
    assert out.pixeldq.tolist() == [[1, UB]]
    assert out.zeroframe is None
    assert np.isnan(bias[0, 1])


def test_zeroframe_zeros_stay_zero():
    zf = np.array([[[0.0, 50.0]], [[30.0, 0.0]]], np.float32)
    out = subtract_bias(np.zeros((2, 1, 1, 2), np.float32), np.zeros((1, 2), np.uint32),
                        np.array([[5.0, 5.0]], np.float32), np.zeros((1, 2), np.uint32), zeroframe=zf)
    assert out.zeroframe.tolist() == [[[0.0, 45.0]], [[25.0, 0.0]]]


@pytest.mark.reference
def test_equal_to_jwst():
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    bias_sub = pytest.importorskip("jwst.superbias.bias_sub")
    rng = np.random.default_rng(0)
    sci = rng.normal(12000, 300, (2, 3, 9, 11)).astype(np.float32)
    pdq = np.where(rng.random((9, 11)) < 0.1, dqflags.HOT, 0).astype(np.uint32)
    bias = rng.normal(11000, 500, (9, 11)).astype(np.float32)
    bias[2, 3] = np.nan
    bias_dq = np.where(rng.random((9, 11)) < 0.1, UB, 0).astype(np.uint32)
    zf = rng.normal(12000, 300, (2, 9, 11)).astype(np.float32)
    zf[0, :2] = 0.0
    model = datamodels.RampModel(data=sci.copy(), pixeldq=pdq.copy(), zeroframe=zf.copy())
    model.meta.exposure.zero_frame = True
    bias_model = datamodels.SuperBiasModel(data=bias.copy(), dq=bias_dq.copy())
    for m in (model, bias_model):
        m.meta.instrument.name = "NIRCAM"
        m.meta.subarray.xstart, m.meta.subarray.ystart, m.meta.subarray.xsize, m.meta.subarray.ysize = 1, 1, 11, 9
    result = bias_sub.do_correction(model, bias_model)
    out = subtract_bias(sci, pdq, bias, bias_dq, zeroframe=zf)
    np.testing.assert_array_equal(out.sci, result.data)
    np.testing.assert_array_equal(out.pixeldq, result.pixeldq)
    np.testing.assert_array_equal(out.zeroframe, result.zeroframe)
