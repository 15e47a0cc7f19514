"""The audit log: every owner-visible change of state, whichever stage made it, leaves a row
saying who, when, why, before and after. One insert every stage may use, so none reaches
into another's repository to write it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from cartnudge.db.models import AuditEntry
from cartnudge.db.portable import insert_many

_AUDIT = AuditEntry


def write_audit(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        insert_many(conn, _AUDIT, rows)
