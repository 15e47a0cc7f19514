"""Upgrading a database with history: carts the waiter closed become expired as of their
give-up (so a returning shopper reopens them), other closed carts stay closed, and no send
or click is lost, up or down."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine

from cartnudge.db.migrate import alembic_config, upgrade
from cartnudge.db.session import reading, writing
from cartnudge.db.types import Json, UtcDateTime
from tests.conftest import T0

GIVEN_UP = T0 + timedelta(days=3)
NO_PURCHASE = "no purchase after 2 reminder(s)"
DELETED = "deleted at the source (checkouts/delete)"


def table(name: str, *columns: tuple[str, Any]) -> sa.TableClause:
    return sa.table(name, *(sa.column(n, t) for n, t in columns))


shops = table(
    "shops",
    *((n, sa.String()) for n in ("slug", "name", "timezone", "currency", "storefront_secrets")),
    ("order_match_window_s", sa.BigInteger()),
    ("activated_at", UtcDateTime()),
    ("created_at", UtcDateTime()),
)
carts = table(
    "carts",
    *((n, sa.BigInteger()) for n in ("id", "shop_id")),
    *((n, sa.String()) for n in ("status", "status_reason", "source")),
    *((n, Json) for n in ("items", "versions")),
    ("saved_link", sa.Boolean()),
    *((n, UtcDateTime()) for n in ("first_activity_at", "last_activity_at")),
    *((n, UtcDateTime()) for n in ("created_at", "updated_at")),
)
audit = table(
    "audit_log",
    *((n, sa.BigInteger()) for n in ("shop_id", "cart_id")),
    ("at", UtcDateTime()),
    *((n, sa.String()) for n in ("actor", "action", "reason")),
)
sends = table(
    "sends",
    *((n, sa.BigInteger()) for n in ("id", "shop_id", "cart_id", "step", "rules_version")),
    ("status", sa.String()),
    *((n, UtcDateTime()) for n in ("due_at", "created_at", "updated_at")),
)
clicks = table(
    "clicks", *((n, sa.BigInteger()) for n in ("shop_id", "send_id")), ("at", UtcDateTime())
)


def history(engine: Engine) -> None:
    """Three closed carts: one the waiter gave up on, one deleted at the source, one the
    waiter gave up on and then deleted at the source; a clicked reminder of the first."""
    with writing(engine) as conn:
        shop_id = conn.execute(
            sa.insert(shops).returning(sa.column("id")),
            {
                "slug": "tea",
                "name": "Tea",
                "timezone": "UTC",
                "currency": "EUR",
                "storefront_secrets": "[]",
                "order_match_window_s": 604800,
                "activated_at": T0,
                "created_at": T0,
            },
        ).scalar_one()
        cart = {
            "shop_id": shop_id,
            "status": "closed",
            "source": "storefront",
            "items": [],
            "versions": {},
            "saved_link": False,
            "first_activity_at": T0,
            "last_activity_at": T0,
            "created_at": T0,
            "updated_at": GIVEN_UP,
        }
        conn.execute(
            sa.insert(carts),
            [
                {**cart, "id": 1, "status_reason": NO_PURCHASE},
                {**cart, "id": 2, "status_reason": DELETED},
                {**cart, "id": 3, "status_reason": DELETED},
            ],
        )
        gave_up = {"shop_id": shop_id, "at": GIVEN_UP, "actor": "waiter"}
        gave_up |= {"action": "status:closed", "reason": NO_PURCHASE}
        conn.execute(sa.insert(audit), [{**gave_up, "cart_id": 1}, {**gave_up, "cart_id": 3}])
        send = {"shop_id": shop_id, "cart_id": 1, "rules_version": 0, "status": "sent"}
        send |= {"due_at": T0, "created_at": T0, "updated_at": T0}
        conn.execute(sa.insert(sends), [{**send, "id": 1, "step": 1}, {**send, "id": 2, "step": 2}])
        conn.execute(sa.insert(clicks), {"shop_id": shop_id, "send_id": 1, "at": T0})


def cart_statuses(engine: Engine, *extra: str) -> list[tuple[Any, ...]]:
    columns = [sa.column(n) for n in ("id", "status", *extra)]
    with reading(engine) as conn:
        rows = conn.execute(sa.select(*columns).select_from(sa.table("carts")).order_by("id"))
        return [tuple(row) for row in rows]


def counts(engine: Engine) -> tuple[int, int]:
    """(sends, clicks)"""
    with reading(engine) as conn:
        stored, clicked = (
            int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in (sends, clicks)
        )
    return stored, clicked


def test_upgrade_expires_the_waiters_closed_carts_and_keeps_every_click(
    fresh_engine: Engine,
) -> None:
    upgrade(fresh_engine, "0007")
    history(fresh_engine)

    upgrade(fresh_engine, "0011")

    given_up = sa.column("given_up_at", UtcDateTime())
    with reading(fresh_engine) as conn:
        rows = conn.execute(
            sa.select(sa.column("id"), sa.column("status"), given_up)
            .select_from(sa.table("carts"))
            .order_by("id")
        ).all()
    assert [tuple(r) for r in rows] == [
        (1, "expired", GIVEN_UP),
        (2, "closed", None),
        (3, "closed", None),
    ]
    assert counts(fresh_engine) == (2, 1)

    command.downgrade(alembic_config(fresh_engine), "0007")

    assert cart_statuses(fresh_engine) == [(1, "closed"), (2, "closed"), (3, "closed")]
    assert counts(fresh_engine) == (2, 1)
