"""Statements that need a dialect's own syntax, written once for both engines.

Hot-path statements are built once and executed with parameter dicts: SQLAlchemy then
reuses the compiled form instead of building bind parameters and cache keys per call.

Many rows at once on PostgreSQL go in as one array per column, ``INSERT … SELECT … FROM
unnest(…)``: the statement's text is the same for 1 row or 1,000, so psycopg parses it
once and the server prepares it once, where a multi-row ``VALUES`` list is a new statement
of thousands of placeholders at every size (measured in bench/README.md, *Intake*).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Executable,
    Row,
    Table,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.types import TypeEngine


def insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows (each with the same keys)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        _unnest(conn, table, rows, conflict=None, returning=())
    else:
        conn.execute(_insert(table), rows)


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
    if conn.dialect.name == "postgresql":
        return _unnest(conn, table, rows, conflict=tuple(conflict), returning=returning)
    stmt: Executable = _sqlite_insert_many_returning(table, tuple(conflict), returning)
    return list(conn.execute(stmt, rows))


@cache
def _sqlite_insert_many_returning(
    table: Table, conflict: tuple[str, ...], returning: tuple[str, ...]
) -> Any:
    stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    return stmt.returning(*(table.c[name] for name in returning))


def select_in(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    *,
    where: dict[str, Any],
    column: str,
    values: Sequence[Any],
) -> list[tuple[Any, ...]]:
    """``SELECT columns FROM table WHERE <each of where equal> AND column IN values``.

    Never a row-value ``(a, b) IN (...)``: SQLite answers that with a scan of the table.

    On PostgreSQL the values go in as one array, so the text is the same at any count, and
    each is looked up on its own (``unnest`` then a ``LATERAL`` subquery that ``OFFSET 0``
    keeps from being flattened into a join): an index that leads with ``column`` is then
    descended once per value. A planner whose statistics lag a growing table judged
    ``column = ANY(array)`` cheaper by reading every row of the shop, or of the table (a key
    lookup took 3.8 ms, 0.7 ms by the index); it runs unprepared, as psycopg would
    otherwise fix one generic plan for any values."""
    if not values:
        return []
    names = tuple(sorted(where))
    params = {**where, "_values": list(values)}
    if conn.dialect.name != "postgresql":
        return [
            tuple(row) for row in conn.execute(_select_in(table, columns, names, column), params)
        ]
    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        sql = _pg_select_in(conn.dialect, table, columns, names, column)
        cursor.execute(sql, params, prepare=False)
        return list(cursor.fetchall())
    finally:
        cursor.close()


@cache
def _select_in(table: Table, columns: tuple[str, ...], names: tuple[str, ...], column: str) -> Any:
    return select(*(table.c[name] for name in columns)).where(
        *(table.c[name] == bindparam(name) for name in names),
        table.c[column].in_(bindparam("_values", expanding=True)),
    )


@cache
def _pg_select_in(
    dialect: Dialect, table: Table, columns: tuple[str, ...], names: tuple[str, ...], column: str
) -> str:
    quote = dialect.identifier_preparer.quote
    conditions = [f"{quote(column)} = _wanted._value"]
    conditions += [f"{quote(name)} = %({name})s" for name in names]
    selected = ", ".join(quote(name) for name in columns)
    where = " AND ".join(conditions)
    kind = _sql_type(dialect, table.c[column].type)
    # Identifiers from our own table metadata, quoted; every value is a parameter.
    return (
        f"SELECT _found.* FROM unnest(%(_values)s::{kind}[]) AS _wanted (_value)"  # noqa: S608
        " CROSS JOIN LATERAL"
        f" (SELECT {selected} FROM {dialect.identifier_preparer.format_table(table)}"
        f" WHERE {where} OFFSET 0) AS _found"
    )


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
    # The rows go in in their order (ORDER BY their ordinal) and a sequence hands out
    # ascending ids, so the returned ids sorted are the rows' ids in row order (the same
    # reasoning SQLAlchemy's own ``sort_by_parameter_order`` uses on PostgreSQL).
    returned = _unnest(conn, table, rows, conflict=None, returning=("id",))
    return sorted(int(r.id) for r in returned)


@cache
def _max_id(table: Table) -> Any:
    return select(func.coalesce(func.max(table.c.id), 0))


def _sql_type(dialect: Dialect, column_type: TypeEngine[Any]) -> str:
    """How ``dialect`` spells a column's type (``VARCHAR(255)``), for a cast."""
    return dialect.type_compiler_instance.process(column_type.dialect_impl(dialect))


