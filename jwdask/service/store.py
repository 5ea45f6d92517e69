"""The durable record of programs and their jobs (SQLAlchemy; SQLite by default).

A *program* is one run of the program runner over a set of inputs into one output folder.
A *job* is one (exposure or association, stage) node of its dependency graph, with its
status, the products it wrote and their SHA-256 checksums (so a rerun can skip verified
products), and the file and reason of any error. Program log lines are kept too, for the
service's log view. Any SQLAlchemy URL works, so several runners or service replicas can
share one database (PostgreSQL, MySQL...).

A runner *claims* a program before running it (:meth:`Store.claim`: an atomic conditional
UPDATE setting ``owner`` and ``lease_until``), renews the lease while it runs and releases it
at the end, so two runners or service replicas sharing a store never run the same program;
a program whose runner died is taken over once its lease has expired. Lease times are UTC
from the runners' clocks, which are assumed to agree to well within a lease.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    and_,
    create_engine,
    event,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)

log = logging.getLogger(__name__)

__all__ = ["FINISHED", "Job", "JobStatus", "LogLine", "Program", "ProgramStatus", "Store", "sha256"]


class JobStatus:
    """Job states: ``pending`` -> ``running`` -> ``done`` | ``failed``; or ``skipped``
    (stage not available, or an upstream job failed) and ``cancelled``."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class ProgramStatus:
    """Program states: ``queued`` -> ``running`` -> ``done`` | ``failed`` (some job failed)
    | ``cancelled``."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (ProgramStatus.DONE, ProgramStatus.FAILED, ProgramStatus.CANCELLED)
"""Program states after which the runner does nothing more."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Program(Base):
    """One program: its inputs, output folder, options and overall status."""

    __tablename__ = "programs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    out_dir: Mapped[str] = mapped_column(Text)
    inputs: Mapped[list[str]] = mapped_column(JSON)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=ProgramStatus.QUEUED)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_until: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
    created: Mapped[datetime.datetime] = mapped_column(DateTime, default=_now)
    updated: Mapped[datetime.datetime] = mapped_column(DateTime, default=_now, onupdate=_now)
    jobs: Mapped[list[Job]] = relationship(back_populates="program", cascade="all, delete-orphan",
                                           order_by="Job.id")

    def to_dict(self, *, jobs: bool = False) -> dict[str, Any]:
        out = {"id": self.id, "name": self.name, "out_dir": self.out_dir, "inputs": self.inputs,
               "options": self.options, "status": self.status, "cancel_requested": self.cancel_requested,
               "error": self.error, "owner": self.owner,
               "lease_until": None if self.lease_until is None else self.lease_until.isoformat() + "Z",
               "created": self.created.isoformat() + "Z",
               "updated": self.updated.isoformat() + "Z", "stages": stage_summary(self.jobs)}
        if jobs:
            out["jobs"] = [j.to_dict() for j in self.jobs]
        return out


