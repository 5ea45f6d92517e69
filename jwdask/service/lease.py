"""A runner's lease on a program: claimed in the store, renewed while it runs, released.

Two runners (two ``jwdask program run`` on one folder, or two service replicas on one
shared store) never run the same program: each claims it first with an atomic conditional
UPDATE (:meth:`jwdask.service.store.Store.claim`). The holder renews the lease from a
background thread every third of its length; a runner that dies stops renewing, and once
its lease has expired another may take the program over. A holder whose lease was taken
(it stalled longer than the lease) notices at its next renewal and stops without touching
the program's records.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from types import TracebackType
from typing import Self

from jwdask.errors import JwdaskError
from jwdask.service.store import Store

log = logging.getLogger(__name__)

__all__ = ["LEASE_SECONDS", "Lease", "ProgramBusy", "busy", "new_owner"]

LEASE_SECONDS = 60.0
"""Default length of a lease [s]: how long a program stays held after its runner died."""


class ProgramBusy(JwdaskError):
    """Another runner holds the program's lease."""


def busy(store: Store, program_id: str) -> ProgramBusy:
    """The error of a program that could not be claimed, naming who holds it and until when."""
    prog = store.program(program_id)
    if prog is not None and prog.owner and prog.lease_until:
        held = f"is held by runner {prog.owner} until {prog.lease_until:%Y-%m-%d %H:%M:%S} UTC"
    else:
        held = f"is {prog.status if prog else 'missing'}"
    return ProgramBusy(f"program {program_id} {held}; another runner is running it (it is "
                       "taken over once that runner's lease expires)")


def new_owner() -> str:
    """A runner's owner id: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """The lease of ``owner`` on a program, held while the context is open.

    Parameters
    ----------
    store : Store
        The shared job store.
    program_id : str
        The program.
    owner : str
        Who holds it (:func:`new_owner`).
    seconds : float
        Lease length [s]; renewed every ``seconds / 3``.
    unfinished_only : bool
        Claim only if the program is not finished (a service resuming programs).

    Raises
    ------
    ProgramBusy
        On entry, if another owner holds an unexpired lease (or, with ``unfinished_only``,
        the program is finished).
    """

    def __init__(self, store: Store, program_id: str, owner: str, seconds: float = LEASE_SECONDS, *,
                 unfinished_only: bool = False) -> None:
        self.store, self.program_id, self.owner, self.seconds = store, program_id, owner, seconds
        self.unfinished_only = unfinished_only
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        if not self.store.claim(self.program_id, self.owner, self.seconds, unfinished_only=self.unfinished_only):
            raise busy(self.store, self.program_id)
        self._thread = threading.Thread(target=self._renew, name=f"jwdask-lease-{self.program_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        if not self.lost.is_set():
            self.store.release(self.program_id, self.owner)

    def _renew(self) -> None:
        while not self._done.wait(self.seconds / 3):
            try:
                held = self.store.renew(self.program_id, self.owner, self.seconds)
            except Exception:  # a store hiccup: try again at the next period
                log.warning("program %s: could not renew the lease", self.program_id, exc_info=True)
                continue
            if not held:
                log.error("program %s: lease lost to another runner; stopping", self.program_id)
                self.lost.set()
                return
