"""orders keep the newest snapshot of each order

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

Two deliveries of one order (``orders/create`` and ``orders/paid``, say) may disagree on
its total. The row now records the version of the delivery its fields come from, and a
newer delivery replaces them, so the row no longer depends on which arrived first. Rows
stored before this version have none and give way to the next delivery of their order.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("version")
