"""Units of work. The edge that opens one commits it or rolls it back; nothing else does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from cartnudge.db.turnstile import turnstile


@contextmanager
def writing(engine: Engine, holder: str = "other") -> Iterator[Connection]:
    """A transaction that will write: commits on success, rolls back on any exception.
    On a SQLite file it first waits its turn (``turnstile``), timed under ``holder``."""
    with turnstile(engine, holder), engine.connect() as conn:
        conn.execution_options(immediate=True)
        with conn.begin():
            yield conn


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only unit of work; whatever it began is rolled back at the end."""
    with engine.connect() as conn:
        yield conn


@contextmanager
def each_statement(engine: Engine, holder: str = "other") -> Iterator[Connection]:
    """Statements that each commit on their own, for a write that is one statement and must
    be durable before the caller goes on (the sender's hand-off): on PostgreSQL that saves
    the BEGIN and COMMIT round trips. SQLite has no round trips to save (and its driver's
    autocommit does not mix with our BEGIN IMMEDIATE), so there they share one transaction."""
    if engine.dialect.name == "sqlite":
        with writing(engine, holder) as conn:
            yield conn
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        yield conn
