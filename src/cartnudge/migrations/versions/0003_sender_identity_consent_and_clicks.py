"""sender identity, consent ledger and clicks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cartnudge.db.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consent_ledger",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("send_id", sa.BigInteger(), nullable=True),
        sa.Column("at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_consent_ledger_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_ledger")),
    )
    with op.batch_alter_table("consent_ledger", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_ledger_address", ["shop_id", "email_key", "id"], unique=False
        )

    op.create_table(
        "clicks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("send_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["send_id"], ["sends.id"], name=op.f("fk_clicks_send_id_sends"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_clicks_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clicks")),
    )
    with op.batch_alter_table("clicks", schema=None) as batch_op:
        batch_op.create_index("ix_clicks_send", ["send_id"], unique=False)

    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("voice_version", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ix_sends_in_flight",
            ["claimed_until"],
            unique=False,
            sqlite_where=sa.text("status = 'sending'"),
            postgresql_where=sa.text("status = 'sending'"),
        )

    # The waiter claims carts with its transaction's row locks; the lease column 0002 added
    # for it was never used.
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.drop_column("claimed_until")

    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sender_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("sender_email", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("postal_address", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("mail_url", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("locale", sa.String(length=35), server_default="en", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("claimed_until", cartnudge.db.types.UtcDateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.drop_column("locale")
        batch_op.drop_column("mail_url")
        batch_op.drop_column("postal_address")
        batch_op.drop_column("sender_email")
        batch_op.drop_column("sender_name")

    with op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_sends_in_flight",
            sqlite_where=sa.text("status = 'sending'"),
            postgresql_where=sa.text("status = 'sending'"),
        )
        batch_op.drop_column("voice_version")
        batch_op.drop_column("subject")

    with op.batch_alter_table("clicks", schema=None) as batch_op:
        batch_op.drop_index("ix_clicks_send")

    op.drop_table("clicks")
    with op.batch_alter_table("consent_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_ledger_address")

    op.drop_table("consent_ledger")
