"""Shopify webhooks: checkouts, carts, orders and the three compliance topics.

Recent API versions send checkouts with ``token`` and ``cart_token`` but no top-level
``id``, and orders may carry ``cart_token: null``: every identifier present becomes a
cart key, and an order with none is matched by the shopper's email instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cartnudge.intake import checks
from cartnudge.intake import fields as f
from cartnudge.intake.events import CartEvent, EventKind, KeyKind, OrderInfo, Unapplicable
from cartnudge.shops.repository import ShopRecord

SOURCE = "shopify"
CHECKOUT_TOPICS = frozenset({"checkouts/create", "checkouts/update"})
CART_TOPICS = frozenset({"carts/create", "carts/update"})
ORDER_TOPICS = frozenset({"orders/create", "orders/paid"})
COMPLIANCE_TOPICS = frozenset({"customers/data_request", "customers/redact", "shop/redact"})
TOPICS = CHECKOUT_TOPICS | CART_TOPICS | ORDER_TOPICS | COMPLIANCE_TOPICS | {"checkouts/delete"}
CONSENT_SOURCE = "shopify:buyer_accepts_marketing"


@dataclass(frozen=True, slots=True)
class ComplianceRequest:
    """One of Shopify's mandatory privacy topics, recorded for the privacy stage."""

    topic: str


def parse(
    topic: str,
    delivery_id: str,
    payload: Any,
    *,
    shop: ShopRecord,
    triggered_at: datetime,
) -> CartEvent | ComplianceRequest:
    """The event, held to ``checks.vet``: what Shopify sends cannot be fixed at the source,
    so a bad locale or return link is ignored rather than refused."""
    parsed = _parse(topic, delivery_id, payload, shop.currency, triggered_at)
    if isinstance(parsed, ComplianceRequest):
        return parsed
    event, discount = parsed
    return checks.vet(event, checks.Links.of(shop), strict=False, discount_minor=discount)


def _parse(
    topic: str, delivery_id: str, payload: Any, shop_currency: str, triggered_at: datetime
) -> tuple[CartEvent, int | None] | ComplianceRequest:
    """The event and the discount its source states, if any."""
    if topic not in TOPICS:
        raise Unapplicable(f"unsupported Shopify topic {topic!r}")
    if not isinstance(payload, dict):
        raise Unapplicable("payload is not a JSON object")
    if topic in COMPLIANCE_TOPICS:
        return ComplianceRequest(topic)
    if topic in CHECKOUT_TOPICS:
        return _checkout(topic, delivery_id, payload, shop_currency)
    if topic == "checkouts/delete":
        deleted = CartEvent(
            source=SOURCE,
            external_id=delivery_id,
            topic=topic,
            kind=EventKind.CART_DELETED,
            occurred_at=f.instant(payload, "updated_at") or triggered_at,
            keys=_checkout_keys(payload),
        )
        return deleted, None
    if topic in CART_TOPICS:
        return _cart(topic, delivery_id, payload, shop_currency), None
    return _order(topic, delivery_id, payload, shop_currency), None


def _checkout_keys(payload: dict[str, Any]) -> tuple[tuple[KeyKind, str], ...]:
    keys: list[tuple[KeyKind, str]] = []
    if token := f.text(payload, "token"):
        keys.append((KeyKind.SHOPIFY_CHECKOUT, token))
    if cart_token := f.text(payload, "cart_token"):
        keys.append((KeyKind.SHOPIFY_CART, cart_token))
    if checkout_id := f.text(payload, "id"):
        keys.append((KeyKind.SHOPIFY_CHECKOUT_ID, checkout_id))
    if not keys:
        raise Unapplicable("missing field: token, cart_token or id")
    return tuple(keys)


def _first_name(payload: dict[str, Any]) -> str | None:
    return (
        f.text(f.obj(payload, "customer"), "first_name")
        or f.text(f.obj(payload, "billing_address"), "first_name")
        or f.text(f.obj(payload, "shipping_address"), "first_name")
    )


def _email(payload: dict[str, Any]) -> str | None:
    return f.text(payload, "email", "contact_email") or f.text(f.obj(payload, "customer"), "email")


def _checkout(
    topic: str, delivery_id: str, payload: dict[str, Any], shop_currency: str
) -> tuple[CartEvent, int | None]:
    code = f.currency(f.text(payload, "presentment_currency", "currency"), shop_currency)
    completed = f.instant(payload, "completed_at")
    discount = f.minor(payload.get("total_discounts"), code, "total_discounts")
    event = CartEvent(
        source=SOURCE,
        external_id=delivery_id,
        topic=topic,
        kind=EventKind.CHECKOUT_COMPLETED if completed else EventKind.CHECKOUT_STARTED,
        occurred_at=f.required_instant(payload, "updated_at", "created_at"),
        keys=_checkout_keys(payload),
        items=f.line_items(payload.get("line_items"), code, price_key="price"),
        currency=code,
        total_minor=f.minor(payload.get("total_price"), code, "total_price"),
        email=_email(payload),
        first_name=_first_name(payload),
        locale=f.text(payload, "customer_locale"),
        accepts_marketing=f.flag(payload, "buyer_accepts_marketing"),
        consent_source=CONSENT_SOURCE,
        return_url=f.text(payload, "abandoned_checkout_url"),
    )
    return event, discount


def _cart(topic: str, delivery_id: str, payload: dict[str, Any], shop_currency: str) -> CartEvent:
    token = f.text(payload, "token", "id")
    if token is None:
        raise Unapplicable("missing field: token")
    code = f.currency(f.text(payload, "currency"), shop_currency)
    items = f.line_items(payload.get("line_items"), code, price_key="price")
    return CartEvent(
        source=SOURCE,
        external_id=delivery_id,
        topic=topic,
        kind=EventKind.CART_UPDATED,
        occurred_at=f.required_instant(payload, "updated_at", "created_at"),
        keys=((KeyKind.SHOPIFY_CART, token),),
        items=items,
        currency=code,
        total_minor=f.basket_total(items),
    )


def _order(topic: str, delivery_id: str, payload: dict[str, Any], shop_currency: str) -> CartEvent:
    order_id = f.text(payload, "id")
    if order_id is None:
        raise Unapplicable("missing field: id")
    placed_at = f.required_instant(payload, "processed_at", "created_at")
    code = f.currency(f.text(payload, "presentment_currency", "currency"), shop_currency)
    keys: list[tuple[KeyKind, str]] = []
    if checkout_token := f.text(payload, "checkout_token"):
        keys.append((KeyKind.SHOPIFY_CHECKOUT, checkout_token))
    if cart_token := f.text(payload, "cart_token"):
        keys.append((KeyKind.SHOPIFY_CART, cart_token))
    total = f.minor(payload.get("total_price"), code, "total_price")
    return CartEvent(
        source=SOURCE,
        external_id=delivery_id,
        topic=topic,
        kind=EventKind.ORDER_PLACED,
        occurred_at=placed_at,
        keys=tuple(keys),
        email=_email(payload),
        first_name=_first_name(payload),
        locale=f.text(payload, "customer_locale"),
        order=OrderInfo(
            external_id=order_id,
            placed_at=placed_at,
            total_minor=total,
            currency=code,
            updated_at=f.instant(payload, "updated_at"),
        ),
    )
