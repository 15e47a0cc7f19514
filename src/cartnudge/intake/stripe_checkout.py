"""Stripe Checkout events: an expired session is an abandoned cart; a completed one a sale.

Stripe amounts are already integer minor units. A session opened from an expired one's
recovery link names it in ``recovered_from``, so paying it marks the original cart bought.
"""

from __future__ import annotations

from typing import Any

from cartnudge.events import (
    CartEvent,
    EventKind,
    Item,
    KeyKind,
    OrderInfo,
    TotalParts,
    Unapplicable,
)
from cartnudge.intake import checks
from cartnudge.intake import fields as f
from cartnudge.shops.repository import ShopRecord

SOURCE = "stripe"
EXPIRED = "checkout.session.expired"
PAID = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
CONSENT_SOURCE = "stripe:consent.promotions"


def event_id(payload: Any) -> str:
    if not isinstance(payload, dict) or not f.text(payload, "id"):
        raise Unapplicable("missing field: id")
    return str(f.text(payload, "id"))


def parse(payload: Any, shop: ShopRecord) -> CartEvent:
    """The event, held to ``checks.vet`` (not strictly: Stripe's payload cannot be fixed at
    the source). A recovery link may point to Stripe's own checkout pages."""
    event, discount = _parse(payload)
    links = checks.Links.of(shop, *checks.STRIPE_HOSTS)
    return checks.vet(event, links, strict=False, discount_minor=discount)


def _parse(payload: Any) -> tuple[CartEvent, int | None]:
    """The event and the discount the session states, if any."""
    external_id = event_id(payload)
    kind = f.text(payload, "type")
    if kind is None:
        raise Unapplicable("missing field: type")
    if kind != EXPIRED and kind not in PAID:
        raise Unapplicable(f"unsupported Stripe event type {kind!r}")
    session = f.obj(f.obj(payload, "data"), "object")
    session_id = f.text(session, "id")
    if session_id is None:
        raise Unapplicable("missing field: data.object.id")
    occurred_at = f.required_instant(payload, "created")
    code = f.currency(f.text(session, "currency"))
    details = f.obj(session, "customer_details")
    email = f.text(details, "email") or f.text(session, "customer_email")
    common: dict[str, Any] = {
        "source": SOURCE,
        "external_id": external_id,
        "topic": kind,
        "occurred_at": occurred_at,
        "email": email,
        "first_name": f.first_word(f.text(details, "name")),
    }
    discount = _amount(f.obj(session, "total_details").get("amount_discount"))
    if kind == EXPIRED:
        expired = CartEvent(
            kind=EventKind.CHECKOUT_STARTED,
            keys=((KeyKind.STRIPE_SESSION, session_id),),
            activity_at=f.instant(session, "created"),
            items=_line_items(session),
            currency=code,
            total_minor=_amount(session.get("amount_total")),
            **_total_parts(session),
            locale=_locale(session),
            accepts_marketing=_consent(session),
            consent_source=CONSENT_SOURCE,
            return_url=_recovery_url(session),
            **common,
        )
        return expired, discount
    keys = [(KeyKind.STRIPE_SESSION, session_id)]
    if recovered_from := f.text(session, "recovered_from"):
        keys.append((KeyKind.STRIPE_SESSION, recovered_from))
    paid = CartEvent(
        kind=EventKind.ORDER_PLACED,
        keys=tuple(keys),
        order=OrderInfo(
            external_id=session_id,
            placed_at=occurred_at,
            total_minor=_amount(session.get("amount_total")),
            currency=code,
            # Stripe's word for the payment ("paid", "unpaid" while a delayed method
            # settles, "no_payment_required"), kept on the order as Shopify's is.
            financial_status=f.text(session, "payment_status"),
            # An event from Stripe's test mode is a test order: kept, counted apart, and it
            # closes a cart only where the shop says test orders do.
            test=payload.get("livemode", session.get("livemode")) is False,
        ),
        **common,
    )
    return paid, discount


def _amount(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unapplicable(f"amount must be an integer of minor units, got {value!r}")
    return value


def _total_parts(session: dict[str, Any]) -> TotalParts:
    """Stripe's ``amount_subtotal`` is before discounts and taxes; ``total_details`` holds
    the rest, so subtotal - discount + shipping + tax = ``amount_total`` (unless the tax is
    included in the prices, which the email notices)."""
    details = f.obj(session, "total_details")
    return TotalParts(
        subtotal_minor=_amount(session.get("amount_subtotal")),
        discount_minor=_amount(details.get("amount_discount")),
        shipping_minor=_amount(details.get("amount_shipping")),
        tax_minor=_amount(details.get("amount_tax")),
    )


def _locale(session: dict[str, Any]) -> str | None:
    locale = f.text(session, "locale")
    return None if locale == "auto" else locale


def _consent(session: dict[str, Any]) -> bool | None:
    promotions = f.text(f.obj(session, "consent"), "promotions")
    return {"opt_in": True, "opt_out": False}.get(promotions or "")


def _recovery_url(session: dict[str, Any]) -> str | None:
    recovery = f.obj(f.obj(session, "after_expiration"), "recovery")
    if recovery.get("enabled") is True:
        return f.text(recovery, "url")
    return None


def _line_items(session: dict[str, Any]) -> tuple[Item, ...] | None:
    """Items only when the event carries them (``line_items`` must be expanded)."""
    lines = f.obj(session, "line_items").get("data")
    if not isinstance(lines, list):
        return None
    items = []
    for index, line in enumerate(lines):
        if not isinstance(line, dict):
            raise Unapplicable(f"line item {index}: expected an object")
        price = f.obj(line, "price")
        product = f.obj(price, "product")
        quantity = f.quantity(line.get("quantity", 1), f"line item {index}")
        unit = _amount(price.get("unit_amount"))
        if unit is None and quantity:
            total = _amount(line.get("amount_total"))
            unit = total // quantity if total is not None else None
        items.append(
            Item(
                title=f.text(line, "description") or f.text(product, "name") or "Item",
                quantity=quantity,
                unit_price_minor=unit,
                sku=f.text(price, "id"),
                image_url=_first_image(product),
            )
        )
    return tuple(items)


def _first_image(product: dict[str, Any]) -> str | None:
    images = product.get("images")
    if isinstance(images, list) and images and isinstance(images[0], str):
        return images[0]
    return None
