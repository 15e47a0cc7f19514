"""expired carts reopen

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-07

A cart the waiter gives up on is now ``expired`` (it was ``closed``, like a cart deleted at
the source) and records when: activity after that reopens it. Carts the waiter closed
before this version become expired as of the give-up their audit trail records.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cartnudge.db.types

revision: str = "0011"
down_revision: str | None = "0007"
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


def upgrade() -> None:
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("given_up_at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=True)
        )
    op.execute(_EXPIRE_GIVEN_UP)


def downgrade() -> None:
    op.execute("UPDATE carts SET status = 'closed' WHERE status = 'expired'")
    # Not by copying the table, as batch mode would on SQLite: dropping the old carts
    # table would delete every key, send and click of its carts.
    op.drop_column("carts", "given_up_at")
