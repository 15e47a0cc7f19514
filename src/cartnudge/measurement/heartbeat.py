"""The loops' heartbeat: each loops process writes when it last finished a pass, and
/readyz reads whether any did recently. A row per process (host and pid), so several
workers on PostgreSQL each have their own; rows of processes gone a day are removed."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from cartnudge.db.models import Heartbeat

BEAT_INTERVAL_S = 10.0  # how often a loops process writes its beat
STALE_AFTER = timedelta(seconds=60)  # no beat for this long: the loops are not running
FORGET_AFTER = timedelta(days=1)
beats = Heartbeat


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:255]


def beat(conn: Connection, worker: str, now: datetime) -> None:
    """Record that ``worker`` is alive at ``now``; forget workers silent for a day."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(beats).values(worker=worker, at=now)
    conn.execute(stmt.on_conflict_do_update(index_elements=["worker"], set_={"at": now}))
    conn.execute(delete(beats).where(beats.c.at < now - FORGET_AFTER))


def last_beat(conn: Connection) -> datetime | None:
    """The latest beat of any loops process, or None when none ever beat."""
    value = conn.scalar(select(func.max(beats.c.at)))
    return value if isinstance(value, datetime) else None
