"""group_scale kernel: the FRMDIVSR / NFRAMES factor, equal to jwst 3.0's group_scale."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask.kernels.group_scale import scale_groups


def test_factor_applied_in_float32():
    sci = np.array([5.0, 10.0, 16383.0], np.float32).reshape(1, 3, 1, 1)
    out = scale_groups(sci, nframes=5, frame_divisor=4)
    np.testing.assert_array_equal(out.sci.ravel(), sci.ravel() * np.float32(0.8))
    assert out.sci.dtype == np.float32
    assert sci[0, 0, 0, 0] == 5.0
    with pytest.raises(ValueError, match="nframes"):
        scale_groups(sci, nframes=0, frame_divisor=4)


@pytest.mark.reference
@pytest.mark.parametrize(("nframes", "divisor"), [(5, 4), (3, 4), (6, 8)])
def test_equal_to_jwst(nframes, divisor):
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    group_scale = pytest.importorskip("jwst.group_scale.group_scale")
    sci = np.random.default_rng(nframes).integers(0, 65535, (2, 3, 5, 6)).astype(np.float32)
    model = datamodels.RampModel(data=sci.copy())
    model.meta.exposure.nframes, model.meta.exposure.frame_divisor = nframes, divisor
    group_scale.do_correction(model)
    np.testing.assert_array_equal(scale_groups(sci, nframes=nframes, frame_divisor=divisor).sci, model.data)
