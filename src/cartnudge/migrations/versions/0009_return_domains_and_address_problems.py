"""shops name their return-link domains and cart URL; carts say why an address is unused

Revision ID: 0009
Revises: 0008
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
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # In place (ALTER TABLE), never by batch mode's copy of the table: on SQLite, dropping
    # the old shops or carts table would delete every row that belongs to them.
    op.add_column(
        "shops",
        sa.Column(
            "return_domains",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
    )
    op.add_column("shops", sa.Column("cart_url", sa.Text(), nullable=True))
    op.add_column("carts", sa.Column("address_problem", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("carts", "address_problem")
    op.drop_column("shops", "cart_url")
    op.drop_column("shops", "return_domains")
