"""expired carts reopen; merged carts keep every send

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

A cart the waiter gives up on is now ``expired`` (it was ``closed``, like a cart deleted at
the source) and records when: activity after that reopens it. Carts the waiter closed
before this version become expired as of the give-up their audit trail records.

Two carts found to be one keep every send either had. The sends of the merged cart are
marked ``merged_from`` and are not held to one row per (cart, step), which now covers the
cart's own sends only (a partial unique index, led by the shop).
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

import cartnudge.db.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A cart the waiter closed still shows the reason of the waiter's audit row for it.
_EXPIRE_GIVEN_UP = """
UPDATE carts SET status = 'expired', given_up_at = (
    SELECT max(audit_log.at) FROM audit_log
    WHERE audit_log.cart_id = carts.id AND audit_log.actor = 'waiter'
      AND audit_log.action = 'status:closed' AND audit_log.reason = carts.status_reason
)
WHERE status = 'closed' AND EXISTS (
    SELECT 1 FROM audit_log
    WHERE audit_log.cart_id = carts.id AND audit_log.actor = 'waiter'
      AND audit_log.action = 'status:closed' AND audit_log.reason = carts.status_reason
)
"""
# Back to one row per (cart, step): of several, the cart's own send stays, else the
# first one taken over; the others go, with their clicks.
_DROP_TAKEN_OVER_COPIES = """
DELETE FROM sends WHERE merged_from IS NOT NULL AND EXISTS (
    SELECT 1 FROM sends AS other
    WHERE other.cart_id = sends.cart_id AND other.step = sends.step
      AND other.merged_from IS NULL
)
"""
_DROP_LATER_COPIES = """
DELETE FROM sends WHERE EXISTS (
    SELECT 1 FROM sends AS other
    WHERE other.cart_id = sends.cart_id AND other.step = sends.step AND other.id < sends.id
)
"""
_ONE_PER_STEP = sa.text("merged_from IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("given_up_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=True)
        )
    op.execute(_EXPIRE_GIVEN_UP)
    with _clicks_kept(), op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.add_column(sa.Column("merged_from", sa.BigInteger(), nullable=True))
        batch_op.drop_constraint("uq_sends_cart_id_step", type_="unique")
        batch_op.create_index(
            "ix_sends_one_per_step",
            ["shop_id", "cart_id", "step"],
            unique=True,
            sqlite_where=_ONE_PER_STEP,
            postgresql_where=_ONE_PER_STEP,
        )


def downgrade() -> None:
    op.execute(_DROP_TAKEN_OVER_COPIES)
    op.execute(_DROP_LATER_COPIES)
    with _clicks_kept(), op.batch_alter_table("sends", schema=None) as batch_op:
        batch_op.drop_index("ix_sends_one_per_step")
        batch_op.create_unique_constraint("uq_sends_cart_id_step", ["cart_id", "step"])
        batch_op.drop_column("merged_from")
    op.execute("UPDATE carts SET status = 'closed' WHERE status = 'expired'")
    # Not by copying the table, as batch mode would on SQLite: dropping the old carts
    # table would delete every key, send and click of its carts.
    op.drop_column("carts", "given_up_at")


@contextmanager
def _clicks_kept() -> Iterator[None]:
    """SQLite changes a table's constraints by copying it and dropping the old one; with
    foreign keys on, that drop deletes every click of its sends (``ON DELETE CASCADE``).
    So the clicks are set aside first and put back after."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("CREATE TEMPORARY TABLE clicks_kept AS SELECT * FROM clicks")
    yield
    if sqlite:
        op.execute("INSERT INTO clicks SELECT * FROM clicks_kept")
        op.execute("DROP TABLE clicks_kept")
