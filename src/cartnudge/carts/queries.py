"""Read models for owners: the cart list, one cart with its timeline, and the sends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Column, Connection, Table, and_, or_, select

from cartnudge.carts.repository import CartRepository
from cartnudge.db.models import AuditEntry, Cart, Click, InboxEvent, Order, Send
from cartnudge.db.portable import after_pair

carts = Cart
inbox = InboxEvent
audit = AuditEntry
sends = Send
clicks = Click
orders = Order


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def cart_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "shop_id": row.shop_id,
        "status": row.status,
        "status_reason": row.status_reason,
        "source": row.source,
        "currency": row.currency,
        "total_minor": row.total_minor,
        "items": row.items,
        "email": row.email,
        "address_problem": row.address_problem,
        "first_name": row.first_name,
        "locale": row.locale,
        "timezone": row.timezone,
        "accepts_marketing": row.accepts_marketing,
        "consent_source": row.consent_source,
        "return_url": row.return_url,
        "saved_link": row.saved_link,
        "first_activity_at": _iso(row.first_activity_at),
        "last_activity_at": _iso(row.last_activity_at),
        "next_wake_at": _iso(row.next_wake_at),
        "bought_at": _iso(row.bought_at),
        "order_ref": row.order_ref,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def not_reminded(view: dict[str, Any], activated_at: datetime) -> str | None:
    """Why an open cart will get no reminder at all, in the owner's words; ``None`` when it
    may. (Carts whose reminders were decided carry their reasons on their sends.)"""
    if view["status"] != "open" or view["next_wake_at"] is not None:
        return None
    last = datetime.fromisoformat(view["last_activity_at"])
    if last < activated_at:
        return (
            "not reminded: last active before the shop was switched on (last activity "
            f"{last:%Y-%m-%d %H:%M} UTC, switched on {activated_at:%Y-%m-%d %H:%M} UTC); "
            "carts from before then are kept, never reminded"
        )
    return None


def unreminded(conn: Connection, shop_id: int, activated_at: datetime) -> list[int]:
    """The shop's open carts that will never be reminded because they predate the shop's
    switch-on, most recent first."""
    stmt = (
        select(carts.c.id)
        .where(
            carts.c.shop_id == shop_id,
            carts.c.status == "open",
            carts.c.next_wake_at.is_(None),
            carts.c.last_activity_at < activated_at,
        )
        .order_by(carts.c.last_activity_at.desc(), carts.c.id.desc())
    )
    return list(conn.scalars(stmt))


def _body(payload: str | None) -> Any:
    """A raw body as data when it is JSON (most are), else as the text it was."""
    if payload is None:
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload


def send_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "cart_id": row.cart_id,
        "merged_from": row.merged_from,  # the cart it was decided for, merged into this one
        "step": row.step,
        "status": row.status,
        "reason": row.reason,
        "due_at": _iso(row.due_at),
        "attempts": row.attempts,
        "consent_basis": row.consent_basis,
        "provider": row.provider,
        "message_id": row.message_id,
        "subject": row.subject,
        "sent_at": _iso(row.sent_at),
        "updated_at": _iso(row.updated_at),
    }


def list_sends(
    conn: Connection, shop_id: int, *, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The shop's sends, most recently changed first."""
    return _recent(conn, sends, sends.c.updated_at, send_view, shop_id, status, limit)


