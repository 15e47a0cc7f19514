"""Today's figures tallied per shop and day

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-08

Today counted a month of carts on every visit (198 ms on SQLite, 415 ms on PostgreSQL with
a million carts). The loops now tally each shop's closed days (in the shop's time zone)
into ``day_tallies``, and the page adds up those rows and counts only the day still open.
Two indexes let a day's figures say whether a reminder was the cart's first and whether
an order was its cart's first to count as recovered, one index descent per row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cartnudge.db.types

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "day_tallies",
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("seen", sa.BigInteger(), nullable=False),
        sa.Column("reminded", sa.BigInteger(), nullable=False),
        sa.Column("recovered", sa.BigInteger(), nullable=False),
        sa.Column("sends", cartnudge.db.types.Json, nullable=False),
        sa.Column("revenue", cartnudge.db.types.Json, nullable=False),
        sa.Column("tallied_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_day_tallies_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("shop_id", "day", name=op.f("pk_day_tallies")),
    )
    op.create_index("ix_sends_shop_cart_sent", "sends", ["shop_id", "cart_id", "sent_at"])
    op.create_index("ix_orders_shop_cart", "orders", ["shop_id", "cart_id"])


def downgrade() -> None:
    op.drop_index("ix_orders_shop_cart", table_name="orders")
    op.drop_index("ix_sends_shop_cart_sent", table_name="sends")
    op.drop_table("day_tallies")
