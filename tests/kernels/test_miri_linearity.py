"""MIRI linearity: jwst 3.0 has no MIRI-specific arithmetic (NFRAMES = 1, so never the
read-level path); what is MIRI-specific is the 1024 x 1032 full-frame reference cut to a
subarray. Checked bit-for-bit against jwst's LinearityStep."""

from __future__ import annotations

import numpy as np
import pytest

from jwdask import dqflags
from jwdask.detector1.linearity import linearity
from jwdask.refs import RefProvider
from tests.kernels.miri_support import exposure, header, ramp_model, ref_meta, run_jwst


@pytest.mark.reference
def test_full_frame_reference_cut_to_subarray(tmp_path):
    pytest.importorskip("jwst")
    from jwst.linearity import LinearityStep
    from stdatamodels.jwst.datamodels import LinearityModel

    rng = np.random.default_rng(5)
    ny, nx = 1024, 1032
    coeffs = np.stack([rng.normal(0, 1, (ny, nx)), rng.normal(1, 0.01, (ny, nx)),
                       rng.normal(2e-6, 1e-7, (ny, nx))]).astype(np.float32)
    coeffs[1, 780, 3] = 0.0
    coeffs[2, 790, 10] = np.nan
    lin_dq = np.zeros((ny, nx), np.uint32)
    lin_dq[800, 20] = dqflags.NO_LIN_CORR
    model = LinearityModel(coeffs=coeffs, dq=lin_dq)
    ref_meta(model, "linearity", {"SUBARRAY": "FULL", "SUBSTRT1": 1, "SUBSTRT2": 1, "SUBSIZE1": nx, "SUBSIZE2": ny})
    path = tmp_path / "linearity.fits"
    model.save(path)

    sci = (rng.uniform(100, 3000, (2, 1, 64, 72)) * np.arange(1, 6)[:, None, None]).astype(np.float32)
    gdq = np.where(sci > 12000, dqflags.SATURATED, 0).astype(np.uint8)
    pdq = np.zeros((64, 72), np.uint32)
    keys = header(sci, subarray="SUB64", xstart=1, ystart=779)
    ours = linearity(exposure(sci, gdq, pdq, keys), RefProvider(overrides={"linearity": str(path)}))
    theirs = run_jwst(LinearityStep, ramp_model(sci, gdq, pdq, keys), tmp_path, override_linearity=str(path))
    np.testing.assert_array_equal(ours.sci.values, theirs.data)
    np.testing.assert_array_equal(ours.pixeldq.values, theirs.pixeldq)
    assert ours.pixeldq.values[2, 3] & dqflags.NO_LIN_CORR
