"""Shopify webhooks: checkouts, carts, orders and the three compliance topics.

Recent API versions send checkouts with ``token`` and ``cart_token`` but no top-level
``id``, and orders may carry ``cart_token: null``: every identifier present becomes a
cart key, and an order with none is matched by the shopper's email instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cartnudge.events import (
    CartEvent,
    EventKind,
    KeyKind,
    OrderInfo,
    TotalParts,
    Unapplicable,
)
from cartnudge.intake import checks
from cartnudge.intake import fields as f
from cartnudge.shops.repository import ShopRecord

SOURCE = "shopify"
CHECKOUT_TOPICS = frozenset({"checkouts/create", "checkouts/update"})
CART_TOPICS = frozenset({"carts/create", "carts/update"})
ORDER_TOPICS = frozenset({"orders/create", "orders/paid", "orders/updated", "orders/cancelled"})
REFUND_TOPIC = "refunds/create"
COMPLIANCE_TOPICS = frozenset({"customers/data_request", "customers/redact", "shop/redact"})
TOPICS = (
    CHECKOUT_TOPICS
    | CART_TOPICS
    | ORDER_TOPICS
    | COMPLIANCE_TOPICS
    | {"checkouts/delete", REFUND_TOPIC}
)
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
    if topic == REFUND_TOPIC:
        return _refund(topic, delivery_id, payload, shop_currency), None
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
        **_total_parts(payload, code),
        email=_email(payload),
        first_name=_first_name(payload),
        locale=f.text(payload, "customer_locale"),
        accepts_marketing=f.flag(payload, "buyer_accepts_marketing"),
        consent_source=CONSENT_SOURCE,
        return_url=f.text(payload, "abandoned_checkout_url"),
    )
    return event, discount


def _total_parts(payload: dict[str, Any], code: str | None) -> TotalParts:
    """A checkout's subtotal (before discounts), discount, shipping and tax, each only if
    the payload says. Shopify's ``subtotal_price`` is already net of ``total_discounts``;
    ``total_line_items_price`` is the sum of the lines before them."""
    discount = f.minor(payload.get("total_discounts"), code, "total_discounts")
    if discount is None:  # the REST checkout resource's name, a string or an object
        applied = payload.get("applied_discount")
        if isinstance(applied, dict):
            applied = applied.get("amount")
        discount = f.minor(applied, code, "applied_discount")
    subtotal = f.minor(payload.get("total_line_items_price"), code, "total_line_items_price")
    if subtotal is None:
        net = f.minor(payload.get("subtotal_price"), code, "subtotal_price")
        subtotal = None if net is None else net + (discount or 0)
    return TotalParts(
        subtotal_minor=subtotal,
        discount_minor=discount,
        shipping_minor=_shipping(payload, code),
        tax_minor=f.minor(payload.get("total_tax"), code, "total_tax"),
    )


def _shipping(payload: dict[str, Any], code: str | None) -> int | None:
    """The sum of the shipping lines' prices; ``None`` if no shipping was chosen yet."""
    lines = payload.get("shipping_lines", payload.get("shipping_line"))
    if isinstance(lines, dict):
        lines = [lines]
    if not isinstance(lines, list) or not lines:
        return None
    total = 0
    for index, line in enumerate(lines):
        if not isinstance(line, dict):
            raise Unapplicable(f"shipping line {index}: expected an object")
        price = f.minor(line.get("price"), code, f"shipping line {index} price")
        if price is None:
            return None
        total += price
    return total


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
            cancelled_at=f.instant(payload, "cancelled_at"),
            financial_status=f.text(payload, "financial_status"),
            test=payload.get("test") is True,
            refunds=_refunds(payload.get("refunds"), shop_currency),
        ),
    )


def _refund(topic: str, delivery_id: str, payload: dict[str, Any], shop_currency: str) -> CartEvent:
    """One refund of an order, recorded on the order (``refunds/create``); it changes no
    cart. Its order may not have arrived yet: the refund's time stands in for when the
    order was placed until the order's own delivery says."""
    order_id = f.text(payload, "order_id")
    if order_id is None:
        raise Unapplicable("missing field: order_id")
    refunded_at = f.required_instant(payload, "created_at", "processed_at")
    return CartEvent(
        source=SOURCE,
        external_id=delivery_id,
        topic=topic,
        kind=EventKind.ORDER_CHANGED,
        occurred_at=refunded_at,
        keys=(),
        order=OrderInfo(
            external_id=order_id,
            placed_at=refunded_at,
            refunds=_refunds([payload], shop_currency),
        ),
    )


def _refunds(refunds: Any, shop_currency: str) -> tuple[tuple[str, int], ...]:
    """(refund id, minor units) for each refund: the sum of its successful refund
    transactions, in each transaction's currency (the shop's, when it does not say)."""
    if refunds is None:
        return ()
    if not isinstance(refunds, list):
        raise Unapplicable("refunds: expected a list")
    found = []
    for index, refund in enumerate(refunds):
        refund_id = f.text(refund, "id") if isinstance(refund, dict) else None
        if refund_id is None:
            raise Unapplicable(f"refunds.{index}.id: missing value")
        transactions = refund.get("transactions") or []
        if not isinstance(transactions, list):
            raise Unapplicable(f"refunds.{index}.transactions: expected a list")
        total = 0
        for number, tx in enumerate(transactions):
            if not isinstance(tx, dict):
                raise Unapplicable(f"refunds.{index}.transactions.{number}: expected an object")
            if f.text(tx, "kind") != "refund" or f.text(tx, "status") not in (None, "success"):
                continue
            code = f.currency(f.text(tx, "currency"), shop_currency)
            where = f"refunds.{index}.transactions.{number}.amount"
            total += f.minor(tx.get("amount"), code, where) or 0
        found.append((refund_id, total))
    return tuple(found)
