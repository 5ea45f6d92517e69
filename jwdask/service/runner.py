"""The program runner: Detector1 -> Image2 -> Image3 over a whole program, durably.

A program's jobs are the nodes (exposure, ``detector1``), (exposure, ``image2``) and
(association, ``image3``) of a dependency graph. As soon as a job's upstream jobs are done
the runner submits it to the cluster as one task (:func:`jwdask.service.jobs.run_job`) that
builds the job's lazy graph on a worker and computes it there or across the cluster, so
graph building is spread over the workers and jobs of different exposures and stages
interleave. The runner claims the program in the store for the whole run (a lease, see
:mod:`jwdask.service.lease`). Every job's state, products and their SHA-256 checksums are
kept in a :class:`~jwdask.service.store.Store`:

- rerunning a program skips jobs whose products still verify against their checksums (and
  whose upstream jobs did not rerun) and finishes the rest;
- a job that fails records the file and reason; only jobs downstream of it are skipped
  (an Image3 association runs on its remaining members);
- a job lost to a dying worker or connection is retried (``retries``); a cancel request in
  the store stops the program between polls.

A stage whose pipeline declaration (``graphs/<stage>.yaml``) does not exist is "not
available": its jobs are recorded as skipped and a warning is logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from distributed import Client, Event, Future, wait
from rich.console import Console
from rich.table import Table

from jwdask import cluster
from jwdask.errors import InputError, JwdaskError, ParameterError
from jwdask.io.products import PRODUCTS
from jwdask.pipeline import GRAPHS_DIR, Pipeline
from jwdask.service.associations import (
    Association,
    ProgramPlan,
    association_json,
    discover,
)
from jwdask.service.jobs import (
    TRANSIENT,
    JobTask,
    cancel_event,
    describe_error,
    remove_temporaries,
    run_job,
)
from jwdask.service.lease import LEASE_SECONDS, Lease, busy, new_owner
from jwdask.service.store import (
    Job,
    JobStatus,
    ProgramStatus,
    Store,
    default_url,
    sha256,
)

log = logging.getLogger(__name__)

__all__ = ["STAGES", "ProgramOptions", "StageDef", "create_program", "program_run", "run_program",
           "stage_availability"]


@dataclass(frozen=True)
class StageDef:
    """A stage of the program graph: its name, whether it runs per ``exposure`` or per
    ``association``, and the product suffix its inputs carry when its pipeline does not say."""

    name: str
    per: str
    input: str


STAGES = (StageDef("detector1", "exposure", "uncal"), StageDef("image2", "exposure", "rate"),
          StageDef("image3", "association", "cal"))
"""The stages of a program, in order."""

ASSOCIATION_ENTRY = "jwdask.commands:prepare_association"
"""Default entry point of an association stage: ``f(pipeline, asn_url, out_dir, refs, *,
tile) -> PreparedWrites`` (:func:`jwdask.commands.prepare_association`), the association
file's members being product paths. A stage's pipeline YAML may name another with
``association_entry:``."""

LOCAL_TASKS = 2000
"""Job graphs of at most this many tasks compute inside their job's task on one worker;
larger ones spread their tasks over the cluster (see :mod:`jwdask.service.jobs`)."""

POLL_SECONDS = 0.5
"""How often the runner checks for finished jobs and cancel requests."""


@dataclass
class ProgramOptions:
    """How a program is run; JSON-serialisable so the store can resume it anywhere.

    Attributes
    ----------
    refs : dict
        RefProvider arguments (``overrides``, ``refs_dir``, ``crds_cache``, ``crds_context``).
    pipelines : dict
        ``{stage: pipeline mapping}`` replacing ``graphs/<stage>.yaml``.
    steps : dict
        ``{stage: {step: {param: value}}}`` parameter overrides.
    stages : list of str
        The stages to run (default all of :data:`STAGES`).
    tile : int
        Pixel tile size in y and x.
    retries : int
        Times a job lost to the infrastructure is resubmitted.
    local_tasks : int
        Job graphs of at most this many tasks compute on one worker, inside the job's task.
    """

    refs: dict[str, Any] = field(default_factory=dict)
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    stages: list[str] = field(default_factory=lambda: [s.name for s in STAGES])
    tile: int = 512
    retries: int = 2
    local_tasks: int = LOCAL_TASKS

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProgramOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            msg = f"unknown program option(s) {sorted(unknown)}; known: {sorted(known)}"
            raise ParameterError(msg)
        return cls(**dict(data))

    def ref_provider(self) -> Any:
        from jwdask.refs import RefProvider

        return RefProvider(**self.refs)


def refs_options(refs: Any) -> dict[str, Any]:
    """RefProvider arguments from a RefProvider, a mapping or ``None``."""
    if refs is None:
        return {}
    if isinstance(refs, Mapping):
        return {k: v for k, v in refs.items() if v is not None}
    out = {"overrides": dict(refs.overrides), "refs_dir": refs.refs_dir, "crds_cache": refs.crds_cache,
           "crds_context": refs.crds_context}
    return {k: str(v) if isinstance(v, Path) else v for k, v in out.items() if v not in (None, {})}


def steps_by_stage(overrides: Mapping[str, Mapping[str, Any]],
                   pipelines: Mapping[str, Pipeline | str | Path | Mapping[str, Any]] | None = None,
                   stages: Sequence[str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """``{step: {param: value}}`` (``--steps.<step>.<param>=value``) split by the stages
    whose pipeline has the step: ``{stage: {step: {param: value}}}``.

    Raises
    ------
    ParameterError
        If no stage of the program has a named step.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    names: dict[str, set[str]] = {}
    for s in STAGES:
        if stages is not None and s.name not in stages:
            continue
        given = (pipelines or {}).get(s.name)
        if given is None and not (GRAPHS_DIR / f"{s.name}.yaml").is_file():
            continue
        pipeline = Pipeline.from_dict(pipeline_spec(given if given is not None else s.name))
        names[s.name] = {step.name for step in pipeline.steps}
    for step, params in overrides.items():
        owners = [stage for stage, steps in names.items() if step in steps]
        if not owners:
            msg = f"no stage of the program has a step '{step}' (stages: {', '.join(names)})"
            raise ParameterError(msg)
        for stage in owners:
            out.setdefault(stage, {})[step] = dict(params)
    return out


