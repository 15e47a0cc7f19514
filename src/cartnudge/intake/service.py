"""Intake use cases: record a verified delivery once and apply it, in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Connection

from cartnudge.carts.repository import CartRepository
from cartnudge.carts.service import apply_events
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
    replay: it is answered as the first was, and changes nothing."""
    outcomes: list[Outcome | None] = [None] * len(deliveries)
    first_of: dict[tuple[int, str, str], int] = {}
    fresh: list[int] = []
    for i, delivery in enumerate(deliveries):
        identity = (delivery.shop.id, delivery.source, delivery.external_id)
        if identity not in first_of:
            first_of[identity] = i
            fresh.append(i)
    inserted = _insert_inbox(conn, [deliveries[i] for i in fresh])

    recorded: list[tuple[ShopRecord, int, CartEvent | ComplianceRequest]] = []
    recorded_at: list[int] = []  # delivery index of each recorded item
    for i in fresh:
        delivery = deliveries[i]
        parsed = delivery.parsed
        inbox_id = inserted.get((delivery.shop.id, delivery.source, delivery.external_id))
        if inbox_id is None:
            outcomes[i] = _earlier_outcome(conn, delivery)
        elif isinstance(parsed, Unapplicable):
            outcomes[i] = Outcome("dead", inbox_id, reason=str(parsed))
        else:
            recorded.append((delivery.shop, inbox_id, parsed))
            recorded_at.append(i)
    for i, outcome in zip(recorded_at, apply_recorded(conn, recorded, now), strict=True):
        outcomes[i] = outcome

    for i, delivery in enumerate(deliveries):
        if outcomes[i] is None:  # a copy of a delivery earlier in this batch
            first = outcomes[first_of[(delivery.shop.id, delivery.source, delivery.external_id)]]
            assert first is not None
            outcomes[i] = Outcome("duplicate", first.inbox_id, first.cart_id, first.reason)
    return [o for o in outcomes if o is not None]


def _insert_inbox(
    conn: Connection, deliveries: Sequence[Delivery]
) -> dict[tuple[int, str, str], int]:
    """Insert the inbox rows; the ids of those that were new, by identity."""
    rows = []
    for delivery in deliveries:
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
            }
        )
    return InboxRepository(conn).insert_new(rows)


def apply_recorded(
    conn: Connection,
    items: Sequence[tuple[ShopRecord, int, CartEvent | ComplianceRequest]],
    now: datetime,
) -> list[Outcome]:
    """Act on deliveries already in the inbox (fresh ones, or a replayed dead letter):
    compliance requests are queued for the privacy stage, cart events applied as a batch."""
    outcomes: dict[int, Outcome] = {}
    events: list[tuple[ShopRecord, CartEvent]] = []
    event_inbox: list[int] = []
    for shop, inbox_id, parsed in items:
        if isinstance(parsed, ComplianceRequest):
            InboxRepository(conn).queue_compliance(shop.id, parsed.topic, inbox_id, now)
            outcomes[inbox_id] = Outcome("applied", inbox_id)
        else:
            events.append((shop, parsed))
            event_inbox.append(inbox_id)
    applied = apply_events(CartRepository(conn), events, now) if events else []
    links = []
    for inbox_id, result in zip(event_inbox, applied, strict=True):
        outcomes[inbox_id] = Outcome(
            "applied",
            inbox_id,
            cart_id=result.cart_id,
            created=result.created,
            closed_cart_id=result.closed_cart_id,
            not_closed=result.not_closed,
        )
        if result.cart_id is not None:
            links.append({"_inbox_id": inbox_id, "_cart_id": result.cart_id})
    InboxRepository(conn).link_carts(links)
    return [outcomes[inbox_id] for _, inbox_id, _ in items]


def _earlier_outcome(conn: Connection, delivery: Delivery) -> Outcome:
    """A replay: answer as the first delivery was answered, and change nothing."""
    row = InboxRepository(conn).by_identity(delivery.shop.id, delivery.source, delivery.external_id)
    return Outcome(
        "duplicate",
        row.id,
        cart_id=row.cart_id,
        reason=row.reason if row.status == InboxStatus.DEAD else None,
    )


def record_failure(conn: Connection, delivery: Delivery, reason: str) -> Outcome:
    """Keep a delivery whose apply step crashed as a dead letter, so it can be replayed."""
    failed = replace(delivery, parsed=Unapplicable(f"could not apply: {reason}"))
    return ingest(conn, failed, delivery.received_at)