@cache
def _insert(table: Table) -> Any:
    return insert(table)


@dataclass(frozen=True)
class _UnnestInsert:
    sql: str
    columns: tuple[str, ...]
    defaults: tuple[Any, ...]  # Python-side scalar defaults of the columns rows leave out
    processors: tuple[Any, ...]  # each column's bind processor (or None), as SQLAlchemy's


def _unnest(
    conn: Connection,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    conflict: tuple[str, ...] | None,
    returning: tuple[str, ...],
) -> list[Row[Any]]:
    """``INSERT INTO table (…) SELECT … FROM unnest(array per column)`` on PostgreSQL."""
    plan = _unnest_plan(conn.dialect, table, tuple(rows[0]), conflict, returning)
    columns = [[row[name] for row in rows] for name in plan.columns]
    columns += [[value] * len(rows) for value in plan.defaults]
    arrays = {
        f"c{i}": [process(v) for v in values] if process else values
        for i, (process, values) in enumerate(zip(plan.processors, columns, strict=True))
    }
    result = conn.exec_driver_sql(plan.sql, arrays)
    return list(result) if returning else []


@cache
def _unnest_plan(
    dialect: Dialect,
    table: Table,
    columns: tuple[str, ...],
    conflict: tuple[str, ...] | None,
    returning: tuple[str, ...],
) -> _UnnestInsert:
    preparer = dialect.identifier_preparer
    absent = [c for c in table.columns if c.name not in columns and c.default is not None]
    if any(not c.default.is_scalar for c in absent):  # type: ignore[union-attr]
        raise ValueError(f"{table.name}: rows leave out a column with a computed default")
    names = columns + tuple(c.name for c in absent)
    types = [table.c[name].type for name in names]
    casts = [f"%(c{i})b::{_sql_type(dialect, t)}[]" for i, t in enumerate(types)]
    quoted = ", ".join(preparer.quote(name) for name in names)
    sql = f"INSERT INTO {preparer.format_table(table)} ({quoted}) SELECT {quoted} "
    sql += f"FROM unnest({', '.join(casts)}) WITH ORDINALITY AS u ({quoted}, _n) ORDER BY _n"
    if conflict is not None:
        sql += f" ON CONFLICT ({', '.join(preparer.quote(c) for c in conflict)}) DO NOTHING"
    if returning:
        sql += " RETURNING " + ", ".join(preparer.quote(name) for name in returning)
    return _UnnestInsert(
        sql,
        columns,
        tuple(c.default.arg for c in absent),  # type: ignore[union-attr]
        tuple(t.dialect_impl(dialect).bind_processor(dialect) for t in types),
    )


def after_pair(
    at: ColumnElement[Any],
    key: ColumnElement[Any],
    after: tuple[Any, Any],
    *,
    descending: bool = False,
) -> ColumnElement[bool]:
    """Keyset paging's condition: the rows that come after ``after`` in the order of
    (``at``, ``key``), ascending or descending. Written out rather than as a row value,
    which some SQLite versions answer with a scan."""
    at_value, key_value = after
    if descending:
        return or_(at < at_value, and_(at == at_value, key < key_value))
    return or_(at > at_value, and_(at == at_value, key > key_value))
