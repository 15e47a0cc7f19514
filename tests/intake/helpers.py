"""Posting signed deliveries through the real app, and reading back what was stored."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import Engine, func, select

from cartnudge.clock import system_clock
from cartnudge.db.models import AuditEntry, Cart, CartKey, InboxEvent, Order
from cartnudge.db.session import reading
from cartnudge.intake.examples import (
    ExampleRequest,
    signed_shopify,
    signed_storefront,
    signed_stripe,
    storefront_event,
)
from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0


def post(client: TestClient, request: ExampleRequest) -> Response:
    return client.post(request.path, content=request.body, headers=request.headers)


def post_shopify(
    client: TestClient, shop: ShopRecord, topic: str, payload: dict[str, Any], webhook_id: str
) -> Response:
    return post(client, signed_shopify(shop, topic, payload, webhook_id=webhook_id))


def post_stripe(client: TestClient, shop: ShopRecord, event: dict[str, Any]) -> Response:
    return post(client, signed_stripe(shop, event, system_clock()))


def post_storefront(client: TestClient, shop: ShopRecord, event: dict[str, Any]) -> Response:
    return post(client, signed_storefront(shop, event, system_clock()))


def now_ts() -> int:
    return int(time.time())


def count(engine: Engine, model: Any) -> int:
    table = model
    with reading(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def stored_counts(engine: Engine) -> dict[str, int]:
    return {
        model.name: count(engine, model) for model in (InboxEvent, Cart, CartKey, Order, AuditEntry)
    }


def carts(engine: Engine, shop_id: int) -> list[Any]:
    table = Cart
    with reading(engine) as conn:
        stmt = select(table).where(table.c.shop_id == shop_id).order_by(table.c.id)
        return list(conn.execute(stmt))


def cart_state(engine: Engine, shop_id: int) -> list[dict[str, Any]]:
    """Every cart's content, without surrogate ids or our own timestamps, keyed by its
    source keys: what must be identical whatever order events arrived in."""
    key_table = CartKey
    skip = {"id", "shop_id", "created_at", "updated_at"}
    out = []
    with reading(engine) as conn:
        for row in carts(engine, shop_id):
            keys = sorted(
                (k.kind, k.value)
                for k in conn.execute(select(key_table).where(key_table.c.cart_id == row.id))
            )
            content = {k: v for k, v in row._mapping.items() if k not in skip}
            out.append({"keys": keys, **content})
    return sorted(out, key=lambda c: c["keys"])


def stripe_completed_event(session_id: str) -> dict[str, Any]:
    """A ``checkout.session.completed`` event for a session (paid), built from the same
    envelope as the example expired event."""
    from datetime import UTC, datetime

    from cartnudge.intake.examples import stripe_expired_event

    event: dict[str, Any] = stripe_expired_event(session_id=session_id, created=datetime.now(UTC))
    event.update(type="checkout.session.completed", livemode=True)  # a live sale
    event["data"]["object"].update(status="complete", payment_status="paid")
    return event


def storefront_life(shop: ShopRecord, now: datetime) -> list[ExampleRequest]:
    """A storefront cart's whole life (a late update after its order included), and a
    second cart of the same shopper first seen with only her address: signed, each with a
    fixed delivery id, so that copies are replays."""
    out = []
    for minutes, kind, email in [
        (0, "cart_updated", None),
        (5, "checkout_started", "carol@example.com"),
        (9, "cart_saved", None),
        (30, "order_placed", None),
        (45, "cart_updated", None),
    ]:
        event: dict[str, Any] = storefront_event(
            cart_id="sf-1",
            event_id=f"sf-{minutes}",
            occurred_at=T0 + timedelta(minutes=minutes),
            kind=kind,
            email=email,
            order_id="sf-order-1" if kind == "order_placed" else None,
        )
        out.append(signed_storefront(shop, event, now, msg_id=f"msg-sf-{minutes}"))
    second = storefront_event(
        cart_id="sf-2", event_id="sf2", occurred_at=T0, email="carol@example.com"
    )
    out.append(signed_storefront(shop, second, now, msg_id="msg-sf2"))
    return out
