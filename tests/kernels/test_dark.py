"""dark kernels: frame averaging, extrapolation, MIRI integrations, average dark current, and
equality with stcal 1.20's dark_sub."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.kernels.dark import average_dark, average_dark_current, dark_applies, subtract_dark

UD = dqflags.UNRELIABLE_DARK


def _frames(n: int, ny: int = 1, nx: int = 1) -> np.ndarray:
    """A dark whose frame k is worth k DN everywhere."""
    return np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, ny, nx)).copy()


def test_frame_averaging_skips_groupgap_frames():
    """NFRAMES = 3, GROUPGAP = 2: groups average frames 0-2, 5-7, 10-12."""
    avg = average_dark(_frames(13), ngroups=3, nframes=3, groupgap=2)
    assert avg.ravel().tolist() == [1.0, 6.0, 11.0]
    assert avg.dtype == np.float32


def test_short_dark_is_extrapolated_from_its_last_two_planes():
    dark = np.array([0.0, 1.0, 3.0], np.float32).reshape(3, 1, 1)
    direct = average_dark(dark, ngroups=5, nframes=1, groupgap=0)
    assert direct.ravel().tolist() == [0.0, 1.0, 3.0, 5.0, 7.0]
    assert direct.dtype == np.float64
    averaged = average_dark(dark, ngroups=2, nframes=2, groupgap=1)
    assert averaged.ravel().tolist() == [0.5, 6.0]


def test_nan_dark_counts_as_zero_and_dq_is_ored():
    sci = np.full((2, 2, 1, 2), 10.0, np.float32)
    dark = np.array([[[1.0, np.nan]], [[2.0, np.nan]]], np.float32)
    out = subtract_dark(sci, np.array([[1, 0]], np.uint32), dark, np.array([[UD, 0]], np.uint32),
                        nframes=1, groupgap=0)
    assert out.sci[1, :, 0].tolist() == [[9.0, 10.0], [8.0, 10.0]]
    assert out.pixeldq.tolist() == [[1 | UD, 0]]


def test_incompatible_dark_is_refused():
    assert not dark_applies(nframes=1, groupgap=0, dark_nframes=2, dark_groupgap=0)
    assert not dark_applies(nframes=4, groupgap=0, dark_nframes=1, dark_groupgap=1)
    with pytest.raises(ValueError, match="skipped"):
        subtract_dark(np.zeros((1, 1, 1, 1), np.float32), np.zeros((1, 1), np.uint32), _frames(4),
                      np.zeros((1, 1), np.uint32), nframes=1, groupgap=0, dark_nframes=2)


def test_miri_dark_integrations():
    """Science integration i uses dark integration i, later ones the last; the dq planes of all
    dark integrations are OR-ed; a segment file (INTSTART > 1) uses the last integration."""
    sci = np.full((3, 2, 1, 1), 100.0, np.float32)
    dark = np.stack([_frames(2) + 10 * i for i in range(2)])
    dq = np.zeros((2, 1, 1, 1), np.uint32)
    dq[1, 0] = UD
    out = subtract_dark(sci, np.zeros((1, 1), np.uint32), dark, dq, nframes=1, groupgap=0)
    assert out.sci[:, :, 0, 0].tolist() == [[100, 99], [90, 89], [90, 89]]
    assert out.pixeldq.tolist() == [[UD]]
    segment = subtract_dark(sci, np.zeros((1, 1), np.uint32), dark, dq, nframes=1, groupgap=0, integration_start=4)
    assert segment.sci[0, :, 0, 0].tolist() == [90, 89]


def test_average_dark_current_priorities():
    assert average_dark_current((1, 2), parameter=0.3, keyword=5.0).tolist() == [[np.float32(0.3)] * 2]
    ref = np.array([[1.0, 2.0]], np.float32)
    assert average_dark_current((1, 2), reference=ref, keyword=5.0).tolist() == [[1.0, 2.0]]
    assert average_dark_current((1, 2), reference=np.zeros((1, 2)), keyword=5.0).tolist() == [[5.0, 5.0]]
    assert average_dark_current((1, 3), reference=ref, keyword=5.0).tolist() == [[0.0] * 3]
    out = average_dark_current((2, 2))
    assert out.dtype == np.float32 and not out.any()


def _stcal(sci, pdq, dark, dark_dq, *, nframes, groupgap, dark_nframes, dark_groupgap, intstart=None):
    dark_class = pytest.importorskip("stcal.dark_current.dark_class")
    dark_sub = pytest.importorskip("stcal.dark_current.dark_sub")
    science = dark_class.ScienceData()
    science.data, science.groupdq, science.pixeldq = sci.copy(), np.zeros(sci.shape, np.uint8), pdq.copy()
    science.exp_nframes, science.exp_groupgap, science.exp_intstart = nframes, groupgap, intstart
    ref = dark_class.DarkData()
    ref.data, ref.groupdq = dark.copy(), dark_dq.copy()
    ref.exp_nframes, ref.exp_ngroups, ref.exp_groupgap = dark_nframes, dark.shape[-3], dark_groupgap
    out, _ = dark_sub.do_correction_data(science, ref)
    return out


@pytest.mark.reference
@pytest.mark.parametrize(
    ("ngroups", "nframes", "groupgap", "dark_planes", "dark_nframes", "miri", "intstart"),
    [(4, 1, 0, 6, 1, False, None),        # planes used directly
     (3, 4, 1, 20, 1, False, None),       # frame-averaged
     (4, 4, 2, 9, 1, False, None),        # extrapolated, then averaged
     (6, 1, 0, 3, 1, False, None),        # extrapolated, used directly in double precision
     (3, 2, 0, 2, 2, False, None),        # dark NFRAMES = science NFRAMES, extrapolated
     (3, 1, 0, 5, 1, True, None),         # MIRI, per-integration darks
     (2, 2, 0, 6, 1, True, 3)],           # MIRI segment file, averaged [quirk: zeros]
)
def test_equal_to_stcal(ngroups, nframes, groupgap, dark_planes, dark_nframes, miri, intstart):
    rng = np.random.default_rng(ngroups * 10 + dark_planes)
    nints, ny, nx = 2, 9, 11
    sci = rng.normal(1000, 50, (nints, ngroups, ny, nx)).astype(np.float32)
    pdq = np.where(rng.random((ny, nx)) < 0.1, dqflags.HOT, 0).astype(np.uint32)
    shape = (3, dark_planes, ny, nx) if miri else (dark_planes, ny, nx)
    dark = (rng.normal(0.3, 0.05, shape).cumsum(axis=-3) * 7.1).astype(np.float32)
    dark[..., 0, 0] = np.nan
    dark_dq = np.where(rng.random((3, 1, ny, nx) if miri else (ny, nx)) < 0.1, UD, 0).astype(np.uint32)
    if intstart is not None:
        sci = sci[:1]
    kw = {"nframes": nframes, "groupgap": groupgap, "dark_nframes": dark_nframes, "dark_groupgap": 0}
    ref = _stcal(sci, pdq, dark, dark_dq, intstart=intstart, **kw)
    out = subtract_dark(sci, pdq, dark, dark_dq, integration_start=intstart, **kw)
    np.testing.assert_array_equal(out.sci, ref.data)
    np.testing.assert_array_equal(out.pixeldq, ref.pixeldq)
    assert out.sci.dtype == np.float32


@pytest.mark.reference
def test_skip_matches_stcal():
    ref = _stcal(np.ones((1, 2, 3, 3), np.float32), np.zeros((3, 3), np.uint32), _frames(4, 3, 3),
                 np.zeros((3, 3), np.uint32), nframes=1, groupgap=0, dark_nframes=2, dark_groupgap=0)
    assert ref.cal_step == "SKIPPED"
    assert not dark_applies(nframes=1, groupgap=0, dark_nframes=2, dark_groupgap=0)
