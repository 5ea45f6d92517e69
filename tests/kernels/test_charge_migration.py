"""charge_migration kernel: hand-made ramps, tiles with a halo, and equality with jwst 3.0."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.kernels.charge_migration import HALO_DEPTH, flag_charge_migration

DNU, CL, SAT = dqflags.DO_NOT_USE, dqflags.CHARGELOSS, dqflags.SATURATED


def test_flags_later_groups_and_four_neighbours():
    sci = np.zeros((1, 3, 4, 4), np.float32)
    sci[0, 1, 0, 0] = 30000.0
    out = flag_charge_migration(sci, np.zeros(sci.shape, np.uint8)).groupdq
    assert not out[0, 0].any()
    expected = np.zeros((4, 4), np.uint8)
    expected[0, 0] = expected[0, 1] = expected[1, 0] = CL | DNU
    for g in (1, 2):
        np.testing.assert_array_equal(out[0, g], expected)


def test_threshold_is_strict_and_dnu_test_is_exact():
    """25000 is not above 25000; a group whose DQ is exactly DO_NOT_USE never seeds, but one
    with DO_NOT_USE | SATURATED does (jwst compares with ``!= 1``)."""
    sci = np.full((1, 1, 1, 5), 30000.0, np.float32)
    sci[0, 0, 0, 0] = 25000.0
    gdq = np.array([0, 0, DNU, DNU | SAT, 0], np.uint8).reshape(1, 1, 1, 5)
    sci[0, 0, 0, 1] = 0.0
    sci[0, 0, 0, 4] = 0.0
    out = flag_charge_migration(sci, gdq, signal_threshold=25000.0).groupdq
    assert out[0, 0, 0].tolist() == [0, 0, DNU | CL, DNU | SAT | CL, CL | DNU]


def test_tiles_with_halo_equal_whole_frame():
    rng = np.random.default_rng(2)
    sci = rng.uniform(0, 26000, (2, 4, 15, 17)).astype(np.float32)
    gdq = np.where(rng.random(sci.shape) < 0.2, DNU, 0).astype(np.uint8)
    whole = flag_charge_migration(sci, gdq).groupdq
    ny, nx = sci.shape[-2:]
    d = HALO_DEPTH
    for y0, y1 in ((0, 6), (6, ny)):
        for x0, x1 in ((0, 5), (5, 11), (11, nx)):
            top, bottom, left, right = min(d, y0), min(d, ny - y1), min(d, x0), min(d, nx - x1)
            ys, xs = slice(y0 - top, y1 + bottom), slice(x0 - left, x1 + right)
            tile = flag_charge_migration(sci[..., ys, xs], gdq[..., ys, xs], halo=(top, bottom, left, right)).groupdq
            np.testing.assert_array_equal(tile[..., top:top + y1 - y0, left:left + x1 - x0], whole[..., y0:y1, x0:x1])
    with pytest.raises(ValueError, match="halo"):
        flag_charge_migration(sci, gdq, halo=(0, -1, 0, 0))


@pytest.mark.reference
def test_equal_to_jwst():
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    charge_migration = pytest.importorskip("jwst.charge_migration.charge_migration")
    rng = np.random.default_rng(3)
    sci = rng.uniform(0, 21000, (2, 5, 12, 14)).astype(np.float32)
    gdq = rng.choice(np.array([0, 0, 0, DNU, SAT, DNU | SAT], np.uint8), size=sci.shape)
    model = datamodels.RampModel(data=sci.copy(), groupdq=gdq.copy())
    result = charge_migration.charge_migration(model, 20000.0)
    out = flag_charge_migration(sci, gdq, signal_threshold=20000.0).groupdq
    np.testing.assert_array_equal(out, result.groupdq)
    assert (out & CL).any() and not (out & CL).all()
