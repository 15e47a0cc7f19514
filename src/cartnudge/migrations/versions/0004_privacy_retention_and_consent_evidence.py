"""privacy: retention settings, consent evidence, request results, the privacy log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cartnudge.db.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEPT = "payload IS NOT NULL"
_INPUTS = "before IS NOT NULL OR after IS NOT NULL"


def upgrade() -> None:
    # JSON columns now store Python's None as SQL NULL; earlier audit rows hold the JSON
    # value null instead, which retention's "IS NOT NULL" would take for kept inputs.
    null = "'null'::jsonb" if op.get_bind().dialect.name == "postgresql" else "'null'"
    for column in ("before", "after"):
        op.execute(f"UPDATE audit_log SET {column} = NULL WHERE {column} = {null}")  # noqa: S608

    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "keep_payloads_s", sa.BigInteger(), server_default=str(7 * 86400), nullable=False
            )
        )
        batch_op.add_column(
            sa.Column(
                "keep_decisions_s", sa.BigInteger(), server_default=str(30 * 86400), nullable=False
            )
        )
        batch_op.add_column(
            sa.Column(
                "keep_closed_pii_s",
                sa.BigInteger(),
                server_default=str(180 * 86400),
                nullable=False,
            )
        )

    with op.batch_alter_table("consent_ledger", schema=None) as batch_op:
        batch_op.add_column(sa.Column("evidence", cartnudge.db.types.Json, nullable=True))

    with op.batch_alter_table("privacy_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("result", cartnudge.db.types.Json, nullable=True))
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch_op.create_index("ix_privacy_requests_state", ["state", "id"], unique=False)

    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_inbox_events_kept",
            ["shop_id", "received_at"],
            unique=False,
            sqlite_where=sa.text(_KEPT),
            postgresql_where=sa.text(_KEPT),
        )

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(
            "ix_audit_log_inputs",
            ["shop_id", "at"],
            unique=False,
            sqlite_where=sa.text(_INPUTS),
            postgresql_where=sa.text(_INPUTS),
        )

    op.create_table(
        "privacy_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shop_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=True),
        sa.Column("at", cartnudge.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("counts", cartnudge.db.types.Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_log")),
    )


def downgrade() -> None:
    op.drop_table("privacy_log")

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_audit_log_inputs", sqlite_where=sa.text(_INPUTS), postgresql_where=sa.text(_INPUTS)
        )

    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_inbox_events_kept", sqlite_where=sa.text(_KEPT), postgresql_where=sa.text(_KEPT)
        )

    with op.batch_alter_table("privacy_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_privacy_requests_state")
        batch_op.drop_column("error")
        batch_op.drop_column("result")

    with op.batch_alter_table("consent_ledger", schema=None) as batch_op:
        batch_op.drop_column("evidence")

    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.drop_column("keep_closed_pii_s")
        batch_op.drop_column("keep_decisions_s")
        batch_op.drop_column("keep_payloads_s")
