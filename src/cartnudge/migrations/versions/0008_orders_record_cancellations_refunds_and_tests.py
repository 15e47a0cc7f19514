"""orders record cancellations, refunds and test orders; a shop says if test orders count

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

A cancelled or voided order no longer closes a cart, and a test order closes one only if
the shop says so (``shops.test_orders_close_carts``, no by default). What happens to an
order after it closed a cart is kept on its row, so measurement can net it out: when it
was cancelled, its payment status, whether any delivery showed it live (neither
cancelled nor voided), and how much was refunded (integer minor units, each
refund once, by its id). Rows stored before this version read as live, paid, not test.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cartnudge.db.types import Json, UtcDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Columns are added in place (ALTER TABLE … ADD COLUMN), never by batch mode's copy of
    # the table: on SQLite, dropping the old shops table would delete every row of every
    # shop with it.
    op.add_column("orders", sa.Column("cancelled_at", UtcDateTime(), nullable=True))
    op.add_column("orders", sa.Column("financial_status", sa.String(length=32), nullable=True))
    op.add_column(
        "orders", sa.Column("placed_live", sa.Boolean(), server_default=sa.true(), nullable=False)
    )
    op.add_column(
        "orders", sa.Column("test", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column("orders", sa.Column("refunds", Json, nullable=True))
    op.add_column(
        "orders", sa.Column("refunded_minor", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column(
        "shops",
        sa.Column(
            "test_orders_close_carts", sa.Boolean(), server_default=sa.false(), nullable=False
        ),
    )


def downgrade() -> None:
    # Columns are dropped in place, not by copying the table as batch mode would on SQLite:
    # dropping the old shops table would delete every row of every shop with it.
    op.drop_column("shops", "test_orders_close_carts")
    for column in (
        "refunded_minor",
        "refunds",
        "test",
        "placed_live",
        "financial_status",
        "cancelled_at",
    ):
        op.drop_column("orders", column)