def list_carts(
    conn: Connection, shop_id: int, *, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The shop's carts, most recently active first."""
    return _recent(conn, carts, carts.c.last_activity_at, cart_view, shop_id, status, limit)


def _recent(
    conn: Connection,
    table: Table,
    newest: Column[Any],
    view: Callable[[Any], dict[str, Any]],
    shop_id: int,
    status: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    stmt = select(table).where(table.c.shop_id == shop_id)
    if status is not None:
        stmt = stmt.where(table.c.status == status)
    stmt = stmt.order_by(newest.desc(), table.c.id.desc()).limit(limit)
    return [view(row) for row in conn.execute(stmt)]


def carts_of(conn: Connection, shop_id: int, cart_ids: list[int]) -> list[dict[str, Any]]:
    """The shop's carts among ``cart_ids`` (another shop's are left out), by id, in one
    query: what a confirmation page lists."""
    if not cart_ids:
        return []
    stmt = (
        select(carts)
        .where(carts.c.shop_id == shop_id, carts.c.id.in_(sorted(set(cart_ids))))
        .order_by(carts.c.id)
    )
    return [cart_view(row) for row in conn.execute(stmt)]


def show_cart(conn: Connection, cart_id: int, *, payloads: bool = False) -> dict[str, Any] | None:
    """One cart with its keys, events, sends and audit; ``payloads`` adds each event's raw
    body while it is kept (for a shopper's data export)."""
    repo = CartRepository(conn)
    row = repo.get(None, cart_id)
    if row is None:
        return None
    view = cart_view(row)
    view["keys"] = [{"kind": kind, "value": value} for kind, value in repo.keys_of(cart_id)]
    events = conn.execute(
        select(
            inbox.c.id,
            inbox.c.source,
            inbox.c.topic,
            inbox.c.external_id,
            inbox.c.status,
            inbox.c.occurred_at,
            inbox.c.received_at,
            inbox.c.payload,
        )
        .where(inbox.c.cart_id == cart_id)
        .order_by(inbox.c.occurred_at, inbox.c.id)
    )
    view["events"] = [
        {
            "id": e.id,
            "source": e.source,
            "topic": e.topic,
            "external_id": e.external_id,
            "status": e.status,
            "occurred_at": _iso(e.occurred_at),
            "received_at": _iso(e.received_at),
            **({"payload": _body(e.payload)} if payloads else {}),
        }
        for e in events
    ]
    view["sends"] = [
        send_view(s)
        for s in conn.execute(
            select(sends).where(sends.c.cart_id == cart_id).order_by(sends.c.step)
        )
    ]
    entries = conn.execute(select(audit).where(audit.c.cart_id == cart_id).order_by(audit.c.id))
    view["audit"] = [
        {
            "at": _iso(a.at),
            "actor": a.actor,
            "action": a.action,
            "reason": a.reason,
            "before": a.before,
            "after": a.after,
        }
        for a in entries
    ]
    return view


@dataclass(frozen=True)
class CartFilter:
    """What the owner's cart list is narrowed to; every part optional."""

    status: str | None = None
    total_from: int | None = None  # minor units, inclusive (a size tier's range)
    total_below: int | None = None  # minor units, exclusive
    with_unknown_total: bool = False  # a tier that takes carts with no total (the middle one)
    active_since: datetime | None = None
    active_before: datetime | None = None
    email_key: str | None = None
    reminded: bool | None = None


@dataclass(frozen=True)
class CartPage:
    rows: list[Any]
    next_after: tuple[datetime, int] | None  # where the next page starts, if there is one


def page_of_carts(
    conn: Connection,
    shop_id: int,
    where: CartFilter,
    *,
    after: tuple[datetime, int] | None = None,
    limit: int = 50,
) -> CartPage:
    """One page of the shop's carts, most recently active first. Pages are keyed on
    (last activity, id), not counted by offset: the 1,000th page costs what the first does,
    and carts arriving meanwhile neither repeat nor skip a row."""
    stmt = select(
        carts.c.id,
        carts.c.status,
        carts.c.email,
        carts.c.currency,
        carts.c.total_minor,
        carts.c["items"],  # not .items: that is the column collection's own method
        carts.c.reminders_sent,
        carts.c.first_activity_at,
        carts.c.last_activity_at,
        carts.c.next_wake_at,
        carts.c.source,
        carts.c.status_reason,
    ).where(carts.c.shop_id == shop_id)
    if where.status is not None:
        stmt = stmt.where(carts.c.status == where.status)
    size = []
    if where.total_from is not None:
        size.append(carts.c.total_minor >= where.total_from)
    if where.total_below is not None:
        size.append(carts.c.total_minor < where.total_below)
    if size:
        in_range = and_(*size)
        stmt = stmt.where(
            or_(in_range, carts.c.total_minor.is_(None)) if where.with_unknown_total else in_range
        )
    if where.active_since is not None:
        stmt = stmt.where(carts.c.last_activity_at >= where.active_since)
    if where.active_before is not None:
        stmt = stmt.where(carts.c.last_activity_at < where.active_before)
    if where.email_key is not None:
        stmt = stmt.where(carts.c.email_key == where.email_key)
    if where.reminded is not None:
        stmt = stmt.where(
            carts.c.reminders_sent > 0 if where.reminded else carts.c.reminders_sent == 0
        )
    if after is not None:
        stmt = stmt.where(after_pair(carts.c.last_activity_at, carts.c.id, after, descending=True))
    stmt = stmt.order_by(carts.c.last_activity_at.desc(), carts.c.id.desc()).limit(limit + 1)
    rows = list(conn.execute(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return CartPage(rows, (rows[-1].last_activity_at, rows[-1].id) if more and rows else None)


def clicks_and_orders(conn: Connection, cart_id: int) -> tuple[list[Any], list[Any]]:
    """A cart's clicks on its reminders and the orders that named it, oldest first."""
    clicked = list(
        conn.execute(
            select(clicks.c.at, sends.c.step)
            .join(sends, sends.c.id == clicks.c.send_id)
            .where(sends.c.cart_id == cart_id)
            .order_by(clicks.c.at)
        )
    )
    bought = list(
        conn.execute(
            select(
                orders.c.placed_at,
                orders.c.external_id,
                orders.c.source,
                orders.c.currency,
                orders.c.total_minor,
                orders.c.cancelled_at,
                orders.c.financial_status,
                orders.c.test,
                orders.c.refunded_minor,
            )
            .where(orders.c.cart_id == cart_id)
            .order_by(orders.c.placed_at)
        )
    )
    return clicked, bought
