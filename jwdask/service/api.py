"""The job service: a REST API under ``/api/v1/`` and a dashboard page (``jwdask serve``).

Programs are submitted as JSON naming input paths under the configured data roots; each runs
with :func:`jwdask.service.runner.run_program` on the configured Dask scheduler (the same code
as ``jwdask program run``). All state lives in the job store, so a restarted service picks up
the programs it had not finished. Every API route needs ``Authorization: Bearer <token>``.

Routes::

    GET  /                                      dashboard page (asks for the token)
    POST /api/v1/programs                       submit {"inputs": [...], ...} -> 201
    GET  /api/v1/programs                       list, with per-stage progress
    GET  /api/v1/programs/{id}                  status of every (exposure, stage) job
    POST /api/v1/programs/{id}/cancel           request cancellation -> 202
    GET  /api/v1/programs/{id}/logs?after=N     log lines
    GET  /api/v1/programs/{id}/products         product links and quick looks
    GET  /api/v1/programs/{id}/products/{job}/{name}   a product file
    GET  /api/v1/programs/{id}/quicklook/{job}.png     quick-look PNG of a job's product
    GET  /api/v1/cluster                        scheduler address and Dask dashboard link
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from jwdask import cluster
from jwdask.errors import JwdaskError, ParameterError
from jwdask.service.lease import LEASE_SECONDS, ProgramBusy, new_owner
from jwdask.service.runner import (
    STAGES,
    ProgramOptions,
    create_program,
    pipeline_spec,
    run_program,
)
from jwdask.service.store import FINISHED, JobStatus, Store, default_url

log = logging.getLogger(__name__)

__all__ = ["ServiceConfig", "create_app", "read_token", "serve"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
BEARER = HTTPBearer(auto_error=False)
"""Reads ``Authorization: Bearer <token>``; the route dependency checks the token."""
QUICKLOOK_ORDER = ("i2d", "cal", "rate", "rateints", "calints")
"""Which product of a job the quick look shows (the first present)."""


@dataclass
class ServiceConfig:
    """How the service runs.

    Attributes
    ----------
    data_roots : list of Path
        Folders that submitted paths must lie in (after resolving symlinks and ``..``).
    token : str
        The bearer token every API call must present.
    scheduler : str, optional
        Dask scheduler address; ``None`` starts a LocalCluster; ``threads``/``sync`` run
        in the service process.
    store_url : str, optional
        SQLAlchemy URL of the job store (default SQLite in ``<first root>/.jwdask``).
    out_root : Path, optional
        Where programs write when the request names no ``out`` (default
        ``<first root>/jwdask-programs``); each program gets ``<out_root>/<id>``.
    max_programs : int
        Programs running at the same time (their jobs share the cluster).
    n_workers : int, optional
        LocalCluster workers when no scheduler is given.
    dashboard_url : str, optional
        The Dask dashboard link shown to users, when the scheduler's own link is an
        internal address (a container or cluster host name).
    step_modules : tuple of str
        Module prefixes that step functions of submitted pipelines may come from (a
        pipeline names importable callables, so this bounds what a client can run).
    lease_seconds : float
        Lease on a running program [s]: when replicas share the store, how long after this
        one dies another takes its programs over.
    """

    data_roots: list[Path]
    token: str
    scheduler: str | None = None
    store_url: str | None = None
    out_root: Path | None = None
    max_programs: int = 2
    n_workers: int | None = None
    dashboard_url: str | None = None
    step_modules: tuple[str, ...] = ("jwdask.",)
    lease_seconds: float = LEASE_SECONDS
    roots: list[Path] = field(init=False)

    def __post_init__(self) -> None:
        if not self.data_roots:
            msg = "the service needs at least one data root"
            raise ParameterError(msg)
        if not self.token:
            msg = "the service needs a token (JWDASK_TOKEN or --token-file)"
            raise ParameterError(msg)
        self.roots = [Path(os.path.realpath(r)) for r in self.data_roots]
        for r in self.roots:
            if not r.is_dir():
                msg = f"data root {r} is not a folder"
                raise ParameterError(msg)
        self.out_root = Path(self.out_root) if self.out_root else self.roots[0] / "jwdask-programs"
        self.store_url = self.store_url or default_url(self.roots[0] / ".jwdask")

    def confine(self, path: str, what: str) -> str:
        """The real path of ``path`` (relative paths are under the first root); raises a
        400 if it lies outside every data root."""
        p = Path(path)
        if not p.is_absolute():
            p = self.roots[0] / p
        real = Path(os.path.realpath(p))
        if not any(real == r or r in real.parents for r in self.roots):
            raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                f"{what} '{path}' is outside the service's data roots")
        return str(real)


class ProgramRequest(BaseModel):
    """The body of ``POST /api/v1/programs``."""

    inputs: list[str] = Field(min_length=1, description="folders, *_uncal.fits, *_asn.json under a data root")
    name: str | None = Field(None, max_length=200)
    out: str | None = Field(None, description="output folder under a data root")
    refs_dir: str | None = Field(None, description="folder of reference files under a data root")
    crds_cache: str | None = None
    crds_context: str | None = None
    ref_overrides: dict[str, str] = Field(default_factory=dict, description="{reftype: path or N/A}")
    pipelines: dict[str, str] = Field(default_factory=dict, description="{stage: pipeline YAML path}")
    steps: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    stages: list[str] | None = None
    tile: int = Field(512, ge=16, le=8192)


class ProgramManager:
    """Runs programs in background threads against one Dask client.

    Several service replicas may share one store: each program is run by the replica that
    claims it (a lease in the store, see :mod:`jwdask.service.lease`). A background sweep
    every half lease starts the unfinished programs nobody holds, so the programs of a
    replica that died are taken over once their leases expire.
    """

    def __init__(self, store: Store, client: Any, max_programs: int, *,
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self.store, self.client, self.lease_seconds = store, client, lease_seconds
        self.owner = new_owner()
        self.pool = ThreadPoolExecutor(max_workers=max_programs, thread_name_prefix="jwdask-program")
        self.stopping = threading.Event()
        self.futures: dict[str, ThreadFuture[str]] = {}
        self.lock = threading.Lock()
        self.sweeper = threading.Thread(target=self._sweep, name="jwdask-sweep", daemon=True)

    def start(self, program_id: str) -> None:
        with self.lock:
            if self.stopping.is_set() or (program_id in self.futures and not self.futures[program_id].done()):
                return
            self.futures[program_id] = self.pool.submit(self._run, program_id)

    def _run(self, program_id: str) -> str:
        prog = self.store.program(program_id)
        if prog is None or prog.status in FINISHED or self.stopping.is_set():
            return prog.status if prog else "missing"
        try:
            return run_program(self.store, program_id, self.client, should_stop=self.stopping.is_set,
                               owner=self.owner, lease_seconds=self.lease_seconds, unfinished_only=True)
        except ProgramBusy:
            return "busy"  # another replica runs it
        except Exception as exc:
            log.exception("program %s crashed", program_id)
            self.store.update_program(program_id, status="failed", error=f"{type(exc).__name__}: {exc}")
            self.store.log(program_id, "ERROR", f"runner crashed: {type(exc).__name__}: {exc}")
            return "failed"

    def resume_unfinished(self) -> list[str]:
        """Start the unfinished programs that no live runner holds; returns their ids."""
        with self.lock:
            busy = {pid for pid, f in self.futures.items() if not f.done()}
        ids = [pid for pid in self.store.claimable() if pid not in busy]
        for pid in ids:
            self.store.log(pid, "INFO", f"service {self.owner}: resuming")
            self.start(pid)
        return ids

    def start_sweeping(self) -> None:
        """Resume unclaimed programs now and every half lease until shutdown."""
        self.resume_unfinished()
        self.sweeper.start()

    def _sweep(self) -> None:
        while not self.stopping.wait(self.lease_seconds / 2):
            try:
                self.resume_unfinished()
            except Exception:
                log.exception("looking for programs to resume failed; trying again")

    def shutdown(self) -> None:
        self.stopping.set()
        if self.sweeper.is_alive():
            self.sweeper.join()
        self.pool.shutdown(wait=True, cancel_futures=True)


def read_token(token_file: str | Path | None = None) -> str:
    """The service token: the first line of ``token_file``, else ``$JWDASK_TOKEN``."""
    if token_file is not None:
        token = Path(token_file).read_text().strip().splitlines()
        if token and token[0].strip():
            return token[0].strip()
        msg = f"token file {token_file} is empty"
        raise ParameterError(msg)
    token = os.environ.get("JWDASK_TOKEN", "").strip()
    if not token:
        msg = "no token: set JWDASK_TOKEN or pass --token-file"
        raise ParameterError(msg)
    return token


def create_app(config: ServiceConfig) -> FastAPI:
    """The FastAPI application of the service (the cluster connects at startup)."""
    store = Store(config.store_url)

    def authorised(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        if creds is None or creds.scheme.lower() != "bearer" or not secrets.compare_digest(
                creds.credentials.encode(), config.token.encode()):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(cluster.client(config.scheduler, n_workers=config.n_workers))
            app.state.client = client
            manager = ProgramManager(store, client, config.max_programs, lease_seconds=config.lease_seconds)
            app.state.manager = manager
            manager.start_sweeping()
            log.info("jwdask service %s up: store %r, data roots %s", manager.owner, store,
                     [str(r) for r in config.roots])
            try:
                yield
            finally:
                manager.shutdown()

    app = FastAPI(title="jwdask", version="1", lifespan=lifespan,
                  description="Submit JWST programs to a Dask cluster and follow them.")
    app.state.store, app.state.config = store, config
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    api = [Depends(authorised)]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> HTMLResponse:
        return HTMLResponse((STATIC_DIR / "index.html").read_text())

    @app.post("/api/v1/programs", status_code=status.HTTP_201_CREATED, dependencies=api)
    def submit(body: ProgramRequest, request: Request) -> dict[str, Any]:
        inputs = [config.confine(p, "input") for p in body.inputs]
        for p in inputs:
            if not os.path.exists(p):
                raise HTTPException(status.HTTP_400_BAD_REQUEST, f"input '{p}' does not exist")
        try:
            options = _options(config, body)
        except JwdaskError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
        program_id = uuid.uuid4().hex[:12]
        out = config.confine(body.out, "out") if body.out else str(config.out_root / program_id)
        name = body.name or Path(inputs[0]).name
        create_program(store, inputs, out, options, name=name, program_id=program_id)
        store.log(program_id, "INFO", f"submitted: {len(inputs)} input(s), output {out}")
        request.app.state.manager.start(program_id)
        return store.program(program_id).to_dict(jobs=True)

    @app.get("/api/v1/programs", dependencies=api)
    def programs() -> list[dict[str, Any]]:
        return [p.to_dict() for p in store.programs()]

    @app.get("/api/v1/programs/{program_id}", dependencies=api)
    def program(program_id: str) -> dict[str, Any]:
        return _program(store, program_id).to_dict(jobs=True)

    @app.post("/api/v1/programs/{program_id}/cancel", status_code=status.HTTP_202_ACCEPTED,
              dependencies=api)
    def cancel(program_id: str) -> dict[str, Any]:
        prog = _program(store, program_id)
        if not store.request_cancel(program_id):
            raise HTTPException(status.HTTP_409_CONFLICT, f"program {program_id} is already {prog.status}")
        store.log(program_id, "WARNING", "cancel requested")
        return store.program(program_id).to_dict()

    @app.get("/api/v1/programs/{program_id}/logs", dependencies=api)
    def logs(program_id: str, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        _program(store, program_id)
        return store.logs(program_id, after=after, limit=min(max(limit, 1), 10000))

    @app.get("/api/v1/programs/{program_id}/products", dependencies=api)
    def products(program_id: str) -> list[dict[str, Any]]:
        prog = _program(store, program_id)
        base = f"/api/v1/programs/{program_id}"
        out = []
        for j in prog.jobs:
            if j.status != JobStatus.DONE:
                continue
            source = _quicklook_source(j.products)
            for p in j.products:
                name = os.path.basename(p["url"])
                item = {"job": j.id, "key": j.key, "stage": j.stage, "target": j.target, "name": name,
                        "sha256": p["sha256"], "url": f"{base}/products/{j.id}/{name}"}
                if p["url"] == source:
                    item["quicklook"] = f"{base}/quicklook/{j.id}.png"
                out.append(item)
        return out

    @app.get("/api/v1/programs/{program_id}/products/{job_id}/{name}", dependencies=api)
    def product_file(program_id: str, job_id: int, name: str) -> FileResponse:
        job = _job(store, program_id, job_id)
        for p in job.products:
            if os.path.basename(p["url"]) == name and os.path.isfile(p["url"]):
                return FileResponse(p["url"], filename=name, media_type="application/fits")
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} has no product {name}")

    @app.get("/api/v1/programs/{program_id}/quicklook/{job_id}.png", dependencies=api)
    def quicklook(program_id: str, job_id: int) -> FileResponse:
        prog = _program(store, program_id)
        job = _job(store, program_id, job_id)
        source = _quicklook_source(job.products)
        if source is None or not os.path.isfile(source):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} has no image product")
        png = Path(prog.out_dir) / "quicklook" / (Path(source).stem + ".png")
        if not png.is_file() or png.stat().st_mtime < os.path.getmtime(source):
            from jwdask.quicklook import quicklook_png

            quicklook_png([source], png, max_pixels=512)
        return FileResponse(png, media_type="image/png")

    @app.get("/api/v1/cluster", dependencies=api)
    def cluster_info(request: Request) -> dict[str, Any]:
        client = request.app.state.client
        if client is None:
            return {"scheduler": config.scheduler, "dashboard": None, "workers": 0}
        info = client.scheduler_info()
        return {"scheduler": client.scheduler.address, "dashboard": config.dashboard_url or client.dashboard_link,
                "workers": len(info.get("workers", {})), "stages": [s.name for s in STAGES]}

    return app


def _options(config: ServiceConfig, body: ProgramRequest) -> ProgramOptions:
    refs: dict[str, Any] = {}
    if body.refs_dir:
        refs["refs_dir"] = config.confine(body.refs_dir, "refs_dir")
    if body.crds_cache:
        refs["crds_cache"] = config.confine(body.crds_cache, "crds_cache")
    if body.crds_context:
        refs["crds_context"] = body.crds_context
    if body.ref_overrides:
        refs["overrides"] = {k: v if v.upper() == "N/A" else config.confine(v, f"reference {k}")
                             for k, v in body.ref_overrides.items()}
    known = [s.name for s in STAGES]
    for stage in list(body.pipelines) + list(body.steps) + list(body.stages or []):
        if stage not in known:
            msg = f"unknown stage '{stage}'; stages are {known}"
            raise ParameterError(msg)
    pipelines = {k: pipeline_spec(config.confine(v, f"pipeline {k}")) for k, v in body.pipelines.items()}
    for stage, spec in pipelines.items():
        functions = [s.get("function", "") for s in spec.get("steps", [])]
        functions += [p.get("function", "") if isinstance(p, dict) else p for p in spec.get("products", {}).values()]
        functions.append(spec.get("association_entry", "jwdask."))
        for variant in spec.get("variants", {}).values():
            if not str(variant).isidentifier():
                msg = f"pipeline {stage}: variant '{variant}' is not the name of a shipped pipeline"
                raise ParameterError(msg)
        for fn in functions:
            if not isinstance(fn, str) or not fn.startswith(config.step_modules):
                msg = (f"pipeline {stage}: '{fn}' is not in an allowed module "
                       f"({', '.join(config.step_modules)})")
                raise ParameterError(msg)
    return ProgramOptions(refs=refs, pipelines=pipelines, steps=body.steps,
                          stages=list(body.stages or known), tile=body.tile)


def _program(store: Store, program_id: str) -> Any:
    prog = store.program(program_id)
    if prog is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no program {program_id}")
    return prog


def _job(store: Store, program_id: str, job_id: int) -> Any:
    for j in _program(store, program_id).jobs:
        if j.id == job_id:
            return j
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"program {program_id} has no job {job_id}")


def _quicklook_source(products: Sequence[dict[str, str]]) -> str | None:
    by_suffix = {Path(p["url"]).stem.rsplit("_", 1)[-1]: p["url"] for p in products}
    return next((by_suffix[s] for s in QUICKLOOK_ORDER if s in by_suffix), None)


def serve(host: str, port: int, data_root: str | Path | Sequence[str | Path], scheduler: str | None,
          token: str, *, store_url: str | None = None, out_root: str | Path | None = None,
          max_programs: int = 2, n_workers: int | None = None, dashboard_url: str | None = None,
          lease_seconds: float = LEASE_SECONDS) -> None:
    """``jwdask serve``: run the service until interrupted.

    Parameters
    ----------
    host, port : str, int
        Where to listen.
    data_root : path or sequence of paths
        Folders submitted paths must lie in.
    scheduler : str, optional
        Dask scheduler address (default: a LocalCluster).
    token : str
        Bearer token (see :func:`read_token`).
    store_url : str, optional
        SQLAlchemy URL of the job store.
    out_root : path, optional
        Default output folder of programs.
    max_programs : int
        Programs running at once.
    n_workers : int, optional
        LocalCluster workers.
    dashboard_url : str, optional
        Dask dashboard link to show instead of the scheduler's own.
    lease_seconds : float
        Lease on a running program [s] (replicas sharing the store).
    """
    import uvicorn

    roots = [Path(data_root)] if isinstance(data_root, str | Path) else [Path(r) for r in data_root]
    config = ServiceConfig(data_roots=roots, token=token, scheduler=scheduler, store_url=store_url,
                           out_root=Path(out_root) if out_root else None, max_programs=max_programs,
                           n_workers=n_workers, dashboard_url=dashboard_url, lease_seconds=lease_seconds)
    uvicorn.run(create_app(config), host=host, port=port, log_level="info")
