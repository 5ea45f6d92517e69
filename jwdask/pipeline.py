"""Pipelines as data: an ordered list of steps with parameters, declared in ``graphs/``.

A step is any callable ``step(ds, refs, **params) -> Dataset`` that only builds a graph.
A pipeline file (``graphs/<name>.yaml``) lists the steps in order (``name``, ``function``
as ``package.module:callable``, ``skip``, ``params``) and the products it writes
(suffix -> ``package.module:callable`` turning the final Dataset into the product
layout). Users override parameters with their own YAML, ``--steps.<step>.<param>=value``
or :meth:`Pipeline.with_params`, and insert their own steps with :meth:`Pipeline.with_step`.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr
import yaml

from jwdask.errors import ParameterError
from jwdask.io.products import (
    PRODUCTS,
    PendingWrite,
    compute_writes,
    prepare_write,
    product_url,
)
from jwdask.steps import skipped

log = logging.getLogger(__name__)

GRAPHS_DIR = Path(__file__).resolve().parent.parent / "graphs"
"""Where the pipeline declarations shipped with jwdask live."""

StepFunction = Callable[..., xr.Dataset]


def resolve(ref: str | Callable[..., Any]) -> Callable[..., Any]:
    """Import ``package.module:attribute`` (or return a callable as is)."""
    if callable(ref):
        return ref
    module_name, _, attr = ref.partition(":")
    if not attr:
        msg = f"'{ref}' is not of the form package.module:function"
        raise ParameterError(msg)
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        msg = f"cannot import step function '{ref}': {exc}"
        raise ParameterError(msg) from exc


@dataclass(frozen=True)
class Step:
    """One step of a pipeline: its name, function, parameters and whether it is skipped."""

    name: str
    function: str | StepFunction
    params: Mapping[str, Any] = field(default_factory=dict)
    skip: bool = False

    def callable(self) -> StepFunction:
        return resolve(self.function)

    def check_params(self) -> None:
        """Reject parameters the step function does not take (before any graph is built)."""
        sig = inspect.signature(self.callable())
        if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return
        allowed = {n for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY}
        unknown = set(self.params) - allowed
        if unknown:
            msg = (f"step '{self.name}' has no parameter(s) {sorted(unknown)}; "
                   f"it takes {sorted(allowed)}")
            raise ParameterError(msg)


@dataclass(frozen=True)
class Pipeline:
    """An ordered list of steps, the kind of input it takes and the products it writes."""

    name: str
    steps: tuple[Step, ...]
    input: str = "uncal"
    products: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    variants: Mapping[str, str] = field(default_factory=dict)
    """Instrument name (INSTRUME) -> pipeline used instead for its exposures (MIRI Detector1)."""
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Every parameter override applied so far (re-applied to a variant)."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, name_or_path: str | Path) -> Pipeline:
        """A pipeline from ``graphs/<name>.yaml`` or from a YAML file path."""
        path = Path(name_or_path)
        if not path.suffix:
            path = GRAPHS_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in GRAPHS_DIR.glob("*.yaml"))
            msg = f"no pipeline '{name_or_path}' (known: {', '.join(known) or 'none'})"
            raise ParameterError(msg)
        return cls.from_dict(yaml.safe_load(path.read_text()))

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Pipeline:
        """A pipeline from its YAML mapping; a ``base`` key names a pipeline to override."""
        if "base" in spec:
            base = cls.load(spec["base"])
            return base.with_params(**{k: v for k, v in spec.get("steps", {}).items()})
        steps = tuple(
            Step(s["name"], s["function"], dict(s.get("params") or {}), bool(s.get("skip", False)))
            for s in spec["steps"]
        )
        return cls(spec["name"], steps, spec.get("input", "uncal"), dict(spec.get("products", {})),
                   spec.get("description", ""), dict(spec.get("variants", {})),
                   {k: dict(v) for k, v in (spec.get("overrides") or {}).items()})

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        msg = f"pipeline '{self.name}' has no step '{name}' (steps: {', '.join(s.name for s in self.steps)})"
        raise ParameterError(msg)

    def with_params(self, **overrides: Mapping[str, Any]) -> Pipeline:
        """A copy with step parameters overridden: ``with_params(jump={"rejection_threshold": 5})``.

        The special parameter ``skip`` (bool) turns a step off or on.
        """
        steps = []
        names = {s.name for s in self.steps} | {n for v in self.variants.values() for n in _step_names(v)}
        for name in overrides:
            if name not in names:
                self.step(name)
        merged = {k: dict(v) for k, v in self.overrides.items()}
        for name, params in overrides.items():
            merged.setdefault(name, {}).update(params)
        for s in self.steps:
            new = dict(overrides.get(s.name, {}))
            skip = bool(new.pop("skip")) if "skip" in new else s.skip
            steps.append(dataclasses.replace(s, params={**s.params, **new}, skip=skip))
        return dataclasses.replace(self, steps=tuple(steps), overrides=merged)

    def for_exposure(self, meta: Mapping[str, Any]) -> Pipeline:
        """The pipeline for an exposure: a variant for its instrument (with the same parameter
        overrides, where the variant has the step), else this one."""
        instrument = str(meta.get("instrument", {}).get("name", "")).upper()
        if instrument not in self.variants:
            return self
        variant = Pipeline.load(self.variants[instrument])
        names = {s.name for s in variant.steps}
        return variant.with_params(**{k: v for k, v in self.overrides.items() if k in names})

    def with_step(self, name: str, function: str | StepFunction, *, after: str | None = None,
                  before: str | None = None, **params: Any) -> Pipeline:
        """A copy with a user step inserted after (or before) the named step (default: last)."""
        new = Step(name, function, params)
        steps = list(self.steps)
        if after is not None:
            steps.insert(steps.index(self.step(after)) + 1, new)
        elif before is not None:
            steps.insert(steps.index(self.step(before)), new)
        else:
            steps.append(new)
        return dataclasses.replace(self, steps=tuple(steps))

    def from_step(self, name: str) -> Pipeline:
        """A copy that starts at the named step (to resume from a saved intermediate)."""
        index = self.steps.index(self.step(name))
        return dataclasses.replace(self, steps=self.steps[index:])

    def to_dict(self) -> dict[str, Any]:
        """The YAML mapping of this pipeline (user steps given as callables are named)."""
        def fn(f: str | StepFunction) -> str:
            return f if isinstance(f, str) else f"{f.__module__}:{f.__qualname__}"
        return {"name": self.name, "description": self.description, "input": self.input,
                "steps": [{"name": s.name, "function": fn(s.function), "skip": s.skip,
                           "params": dict(s.params)} for s in self.steps],
                "products": dict(self.products), "variants": dict(self.variants),
                "overrides": {k: dict(v) for k, v in self.overrides.items()}}

    # ------------------------------------------------------------------ running
    def run(self, ds: xr.Dataset, refs: Any = None) -> xr.Dataset:
        """Build the graph of every step on ``ds`` and return the final Dataset; nothing is
        computed."""
        return self.run_all(ds, refs)[0]

    def run_all(self, ds: xr.Dataset, refs: Any = None, *,
                save_after: Iterable[str] = ()) -> tuple[xr.Dataset, dict[str, xr.Dataset]]:
        """Like :meth:`run`, and also the Datasets after each step named in ``save_after``
        or in a product's ``after`` (keyed by step name)."""
        wanted = set(save_after) | {after for _, after in self._product_specs().values() if after}
        for name in wanted:
            self.step(name)
        intermediates = {}
        for s in self.steps:
            s.check_params()
        for s in self.steps:
            if s.skip:
                ds = skipped(ds, s.name, "skip=True")
            else:
                log.debug("%s: building graph with %s", s.name, dict(s.params))
                ds = s.callable()(ds, refs, **dict(s.params))
                if s.name in wanted:
                    intermediates[s.name] = ds
            if s.skip and s.name in set(save_after):
                intermediates[s.name] = ds
        return ds, intermediates

    def _product_specs(self) -> dict[str, tuple[str, str | None]]:
        """suffix -> (function, step after which the product is taken, or None for the end)."""
        specs = {}
        for suffix, spec in self.products.items():
            if isinstance(spec, Mapping):
                specs[suffix] = (spec["function"], spec.get("after"))
            else:
                specs[suffix] = (spec, None)
        return specs

    def product_datasets(self, ds: xr.Dataset,
                         intermediates: Mapping[str, xr.Dataset] | None = None) -> dict[str, xr.Dataset]:
        """The product Datasets (by suffix) of a run: from the final Dataset, or from the
        Dataset after the product's ``after`` step (absent when that step was skipped, or
        when the product function returns None: an optional product not asked for)."""
        out = {}
        for suffix, (fn, after) in self._product_specs().items():
            if after is None:
                product = resolve(fn)(ds)
            elif intermediates is None:
                msg = (f"pipeline '{self.name}': product '{suffix}' is taken after step '{after}'; "
                       "pass the intermediates returned by run_all")
                raise ParameterError(msg)
            elif after in intermediates:
                product = resolve(fn)(intermediates[after])
            else:
                log.info("%s: no _%s product (step '%s' was skipped)", self.name, suffix, after)
                continue
            if product is None:
                log.info("%s: no _%s product in this run", self.name, suffix)
                continue
            out[suffix] = product
        return out

    def prepare(self, ds: xr.Dataset, out_dir: str, *, intermediates: Mapping[str, xr.Dataset] | None = None,
                storage_options: Mapping[str, Any] | None = None) -> list[PendingWrite]:
        """Pending FITS writes of every product of a run into ``out_dir``."""
        pending = []
        for suffix, product in self.product_datasets(ds, intermediates).items():
            url = product_url(out_dir, product.attrs.get("meta", {}), suffix)
            pending.append(prepare_write(product, url, suffix, storage_options=storage_options))
        return pending

    def write(self, ds: xr.Dataset, out_dir: str, *, intermediates: Mapping[str, xr.Dataset] | None = None,
              storage_options: Mapping[str, Any] | None = None, progress: bool = False) -> list[str]:
        """Compute and write every product of a run; returns the product URLs."""
        return compute_writes(self.prepare(ds, out_dir, intermediates=intermediates,
                                           storage_options=storage_options), progress=progress)


def _step_names(pipeline: str) -> set[str]:
    """Step names of a shipped pipeline (for overrides that only its variant has)."""
    path = GRAPHS_DIR / f"{pipeline}.yaml"
    if not path.exists():
        return set()
    return {s["name"] for s in (yaml.safe_load(path.read_text()) or {}).get("steps", [])}


def parse_overrides(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["steps.jump.rejection_threshold=5", ...]`` -> ``{"jump": {"rejection_threshold": 5}}``.

    Values are parsed as YAML scalars (``5`` int, ``5.0`` float, ``true`` bool, ``none``/
    ``null`` None, anything else a string).
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        parts = key.removeprefix("--").split(".")
        if not sep or len(parts) != 3 or parts[0] != "steps":
            msg = f"'{item}' is not of the form --steps.<step>.<param>=<value>"
            raise ParameterError(msg)
        parsed = yaml.safe_load(value) if value.strip() else ""
        out.setdefault(parts[1], {})[parts[2]] = None if parsed == "none" else parsed
    return out


__all__ = ["GRAPHS_DIR", "PRODUCTS", "Pipeline", "Step", "parse_overrides", "resolve"]
