"""dq_init kernel: hand-made masks and equality with jwst 3.0's dq_initialization."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.kernels.dq_init import init_dq

DNU, HOT, DEAD = dqflags.DO_NOT_USE, dqflags.HOT, dqflags.DEAD


def test_mask_goes_to_pixeldq_and_dnu_to_every_group():
    raw = np.arange(12, dtype=np.uint16).reshape(1, 2, 2, 3)
    mask = np.array([[0, HOT, DNU | DEAD], [DNU, 0, 0]], np.uint32)
    out = init_dq(raw, mask)
    np.testing.assert_array_equal(out.sci, raw.astype(np.float32))
    assert out.sci.dtype == np.float32 and out.pixeldq.dtype == np.uint32 and out.groupdq.dtype == np.uint8
    np.testing.assert_array_equal(out.pixeldq, mask)
    for g in range(2):
        assert out.groupdq[0, g].tolist() == [[0, 0, DNU], [DNU, 0, 0]]


def test_user_dq_and_existing_flags():
    raw = np.zeros((2, 1, 1, 2), np.uint16)
    gdq = np.zeros(raw.shape, np.uint8)
    gdq[1, 0, 0, 1] = dqflags.SATURATED
    out = init_dq(raw, np.zeros((1, 2), np.uint32), user_dq=np.array([[DNU, 0]], np.int64),
                  pixeldq=np.array([[0, HOT]], np.uint32), groupdq=gdq)
    assert out.pixeldq.tolist() == [[DNU, HOT]]
    assert out.groupdq[:, 0, 0].tolist() == [[DNU, 0], [DNU, dqflags.SATURATED]]
    assert gdq[0, 0, 0, 0] == 0


def test_misshaped_dq_replaced_and_bad_shapes_refused():
    raw = np.zeros((1, 1, 2, 2), np.uint16)
    out = init_dq(raw, np.zeros((2, 2), np.uint32), pixeldq=np.ones((3, 3), np.uint32),
                  groupdq=np.ones((1, 2, 2, 2), np.uint8))
    assert not out.pixeldq.any() and not out.groupdq.any()
    with pytest.raises(ValueError, match="user_dq"):
        init_dq(raw, np.zeros((2, 2), np.uint32), user_dq=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="mask dq shape"):
        init_dq(raw, np.zeros((3, 2), np.uint32))


@pytest.mark.reference
def test_equal_to_jwst():
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    dq_initialization = pytest.importorskip("jwst.dq_init.dq_initialization")
    rng = np.random.default_rng(4)
    raw = rng.integers(0, 65535, (2, 3, 7, 9), dtype=np.uint16)
    flags = np.array([0, DNU, HOT, DNU | DEAD, dqflags.REFERENCE_PIXEL, dqflags.NON_SCIENCE | DNU], np.uint32)
    mask = rng.choice(flags, size=(7, 9)).astype(np.uint32)
    user = np.where(rng.random((7, 9)) < 0.1, DNU, 0).astype(np.uint32)
    model = datamodels.RampModel(data=raw.astype(np.float32))
    model.meta.exposure.type = "NRC_IMAGE"
    mask_model = datamodels.MaskModel(dq=mask.copy())
    for m in (model, mask_model):
        m.meta.instrument.name = "NIRCAM"
        m.meta.subarray.xstart, m.meta.subarray.ystart, m.meta.subarray.xsize, m.meta.subarray.ysize = 1, 1, 9, 7
    result = dq_initialization.do_dqinit(model, mask_model, user_dq=user.copy())
    out = init_dq(raw, mask, user_dq=user)
    np.testing.assert_array_equal(out.sci, result.data)
    np.testing.assert_array_equal(out.pixeldq, result.pixeldq)
    np.testing.assert_array_equal(out.groupdq, result.groupdq)
