"""cart keys are found by their value first

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

The primary key of ``cart_keys`` was (shop, kind, value). PostgreSQL, before its statistics
caught up with a growing table, judged that a shop had one key and answered "which carts
have these keys" by reading every key of the shop and filtering: a cost that grew with the
shop. Led by the value, the key is one index descent per value on any statistics.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _primary_key("value", "kind", "shop_id")


def downgrade() -> None:
    _primary_key("shop_id", "kind", "value")


def _primary_key(*columns: str) -> None:
    # Nothing refers to cart_keys, so SQLite's copy of the table (batch mode) drops no rows
    # elsewhere when it replaces the old one.
    with op.batch_alter_table("cart_keys", schema=None) as batch_op:
        batch_op.drop_constraint("pk_cart_keys", type_="primary")
        batch_op.create_primary_key("pk_cart_keys", list(columns))
