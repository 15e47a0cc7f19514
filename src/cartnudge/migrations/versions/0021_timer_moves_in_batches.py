"""a big shop's rules change moves its open carts' timers in batches

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-08

A rules change moved every open cart's timer in the change's own transaction, reading
them all at once: with a million open carts that held the database for many seconds and
the web process's memory for hundreds of MiB. Now the change moves the first batch and
records where it stopped; the loops move the rest, a batch per transaction.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cartnudge.db.types

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "timer_moves",
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "after_activity_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("after_cart_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_timer_moves_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("shop_id", name=op.f("pk_timer_moves")),
    )


def downgrade() -> None:
    op.drop_table("timer_moves")
