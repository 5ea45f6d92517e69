"""gain_scale kernel: GAINFACT on rates and variances, equal to jwst 3.0's gain_scale."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask.kernels.gain_scale import scale_rates


def test_rates_times_g_variances_times_g_squared():
    ones = np.ones((2, 2), np.float32)
    out = scale_rates(ones, 2 * ones, 3 * ones, None, gain_factor=1.5)
    assert out.sci.tolist() == [[1.5] * 2] * 2
    assert out.err.tolist() == [[3.0] * 2] * 2
    assert out.var_poisson.tolist() == [[6.75] * 2] * 2
    assert out.var_rnoise is None
    assert out.sci.dtype == np.float32 and ones[0, 0] == 1.0


@pytest.mark.reference
def test_equal_to_jwst():
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    gain_scale = pytest.importorskip("jwst.gain_scale.gain_scale")
    rng = np.random.default_rng(1)
    arrays = [rng.uniform(0, 10, (2, 4, 5)).astype(np.float32) for _ in range(4)]
    model = datamodels.CubeModel(data=arrays[0].copy(), err=arrays[1].copy(), var_poisson=arrays[2].copy(),
                                 var_rnoise=arrays[3].copy())
    gain_scale.do_correction(model, 2.0372)
    out = scale_rates(*arrays, gain_factor=2.0372)
    for mine, theirs in zip(out, (model.data, model.err, model.var_poisson, model.var_rnoise), strict=True):
        np.testing.assert_array_equal(mine, theirs)
