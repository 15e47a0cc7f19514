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
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sqlalchemy import Engine


class _Turnstile:
    def __init__(self, path: str) -> None:
        self.threads = threading.Lock()
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.closer = weakref.finalize(self, os.close, self.fd)

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self.threads:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)


_made = threading.Lock()
_turnstiles: weakref.WeakKeyDictionary[Engine, _Turnstile | None] = weakref.WeakKeyDictionary()


def turnstile(engine: Engine) -> AbstractContextManager[None]:
    """Wait for this process's and then this database's turn to write; hold it inside."""
    try:
        found = _turnstiles[engine]
    except KeyError:
        with _made:
            found = _turnstiles.setdefault(engine, _make(engine))
    return found.turn() if found is not None else nullcontext()


def _make(engine: Engine) -> _Turnstile | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return _Turnstile(f"{database}-turnstile")
