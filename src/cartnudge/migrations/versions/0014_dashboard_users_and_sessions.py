"""the dashboard's users and sessions; the cart list by activity

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

People sign in to the dashboard as users (admin, owner or viewer), owners and viewers
given shops one by one. A signed-in browser is a session row holding the SHA-256 of its
cookie's token and the CSRF token of its forms. The cart list pages through a shop's carts
newest first, whatever their status: an index on (shop, last activity, id).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cartnudge.db.types

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _instant() -> cartnudge.db.types.UtcDateTime:
    return cartnudge.db.types.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("login", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        sa.Column("failed_sign_ins", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", _instant(), nullable=True),
        sa.Column("last_sign_in_at", _instant(), nullable=True),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("updated_at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("login", name=op.f("uq_users_login")),
    )
    op.create_table(
        "user_shops",
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_user_shops_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_shops_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("shop_id", "user_id", name=op.f("pk_user_shops")),
    )
    op.create_index("ix_user_shops_user", "user_shops", ["user_id"])
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("expires_at", _instant(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_web_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_web_sessions")),
    )
    op.create_index("ix_web_sessions_user", "web_sessions", ["user_id"])
    op.create_index("ix_web_sessions_expires", "web_sessions", ["expires_at"])
    op.create_index("ix_carts_shop_activity", "carts", ["shop_id", "last_activity_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_carts_shop_activity", table_name="carts")
    op.drop_table("web_sessions")
    op.drop_table("user_shops")
    op.drop_table("users")
