"""shops name their return-link domains and cart URL; carts say why an address is unused

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-07

A cart's return link is kept only when it points to one of the shop's domains (once the
owner lists them); a refused one gives way to the shop's cart URL. An address that is not
one mailbox is no longer stored: the cart records why, so the owner can see it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "return_domains",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("cart_url", sa.Text(), nullable=True))
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("address_problem", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.drop_column("address_problem")
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.drop_column("cart_url")
        batch_op.drop_column("return_domains")
