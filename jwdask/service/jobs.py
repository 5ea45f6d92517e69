"""One job of a program, as a task: build its graph where it runs and compute it there.

The runner submits :func:`run_job` once per (exposure or association, stage) job. On a
Dask worker the task opens the job's inputs, builds its lazy graph with the same
preparation functions as ``jwdask run`` (:func:`jwdask.commands.prepare_exposure`,
:func:`jwdask.commands.prepare_association`), and computes it:

- a small graph (at most ``local_tasks`` tasks) with dask's synchronous scheduler inside
  the task, so it costs the scheduler one task;
- a larger one on the cluster through :func:`distributed.worker_client` (the task secedes
  from the worker's thread pool while its tiles run on every worker).

Without a worker (the in-process ``sync``/``threads`` backends) it computes with the
current scheduler. The client thus never builds job graphs, and jobs of a program build in
parallel on the workers. A job that fails records the file and reason (:class:`JobError`,
picklable across processes); one whose worker dies is rerun from its inputs.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dask
from dask._task_spec import convert_legacy_graph
from dask.callbacks import Callback
from dask.delayed import Delayed
from distributed import Event, get_worker, wait, worker_client
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker

from jwdask.errors import InputError, ReferenceFileError
from jwdask.pipeline import Pipeline, resolve
from jwdask.service.store import sha256

log = logging.getLogger(__name__)

__all__ = ["TRANSIENT", "JobCancelled", "JobError", "JobTask", "cancel_event", "describe_error",
           "isolate_keys", "remove_temporaries", "run_job"]

TRANSIENT = (KilledWorker, CommClosedError, FileNotFoundError, ConnectionError, TimeoutError)
"""Errors of the infrastructure (a worker died, a connection dropped, a temporary file was
lost with its worker); a job failing with one is retried."""

CANCEL_POLL_SECONDS = 0.5
"""How often a running job looks whether the runner cancelled it."""


@dataclass(frozen=True)
class JobTask:
    """What a worker needs to build and compute one job (picklable).

    Attributes
    ----------
    key : str
        The job's key (``detector1:<root>``, ``image3:<product>``).
    kind : str
        ``exposure`` or ``association``.
    pipeline : dict
        The stage's pipeline (``Pipeline.to_dict``), overrides applied.
    source : str
        The exposure's input product, or the association file.
    input_kind : str
        Product kind of an exposure's input (``uncal``, ``rate``...).
    entry : str
        ``module:function`` preparing an association's writes (see
        :func:`jwdask.commands.prepare_association`).
    out_dir : str
        Output folder.
    refs : dict
        RefProvider arguments.
    tile : int
        Pixel tile size in y and x.
    tag : str
        Unique per submission: suffix of the graph's task keys and name of the cancel event.
    local_tasks : int
        Graphs of at most this many tasks compute inside the job's task on one worker.
    where : str
        The file an error is recorded against when the error names none.
    """

    key: str
    kind: str
    pipeline: dict[str, Any]
    source: str
    input_kind: str
    entry: str
    out_dir: str
    refs: dict[str, Any]
    tile: int
    tag: str
    local_tasks: int
    where: str


class JobError(Exception):
    """A job failed: the file at fault and the reason, as recorded in the store.

    Unlike the :mod:`jwdask.errors` it is made from, it survives pickling (workers send it
    to the client)."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(where, reason)
        self.where, self.reason = where, reason

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


class JobCancelled(Exception):
    """The runner cancelled the job while it computed."""


def describe_error(exc: BaseException, *, key: str, kind: str, entry: str, where: str) -> tuple[str, str]:
    """``(file, reason)`` of the error of job ``key`` (``kind``, association ``entry``), as
    recorded in the store; ``where`` is the file named when the error names none."""
    if isinstance(exc, JobError):
        return exc.where, exc.reason
    if isinstance(exc, InputError):
        return exc.source, f"{exc.field}: {exc.reason}" if exc.field else exc.reason
    if isinstance(exc, ModuleNotFoundError | ImportError) and kind == "association":
        return key, f"the association entry point {entry} cannot be imported: {exc}"
    label = "reference file error" if isinstance(exc, ReferenceFileError) else type(exc).__name__
    return where, f"{label}: {exc}"


def _describe(task: JobTask, exc: BaseException) -> tuple[str, str]:
    return describe_error(exc, key=task.key, kind=task.kind, entry=task.entry, where=task.where)


def cancel_event(tag: str) -> str:
    """Name of the ``distributed.Event`` the runner sets to cancel the job tagged ``tag``."""
    return f"jwdask-cancel-{tag}"


