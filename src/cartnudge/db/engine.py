"""Engines for both supported databases, configured the same way everywhere."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from cartnudge.db.turnstile import turnstile

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000  # a second process waits this long for the write lock
CHECKPOINT_PATIENCE_S = 10.0  # how long a checkpoint after an erasure keeps trying
CHECKPOINT_TRY_MS = 200  # one try waits this long for readers, holding the write lock
CHECKPOINT_PAUSE_S = 0.2  # between tries, other writers go first


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# orjson for JSON columns: several times faster than the standard library on the hot path.
_JSON = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}


def make_engine(
    url: str, *, pool_size: int = 5, echo: bool = False, pre_ping: bool = True
) -> Engine:
    """Create an engine. SQLite gets WAL and a busy timeout; PostgreSQL a sized pool whose
    connections are tested with a round trip before each use, unless ``pre_ping`` is off
    for a caller that retries on a dropped connection itself (the ingest writer)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            hide_parameters=True,  # a database error in a log never shows the row's values
            **_JSON,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(
        url,
        echo=echo,
        hide_parameters=True,
        **_JSON,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
    )


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is off so that BEGIN is ours (see _sqlite_on_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before we acknowledge the webhook that caused it.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted and overwritten content is zeroed in its page, not just marked free: an erased
    # shopper's bytes do not wait in free space for a page to be reused.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # A writing transaction (see ``cartnudge.db.session.writing``) takes the write lock up
    # front with IMMEDIATE, so two writers queue on busy_timeout instead of failing late
    # with "database is locked"; reads begin deferred and never block anyone.
    if conn.get_execution_options().get("immediate"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def forget_old_copies(
    engine: Engine, tables: Iterable[str], *, patience_s: float | None = None
) -> bool:
    """After committed erasures: let the database drop the old copies of the rows they
    changed, as far as it can. True when that is done.

    SQLite keeps each changed page's earlier version in the WAL file until a checkpoint
    copies the new ones into the database (whose freed space ``secure_delete`` zeroes) and
    truncates the WAL. A checkpoint waits for readers of an older snapshot (another
    process's loop, a web request), so it is tried again, giving writers their turn in
    between, for ``patience_s`` (default ``CHECKPOINT_PATIENCE_S``); False when readers
    held it up all that time (the old copies then stay in the WAL until a later checkpoint
    completes: the privacy run tries every time). ``tables`` is not needed there: the
    checkpoint covers the whole file.

    PostgreSQL: a plain VACUUM of ``tables`` (outside a transaction), which removes the
    dead row versions and their index entries; their bytes stay in free page space, the
    WAL and backups until reused or recycled (docs/privacy.md). False if it failed."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            return True  # nothing on disk
        patience = CHECKPOINT_PATIENCE_S if patience_s is None else patience_s
        return _checkpoint(engine, time.monotonic() + patience)
    names = sorted(set(tables))
    if not names:
        return True
    quoted = ", ".join(engine.dialect.identifier_preparer.quote(name) for name in names)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM {quoted}")
    except SQLAlchemyError as exc:
        log.warning(
            "vacuum after an erasure failed (%s); autovacuum will do it", type(exc).__name__
        )
        return False
    return True


def _checkpoint(engine: Engine, deadline: float) -> bool:
    while True:
        if _checkpoint_once(engine):
            return True
        if time.monotonic() >= deadline:
            log.warning(
                "WAL checkpoint after an erasure kept busy by readers; a later one completes it"
            )
            return False
        time.sleep(CHECKPOINT_PAUSE_S)


def _checkpoint_once(engine: Engine) -> bool:
    """One TRUNCATE checkpoint, waiting briefly for readers; whether it completed. Taken
    in turn with the other writers (``turnstile``), so none of ours races it for the lock."""
    with turnstile(engine):
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout={CHECKPOINT_TRY_MS}")
                busy = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.OperationalError:  # locked by another checkpoint
                busy = 1
            finally:
                cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                cursor.close()
        finally:
            raw.close()
    return not busy