class Job(Base):
    """One (exposure or association, stage) node of a program's graph."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"), index=True)
    key: Mapped[str] = mapped_column(String(300))
    target: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str] = mapped_column(String(32))
    depends: Mapped[list[str]] = mapped_column(JSON, default=list)
    inputs: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING)
    products: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
    finished: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
    program: Mapped[Program] = relationship(back_populates="jobs")

    def to_dict(self) -> dict[str, Any]:
        def iso(t: datetime.datetime | None) -> str | None:
            return None if t is None else t.isoformat() + "Z"
        return {"id": self.id, "key": self.key, "target": self.target, "kind": self.kind,
                "stage": self.stage, "depends": self.depends, "inputs": self.inputs,
                "status": self.status, "products": self.products, "error": self.error,
                "error_file": self.error_file, "note": self.note, "attempts": self.attempts,
                "started": iso(self.started), "finished": iso(self.finished)}


class LogLine(Base):
    """One log message of a program."""

    __tablename__ = "log_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"), index=True)
    time: Mapped[datetime.datetime] = mapped_column(DateTime, default=_now)
    level: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)


def stage_summary(jobs: Sequence[Job]) -> dict[str, dict[str, int]]:
    """``{stage: {status: count, ..., "total": n}}`` in stage order of first appearance."""
    out: dict[str, dict[str, int]] = {}
    for j in jobs:
        counts = out.setdefault(j.stage, {"total": 0})
        counts[j.status] = counts.get(j.status, 0) + 1
        counts["total"] += 1
    return out


def sha256(path: str | Path, *, block: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes (read in 4 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def default_url(folder: str | Path) -> str:
    """The SQLite URL of the store kept in ``folder`` (``jwdask-jobs.sqlite``)."""
    path = Path(folder).resolve() / "jwdask-jobs.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class Store:
    """The job store behind a SQLAlchemy URL; creates its tables on first use.

    Parameters
    ----------
    url : str
        Any SQLAlchemy database URL (``sqlite:////abs/path.sqlite``, ``postgresql://...``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, future=True, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            Base.metadata.create_all(self.engine)
        except OperationalError:
            time.sleep(0.5)  # another process was creating the tables at the same time
            Base.metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success, rolled back on error."""
        with self._sessions() as s, s.begin():
            yield s

    # -------------------------------------------------------------- programs
    def create_program(self, name: str, out_dir: str, inputs: Sequence[str], options: dict[str, Any],
                       program_id: str | None = None) -> Program:
        """Record a new queued program and return it."""
        with self.session() as s:
            prog = Program(id=program_id or uuid.uuid4().hex[:12], name=name, out_dir=out_dir,
                           inputs=list(inputs), options=options, status=ProgramStatus.QUEUED)
            s.add(prog)
        return prog

    def program(self, program_id: str) -> Program | None:
        with self.session() as s:
            prog = s.get(Program, program_id)
            if prog is not None:
                _ = list(prog.jobs)
            return prog

    def program_for_out_dir(self, out_dir: str) -> Program | None:
        """The most recent program writing into ``out_dir`` (for resuming from the CLI)."""
        with self.session() as s:
            return s.scalars(select(Program).where(Program.out_dir == out_dir)
                             .order_by(Program.created.desc())).first()

    def programs(self) -> list[Program]:
        """All programs, newest first, with their jobs loaded."""
        with self.session() as s:
            progs = list(s.scalars(select(Program).order_by(Program.created.desc())))
            for p in progs:
                _ = list(p.jobs)
            return progs

    def unfinished(self) -> list[str]:
        """Ids of programs that are queued or running (to resume after a restart)."""
        with self.session() as s:
            return list(s.scalars(select(Program.id).where(Program.status.not_in(FINISHED))
                                  .order_by(Program.created)))

    def update_program(self, program_id: str, **fields: Any) -> None:
        with self.session() as s:
            prog = s.get(Program, program_id)
            for k, v in fields.items():
                setattr(prog, k, v)

    def request_cancel(self, program_id: str) -> bool:
        """Flag a program for cancellation; False if it is already finished."""
        with self.session() as s:
            prog = s.get(Program, program_id)
            if prog is None or prog.status in FINISHED:
                return False
            prog.cancel_requested = True
            if prog.status == ProgramStatus.QUEUED:
                prog.status = ProgramStatus.CANCELLED
                for j in prog.jobs:
                    if j.status in (JobStatus.PENDING, JobStatus.RUNNING):
                        j.status = JobStatus.CANCELLED
            return True

    def claim(self, program_id: str, owner: str, seconds: float, *, unfinished_only: bool = False) -> bool:
        """Take (or renew) the lease on a program for ``seconds`` [s]: atomically, only if
        nobody holds it, ``owner`` holds it, or its lease has expired (and, with
        ``unfinished_only``, only if the program is not finished). True if taken."""
        now = _now()
        where = and_(Program.id == program_id, or_(Program.owner.is_(None), Program.owner == owner,
                                                   Program.lease_until.is_(None), Program.lease_until < now))
        if unfinished_only:
            where = and_(where, Program.status.not_in(FINISHED))
        return self._lease_update(where, owner=owner, lease_until=now + datetime.timedelta(seconds=seconds))

    def renew(self, program_id: str, owner: str, seconds: float) -> bool:
        """Extend ``owner``'s lease by ``seconds`` [s] from now; False if it no longer holds it."""
        return self._lease_update(and_(Program.id == program_id, Program.owner == owner),
                                  lease_until=_now() + datetime.timedelta(seconds=seconds))

    def release(self, program_id: str, owner: str) -> bool:
        """Give up ``owner``'s lease (if it still holds it)."""
        return self._lease_update(and_(Program.id == program_id, Program.owner == owner),
                                  owner=None, lease_until=None)

    def claimable(self) -> list[str]:
        """Ids of unfinished programs that nobody holds or whose lease has expired (oldest
        first): what a service replica may resume."""
        with self.session() as s:
            free = or_(Program.owner.is_(None), Program.lease_until.is_(None), Program.lease_until < _now())
            return list(s.scalars(select(Program.id).where(Program.status.not_in(FINISHED), free)
                                  .order_by(Program.created)))

    def _lease_update(self, where: Any, **values: Any) -> bool:
        """One conditional UPDATE of a program's lease columns; True if it matched a row."""
        with self.session() as s:
            result = s.execute(update(Program).where(where).values(**values)
                               .execution_options(synchronize_session=False))
            return result.rowcount == 1

    def cancel_requested(self, program_id: str) -> bool:
        with self.session() as s:
            return bool(s.scalar(select(Program.cancel_requested).where(Program.id == program_id)))

    # -------------------------------------------------------------- jobs
    def sync_jobs(self, program_id: str, specs: Sequence[dict[str, Any]]) -> dict[str, Job]:
        """Make the program's jobs match ``specs`` (dicts with ``key, target, kind, stage,
        depends, inputs``): new keys are added as pending, known keys keep their state, and
        jobs no longer planned are removed. Returns the jobs by key."""
        with self.session() as s:
            prog = s.get(Program, program_id)
            existing = {j.key: j for j in prog.jobs}
            wanted = {spec["key"] for spec in specs}
            for key, job in existing.items():
                if key not in wanted:
                    s.delete(job)
            for spec in specs:
                job = existing.get(spec["key"])
                if job is None:
                    job = Job(program_id=program_id, status=JobStatus.PENDING, attempts=0, products=[],
                              **spec)
                    s.add(job)
                else:
                    for k in ("target", "kind", "stage", "depends", "inputs"):
                        setattr(job, k, spec[k])
            s.flush()
            rows = s.scalars(select(Job).where(Job.program_id == program_id).order_by(Job.id))
            return {j.key: j for j in rows}

    def jobs(self, program_id: str) -> list[Job]:
        with self.session() as s:
            return list(s.scalars(select(Job).where(Job.program_id == program_id).order_by(Job.id)))

    def update_job(self, job_id: int, **fields: Any) -> None:
        with self.session() as s:
            job = s.get(Job, job_id)
            for k, v in fields.items():
                setattr(job, k, v)

    # -------------------------------------------------------------- logs
    def log(self, program_id: str, level: str, message: str) -> None:
        with self.session() as s:
            s.add(LogLine(program_id=program_id, level=level, message=message))

    def logs(self, program_id: str, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Log lines with id > ``after`` (oldest first)."""
        with self.session() as s:
            rows = s.scalars(select(LogLine).where(LogLine.program_id == program_id, LogLine.id > after)
                             .order_by(LogLine.id).limit(limit))
            return [{"id": r.id, "time": r.time.isoformat() + "Z", "level": r.level, "message": r.message}
                    for r in rows]


def _add_missing_columns(engine: Engine) -> None:
    """Add the columns of this version's tables that a store made by an older one lacks."""
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            have = {c["name"] for c in inspect(conn).get_columns(table.name)}
            for column in table.columns:
                if column.name not in have:
                    kind = column.type.compile(dialect=engine.dialect)
                    log.info("job store %s: adding column %s.%s", engine.url, table.name, column.name)
                    conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL and a busy timeout, so the service and a runner can share one SQLite file."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
