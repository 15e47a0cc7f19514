"""indexes for the dashboard's Today

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08

Today counts a shop's carts first seen, reminders sent and orders placed in a window, and
its sends by outcome and day: each on an index led by the shop, so the page costs the same
with a thousand carts or a million.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_carts_shop_first", "carts", ["shop_id", "first_activity_at"]),
    ("ix_orders_shop_placed", "orders", ["shop_id", "placed_at"]),
    ("ix_sends_shop_status", "sends", ["shop_id", "status", "updated_at"]),
    ("ix_sends_shop_sent", "sends", ["shop_id", "sent_at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
