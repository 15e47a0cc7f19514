"""Intake use cases: record a verified delivery once and apply it, in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from cartnudge.carts.repository import CartRepository
from cartnudge.carts.service import apply_events
from cartnudge.db.models import InboxEvent, InboxStatus, PrivacyRequest, RequestState, table_of
from cartnudge.db.portable import insert_many_returning
from cartnudge.events import CartEvent, Unapplicable
from cartnudge.intake.shopify import ComplianceRequest
from cartnudge.shops.repository import ShopRecord

inbox = table_of(InboxEvent)
privacy = table_of(PrivacyRequest)

Parsed = CartEvent | ComplianceRequest | Unapplicable

_INSERT_PRIVACY = insert(privacy)
_SET_INBOX_CART = (
    update(inbox).where(inbox.c.id == bindparam("_inbox_id")).values(cart_id=bindparam("_cart_id"))
)


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
    for i, outcome in zip(recorded_at, _apply_recorded(conn, recorded, now), strict=True):
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
    returned = insert_many_returning(
        conn,
        inbox,
        rows,
        conflict=("shop_id", "source", "external_id"),
        returning=("id", "shop_id", "source", "external_id"),
    )
    return {(r.shop_id, r.source, r.external_id): r.id for r in returned}


def _apply_recorded(
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
            conn.execute(
                _INSERT_PRIVACY,
                {
                    "shop_id": shop.id,
                    "kind": parsed.topic,
                    "inbox_event_id": inbox_id,
                    "state": RequestState.PENDING.value,
                    "received_at": now,
                },
            )
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
    if links:
        conn.execute(_SET_INBOX_CART, links)
    return [outcomes[inbox_id] for _, inbox_id, _ in items]


def _earlier_outcome(conn: Connection, delivery: Delivery) -> Outcome:
    """A replay: answer as the first delivery was answered, and change nothing."""
    row = conn.execute(
        select(inbox.c.id, inbox.c.status, inbox.c.reason, inbox.c.cart_id).where(
            inbox.c.shop_id == delivery.shop.id,
            inbox.c.source == delivery.source,
            inbox.c.external_id == delivery.external_id,
        )
    ).one()
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


def dead_letter_info(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "shop_id": row.shop_id,
        "source": row.source,
        "external_id": row.external_id,
        "topic": row.topic,
        "reason": row.reason,
        "received_at": row.received_at.isoformat(),
    }


class ReplayError(ValueError):
    """``events replay`` was asked for something it cannot do."""


def dead_letters(conn: Connection, shop_id: int | None = None) -> list[dict[str, Any]]:
    stmt = select(inbox).where(inbox.c.status == InboxStatus.DEAD)
    if shop_id is not None:
        stmt = stmt.where(inbox.c.shop_id == shop_id)
    return [dead_letter_info(row) for row in conn.execute(stmt.order_by(inbox.c.id))]


def replay(conn: Connection, inbox_id: int, now: datetime) -> Outcome:
    """Parse a dead letter's kept body again and apply it. The caller commits."""
    import orjson

    from cartnudge.intake.lanes import parse_payload
    from cartnudge.shops.repository import ShopRepository

    row = conn.execute(select(inbox).where(inbox.c.id == inbox_id).with_for_update()).first()
    if row is None:
        raise ReplayError(f"no event {inbox_id}")
    if row.status != InboxStatus.DEAD:
        raise ReplayError(f"event {inbox_id} is {row.status}, not a dead letter")
    shop = ShopRepository(conn).by_id(row.shop_id)
    assert shop is not None
    try:
        payload = orjson.loads(row.payload or "")
    except orjson.JSONDecodeError:
        parsed: Parsed = Unapplicable("kept body is not JSON")
    else:
        parsed = parse_payload(
            row.source, row.topic, row.external_id, payload, shop, row.received_at
        )
    if isinstance(parsed, Unapplicable):
        conn.execute(update(inbox).where(inbox.c.id == inbox_id).values(reason=str(parsed)))
        return Outcome("dead", inbox_id, reason=str(parsed))
    conn.execute(
        update(inbox)
        .where(inbox.c.id == inbox_id)
        .values(
            status=InboxStatus.APPLIED,
            reason=None,
            occurred_at=parsed.occurred_at if isinstance(parsed, CartEvent) else None,
        )
    )
    return _apply_recorded(conn, [(shop, inbox_id, parsed)], now)[0]
