"""One writer at a time on a SQLite file, in the order they come, across processes.

SQLite lets one connection write at a time. A connection that finds the write lock taken
sleeps and tries again (its busy handler: 1 ms, 2 ms, 5 ms … then every 100 ms), so a
writer that has waited a while looks again only every 100 ms, and one that writes often
(the ingest writer's batches, the sender's hand-offs) can take the lock in between again
and again: under load the other waits seconds. The turnstile queues writers in the kernel
instead: a lock on a file next to the database (``flock``), waited for without polling
and handed on as soon as it is let go, with a thread lock in front of it so the threads
of one process queue too (``flock`` excludes open files, not threads). A process that
dies lets go of its turn with its files.

PostgreSQL and in-memory databases have no turnstile: PostgreSQL locks rows, not the
database, and an in-memory database lives in one process.

Each turn is timed, waiting and holding, by holder (``/metrics``): every webhook waits
behind whoever holds the turn, so that is where an acknowledgement's tail is found.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sqlalchemy import Engine

from cartnudge.measurement.metrics import WRITE_TURN_HELD, WRITE_TURN_WAITED


class _Turnstile:
    def __init__(self, path: str) -> None:
        self.threads = threading.Lock()
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.closer = weakref.finalize(self, os.close, self.fd)

    @contextmanager
    def turn(self, holder: str) -> Iterator[None]:
        asked = time.perf_counter()
        with self.threads:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            got = time.perf_counter()
            try:
                yield
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                WRITE_TURN_HELD.labels(holder).observe(time.perf_counter() - got)
                WRITE_TURN_WAITED.labels(holder).observe(got - asked)


_made = threading.Lock()
_turnstiles: weakref.WeakKeyDictionary[Engine, _Turnstile | None] = weakref.WeakKeyDictionary()


def turnstile(engine: Engine, holder: str = "other") -> AbstractContextManager[None]:
    """Wait for this process's and then this database's turn to write; hold it inside.
    ``holder`` names who takes the turn, for the turn's timing on ``/metrics``."""
    try:
        found = _turnstiles[engine]
    except KeyError:
        with _made:
            found = _turnstiles.setdefault(engine, _make(engine))
    return found.turn(holder) if found is not None else nullcontext()


def _make(engine: Engine) -> _Turnstile | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return _Turnstile(f"{database}-turnstile")
