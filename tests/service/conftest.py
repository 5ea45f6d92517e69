"""Fixtures of the program-runner and service tests: a simulated tiny program, the
Detector1 pipeline restricted to the steps that exist, and product comparison."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits
from distributed import LocalCluster

from jwdask.errors import ParameterError
from jwdask.pipeline import Pipeline
from jwdask.simulate import Program, simulate_program

VOLATILE = {"DATE", "CHECKSUM", "DATASUM"}
"""Header keywords (and header-table columns) that differ between two runs of the same
program (write time)."""


def _importable(step: object) -> bool:
    try:
        step.callable()
    except ParameterError:
        return False
    return True


def importable(stage: str) -> Pipeline:
    """The stage's pipeline without the steps whose modules are not written yet (they are
    being wired elsewhere); the full pipeline once they all import."""
    p = Pipeline.load(stage)
    return dataclasses.replace(p, steps=tuple(s for s in p.steps if _importable(s)))


def detector1() -> Pipeline:
    """:func:`importable` Detector1."""
    return importable("detector1")


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    """A two-process LocalCluster shared by the tests of this folder (workers are restarted
    by their nannies if a test kills one)."""
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def tiny_program(tmp_path_factory: pytest.TempPathFactory) -> Program:
    """The simulator's ``tiny`` program (2 SUB160 exposures), written once per session."""
    return simulate_program("tiny", tmp_path_factory.mktemp("tiny"), seed=3)


@pytest.fixture
def program_dir(tiny_program: Program, tmp_path: Path) -> Path:
    """A private copy of the tiny program's raw exposures and associations."""
    out = tmp_path / "program"
    shutil.copytree(tiny_program.out_dir / "uncal", out)
    return out


@pytest.fixture
def pipeline_yaml(tmp_path: Path) -> Path:
    """The Detector1 pipeline of :func:`detector1` as a YAML file."""
    path = tmp_path / "detector1.yaml"
    path.write_text(yaml.safe_dump(detector1().to_dict()))
    return path


def assert_same_products(a: Path, b: Path, pattern: str = "*.fits") -> list[str]:
    """Every product in ``a`` exists in ``b`` with equal arrays, tables and headers (but
    for write times); returns the compared names."""
    names = sorted(p.name for p in a.glob(pattern))
    assert names, f"no products in {a}"
    assert names == sorted(p.name for p in b.glob(pattern))
    for name in names:
        with fits.open(a / name) as fa, fits.open(b / name) as fb:
            assert [h.name for h in fa] == [h.name for h in fb], name
            for ha, hb in zip(fa, fb, strict=True):
                if ha.name == "ASDF":
                    continue
                keys = [k for k in ha.header if k not in VOLATILE]
                assert keys == [k for k in hb.header if k not in VOLATILE], (name, ha.name)
                for k in keys:
                    assert ha.header[k] == hb.header[k], (name, ha.name, k)
                if isinstance(ha, fits.BinTableHDU):  # a table of headers (HDRTAB) has write times too
                    assert ha.columns.names == hb.columns.names, (name, ha.name)
                    for col in ha.columns.names:
                        if col.upper() not in VOLATILE:
                            assert ha.data[col].tobytes() == hb.data[col].tobytes(), (name, ha.name, col)
                elif ha.data is not None:
                    np.testing.assert_array_equal(ha.data, hb.data, err_msg=f"{name} {ha.name}")
    return names