def pipeline_spec(pipeline: Pipeline | str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A pipeline as a JSON-serialisable mapping (from a Pipeline, YAML path or mapping)."""
    if isinstance(pipeline, Pipeline):
        return pipeline.to_dict()
    if isinstance(pipeline, Mapping):
        return dict(pipeline)
    path = Path(pipeline)
    if not path.suffix:
        path = GRAPHS_DIR / f"{pipeline}.yaml"
    if not path.is_file():
        msg = f"no pipeline file {path}"
        raise ParameterError(msg)
    return yaml.safe_load(path.read_text())


def stage_availability(options: ProgramOptions) -> dict[str, str | None]:
    """``{stage: None if it can run, else why not}`` for the program's stages."""
    out: dict[str, str | None] = {}
    for s in STAGES:
        if s.name not in options.stages:
            out[s.name] = "not requested"
        elif s.name in options.pipelines or (GRAPHS_DIR / f"{s.name}.yaml").is_file():
            out[s.name] = None
        else:
            out[s.name] = f"stage {s.name} not available (graphs/{s.name}.yaml does not exist)"
    return out


# ------------------------------------------------------------------------------ planning

def plan_jobs(plan: ProgramPlan, out_dir: str, options: ProgramOptions) -> list[dict[str, Any]]:
    """The job specs (``key, target, kind, stage, depends, inputs``) of a program."""
    inputs = {s.name: _stage_input(s, options) for s in STAGES}
    specs = []
    for root, exp in plan.exposures.items():
        specs.append({"key": f"detector1:{root}", "target": root, "kind": "exposure", "stage": "detector1",
                      "depends": [], "inputs": [exp.path]})
    producer: dict[str, str] = {}
    for asn in plan.image2:
        member = asn.members[0]
        key = f"image2:{asn.product}"
        for m in asn.members:
            producer[m] = key
        specs.append({"key": key, "target": asn.product, "kind": "exposure", "stage": "image2",
                      "depends": [f"detector1:{m}" for m in asn.members if m in plan.exposures],
                      "inputs": [os.path.join(out_dir, f"{member}_{inputs['image2']}.fits")]})
    for asn in plan.image3:
        specs.append({"key": f"image3:{asn.product}", "target": asn.product, "kind": "association",
                      "stage": "image3", "depends": [producer[m] for m in asn.members if m in producer],
                      "inputs": [os.path.join(out_dir, f"{m}_{inputs['image3']}.fits") for m in asn.members]})
    return specs


def _stage_input(stage: StageDef, options: ProgramOptions) -> str:
    spec = options.pipelines.get(stage.name)
    if spec is None and (GRAPHS_DIR / f"{stage.name}.yaml").is_file():
        spec = yaml.safe_load((GRAPHS_DIR / f"{stage.name}.yaml").read_text())
    kind = (spec or {}).get("input", stage.input)
    return kind if kind in PRODUCTS or kind == "uncal" else stage.input


# ------------------------------------------------------------------------------ running

@dataclass
class _Running:
    job: Job
    task: JobTask
    handle: Any


class _LocalHandle:
    """A job run at submission in this process (dask's in-process scheduler)."""

    def __init__(self, task: JobTask) -> None:
        try:
            self.value, self.error = run_job(task), None
        except Exception as exc:  # noqa: BLE001 - recorded on the job by the runner
            self.value, self.error = None, exc

    def done(self) -> bool:
        return True

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value

    def cancel(self) -> None:
        """Nothing to cancel: the job finished when it was submitted."""


class _Backend:
    """Submits jobs as one task each to a distributed Client, or runs them in process."""

    def __init__(self, client: Client | None) -> None:
        self.client = client

    def submit(self, task: JobTask) -> Future | _LocalHandle:
        if self.client is None:
            return _LocalHandle(task)
        return self.client.submit(run_job, task, key=f"jwdask-job-{task.key}-{task.tag}", pure=False)

    def wait(self, handles: Sequence[Any], timeout: float) -> None:
        futures = [h for h in handles if isinstance(h, Future)]
        if futures:
            with contextlib.suppress(TimeoutError):
                wait(futures, timeout=timeout, return_when="FIRST_COMPLETED")

    def cancel(self, run: _Running) -> None:
        """Stop a running job: its task looks for the cancel event between polls (it cannot
        be interrupted otherwise), and its future is released."""
        if isinstance(run.handle, Future) and not run.handle.done():
            Event(cancel_event(run.task.tag), client=self.client).set()
        run.handle.cancel()


class ProgramLog:
    """Logs to Python logging and into the store (the service's log view)."""

    def __init__(self, store: Store, program_id: str) -> None:
        self.store, self.program_id = store, program_id

    def __call__(self, level: int, message: str, *args: Any) -> None:
        text = message % args if args else message
        log.log(level, "[%s] %s", self.program_id, text)
        self.store.log(self.program_id, logging.getLevelName(level), text)


def create_program(store: Store, inputs: Sequence[str], out_dir: str, options: ProgramOptions, *,
                   name: str | None = None, program_id: str | None = None) -> str:
    """Record a queued program and return its id."""
    prog = store.create_program(name or Path(out_dir).name, out_dir, [str(i) for i in inputs],
                                options.to_dict(), program_id=program_id)
    return prog.id


def run_program(store: Store, program_id: str, client: Client | None = None, *,
                should_stop: Callable[[], bool] | None = None, owner: str | None = None,
                lease_seconds: float = LEASE_SECONDS, unfinished_only: bool = False) -> str:
    """Run (or resume) a recorded program to the end; returns its final status.

    The program is claimed in the store for the whole run (see :mod:`jwdask.service.lease`),
    so no other runner sharing the store runs it at the same time.

    Parameters
    ----------
    store : Store
        Where the program and its jobs are recorded.
    program_id : str
        The program.
    client : distributed.Client, optional
        Where jobs compute; ``None`` computes with dask's current in-process scheduler.
    should_stop : callable, optional
        Polled with the store's cancel flag; returning True stops the program like a cancel
        (the service uses it at shutdown, leaving the program resumable).
    owner : str, optional
        This runner's id in the lease (default: a new one).
    lease_seconds : float
        Lease length [s]: how long the program stays held if this runner dies.
    unfinished_only : bool
        Do not claim (nor rerun) a program that is already finished.

    Raises
    ------
    ProgramBusy
        Another runner holds the program's lease.
    """
    prog = store.program(program_id)
    if prog is None:
        msg = f"no program {program_id!r} in {store!r}"
        raise ParameterError(msg)
    with Lease(store, program_id, owner or new_owner(), lease_seconds, unfinished_only=unfinished_only) as lease:
        plog = ProgramLog(store, program_id)
        options = ProgramOptions.from_dict(prog.options)
        store.update_program(program_id, status=ProgramStatus.RUNNING, error=None)
        try:
            plan = discover(prog.inputs)
        except JwdaskError as exc:
            plog(logging.ERROR, "cannot read the program's inputs: %s", exc)
            store.update_program(program_id, status=ProgramStatus.FAILED, error=str(exc))
            return ProgramStatus.FAILED
        for problem in plan.problems:
            plog(logging.WARNING, "%s", problem)
        Path(prog.out_dir).mkdir(parents=True, exist_ok=True)
        jobs = store.sync_jobs(program_id, plan_jobs(plan, prog.out_dir, options))
        plog(logging.INFO, "program %s: %d exposures, %d image2 and %d image3 associations, %d jobs (runner %s)",
             prog.name, len(plan.exposures), len(plan.image2), len(plan.image3), len(jobs), lease.owner)
        runner = _ProgramRun(store, program_id, prog.out_dir, options, plan, jobs, _Backend(client), plog,
                             should_stop or (lambda: False), lease)
        return runner.run()


class _ProgramRun:
    """The state of one pass over a program's jobs."""

    def __init__(self, store: Store, program_id: str, out_dir: str, options: ProgramOptions,
                 plan: ProgramPlan, jobs: dict[str, Job], backend: _Backend, plog: ProgramLog,
                 should_stop: Callable[[], bool], lease: Lease) -> None:
        self.store, self.program_id, self.out_dir = store, program_id, out_dir
        self.options, self.plan, self.jobs, self.backend, self.plog = options, plan, jobs, backend, plog
        self.should_stop, self.lease = should_stop, lease
        self.available = stage_availability(options)
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.entries: dict[str, str] = {}
        self.running: dict[str, _Running] = {}
        self.state: dict[str, str] = {}

    # ---------------------------------------------------------------- main loop
    def run(self) -> str:
        for stage, reason in self.available.items():
            if reason is not None and reason != "not requested":
                self.plog(logging.WARNING, "%s: its %d job(s) are recorded as skipped", reason,
                          sum(j.stage == stage for j in self.jobs.values()))
        self._resume()
        try:
            while True:
                if self._stop_requested():
                    return self._stop()
                self._start_ready()
                if self._stop_requested():
                    return self._stop()
                if not self.running:
                    break
                self.backend.wait([r.handle for r in self.running.values()], POLL_SECONDS)
                for key in [k for k, r in self.running.items() if r.handle.done()]:
                    self._finish(key)
        except BaseException:
            if not self.lease.lost.is_set():
                self._abandon("interrupted")
            raise
        return self._conclude()

    def _resume(self) -> None:
        """Decide, in dependency order, which recorded jobs are complete and verified."""
        for key in _topological(self.jobs):
            job = self.jobs[key]
            deps_ok = all(self.state.get(d) == JobStatus.DONE for d in job.depends)
            if job.status == JobStatus.DONE and deps_ok and self._verified(job):
                self.state[key] = JobStatus.DONE
                continue
            if job.status == JobStatus.DONE:
                self.plog(logging.INFO, "%s: rerunning (%s)", key,
                          "an upstream job reruns" if not deps_ok else "a product is missing or changed")
            self.state[key] = JobStatus.PENDING
            job.attempts = 0
            self.store.update_job(job.id, status=JobStatus.PENDING, error=None, error_file=None, note=None,
                                  attempts=0, started=None, finished=None)
        done = sum(s == JobStatus.DONE for s in self.state.values())
        if done:
            self.plog(logging.INFO, "%d of %d jobs already complete (products verified by checksum)",
                      done, len(self.jobs))

    def _verified(self, job: Job) -> bool:
        if not job.products:
            return False
        for p in job.products:
            if not os.path.isfile(p["url"]) or sha256(p["url"]) != p["sha256"]:
                return False
        return True

    def _stop_requested(self) -> bool:
        return self.lease.lost.is_set() or self.store.cancel_requested(self.program_id) or self.should_stop()

    def _start_ready(self) -> None:
        for key in _topological(self.jobs):
            if self.state[key] != JobStatus.PENDING:
                continue
            if self.backend.client is None and self._stop_requested():
                return  # in process, each job computes as it is submitted: look in between
            job = self.jobs[key]
            deps = [self.state[d] for d in job.depends if d in self.state]
            if any(s in (JobStatus.PENDING, JobStatus.RUNNING) for s in deps):
                continue
            if self.available.get(job.stage) is not None:
                self._set(job, JobStatus.SKIPPED, note=self.available[job.stage])
                continue
            bad = [d for d in job.depends if self.state.get(d) != JobStatus.DONE]
            if bad and (job.kind == "exposure" or len(bad) == len(job.depends)):
                reasons = {self.state[d] for d in bad}
                self._set(job, JobStatus.SKIPPED,
                          note=f"upstream {', '.join(bad)} {'/'.join(sorted(reasons))}")
                continue
            self._submit(job, dropped=bad)

    def _submit(self, job: Job, dropped: Sequence[str]) -> None:
        try:
            task = self._task(job, dropped)
        except Exception as exc:  # noqa: BLE001 - any failure to describe the job fails only this job
            self._fail(job, exc)
            return
        job.attempts += 1
        note = f"without failed upstream {', '.join(dropped)}" if dropped else None
        self.state[job.key] = JobStatus.RUNNING
        self.store.update_job(job.id, status=JobStatus.RUNNING, started=_utcnow(), attempts=job.attempts,
                              note=note)
        self.plog(logging.INFO, "%s: submitted", job.key)
        handle = self.backend.submit(task)
        self.running[job.key] = _Running(job, task, handle)
        if isinstance(handle, _LocalHandle):
            self._finish(job.key)

    def _finish(self, key: str) -> None:
        run = self.running.pop(key)
        job = run.job
        try:
            products = run.handle.result()
        except Exception as exc:  # noqa: BLE001 - recorded on the job
            remove_temporaries(self.out_dir, self._roots(job))
            if isinstance(exc, TRANSIENT) and job.attempts <= self.options.retries:
                self.plog(logging.WARNING, "%s: %s: %s; retrying", key, type(exc).__name__, exc)
                self.state[key] = JobStatus.PENDING
                return
            self._fail(job, exc)
            return
        remove_temporaries(self.out_dir, self._roots(job))  # of attempts lost with their worker
        self._set(job, JobStatus.DONE, products=products)
        self.plog(logging.INFO, "%s: done: %s", key, ", ".join(os.path.basename(p["url"]) for p in products))

    def _stop(self) -> str:
        if self.lease.lost.is_set():
            self._abandon("lease lost")
            self.plog(logging.ERROR, "lease lost to another runner; this runner stops")
            return ProgramStatus.RUNNING
        cancelled = self.store.cancel_requested(self.program_id)
        self._abandon("cancelled" if cancelled else "stopped")
        if not cancelled:
            self.plog(logging.WARNING, "stopped; the program resumes on the next run")
            return ProgramStatus.RUNNING
        for key, s in self.state.items():
            if s == JobStatus.PENDING:
                self._set(self.jobs[key], JobStatus.CANCELLED)
        self.store.update_program(self.program_id, status=ProgramStatus.CANCELLED)
        self.plog(logging.WARNING, "program cancelled")
        return ProgramStatus.CANCELLED

    def _abandon(self, why: str) -> None:
        """Cancel running jobs (their tasks remove their temporary files), and record them
        as pending (``stopped``/``interrupted``) or cancelled; with the lease lost, the
        records belong to the new holder and are left alone."""
        record = why != "lease lost"
        for key, run in list(self.running.items()):
            with contextlib.suppress(Exception):
                self.backend.cancel(run)
            status = JobStatus.CANCELLED if why == "cancelled" else JobStatus.PENDING
            if record:
                self._set(run.job, status, note=why)
            self.state[key] = status
        self.running.clear()
        if not record:
            return
        for key, s in self.state.items():
            if s == JobStatus.RUNNING:
                self._set(self.jobs[key], JobStatus.PENDING, note=why)
        if why == "interrupted":
            self.store.update_program(self.program_id, status=ProgramStatus.CANCELLED,
                                      error="interrupted; run again to resume")

    def _conclude(self) -> str:
        failed = [k for k, s in self.state.items() if s == JobStatus.FAILED]
        status = ProgramStatus.FAILED if failed else ProgramStatus.DONE
        error = f"{len(failed)} job(s) failed: {', '.join(failed)}" if failed else None
        self.store.update_program(self.program_id, status=status, error=error)
        counts: dict[str, int] = {}
        for s in self.state.values():
            counts[s] = counts.get(s, 0) + 1
        self.plog(logging.WARNING if failed else logging.INFO, "program %s: %s", status,
                  ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        return status

    # ---------------------------------------------------------------- job tasks
    def _task(self, job: Job, dropped: Sequence[str]) -> JobTask:
        """What a worker needs to build and compute the job (the graph itself is built there)."""
        pipeline = self._pipeline(job.stage)
        kind = pipeline.get("input", "")
        fields = {"key": job.key, "kind": job.kind, "pipeline": pipeline, "entry": self.entries[job.stage],
                  "input_kind": kind if kind in PRODUCTS or kind == "uncal" else _stage_def(job.stage).input,
                  "out_dir": self.out_dir, "refs": self.options.refs, "tile": self.options.tile,
                  "tag": uuid.uuid4().hex[:12], "local_tasks": self.options.local_tasks,
                  "where": job.inputs[0] if job.inputs else job.key}
        if job.kind == "exposure":
            exp = self.plan.exposures.get(job.target)
            if job.stage == "detector1" and exp is not None and exp.error is not None:
                raise InputError(exp.path, "PRIMARY", exp.error)
            return JobTask(source=job.inputs[0], **fields)
        asn = next(a for a in self.plan.image3 if f"image3:{a.product}" == job.key)
        members = self._member_paths(job, asn, dropped)
        asn_dir = Path(self.out_dir) / "associations"
        asn_dir.mkdir(exist_ok=True)
        asn_path = asn_dir / f"{asn.product}_{job.stage}_asn.json"
        asn_path.write_text(json.dumps(association_json(asn, members), indent=2) + "\n")
        return JobTask(source=str(asn_path), **fields)

    def _member_paths(self, job: Job, asn: Association, dropped: Sequence[str]) -> dict[str, str]:
        lost = {self.jobs[d].target for d in dropped}
        paths = {}
        for m, path in zip(asn.members, job.inputs, strict=True):
            if m not in lost and os.path.isfile(path):
                paths[m] = path
        if not paths:
            raise InputError(job.key, "members", "no member product exists")
        return paths

    def _roots(self, job: Job) -> list[str]:
        """The file-name roots of the job's products (its exposure, or its association and
        members)."""
        if job.kind == "exposure":
            return [job.target]
        asn = next((a for a in self.plan.image3 if f"image3:{a.product}" == job.key), None)
        return [job.target, *(asn.members if asn is not None else ())]

    def _pipeline(self, stage: str) -> dict[str, Any]:
        if stage not in self.pipelines:
            spec = self.options.pipelines.get(stage) or pipeline_spec(stage)
            pipeline = Pipeline.from_dict(spec).with_params(**self.options.steps.get(stage, {}))
            self.pipelines[stage] = pipeline.to_dict()
            self.entries[stage] = spec.get("association_entry", ASSOCIATION_ENTRY)
        return self.pipelines[stage]

    # ---------------------------------------------------------------- bookkeeping
    def _fail(self, job: Job, exc: BaseException) -> None:
        where, reason = describe_error(exc, key=job.key, kind=job.kind,
                                       entry=self.entries.get(job.stage, ASSOCIATION_ENTRY),
                                       where=job.inputs[0] if job.inputs else job.key)
        self._set(job, JobStatus.FAILED, error=reason, error_file=where)
        self.plog(logging.ERROR, "%s failed: %s: %s", job.key, where, reason)

    def _set(self, job: Job, status: str, **fields: Any) -> None:
        self.state[job.key] = status
        job.status = status
        if status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.SKIPPED, JobStatus.CANCELLED):
            fields.setdefault("finished", _utcnow())
        if status == JobStatus.SKIPPED and fields.get("note") != "not requested":
            self.plog(logging.WARNING, "%s skipped: %s", job.key, fields.get("note"))
        self.store.update_job(job.id, status=status, **fields)


def _stage_def(name: str) -> StageDef:
    return next(s for s in STAGES if s.name == name)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def _topological(jobs: Mapping[str, Job]) -> Iterator[str]:
    """Job keys, upstream before downstream (stage order, then recorded order)."""
    order = {s.name: i for i, s in enumerate(STAGES)}
    yield from sorted(jobs, key=lambda k: (order.get(jobs[k].stage, len(order)), jobs[k].id))


# ------------------------------------------------------------------------------ CLI entry

def program_run(inputs: Sequence[str | Path], out: str | Path, *, scheduler: str | Client | None = None,
                store_url: str | None = None, refs: Any = None,
                pipelines: Mapping[str, Pipeline | str | Path | Mapping[str, Any]] | None = None,
                steps: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
                stages: Sequence[str] | None = None, tile: int = 512, retries: int = 2,
                n_workers: int | None = None, memory_limit: str | int | None = "auto",
                console: Console | None = None, local_tasks: int = LOCAL_TASKS) -> int:
    """``jwdask program run``: run or resume a whole program; returns the exit code.

    Parameters
    ----------
    inputs : sequence of str or Path
        Folders, ``*_uncal.fits`` files and ``*_asn.json`` associations.
    out : str or Path
        Output folder (on a file system the workers share). The same ``out`` resumes the
        program recorded for it.
    scheduler : str or distributed.Client, optional
        ``None``: a LocalCluster; ``tcp://host:port``: an existing scheduler; ``threads``/
        ``sync``: in process; or a connected Client.
    store_url : str, optional
        SQLAlchemy URL of the job store (default ``sqlite:///<out>/jwdask-jobs.sqlite``).
    refs : RefProvider or mapping, optional
        Reference files (RefProvider arguments).
    pipelines : mapping, optional
        ``{stage: Pipeline, YAML path or mapping}`` replacing ``graphs/<stage>.yaml``.
    steps : mapping, optional
        ``{stage: {step: {param: value}}}`` overrides.
    stages : sequence of str, optional
        Subset of ``detector1, image2, image3`` to run.
    tile : int
        Pixel tile size in y and x.
    retries : int
        Resubmissions of a job lost to a worker or connection failure.
    local_tasks : int
        Job graphs of at most this many tasks compute on one worker inside their job's task.
    n_workers, memory_limit
        LocalCluster workers and per-worker memory.

    Returns
    -------
    int
        0 if every job completed (or its stage is not available), 1 if any job failed.

    Raises
    ------
    ProgramBusy
        Another runner (a service replica, another ``program run``) is running the program.
    """
    console = console or Console(stderr=True)
    out_dir = str(Path(out).resolve())
    unknown = set(stages or ()) - {s.name for s in STAGES}
    if unknown:
        msg = f"unknown stage(s) {sorted(unknown)}; stages are {[s.name for s in STAGES]}"
        raise ParameterError(msg)
    options = ProgramOptions(refs=refs_options(refs),
                             pipelines={k: pipeline_spec(v) for k, v in (pipelines or {}).items()},
                             steps={k: {s: dict(p) for s, p in v.items()} for k, v in (steps or {}).items()},
                             stages=list(stages or [s.name for s in STAGES]), tile=tile, retries=retries,
                             local_tasks=local_tasks)
    store = Store(store_url or default_url(out_dir))
    inputs = [str(Path(i).resolve()) for i in inputs]
    existing = store.program_for_out_dir(out_dir)
    owner = new_owner()
    if existing is not None:
        program_id = existing.id
        if not store.claim(program_id, owner, LEASE_SECONDS):
            raise busy(store, program_id)
        store.update_program(program_id, inputs=inputs, options=options.to_dict(), cancel_requested=False)
        console.print(f"resuming program [bold]{program_id}[/] in {out_dir}")
    else:
        program_id = create_program(store, inputs, out_dir, options)
        console.print(f"program [bold]{program_id}[/] in {out_dir} (store {store.url})")
    try:
        if isinstance(scheduler, Client):
            status = run_program(store, program_id, scheduler, owner=owner)
        else:
            with cluster.client(scheduler, n_workers=n_workers, memory_limit=memory_limit) as c:
                status = run_program(store, program_id, c, owner=owner)
    finally:
        store.release(program_id, owner)  # if the run never started
    print_summary(store, program_id, console)
    return 0 if status == ProgramStatus.DONE else 1


def print_summary(store: Store, program_id: str, console: Console) -> None:
    """A table of the program's jobs: stage, target, status, products or error."""
    prog = store.program(program_id)
    table = Table(title=f"program {prog.id}: {prog.status}", title_justify="left")
    for col in ("stage", "target", "status", "products / error"):
        table.add_column(col)
    colours = {JobStatus.DONE: "green", JobStatus.FAILED: "red", JobStatus.SKIPPED: "yellow"}
    for j in prog.jobs:
        detail = (f"{j.error_file}: {j.error}" if j.status == JobStatus.FAILED
                  else j.note if j.status == JobStatus.SKIPPED
                  else ", ".join(os.path.basename(p["url"]) for p in j.products))
        colour = colours.get(j.status, "white")
        table.add_row(j.stage, j.target, f"[{colour}]{j.status}[/]", detail or "")
    console.print(table)

