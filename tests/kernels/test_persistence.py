"""persistence kernel (flag-only algorithm): hand-made windows and equality with jwst 3.0."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.kernels.persistence import flag_persistence, integration_start_epochs, mjd_to_epoch

SAT, PER, DNU = dqflags.SATURATED, dqflags.PERSISTENCE, dqflags.DO_NOT_USE


def _run(gdq_values, *, nints=1, sci=None, **kw):
    gdq = np.array(gdq_values, np.uint8).reshape(nints, -1, 1, 1)
    sci = np.zeros(gdq.shape, np.float32) if sci is None else np.asarray(sci, np.float32).reshape(gdq.shape)
    starts = np.arange(nints) * 100.0
    return flag_persistence(sci, gdq, integration_start=starts, group_time=10.0, **kw)


def test_window_opens_at_first_saturation_and_expires():
    """Groups end at 10, 20, ...; saturation at t = 20 opens a window to 45 that covers the
    groups ending at 20, 30, 40 (and the later saturated groups do not reopen it)."""
    out = _run([0, SAT, SAT, SAT, SAT, SAT], persistence_time=25.0)
    assert (out.groupdq.ravel() & PER).tolist() == [0, PER, PER, PER, 0, 0]
    assert out.window_end.tolist() == [[0.0]]


def test_window_carries_into_next_integration_and_dnu_option():
    """Integration 1 starts at t = 100: the window opened at t = 20 ends at 125."""
    out = _run([0, SAT, 0, 0], nints=2, persistence_time=105.0, persistence_dnu=True)
    assert out.groupdq.ravel().tolist() == [0, SAT | PER | DNU, PER | DNU, PER | DNU]
    assert out.window_end.tolist() == [[125.0]]


def test_dn_threshold_and_inherited_window():
    """A value above dn_threshold opens a window; an inherited window that ends later than a
    fresh one would ('backwards flagging') is dropped."""
    out = _run([0, 0, 0], sci=[5, 50, 5], dn_threshold=40.0, persistence_time=15.0)
    assert (out.groupdq.ravel() & PER).tolist() == [0, PER, PER]
    inherited = _run([0, 0], persistence_time=15.0, window_end=np.array([[1e6]]))
    assert inherited.groupdq.ravel().tolist() == [0, 0]
    assert inherited.window_end.tolist() == [[0.0]]
    kept = _run([0, 0, 0], persistence_time=15.0, window_end=np.array([[22.0]]))
    assert (kept.groupdq.ravel() & PER).tolist() == [PER, PER, 0]


def test_times_and_errors():
    assert mjd_to_epoch(40587.5) == 43200.0
    starts = integration_start_epochs(3, exposure_start_mjd=40588.0, integration_time=7.5,
                                      int_start_mjd=[40589.0])
    assert starts.tolist() == [172800.0, 86407.5, 86415.0]
    with pytest.raises(ValueError, match="persistence_time"):
        _run([0], persistence_time=0)
    with pytest.raises(ValueError, match="integration_start"):
        flag_persistence(np.zeros((2, 1, 1, 1), np.float32), np.zeros((2, 1, 1, 1), np.uint8),
                         integration_start=np.zeros(1), group_time=1.0, persistence_time=5.0)


@pytest.mark.reference
@pytest.mark.parametrize(("dn_threshold", "dnu", "inherit"), [(None, False, False), (3000.0, True, True)])
def test_equal_to_jwst(dn_threshold, dnu, inherit):
    datamodels = pytest.importorskip("stdatamodels.jwst.datamodels")
    persistence = pytest.importorskip("jwst.persistence.persistence")
    rng = np.random.default_rng(5)
    nints, ngroups, ny, nx = 3, 6, 8, 9
    sci = rng.uniform(0, 4000, (nints, ngroups, ny, nx)).astype(np.float32)
    sat_from = rng.integers(0, ngroups + 4, (nints, ny, nx))
    gdq = np.where(np.arange(ngroups)[None, :, None, None] >= sat_from[:, None], SAT, 0).astype(np.uint8)
    gdq |= np.where(rng.random(gdq.shape) < 0.1, DNU, 0).astype(np.uint8)
    start_mjd, inttime, tgroup, ptime = 60000.25, 64.4, 10.737, 90
    window = None
    if inherit:
        window = np.where(rng.random((ny, nx)) < 0.3, mjd_to_epoch(start_mjd) + rng.uniform(0, 300, (ny, nx)), 0.0)
    model = datamodels.RampModel(data=sci.copy(), groupdq=gdq.copy())
    model.meta.exposure.start_time, model.meta.exposure.integration_time = start_mjd, inttime
    model.meta.exposure.group_time = tgroup
    columns = [f"int_{when}_{scale}" for scale in ("MJD_UTC", "BJD_TDB") for when in ("start", "mid", "end")]
    table = np.zeros(1, dtype=[("integration_number", "i4")] + [(c, "f8") for c in columns])
    table["integration_number"], table["int_start_MJD_UTC"] = 1, start_mjd + 1e-5
    model.int_times = table
    ref_window = np.zeros((ny, nx)) if window is None else window.copy()
    result, skipped = persistence.DataSet(model, None, ptime, dn_threshold, ref_window, dnu).do_all()
    assert not skipped
    starts = integration_start_epochs(nints, exposure_start_mjd=start_mjd, integration_time=inttime,
                                      int_start_mjd=[start_mjd + 1e-5])
    out = flag_persistence(sci, gdq, integration_start=starts, group_time=tgroup, persistence_time=ptime,
                           dn_threshold=dn_threshold, persistence_dnu=dnu, window_end=window)
    np.testing.assert_array_equal(out.groupdq, result.groupdq)
    np.testing.assert_array_equal(out.window_end, ref_window)
    assert (out.groupdq & PER).any() and not (out.groupdq & PER).all()
