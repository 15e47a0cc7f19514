"""Units of work. The edge that opens one commits it or rolls it back; nothing else does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: commits on success, rolls back on any exception."""
    with engine.connect() as conn:
        conn.execution_options(immediate=True)
        with conn.begin():
            yield conn


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only unit of work; whatever it began is rolled back at the end."""
    with engine.connect() as conn:
        yield conn
