"""Statements that need a dialect's own syntax, written once for both engines.

Hot-path statements are built once and executed with parameter dicts: SQLAlchemy then
reuses the compiled form instead of building bind parameters and cache keys per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection, Executable, Table, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite


@cache
def _insert_ignore(
    dialect: str, table: Table, conflict: tuple[str, ...], returning: str | None
) -> Any:
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    return stmt.returning(table.c[returning]) if returning else stmt


def insert_ignore(
    conn: Connection,
    table: Table,
    values: dict[str, Any],
    *,
    conflict: Sequence[str],
    returning: str = "id",
) -> Any | None:
    """``INSERT … ON CONFLICT DO NOTHING``; returns the new row's ``returning`` column,
    or ``None`` when the row already existed (the dedupe answer)."""
    stmt: Executable = _insert_ignore(conn.dialect.name, table, tuple(conflict), returning)
    return conn.execute(stmt, values).scalar_one_or_none()


def insert_many_ignore(
    conn: Connection, table: Table, rows: list[dict[str, Any]], *, conflict: Sequence[str]
) -> None:
    if not rows:
        return
    stmt: Executable = _insert_ignore(conn.dialect.name, table, tuple(conflict), None)
    conn.execute(stmt, rows)


def insert_many_returning(
    conn: Connection,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    conflict: Sequence[str],
    returning: tuple[str, ...],
) -> list[Any]:
    """Multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING``: the rows that were new."""
    if not rows:
        return []
    stmt: Executable = _insert_many_returning(conn.dialect.name, table, tuple(conflict), returning)
    return list(conn.execute(stmt, rows))


@cache
def _insert_many_returning(
    dialect: str, table: Table, conflict: tuple[str, ...], returning: tuple[str, ...]
) -> Any:
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    return stmt.returning(*(table.c[name] for name in returning))


def insert_many_ids(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows into a table keyed by an integer ``id``; their new ids, in row order."""
    if not rows:
        return []
    if conn.dialect.name == "sqlite":
        # SQLite cannot tell which RETURNING row belongs to which input row, so SQLAlchemy
        # would insert one row per statement. A writing transaction holds SQLite's only
        # write lock (BEGIN IMMEDIATE), so the ids SQLite would give next, max(id) + 1
        # onwards, can be given here; the primary key refuses any mistake.
        last = conn.execute(_max_id(table)).scalar_one()
        ids = list(range(last + 1, last + 1 + len(rows)))
        conn.execute(insert(table), [{**row, "id": i} for row, i in zip(rows, ids, strict=True)])
        return ids
    return [int(i) for i in conn.execute(_insert_returning_id(table), rows).scalars()]


@cache
def _max_id(table: Table) -> Any:
    return select(func.coalesce(func.max(table.c.id), 0))


@cache
def _insert_returning_id(table: Table) -> Any:
    return insert(table).returning(table.c.id, sort_by_parameter_order=True)
