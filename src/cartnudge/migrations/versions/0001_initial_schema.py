"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import cartnudge.db.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shops",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("shopify_domain", sa.String(length=255), nullable=True),
        sa.Column("shopify_secret", sa.String(length=255), nullable=True),
        sa.Column("stripe_secret", sa.String(length=255), nullable=True),
        sa.Column(
            "storefront_secrets",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("order_match_window_s", sa.BigInteger(), nullable=False),
        sa.Column("activated_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shops")),
        sa.UniqueConstraint("shopify_domain", name=op.f("uq_shops_shopify_domain")),
        sa.UniqueConstraint("slug", name=op.f("uq_shops_slug")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("cart_id", sa.BigInteger(), nullable=True),
        sa.Column("at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "before",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "after",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_audit_log_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_cart", ["cart_id", "id"], unique=False)

    op.create_table(
        "carts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column(
            "items",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("total_minor", sa.BigInteger(), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("email_key", sa.String(length=320), nullable=True),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("locale", sa.String(length=35), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("accepts_marketing", sa.Boolean(), nullable=True),
        sa.Column("consent_source", sa.String(length=64), nullable=True),
        sa.Column("return_url", sa.Text(), nullable=True),
        sa.Column("saved_link", sa.Boolean(), nullable=False),
        sa.Column(
            "first_activity_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "last_activity_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("next_wake_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("bought_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("order_ref", sa.String(length=255), nullable=True),
        sa.Column(
            "versions",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_carts_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carts")),
    )
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_carts_due",
            ["next_wake_at"],
            unique=False,
            sqlite_where=sa.text("next_wake_at IS NOT NULL"),
            postgresql_where=sa.text("next_wake_at IS NOT NULL"),
        )
        batch_op.create_index("ix_carts_shop_email", ["shop_id", "email_key"], unique=False)
        batch_op.create_index(
            "ix_carts_shop_status", ["shop_id", "status", "last_activity_at"], unique=False
        )

    op.create_table(
        "inbox_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("occurred_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("received_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("cart_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_inbox_events_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_events")),
        sa.UniqueConstraint(
            "shop_id",
            "source",
            "external_id",
            name=op.f("uq_inbox_events_shop_id_source_external_id"),
        ),
    )
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.create_index("ix_inbox_events_cart", ["cart_id", "occurred_at"], unique=False)
        batch_op.create_index("ix_inbox_events_dead", ["shop_id", "status"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("placed_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("total_minor", sa.BigInteger(), nullable=True),
        sa.Column("has_cart_keys", sa.Boolean(), nullable=False),
        sa.Column("cart_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_orders_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint(
            "shop_id", "source", "external_id", name=op.f("uq_orders_shop_id_source_external_id")
        ),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_shop_email", ["shop_id", "email_key"], unique=False)

    op.create_table(
        "privacy_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("inbox_event_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("received_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("done_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_privacy_requests_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_requests")),
    )
    op.create_table(
        "cart_keys",
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("cart_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["cart_id"], ["carts.id"], name=op.f("fk_cart_keys_cart_id_carts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_cart_keys_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("shop_id", "kind", "value", name=op.f("pk_cart_keys")),
    )
    with op.batch_alter_table("cart_keys", schema=None) as batch_op:
        batch_op.create_index("ix_cart_keys_cart", ["cart_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cart_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_cart_keys_cart")

    op.drop_table("cart_keys")
    op.drop_table("privacy_requests")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_shop_email")

    op.drop_table("orders")
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_events_dead")
        batch_op.drop_index("ix_inbox_events_cart")

    op.drop_table("inbox_events")
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.drop_index("ix_carts_shop_status")
        batch_op.drop_index("ix_carts_shop_email")
        batch_op.drop_index(
            "ix_carts_due",
            sqlite_where=sa.text("next_wake_at IS NOT NULL"),
            postgresql_where=sa.text("next_wake_at IS NOT NULL"),
        )

    op.drop_table("carts")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_cart")

    op.drop_table("audit_log")
    op.drop_table("shops")
