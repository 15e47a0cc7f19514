"""Intake use cases: record a verified delivery once and apply it, in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Connection

from cartnudge.carts.repository import CartRepository
from cartnudge.carts.service import Applied, ConcurrentChange, apply_events
from cartnudge.db.models import InboxStatus
from cartnudge.events import CartEvent, Unapplicable
from cartnudge.intake.repository import InboxRepository
from cartnudge.intake.shopify import ComplianceRequest
from cartnudge.shops.repository import ShopRecord

Parsed = CartEvent | ComplianceRequest | Unapplicable


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified delivery, parsed (or not) and ready to be recorded."""

    shop: ShopRecord
    source: str
    external_id: str
    topic: str
    body: str
    parsed: Parsed
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # "applied", "duplicate" or "dead"
    inbox_id: int | None
    cart_id: int | None = None
    reason: str | None = None
    created: bool = False  # the delivery made a new cart
    # An order: the cart it closed, or why it closed none (both ``None``: not an order).
    closed_cart_id: int | None = None
    not_closed: str | None = None


def ingest(conn: Connection, delivery: Delivery, now: datetime) -> Outcome:
    """Record one delivery in the inbox (once) and apply it. The caller commits."""
    return ingest_batch(conn, [delivery], now)[0]


def ingest_batch(conn: Connection, deliveries: Sequence[Delivery], now: datetime) -> list[Outcome]:
    """Record every delivery in the inbox (once) and apply the new ones, in the caller's
    transaction. A delivery seen before (in an earlier batch or earlier in this one) is a
    replay: it is answered as the first was, and changes nothing.

    New deliveries are applied first and then inserted, each inbox row already naming the
    cart it moved: the row is written once, not inserted and then updated (on PostgreSQL
    the update was the costliest statement of a batch, and wrote each body to the WAL
    twice)."""
    outcomes: list[Outcome | None] = [None] * len(deliveries)
    first_of: dict[tuple[int, str, str], int] = {}
    for i, delivery in enumerate(deliveries):
        first_of.setdefault(_identity(delivery), i)
    inbox = InboxRepository(conn)
    seen = inbox.recorded(list(first_of))
    new: list[int] = []
    for identity, i in first_of.items():
        if (row := seen.get(identity)) is not None:
            reason = row.reason if row.status == InboxStatus.DEAD else None
            outcomes[i] = Outcome("duplicate", row.id, cart_id=row.cart_id, reason=reason)
        else:
            new.append(i)

    moving: list[int] = []
    events: list[tuple[ShopRecord, CartEvent]] = []
    for i in new:
        if isinstance(parsed := deliveries[i].parsed, CartEvent):
            moving.append(i)
            events.append((deliveries[i].shop, parsed))
    results = apply_events(CartRepository(conn), events, now) if events else []
    applied = dict(zip(moving, results, strict=True))
    inserted = _insert_inbox(
        inbox, [(deliveries[i], applied[i].cart_id if i in applied else None) for i in new]
    )
    if len(inserted) < len(new):
        # Another writer recorded one of them after ``recorded`` looked: roll back and go
        # again, when it is a replay like any other.
        raise ConcurrentChange("a delivery of this batch was recorded meanwhile")

    for i in new:
        delivery = deliveries[i]
        parsed, inbox_id = delivery.parsed, inserted[_identity(delivery)]
        if isinstance(parsed, Unapplicable):
            outcomes[i] = Outcome("dead", inbox_id, reason=str(parsed))
        elif isinstance(parsed, ComplianceRequest):
            inbox.queue_compliance(delivery.shop.id, parsed.topic, inbox_id, now)
            outcomes[i] = Outcome("applied", inbox_id)
        else:
            outcomes[i] = _applied(inbox_id, applied[i])

    for i, delivery in enumerate(deliveries):
        if outcomes[i] is None:  # a copy of a delivery earlier in this batch
            first = outcomes[first_of[_identity(delivery)]]
            assert first is not None
            outcomes[i] = Outcome("duplicate", first.inbox_id, first.cart_id, first.reason)
    return [o for o in outcomes if o is not None]


def _identity(delivery: Delivery) -> tuple[int, str, str]:
    return (delivery.shop.id, delivery.source, delivery.external_id)


def _insert_inbox(
    inbox: InboxRepository, deliveries: Sequence[tuple[Delivery, int | None]]
) -> dict[tuple[int, str, str], int]:
    """Insert the inbox rows (each with the cart it moved, if any); the ids of those that
    were new, by identity."""
    rows = []
    for delivery, cart_id in deliveries:
        parsed = delivery.parsed
        dead = isinstance(parsed, Unapplicable)
        rows.append(
            {
                "shop_id": delivery.shop.id,
                "source": delivery.source,
                "external_id": delivery.external_id,
                "topic": delivery.topic[:64],
                "status": InboxStatus.DEAD if dead else InboxStatus.APPLIED,
                "reason": str(parsed) if dead else None,
                "occurred_at": parsed.occurred_at if isinstance(parsed, CartEvent) else None,
                "received_at": delivery.received_at,
                "payload": delivery.body,
                "cart_id": cart_id,
            }
        )
    return inbox.insert_new(rows)


def apply_recorded(
    conn: Connection,
    shop: ShopRecord,
    inbox_id: int,
    parsed: CartEvent | ComplianceRequest,
    now: datetime,
) -> Outcome:
    """Act on a delivery already in the inbox (a replayed dead letter): a compliance
    request is queued for the privacy stage, a cart event applied."""
    inbox = InboxRepository(conn)
    if isinstance(parsed, ComplianceRequest):
        inbox.queue_compliance(shop.id, parsed.topic, inbox_id, now)
        return Outcome("applied", inbox_id)
    [result] = apply_events(CartRepository(conn), [(shop, parsed)], now)
    if result.cart_id is not None:
        inbox.link_cart(inbox_id, result.cart_id)
    return _applied(inbox_id, result)


def _applied(inbox_id: int, result: Applied) -> Outcome:
    return Outcome(
        "applied",
        inbox_id,
        cart_id=result.cart_id,
        created=result.created,
        closed_cart_id=result.closed_cart_id,
        not_closed=result.not_closed,
    )


def record_failure(conn: Connection, delivery: Delivery, reason: str) -> Outcome:
    """Keep a delivery whose apply step crashed as a dead letter, so it can be replayed."""
    failed = replace(delivery, parsed=Unapplicable(f"could not apply: {reason}"))
    return ingest(conn, failed, delivery.received_at)
