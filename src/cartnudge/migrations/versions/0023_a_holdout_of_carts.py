"""a share of each shop's carts is held out, to measure what reminders add

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-08

``shops.holdout_percent``: the share of carts that get no reminder (0 for the shops that
exist now, so an upgrade changes no shop's sending; shops added later default to 10).
``carts.held_out`` and ``assigned_at``: decided once per cart, when its first reminder
comes due.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cartnudge.db.types

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # In place (ALTER TABLE), never by batch mode's copy of the table: on SQLite, dropping
    # the old shops table would delete every row that belongs to a shop.
    op.add_column(
        "shops", sa.Column("holdout_percent", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("carts", sa.Column("held_out", sa.Boolean(), nullable=True))
    op.add_column(
        "carts",
        sa.Column("assigned_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("carts", "assigned_at")
    op.drop_column("carts", "held_out")
    op.drop_column("shops", "holdout_percent")
