"""MIRI reference-pixel correction (full frame): reference levels, subarray skip, the
"no usable reference pixels" quirk, and bit-equality with jwst 3.0's RefPixStep."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.detector1.refpix_miri import refpix_miri
from jwdask.errors import InputError, ParameterError
from jwdask.kernels.miri_refpix import FULL_SHAPE, REFERENCE_COLUMNS, apply_levels, reference_levels
from tests.kernels.miri_support import exposure, header, no_compute, ramp_model, run_jwst

DNU = dqflags.DO_NOT_USE


def _full_frame(nints: int = 2, ngroups: int = 3, seed: int = 0):
    """Ramps with a drift per (integration, group, amplifier, row parity) and a few outliers."""
    rng = np.random.default_rng(seed)
    ny, nx = FULL_SHAPE
    drift = rng.normal(0, 20, (nints, ngroups, 2, 4))
    rows, cols = np.arange(ny)[:, None] % 2, np.arange(nx)[None, :] % 4
    sci = rng.normal(20000, 5, (nints, ngroups, ny, nx)) + 50.0 * np.arange(ngroups)[:, None, None]
    sci += drift[:, :, rows, cols]
    sci[rng.random(sci.shape) < 1e-3] += 5000
    gdq = np.zeros(sci.shape, np.uint8)
    pdq = np.zeros((ny, nx), np.uint32)
    pdq[rng.random((ny, nx)) < 0.01] = DNU
    return sci.astype(np.float32), gdq, pdq


def test_levels_recover_drifts():
    """Reference columns carrying only the drift give it back, relative to group 0."""
    ny = FULL_SHAPE[0]
    drift = np.arange(2 * 3 * 2 * 4, dtype=np.float32).reshape(2, 3, 2, 4)
    refcols = np.empty((2, 3, ny, 8), np.float32)
    for side in range(2):
        refcols[..., side * 4:(side + 1) * 4] = drift[:, :, np.arange(ny) % 2, :]
    levels = reference_levels(refcols, np.zeros((ny, 8), np.uint32))
    expected = drift - drift[:, :1]
    np.testing.assert_array_equal(levels, expected)
    single = reference_levels(refcols, np.zeros((ny, 8), np.uint32), odd_even_rows=False)
    np.testing.assert_allclose(single[:, :, 0], expected.mean(axis=2), rtol=1e-6)
    np.testing.assert_array_equal(single[:, :, 0], single[:, :, 1])


def test_missing_reference_values_stop_all_later_corrections():
    ny = FULL_SHAPE[0]
    refcols = np.random.default_rng(1).normal(0, 1, (3, 4, ny, 8)).astype(np.float32)
    dq = np.zeros((ny, 8), np.uint32)
    dq[1::2, 5] = DNU                          # odd rows of amplifier B's right column unusable
    assert not reference_levels(refcols, dq).any()
    assert reference_levels(refcols, dq, odd_even_rows=False).any()
    with pytest.raises(ValueError, match="rows, 8"):
        reference_levels(refcols[..., :7], dq[:, :7])


def test_apply_keeps_group0_and_rounds_like_jwst():
    sci = np.array([1.0e8, 1.0e8 + 8, 3.0], np.float32).reshape(1, 3, 1, 1)
    levels = np.zeros((1, 3, 2, 4))
    levels[0, 1] = 2.0
    out = apply_levels(sci, np.zeros((1, 1), np.int8), levels=levels).sci
    assert out.ravel().tolist() == [1.0e8, 1.0e8 + 8, np.float32(np.float32(3.0 - 1.0e8) + np.float32(1.0e8))]


@pytest.mark.reference
@pytest.mark.parametrize(("odd_even_rows", "bad_column"), [(True, False), (False, False), (True, True)])
def test_equal_to_jwst(tmp_path, odd_even_rows, bad_column):
    pytest.importorskip("jwst")
    from jwst.refpix import RefPixStep

    sci, gdq, pdq = _full_frame()
    if bad_column:
        pdq[::2, 1030] = DNU
    keys = header(sci, subarray="FULL")
    ds = exposure(sci, gdq, pdq, keys, tile=(256, 344))
    with no_compute():
        ours = refpix_miri(ds, None, odd_even_rows=odd_even_rows)
    assert ours.sci.chunks == ds.sci.chunks
    theirs = run_jwst(RefPixStep, ramp_model(sci, gdq, pdq, keys), tmp_path, odd_even_rows=odd_even_rows)
    np.testing.assert_array_equal(ours.sci.values, theirs.data)
    assert ours.attrs["meta"]["cal_step"]["refpix"] == theirs.meta.cal_step.refpix == "COMPLETE"


@pytest.mark.reference
def test_subarray_skipped_like_jwst(tmp_path):
    pytest.importorskip("jwst")
    from jwst.refpix import RefPixStep

    rng = np.random.default_rng(3)
    sci = rng.normal(100, 1, (1, 3, 64, 72)).astype(np.float32)
    gdq, pdq = np.zeros(sci.shape, np.uint8), np.zeros((64, 72), np.uint32)
    keys = header(sci, subarray="SUB64", xstart=1, ystart=779)
    ours = refpix_miri(exposure(sci, gdq, pdq, keys))
    theirs = run_jwst(RefPixStep, ramp_model(sci, gdq, pdq, keys), tmp_path)
    assert ours.attrs["meta"]["cal_step"]["refpix"] == theirs.meta.cal_step.refpix == "SKIPPED"
    np.testing.assert_array_equal(ours.sci.values, theirs.data)


def test_bad_inputs():
    sci = np.zeros((1, 2, 8, 8), np.float32)
    ds = exposure(sci, np.zeros(sci.shape, np.uint8), np.zeros((8, 8), np.uint32),
                  header(sci, INSTRUME="NIRCAM", DETECTOR="NRCB1"))
    with pytest.raises(InputError, match="INSTRUME"):
        refpix_miri(ds)
    miri = exposure(sci, np.zeros(sci.shape, np.uint8), np.zeros((8, 8), np.uint32), header(sci))
    with pytest.raises(ParameterError, match="refpix_algorithm"):
        refpix_miri(miri, refpix_algorithm="fancy")
    with pytest.raises(ParameterError, match="siglimit"):
        refpix_miri(miri, siglimit=0)
    assert len(REFERENCE_COLUMNS) == 8
