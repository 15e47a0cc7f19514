"""deliveries are found by their external id first

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

The inbox's unique key was (shop, source, external id). Ingest asks which deliveries of a
batch it has already recorded before it applies them; PostgreSQL, before its statistics
caught up with a growing table, answered by reading every delivery of the shop and
filtering. Led by the external id, the key is one index descent per delivery on any
statistics (as 0012 did for cart keys).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _unique_key("uq_inbox_events_shop_id_source_external_id", "external_id", "shop_id", "source")


def downgrade() -> None:
    _unique_key("uq_inbox_events_external_id_shop_id_source", "shop_id", "source", "external_id")


def _unique_key(old: str, *columns: str) -> None:
    # Nothing refers to inbox_events, so SQLite's copy of the table (batch mode) drops no
    # rows elsewhere when it replaces the old one.
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.drop_constraint(old, type_="unique")
        batch_op.create_unique_constraint(f"uq_inbox_events_{'_'.join(columns)}", list(columns))
