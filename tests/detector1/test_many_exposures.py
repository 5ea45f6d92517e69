"""Several exposures computed in one graph give the same products as each one alone."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
from astropy.io import fits

from jwdask.commands import run_pipeline
from jwdask.pipeline import Pipeline
from jwdask.refs import RefProvider
from jwdask.simulate import simulate_program


def test_exposures_share_no_task_keys(tmp_path: Path) -> None:
    prog = simulate_program("tiny", tmp_path / "sim", seed=5)
    refs = RefProvider(refs_dir=str(prog.refs_dir))
    uncal = [str(p) for p in prog.uncal]
    with dask.config.set(scheduler="threads"):
        together = run_pipeline(Pipeline.load("detector1"), uncal, str(tmp_path / "together"), refs, tile=64)
        alone = run_pipeline(Pipeline.load("detector1"), uncal[1:], str(tmp_path / "alone"), refs, tile=64)
    pick = [u for u in together if u.endswith("_rate.fits")]
    assert len(pick) == 2
    a = fits.getdata(next(u for u in pick if Path(u).name == Path(alone[0]).name), "SCI")
    b = fits.getdata(next(u for u in alone if u.endswith("_rate.fits")), "SCI")
    np.testing.assert_array_equal(a, b)
    first = fits.getdata(next(u for u in pick if u != alone[0] and Path(u).name != Path(alone[0]).name), "SCI")
    assert not np.array_equal(np.nan_to_num(first), np.nan_to_num(a))

