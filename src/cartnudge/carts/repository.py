"""Every SQL statement of the cart list: carts, their keys, orders and the audit log."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, insert, select, tuple_, update

from cartnudge.db.models import AuditEntry, Cart, CartKey, CartStatus, InboxEvent, Order, table_of
from cartnudge.db.portable import insert_ignore, insert_many_ignore
from cartnudge.db.types import UtcDateTime

carts = table_of(Cart)
keys_t = table_of(CartKey)
orders = table_of(Order)
audit = table_of(AuditEntry)
inbox = table_of(InboxEvent)

# Built once, executed with parameter dicts (see cartnudge.db.portable).
_INSERT_CART = insert(carts).returning(carts.c.id)
_UPDATE_CART = update(carts).where(carts.c.id == bindparam("_cart_id"))
_INSERT_AUDIT = insert(audit)
_CART_IDS_FOR_KEYS = (
    select(keys_t.c.cart_id)
    .where(
        keys_t.c.shop_id == bindparam("shop_id"),
        tuple_(keys_t.c.kind, keys_t.c.value).in_(bindparam("pairs", expanding=True)),
    )
    .distinct()
)
_LOAD_CARTS = (
    select(carts)
    .where(
        carts.c.shop_id == bindparam("shop_id"), carts.c.id.in_(bindparam("ids", expanding=True))
    )
    .order_by(carts.c.id)
)
_LOAD_CARTS_FOR_UPDATE = _LOAD_CARTS.with_for_update()
_KEYLESS_ORDERS = (
    select(orders.c.id, orders.c.source, orders.c.external_id, orders.c.placed_at)
    .where(
        orders.c.shop_id == bindparam("shop_id"),
        orders.c.email_key == bindparam("email_key"),
        orders.c.has_cart_keys.is_(False),
        orders.c.placed_at >= bindparam("first", type_=UtcDateTime()),
        orders.c.placed_at <= bindparam("last", type_=UtcDateTime()),
    )
    .order_by(orders.c.placed_at, orders.c.id)
)
_UNBOUGHT_NEAR = select(carts.c.id).where(
    carts.c.shop_id == bindparam("shop_id"),
    carts.c.email_key == bindparam("email_key"),
    carts.c.status != CartStatus.BOUGHT.value,
    carts.c.first_activity_at <= bindparam("at", type_=UtcDateTime()),
    carts.c.last_activity_at >= bindparam("since", type_=UtcDateTime()),
)
_SET_ORDER_CART = (
    update(orders)
    .where(orders.c.id == bindparam("_order_id"), orders.c.cart_id.is_(None))
    .values(cart_id=bindparam("_cart_id"))
)


class CartRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- carts -------------------------------------------------------------------------
    def ids_for_keys(self, shop_id: int, keys: Iterable[tuple[str, str]]) -> list[int]:
        pairs = [(str(kind), value) for kind, value in keys]
        if not pairs:
            return []
        params = {"shop_id": shop_id, "pairs": pairs}
        return sorted(self.conn.execute(_CART_IDS_FOR_KEYS, params).scalars())

    def load(self, shop_id: int, cart_ids: Sequence[int], *, lock: bool = True) -> list[Row[Any]]:
        stmt = _LOAD_CARTS_FOR_UPDATE if lock else _LOAD_CARTS
        return list(self.conn.execute(stmt, {"shop_id": shop_id, "ids": list(cart_ids)}))

    def get(self, shop_id: int | None, cart_id: int) -> Row[Any] | None:
        stmt = select(carts).where(carts.c.id == cart_id)
        if shop_id is not None:
            stmt = stmt.where(carts.c.shop_id == shop_id)
        return self.conn.execute(stmt).first()

    def insert(self, shop_id: int, values: dict[str, Any], now: datetime) -> int:
        params = {"shop_id": shop_id, "created_at": now, "updated_at": now, **values}
        return int(self.conn.execute(_INSERT_CART, params).scalar_one())

    def update(self, cart_id: int, values: dict[str, Any], now: datetime) -> None:
        self.conn.execute(_UPDATE_CART, {"_cart_id": cart_id, "updated_at": now, **values})

    def absorb(self, shop_id: int, keep_id: int, gone_ids: Sequence[int]) -> None:
        """Point every key, event and audit row of ``gone_ids`` at ``keep_id``; drop them."""
        for table in (keys_t, inbox, audit, orders):
            self.conn.execute(
                update(table)
                .where(table.c.shop_id == shop_id, table.c.cart_id.in_(gone_ids))
                .values(cart_id=keep_id)
            )
        self.conn.execute(delete(carts).where(carts.c.id.in_(gone_ids)))

    def link_keys(self, shop_id: int, cart_id: int, pairs: Iterable[tuple[str, str]]) -> None:
        rows = [
            {"shop_id": shop_id, "kind": kind, "value": value, "cart_id": cart_id}
            for kind, value in pairs
        ]
        insert_many_ignore(self.conn, keys_t, rows, conflict=("shop_id", "kind", "value"))

    def keys_of(self, cart_id: int) -> list[tuple[str, str]]:
        stmt = select(keys_t.c.kind, keys_t.c.value).where(keys_t.c.cart_id == cart_id)
        return [(row.kind, row.value) for row in self.conn.execute(stmt.order_by(keys_t.c.kind))]

    def unbought_by_email_near(
        self, shop_id: int, email_key: str, at: datetime, window_s: int
    ) -> list[int]:
        """Carts of this email with activity overlapping [at - window, at], not yet bought."""
        params = {
            "shop_id": shop_id,
            "email_key": email_key,
            "at": at,
            "since": at - timedelta(seconds=window_s),
        }
        return sorted(self.conn.execute(_UNBOUGHT_NEAR, params).scalars())

    # -- orders ------------------------------------------------------------------------
    def record_order(self, shop_id: int, values: dict[str, Any]) -> int | None:
        return insert_ignore(
            self.conn,
            orders,
            {"shop_id": shop_id, **values},
            conflict=("shop_id", "source", "external_id"),
        )

    def keyless_orders_for(
        self, shop_id: int, email_key: str, first: datetime, last: datetime, window_s: int
    ) -> list[Row[Any]]:
        """Orders without cart keys, by this email, placed in [first, last + window]."""
        params = {
            "shop_id": shop_id,
            "email_key": email_key,
            "first": first,
            "last": last + timedelta(seconds=window_s),
        }
        return list(self.conn.execute(_KEYLESS_ORDERS, params))

    def set_order_cart(self, order_pk: int, cart_id: int) -> None:
        self.conn.execute(_SET_ORDER_CART, {"_order_id": order_pk, "_cart_id": cart_id})

    # -- audit -------------------------------------------------------------------------
    def audit(
        self,
        shop_id: int,
        cart_id: int | None,
        *,
        at: datetime,
        actor: str,
        action: str,
        reason: str | None = None,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> None:
        self.conn.execute(
            _INSERT_AUDIT,
            {
                "shop_id": shop_id,
                "cart_id": cart_id,
                "at": at,
                "actor": actor,
                "action": action,
                "reason": reason,
                "before": before,
                "after": after,
            },
        )
