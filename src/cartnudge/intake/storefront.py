"""Our own storefront lane: any headless or custom store, signed with Standard Webhooks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from cartnudge.events import CartEvent, EventKind, Item, KeyKind, OrderInfo, Unapplicable
from cartnudge.intake import checks
from cartnudge.intake import fields as f
from cartnudge.intake.schemas import StorefrontEvent, StorefrontEventType, StorefrontItem
from cartnudge.shops.repository import ShopRecord

SOURCE = "storefront"
CONSENT_SOURCE = "storefront:accepts_marketing"
_KINDS = {
    StorefrontEventType.CART_UPDATED: EventKind.CART_UPDATED,
    StorefrontEventType.CHECKOUT_STARTED: EventKind.CHECKOUT_STARTED,
    StorefrontEventType.CART_SAVED: EventKind.CART_SAVED,
    StorefrontEventType.ORDER_PLACED: EventKind.ORDER_PLACED,
}


def describe(error: ValidationError) -> str:
    parts = []
    for problem in error.errors()[:5]:
        where = ".".join(str(p) for p in problem["loc"]) or "body"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


def to_items(items: Sequence[StorefrontItem], code: str | None) -> tuple[Item, ...]:
    """Our item fields (validated by the schema: no negative prices) as canonical items."""
    return tuple(
        Item(
            title=item.title,
            quantity=item.quantity,
            unit_price_minor=f.minor(item.unit_price, code, f"items.{index}.unit_price"),
            sku=item.sku,
            variant=item.variant,
            image_url=item.image_url,
            url=item.url,
        )
        for index, item in enumerate(items)
    )


def parse(delivery_id: str, payload: Any, *, shop: ShopRecord) -> CartEvent:
    """The event, held to ``checks.vet`` strictly: the store sending it can fix it."""
    try:
        event = StorefrontEvent.model_validate(payload)
    except ValidationError as exc:
        raise Unapplicable(describe(exc)) from exc
    code = f.currency(event.currency, shop.currency)
    f.time_zone(event.timezone)
    items = to_items(event.items, code) if event.items is not None else None
    total = f.minor(event.total, code, "total")
    discount = f.minor(event.discount, code, "discount")
    if total is None and items is not None:
        total = f.basket_total(items)
    order = None
    if event.type is StorefrontEventType.ORDER_PLACED:
        if event.order_id is None:
            raise Unapplicable("order_id: required when type is order_placed")
        order = OrderInfo(
            external_id=event.order_id,
            placed_at=event.occurred_at,
            total_minor=total,
            currency=code,
        )
    parsed = CartEvent(
        source=SOURCE,
        external_id=delivery_id,
        topic=event.type.value,
        kind=_KINDS[event.type],
        occurred_at=event.occurred_at,
        keys=((KeyKind.STOREFRONT_CART, event.cart_id),),
        items=None if order else items,
        currency=code,
        total_minor=None if order else total,
        **f.total_parts({} if order else event.model_dump(include=set(f.TOTAL_PARTS)), code),
        email=event.email,
        first_name=event.first_name,
        locale=event.locale,
        timezone=event.timezone,
        accepts_marketing=event.accepts_marketing,
        consent_source=CONSENT_SOURCE if event.accepts_marketing is not None else None,
        return_url=event.return_url,
        order=order,
    )
    return checks.vet(parsed, checks.Links.of(shop), strict=True, discount_minor=discount)
