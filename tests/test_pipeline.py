"""Pipeline: YAML declarations, parameter overrides, user steps, laziness."""

from __future__ import annotations

import pytest
import xarray as xr
import yaml

from jwdask.errors import ParameterError
from jwdask.pipeline import Pipeline, parse_overrides


def add(ds: xr.Dataset, refs, *, value: float = 1.0) -> xr.Dataset:
    """A user step: add ``value`` to sci."""
    return ds.assign(sci=ds.sci + value)


def scale(ds: xr.Dataset, refs, *, factor: float = 2.0) -> xr.Dataset:
    """A user step: multiply sci by ``factor``."""
    return ds.assign(sci=ds.sci * factor)


SPEC = {
    "name": "toy", "input": "uncal",
    "steps": [{"name": "add", "function": "tests.test_pipeline:add", "params": {"value": 1.0}},
              {"name": "scale", "function": "tests.test_pipeline:scale"}],
}


@pytest.fixture
def ds() -> xr.Dataset:
    import dask.array as da

    return xr.Dataset({"sci": (("y", "x"), da.ones((4, 4), chunks=2))}, attrs={"meta": {}})


def test_run_is_lazy_and_ordered(ds):
    import dask

    p = Pipeline.from_dict(SPEC)
    with dask.config.set(scheduler=lambda *a, **k: pytest.fail("a step computed")):
        out = p.run(ds)
    assert float(out.sci[0, 0].compute(scheduler="sync")) == 4.0


def test_overrides_and_skip(ds):
    p = Pipeline.from_dict(SPEC).with_params(add={"value": 3}, scale={"skip": True})
    out = p.run(ds)
    assert float(out.sci[0, 0]) == 4.0
    assert out.attrs["meta"]["cal_step"]["scale"] == "SKIPPED"
    assert "cal_step" not in ds.attrs["meta"]


def test_unknown_parameter_and_step(ds):
    with pytest.raises(ParameterError, match="no parameter"):
        Pipeline.from_dict(SPEC).with_params(add={"valeu": 3}).run(ds)
    with pytest.raises(ParameterError, match="no step 'nope'"):
        Pipeline.from_dict(SPEC).with_params(nope={"x": 1})


def test_insert_user_step(ds):
    p = Pipeline.from_dict(SPEC).with_step("again", add, after="add", value=10.0)
    assert [s.name for s in p.steps] == ["add", "again", "scale"]
    assert float(p.run(ds).sci[0, 0]) == 24.0
    assert [s.name for s in p.from_step("scale").steps] == ["scale"]


def test_yaml_round_trip_and_base(tmp_path, ds):
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    p = Pipeline.load(path)
    assert Pipeline.from_dict(p.to_dict()) == p
    user = tmp_path / "mine.yaml"
    user.write_text(yaml.safe_dump({"base": str(path), "steps": {"scale": {"factor": 5}}}))
    assert float(Pipeline.load(user).run(ds).sci[0, 0]) == 10.0


def test_parse_overrides():
    assert parse_overrides(["--steps.jump.rejection_threshold=5", "--steps.ipc.skip=true",
                            "--steps.ramp_fit.algorithm=OLS_C"]) == {
        "jump": {"rejection_threshold": 5}, "ipc": {"skip": True}, "ramp_fit": {"algorithm": "OLS_C"}}
    with pytest.raises(ParameterError):
        parse_overrides(["--steps.jump=5"])


def test_unknown_pipeline():
    with pytest.raises(ParameterError, match="no pipeline"):
        Pipeline.load("nonexistent")


def test_instrument_variant_keeps_overrides():
    p = Pipeline.load("detector1").with_params(jump={"rejection_threshold": 7.0}, emicorr={"skip": True})
    assert p.for_exposure({"instrument": {"name": "NIRCAM"}}) is p
    miri = p.for_exposure({"instrument": {"name": "MIRI"}})
    assert miri.name != p.name
    assert miri.step("jump").params["rejection_threshold"] == 7.0
    assert miri.step("emicorr").skip
    with pytest.raises(ParameterError):
        p.with_params(no_such_step={"x": 1})


def identity(ds: xr.Dataset) -> xr.Dataset:
    """A product function."""
    return ds


def test_product_taken_after_a_step(ds):
    spec = {**SPEC, "products": {"early": {"function": "tests.test_pipeline:identity", "after": "add"},
                                 "final": "tests.test_pipeline:identity"}}
    p = Pipeline.from_dict(spec)
    final, inter = p.run_all(ds)
    products = p.product_datasets(final, inter)
    assert float(products["early"].sci[0, 0]) == 2.0
    assert float(products["final"].sci[0, 0]) == 4.0
    with pytest.raises(ParameterError, match="after step 'add'"):
        p.product_datasets(final)
    skipped = p.with_params(add={"skip": True})
    final, inter = skipped.run_all(ds)
    assert set(skipped.product_datasets(final, inter)) == {"final"}


def test_round_trip_keeps_overrides_for_variants():
    p = Pipeline.load("detector1").with_params(jump={"rejection_threshold": 6.0})
    again = Pipeline.from_dict(p.to_dict())
    assert again.to_dict() == p.to_dict()
    assert again.for_exposure({"instrument": {"name": "MIRI"}}).step("jump").params["rejection_threshold"] == 6.0
