"""the nightly sheet: when and where each shop's is written, and which days are done

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08

A shop may have its previous day's carts written every night at an hour of its choosing,
to a folder or a Google Sheet (``export_hour``, ``export_to``, ``export_format``). Each
(shop, day) is claimed with a row of ``nightly_exports`` before it is written, so several
workers on PostgreSQL never write it twice; a failed one keeps its error and is tried again.
The sheet's recovered column reads a page of carts' orders at once, by shop and cart
(``ix_orders_shop_cart``, which 0019 adds for Today).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cartnudge.db.types

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # In place (ALTER TABLE), never by batch mode's copy of the table: on SQLite, dropping
    # the old shops table would delete every row that belongs to a shop.
    op.add_column("shops", sa.Column("export_hour", sa.Integer(), nullable=True))
    op.add_column("shops", sa.Column("export_to", sa.Text(), nullable=True))
    op.add_column(
        "shops",
        sa.Column("export_format", sa.String(length=8), server_default="csv", nullable=False),
    )
    op.create_table(
        "nightly_exports",
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("claimed_until", cartnudge.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("done_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=True),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_nightly_exports_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("shop_id", "day", name=op.f("pk_nightly_exports")),
    )


def downgrade() -> None:
    op.drop_table("nightly_exports")
    op.drop_column("shops", "export_format")
    op.drop_column("shops", "export_to")
    op.drop_column("shops", "export_hour")
