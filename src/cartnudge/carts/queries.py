"""Read models for owners: the cart list, one cart with its timeline, and the sends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Column, Connection, Table, select

from cartnudge.carts.repository import CartRepository
from cartnudge.db.models import AuditEntry, Cart, InboxEvent, Send

carts = Cart
inbox = InboxEvent
audit = AuditEntry
sends = Send


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
