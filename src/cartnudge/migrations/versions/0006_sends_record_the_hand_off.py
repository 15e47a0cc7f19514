"""sends record when each email was handed to its provider

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

A claimed send (``sending``) is handed over one email at a time, each hand-off committed
just before the provider is called and only while the cart is still open. A worker that
stops leaves sends it claimed but never handed over: those are safe to send again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cartnudge.db.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("handed_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=True)
        )
    # Sends claimed before this version may have been handed over already: count them as
    # handed, so one a stopped worker left behind is still never sent twice.
    op.execute("UPDATE sends SET handed_at = sent_at WHERE status <> 'queued'")


def downgrade() -> None:
    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.drop_column("handed_at")
