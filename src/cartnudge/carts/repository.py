"""Every SQL statement of the cart list: carts, their keys and orders. (Audit rows are written
through ``cartnudge.db.audit``, which every stage shares.)"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from cartnudge.db.models import AuditEntry, Cart, CartKey, InboxEvent, Order
from cartnudge.db.portable import insert_many_ids, insert_many_returning, select_in
from cartnudge.db.types import UtcDateTime

carts = Cart
keys_t = CartKey
orders = Order
audit = AuditEntry
inbox = InboxEvent

# Built once, executed with parameter dicts (see cartnudge.db.portable).
_UPDATE_CART = update(carts).where(carts.c.id == bindparam("_cart_id"))
_NEAR_BY_EMAIL = select(carts.c.id).where(
    carts.c.shop_id == bindparam("shop_id"),
    carts.c.email_key == bindparam("email_key"),
    carts.c.first_activity_at <= bindparam("at", type_=UtcDateTime()),
    carts.c.last_activity_at >= bindparam("since", type_=UtcDateTime()),
)
_LOAD_BY_IDS = (
    select(carts)
    .where(carts.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(carts.c.id)
    .with_for_update()
)
_KEYLESS_ORDERS_BY_EMAIL = select(
    orders.c.id,
    orders.c.shop_id,
    orders.c.cart_id,
    orders.c.email_key,
    orders.c.source,
    orders.c.external_id,
    orders.c.placed_at,
    orders.c.currency,
    orders.c.total_minor,
    orders.c.placed_live,
    orders.c.test,
).where(
    orders.c.shop_id == bindparam("shop_id"),
    orders.c.email_key.in_(bindparam("email_keys", expanding=True)),
    orders.c.has_cart_keys.is_(False),
)
_CARTS_BY_EMAIL = (
    select(carts)
    .where(
        carts.c.shop_id == bindparam("shop_id"),
        carts.c.email_key.in_(bindparam("email_keys", expanding=True)),
    )
    .order_by(carts.c.id)
    .with_for_update()
)
_SET_ORDER_CART = (
    update(orders)
    .where(orders.c.id == bindparam("_order_id"))
    .values(cart_id=bindparam("_cart_id"))
)


@cache
def _record_orders(dialect: str) -> Any:
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(orders)
    new = stmt.excluded
    # A delivery that only changes an order (a refund) has the empty version: it never
    # replaces a snapshot, and the first real delivery replaces its stand-in fields.
    newer = or_(
        orders.c.version < new.version,
        and_(orders.c.version.is_(None), new.version != ""),
    )
    snapshot = ("placed_at", "email_key", "currency", "total_minor", "version")
    return stmt.on_conflict_do_update(
        index_elements=["shop_id", "source", "external_id"],
        set_={
            **{
                name: case((newer, new[name]), else_=orders.c[name])
                for name in (*snapshot, "financial_status", "test")
            },
            "has_cart_keys": or_(orders.c.has_cart_keys, new.has_cart_keys),
            "placed_live": or_(orders.c.placed_live, new.placed_live),
            # Cancelled once is cancelled: the earliest time any delivery gave.
            "cancelled_at": case(
                (orders.c.cancelled_at.is_(None), new.cancelled_at),
                (new.cancelled_at < orders.c.cancelled_at, new.cancelled_at),
                else_=orders.c.cancelled_at,
            ),
            # A cart the order named stays its cart; one matched by email gives way to it.
            "cart_id": case(
                (orders.c.has_cart_keys, func.coalesce(orders.c.cart_id, new.cart_id)),
                else_=func.coalesce(new.cart_id, orders.c.cart_id),
            ),
        },
    )


class CartRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- many carts at once (the ingest writer's batches) --------------------------------
    def carts_for_keys(
        self, triples: Iterable[tuple[int, str, str]]
    ) -> dict[tuple[int, str, str], int]:
        values_of: dict[tuple[int, str], set[str]] = {}
        for shop_id, kind, value in triples:
            values_of.setdefault((shop_id, kind), set()).add(value)
        found: dict[tuple[int, str, str], int] = {}
        for (shop_id, kind), values in sorted(values_of.items()):
            rows = select_in(
                self.conn,
                keys_t,
                ("value", "cart_id"),
                where={"shop_id": shop_id, "kind": kind},
                column="value",
                values=sorted(values),
            )
            for value, cart_id in rows:
                found[(shop_id, kind, value)] = cart_id
        return found

    def load_many(self, cart_ids: Iterable[int]) -> dict[int, Row[Any]]:
        """Carts by id, locked for this transaction (in id order, so two writers never
        wait on each other in a cycle)."""
        ids = sorted(set(cart_ids))
        if not ids:
            return {}
        return {row.id: row for row in self.conn.execute(_LOAD_BY_IDS, {"ids": ids})}

    def insert_many(self, rows: list[dict[str, Any]]) -> list[int]:
        return insert_many_ids(self.conn, carts, rows)

    def update_many(self, rows: list[dict[str, Any]]) -> None:
        """Each row names its cart as ``_cart_id``."""
        if rows:
            self.conn.execute(_UPDATE_CART, rows)

    def link_many(self, rows: list[dict[str, Any]]) -> set[tuple[int, str, str]]:
        """Insert keys; the ones that were new (a key already taken is left alone)."""
        inserted = insert_many_returning(
            self.conn,
            keys_t,
            rows,
            conflict=("shop_id", "kind", "value"),
            returning=("shop_id", "kind", "value"),
        )
        return {(r.shop_id, r.kind, r.value) for r in inserted}

    def record_orders(self, rows: list[dict[str, Any]]) -> None:
        """Insert orders; an order already stored takes a newer delivery's snapshot (its
        ``version``), counts as naming a cart if any delivery of it did, and keeps the
        cart one named."""
        if rows:
            self.conn.execute(_record_orders(self.conn.dialect.name), rows)

    def add_refunds(self, rows: list[tuple[int, str, str, dict[str, int]]]) -> None:
        """Record refunds on their orders, each refund once by its id, whichever delivery
        brought it: (shop id, source, order id, {refund id: minor units}) per order."""
        wanted: dict[tuple[int, str, str], dict[str, int]] = {}
        for shop_id, source, external_id, refunds in rows:
            into = wanted.setdefault((shop_id, source, external_id), {})
            for refund_id, minor in refunds.items():
                into[refund_id] = max(minor, into.get(refund_id, minor))
        for (shop_id, source, external_id), refunds in sorted(wanted.items()):
            where = (
                orders.c.shop_id == shop_id,
                orders.c.source == source,
                orders.c.external_id == external_id,
            )
            stored = self.conn.execute(
                select(orders.c.refunds).where(*where).with_for_update()
            ).scalar_one()
            merged = dict(stored or {})
            for refund_id, minor in refunds.items():
                merged[refund_id] = max(minor, merged.get(refund_id, minor))
            if merged != stored:
                values = {"refunds": merged, "refunded_minor": sum(merged.values())}
                self.conn.execute(update(orders).where(*where).values(**values))

    def keyless_orders_by_email(self, pairs: Iterable[tuple[int, str]]) -> list[Row[Any]]:
        return self._by_email(_KEYLESS_ORDERS_BY_EMAIL, pairs)

    def carts_by_email(self, pairs: Iterable[tuple[int, str]]) -> list[Row[Any]]:
        """Every cart of these (shop, email) pairs, locked for this transaction."""
        return self._by_email(_CARTS_BY_EMAIL, pairs)

    def _by_email(self, stmt: Any, pairs: Iterable[tuple[int, str]]) -> list[Row[Any]]:
        """One query per shop with ``email_key IN (...)`` (see ``_CARTS_FOR_KEYS``)."""
        keys_of: dict[int, set[str]] = {}
        for shop_id, key in pairs:
            keys_of.setdefault(shop_id, set()).add(key)
        found: list[Any] = []
        for shop_id, keys in sorted(keys_of.items()):
            params = {"shop_id": shop_id, "email_keys": sorted(keys)}
            found += self.conn.execute(stmt, params).all()
        return found

    # -- carts -------------------------------------------------------------------------
    def get(self, shop_id: int | None, cart_id: int) -> Row[Any] | None:
        stmt = select(carts).where(carts.c.id == cart_id)
        if shop_id is not None:
            stmt = stmt.where(carts.c.shop_id == shop_id)
        return self.conn.execute(stmt).first()

    def update(self, cart_id: int, values: dict[str, Any], now: datetime) -> None:
        self.conn.execute(_UPDATE_CART, {"_cart_id": cart_id, "updated_at": now, **values})

    def absorb(self, shop_id: int, keep_id: int, gone_ids: Sequence[int]) -> None:
        """Point every key, event, audit row and order of ``gone_ids`` at ``keep_id``; drop
        them. Their sends must have been taken over first (``delivery.service.hand_over_sends``):
        dropping a cart drops what still names it."""
        for table in (keys_t, inbox, audit, orders):
            self.conn.execute(
                update(table)
                .where(table.c.shop_id == shop_id, table.c.cart_id.in_(gone_ids))
                .values(cart_id=keep_id)
            )
        self.conn.execute(delete(carts).where(carts.c.id.in_(gone_ids)))

    def keys_of(self, cart_id: int) -> list[tuple[str, str]]:
        stmt = select(keys_t.c.kind, keys_t.c.value).where(keys_t.c.cart_id == cart_id)
        return [(row.kind, row.value) for row in self.conn.execute(stmt.order_by(keys_t.c.kind))]

    # -- orders ------------------------------------------------------------------------
    def set_order_carts(self, rows: list[dict[str, Any]]) -> None:
        """Each row names its order as ``_order_id`` and the cart as ``_cart_id``."""
        if rows:
            self.conn.execute(_SET_ORDER_CART, rows)
