"""Every SQL statement of the cart list: carts, their keys, orders and the audit log."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, insert, or_, select, update

from cartnudge.db.models import AuditEntry, Cart, CartKey, CartStatus, InboxEvent, Order, table_of
from cartnudge.db.portable import insert_ignore, insert_many_ignore

carts = table_of(Cart)
keys_t = table_of(CartKey)
orders = table_of(Order)
audit = table_of(AuditEntry)
inbox = table_of(InboxEvent)


class CartRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- carts -------------------------------------------------------------------------
    def ids_for_keys(self, shop_id: int, keys: Iterable[tuple[str, str]]) -> list[int]:
        pairs = list(keys)
        if not pairs:
            return []
        conditions = [and_(keys_t.c.kind == kind, keys_t.c.value == value) for kind, value in pairs]
        stmt = (
            select(keys_t.c.cart_id).where(keys_t.c.shop_id == shop_id, or_(*conditions)).distinct()
        )
        return sorted(self.conn.execute(stmt).scalars())

    def load(self, shop_id: int, cart_ids: Sequence[int], *, lock: bool = True) -> list[Row[Any]]:
        stmt = select(carts).where(carts.c.shop_id == shop_id, carts.c.id.in_(cart_ids))
        if lock:
            stmt = stmt.with_for_update()
        return list(self.conn.execute(stmt.order_by(carts.c.id)))

    def get(self, shop_id: int | None, cart_id: int) -> Row[Any] | None:
        stmt = select(carts).where(carts.c.id == cart_id)
        if shop_id is not None:
            stmt = stmt.where(carts.c.shop_id == shop_id)
        return self.conn.execute(stmt).first()

    def insert(self, shop_id: int, values: dict[str, Any], now: datetime) -> int:
        stmt = insert(carts).values(shop_id=shop_id, created_at=now, updated_at=now, **values)
        return int(self.conn.execute(stmt.returning(carts.c.id)).scalar_one())

    def update(self, cart_id: int, values: dict[str, Any], now: datetime) -> None:
        self.conn.execute(
            update(carts).where(carts.c.id == cart_id).values(updated_at=now, **values)
        )

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
        stmt = select(carts.c.id).where(
            carts.c.shop_id == shop_id,
            carts.c.email_key == email_key,
            carts.c.status != CartStatus.BOUGHT.value,
            carts.c.first_activity_at <= at,
            carts.c.last_activity_at >= at - timedelta(seconds=window_s),
        )
        return sorted(self.conn.execute(stmt).scalars())

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
        stmt = (
            select(orders.c.id, orders.c.source, orders.c.external_id, orders.c.placed_at)
            .where(
                orders.c.shop_id == shop_id,
                orders.c.email_key == email_key,
                orders.c.has_cart_keys.is_(False),
                orders.c.placed_at >= first,
                orders.c.placed_at <= last + timedelta(seconds=window_s),
            )
            .order_by(orders.c.placed_at, orders.c.id)
        )
        return list(self.conn.execute(stmt))

    def set_order_cart(self, order_pk: int, cart_id: int) -> None:
        self.conn.execute(
            update(orders)
            .where(orders.c.id == order_pk, orders.c.cart_id.is_(None))
            .values(cart_id=cart_id)
        )

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
            insert(audit).values(
                shop_id=shop_id,
                cart_id=cart_id,
                at=at,
                actor=actor,
                action=action,
                reason=reason,
                before=before,
                after=after,
            )
        )
