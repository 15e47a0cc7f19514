"""A cart's whole story in one list, oldest first: the events received, what the waiter
and the owner did (the audit rows, with before and after), each reminder and what became
of it, the clicks, and the orders."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from cartnudge.carts.queries import clicks_and_orders
from cartnudge.money import format_minor


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str  # event, audit, email, click, order
    title: str
    detail: str | None = None
    # What an audited change changed: (what, before, after), each as text.
    changes: list[tuple[str, str, str]] = field(default_factory=list)
    send_id: int | None = None  # a reminder's, for the link to its email


def _changes(before: Any, after: Any) -> list[tuple[str, str, str]]:
    """An audit row's before and after, setting by setting: ``status: open → suppressed``
    rather than two JSON objects side by side."""
    was = before if isinstance(before, dict) else {} if before is None else {"value": before}
    now = after if isinstance(after, dict) else {} if after is None else {"value": after}
    return [
        (key, _plain(was.get(key)), _plain(now.get(key)))
        for key in [*was, *(k for k in now if k not in was)]
        if was.get(key) != now.get(key)
    ]


def _plain(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _instant(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def timeline(conn: Connection, cart: dict[str, Any]) -> list[Entry]:
    """``cart`` as ``carts.queries.show_cart`` gives it."""
    entries: list[Entry] = []
    for event in cart["events"]:
        at = _instant(event["occurred_at"]) or _instant(event["received_at"])
        assert at is not None
        detail = f"from {event['source']}, delivery {event['external_id']}"
        if event["status"] != "applied":
            detail += f" ({event['status']})"
        entries.append(Entry(at, "event", f"received {event['topic']}", detail))
    for row in cart["audit"]:
        at = _instant(row["at"])
        assert at is not None
        changes = _changes(row["before"], row["after"])
        entries.append(
            Entry(at, "audit", f"{row['action']} by {row['actor']}", row["reason"], changes)
        )
    for send in cart["sends"]:
        at = _instant(send["sent_at"]) or _instant(send["updated_at"])
        assert at is not None
        title = f"reminder {send['step']}: {send['status']}"
        detail = "; ".join(
            part
            for part in (
                f"“{send['subject']}”" if send["subject"] else None,
                send["reason"],
                f"due {send['due_at'][:16].replace('T', ' ')} UTC"
                if send["status"] == "queued"
                else None,
            )
            if part
        )
        entries.append(Entry(at, "email", title, detail or None, send_id=send["id"]))
    clicked, bought = clicks_and_orders(conn, cart["id"])
    for click in clicked:
        entries.append(Entry(click.at, "click", f"followed the link in reminder {click.step}"))
    for order in bought:
        money = (
            format_minor(order.total_minor, order.currency)
            if order.total_minor is not None and order.currency
            else "no total"
        )
        notes = [
            note
            for note, present in (
                ("test order", order.test),
                ("cancelled", order.cancelled_at is not None),
                (f"financial status {order.financial_status}", order.financial_status),
                (
                    f"refunded {format_minor(order.refunded_minor, order.currency)}",
                    order.refunded_minor and order.currency,
                ),
            )
            if present
        ]
        entries.append(
            Entry(
                order.placed_at,
                "order",
                f"order {order.external_id} ({order.source}): {money}",
                ", ".join(notes) or None,
            )
        )
    entries.sort(key=lambda e: e.at)
    return entries
