"""shop secrets sealed at rest with the data keys

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

Widens the secret columns to text (a Fernet token is longer than the secret it seals) and
seals every stored secret with the first data key (``CARTNUDGE_DATA_KEYS``, else
``$CARTNUDGE_HOME/data.key``). The downgrade opens them again, with any of the keys.
"""

import json
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

import cartnudge.db.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT_SECRETS = ("shopify_secret", "stripe_secret", "mail_url")
_JSON_SECRETS = ("storefront_secrets",)

# The stored values as text, whatever they hold: clear before, Fernet tokens after.
_shops = sa.table(
    "shops",
    sa.column("id", sa.BigInteger()),
    *(sa.column(name, sa.Text()) for name in (*_TEXT_SECRETS, *_JSON_SECRETS)),
)


def upgrade() -> None:
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.alter_column(
            "shopify_secret",
            existing_type=sa.String(length=255),
            type_=sa.Text(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "stripe_secret",
            existing_type=sa.String(length=255),
            type_=sa.Text(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "storefront_secrets",
            existing_type=cartnudge.db.types.Json,
            type_=sa.Text(),
            existing_nullable=False,
        )

    def seal(name: str, value: str) -> str:
        from cartnudge.keys import process_keyring

        if name in _JSON_SECRETS:
            # One token for the whole list, as SealedJson writes it.
            value = json.dumps(json.loads(value), separators=(",", ":"), ensure_ascii=False)
        return process_keyring().seal(value)

    _rewrite(seal)


def downgrade() -> None:
    def open_(name: str, value: str) -> str:
        from cartnudge.keys import process_keyring

        return process_keyring().open(value)

    _rewrite(open_)

    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.alter_column(
            "storefront_secrets",
            existing_type=sa.Text(),
            type_=cartnudge.db.types.Json,
            existing_nullable=False,
            postgresql_using="storefront_secrets::jsonb",
        )
        batch_op.alter_column(
            "stripe_secret",
            existing_type=sa.Text(),
            type_=sa.String(length=255),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "shopify_secret",
            existing_type=sa.Text(),
            type_=sa.String(length=255),
            existing_nullable=True,
        )


def _rewrite(convert: Callable[[str, str], str]) -> None:
    """Every non-null secret of every shop through ``convert``, in the migration's
    transaction: one value it cannot convert (a wrong data key) changes nothing."""
    conn = op.get_bind()
    names = (*_TEXT_SECRETS, *_JSON_SECRETS)
    for row in conn.execute(sa.select(_shops).order_by(_shops.c.id)).all():
        values = {
            name: convert(name, row._mapping[name])
            for name in names
            if row._mapping[name] is not None
        }
        if values:
            conn.execute(sa.update(_shops).where(_shops.c.id == row.id).values(**values))
