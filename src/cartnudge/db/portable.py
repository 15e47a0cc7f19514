"""Statements that need a dialect's own syntax, written once for both engines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignore(
    conn: Connection,
    table: Table,
    values: dict[str, Any],
    *,
    conflict: Sequence[str],
    returning: str | None = "id",
) -> Any | None:
    """``INSERT … ON CONFLICT DO NOTHING``; returns the new row's ``returning`` column,
    or ``None`` when the row already existed (the dedupe answer)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=conflict)
    if returning is None:
        return conn.execute(stmt).rowcount or None
    return conn.execute(stmt.returning(table.c[returning])).scalar_one_or_none()


def insert_many_ignore(
    conn: Connection, table: Table, rows: list[dict[str, Any]], *, conflict: Sequence[str]
) -> None:
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).on_conflict_do_nothing(index_elements=conflict), rows)