def run_job(task: JobTask) -> list[dict[str, str]]:
    """Build the job's graph and compute it (see the module's description).

    Returns
    -------
    list of dict
        The written products: ``{"url": path, "sha256": hex digest}``.

    Raises
    ------
    JobError
        The job failed (bad input, reference file, step error).
    JobCancelled
        The runner cancelled it.
    TRANSIENT
        The infrastructure failed (the runner retries the job).
    """
    from jwdask.commands import prepare_exposure
    from jwdask.refs import RefProvider

    try:
        pipeline = Pipeline.from_dict(task.pipeline)
        refs = RefProvider(**task.refs)
        if task.kind == "exposure":
            prepared = prepare_exposure(pipeline, task.source, task.out_dir, refs, tile=task.tile,
                                        kind=task.input_kind)
        else:
            prepared = resolve(task.entry)(pipeline, task.source, task.out_dir, refs, tile=task.tile)
    except TRANSIENT:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded on the job with its file and reason
        raise JobError(*_describe(task, exc)) from None
    # own keys per job: concurrent jobs (and programs) on one scheduler never share a task,
    # nor do a job's tasks and those a writer computes inside one of them (the segmentation map)
    graph = isolate_keys(dask.delayed(_written, pure=False)(*[p.delayed for p in prepared.pending],
                                                             *prepared.delayed), task.tag)
    try:
        urls = _compute(graph, task)
    except BaseException as exc:
        prepared.cleanup()
        if isinstance(exc, Exception) and not isinstance(exc, (*TRANSIENT, JobCancelled)):
            raise JobError(*_describe(task, exc)) from None
        raise
    return [{"url": u, "sha256": sha256(u)} for u in urls]


def _compute(graph: Delayed, task: JobTask) -> list[str]:
    try:
        get_worker()
    except ValueError:
        return dask.compute(graph)[0]  # in process: the current scheduler
    if len(graph.__dask_graph__()) <= task.local_tasks:
        with _CancelCheck(task.tag):
            return dask.compute(graph, scheduler="sync")[0]
    with worker_client() as client:
        future = client.compute(graph)
        cancelled = Event(cancel_event(task.tag), client=client)
        while not future.done():
            with contextlib.suppress(TimeoutError):
                wait(future, timeout=CANCEL_POLL_SECONDS)
            if not future.done() and cancelled.is_set():
                future.cancel()
                cancelled.clear()
                msg = f"{task.key}: cancelled"
                raise JobCancelled(msg)
        return future.result()


class _CancelCheck(Callback):
    """Raises :class:`JobCancelled` between tasks of a computation inside a worker's task
    once the runner sets the job's cancel event (looked up at most every
    :data:`CANCEL_POLL_SECONDS`)."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag, self.next_check = tag, time.monotonic() + CANCEL_POLL_SECONDS

    def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
        if time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + CANCEL_POLL_SECONDS
        event = Event(cancel_event(self.tag))
        if event.is_set():
            event.clear()
            msg = f"cancelled ({self.tag})"
            raise JobCancelled(msg)


def _written(*results: str | list[str]) -> list[str]:
    """The URLs of a job's products (the graph's final task): each write returns a URL or a
    list of URLs."""
    urls: list[str] = []
    for r in results:
        urls += [str(u) for u in r] if isinstance(r, list | tuple) else [str(r)]
    return urls


def isolate_keys(delayed: Delayed, tag: str) -> Delayed:
    """The same computation with every task key suffixed by ``tag``.

    Jobs run concurrently on one scheduler (several exposures, several programs); tasks of
    two jobs must never be taken for one another even when a step names its tasks without
    a token of its input, and cancelling one job must not cancel another's tasks.
    """
    graph = convert_legacy_graph(dict(delayed.__dask_graph__()))

    def rename(key: Any) -> Any:
        if isinstance(key, tuple):
            return (f"{key[0]}-{tag}", *key[1:])
        return f"{key}-{tag}"

    subs = {k: rename(k) for k in graph}
    return Delayed(subs[delayed.key], {subs[k]: node.substitute(subs, key=subs[k]) for k, node in graph.items()})


def remove_temporaries(out_dir: str, roots: Sequence[str]) -> list[str]:
    """Remove the hidden temporary product files (``.<root>_*.tmp-*``) of ``roots`` in
    ``out_dir``: what a job killed with its worker left behind. Returns the removed paths."""
    removed = []
    for path in _temporaries(out_dir, roots):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) of an interrupted job in %s", len(removed), out_dir)
    return removed


def _temporaries(out_dir: str, roots: Sequence[str]) -> Iterator[str]:
    for root in roots:
        yield from glob.glob(os.path.join(glob.escape(out_dir), f".{glob.escape(root)}_*.tmp-*"))
