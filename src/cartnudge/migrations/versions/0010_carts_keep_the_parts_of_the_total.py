"""carts keep the parts of the total

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

A reminder shows the subtotal, discount, shipping and tax beside the total, so that its
figures add up, when the source gives them. Each is optional; carts stored before this
version have none and show their total alone until the next event of the cart.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTS = ("subtotal_minor", "discount_minor", "shipping_minor", "tax_minor")


def upgrade() -> None:
    with op.batch_alter_table("carts", schema=None) as batch_op:
        for name in PARTS:
            batch_op.add_column(sa.Column(name, sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # Not by copying the table, as batch mode would on SQLite: dropping the old carts
    # table would delete every key, send and click of its carts.
    for name in reversed(PARTS):
        op.drop_column("carts", name)
