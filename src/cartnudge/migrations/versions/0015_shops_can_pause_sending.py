"""a shop's sending can be paused

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

The owner's kill switch: while ``paused_at`` is set, no reminder of the shop is handed to
its provider; each waits, held, and goes once sending resumes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cartnudge.db.types

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # In place (ALTER TABLE), never by batch mode's copy of the table: on SQLite, dropping
    # the old shops table would delete every row that belongs to a shop.
    op.add_column(
        "shops",
        sa.Column("paused_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=True),
    )
    op.add_column("shops", sa.Column("paused_by", sa.String(length=64), nullable=True))
    op.add_column("shops", sa.Column("paused_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("shops", "paused_reason")
    op.drop_column("shops", "paused_by")
    op.drop_column("shops", "paused_at")
