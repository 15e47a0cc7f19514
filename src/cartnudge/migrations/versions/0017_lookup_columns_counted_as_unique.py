"""the planner counts lookup columns as (nearly) unique, whatever its last sample saw

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08

Ingest looks a batch's deliveries up by external id and its carts by key value, one index
descent per value (``db.portable.select_in``). PostgreSQL chose a scan of the whole table
for each value instead when its last statistics came from a sample in which those columns
repeated (a handful of rows, early on): it then expected thousands of rows per value. Both
columns are nearly unique by nature (unique with the shop and source, or kind), so the
number of distinct values is set to "as many as rows" (``n_distinct = -1``), which every
later ANALYZE keeps; the tables are analysed once now so it holds from here. Nothing to do
on SQLite, whose planner has no such statistics.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("inbox_events", "external_id"), ("cart_keys", "value"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET (n_distinct = -1)")
        op.execute(f"ANALYZE {table}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} RESET (n_distinct)")
