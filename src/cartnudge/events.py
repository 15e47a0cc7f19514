"""The one canonical event every lane produces, and the errors that keep it from existing:
the shared words of the flow, which every stage may import."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypedDict

from cartnudge.addresses import AddressError, mailbox


class EventKind(StrEnum):
    CART_UPDATED = "cart_updated"  # items or contact changed; the shopper is active
    CHECKOUT_STARTED = "checkout_started"
    CART_SAVED = "cart_saved"  # the shopper asked to save the cart for later
    CART_DELETED = "cart_deleted"  # the platform removed the checkout
    CHECKOUT_COMPLETED = "checkout_completed"  # bought, but the order arrives separately
    ORDER_PLACED = "order_placed"
    ORDER_CHANGED = "order_changed"  # a later change to an order (a refund): no cart moves


class KeyKind(StrEnum):
    SHOPIFY_CART = "shopify_cart"
    SHOPIFY_CHECKOUT = "shopify_checkout"
    SHOPIFY_CHECKOUT_ID = "shopify_checkout_id"
    STRIPE_SESSION = "stripe_session"
    STOREFRONT_CART = "storefront_cart"


class Unapplicable(ValueError):
    """A signed delivery that cannot become a ``CartEvent``; it is kept as a dead letter."""


@dataclass(frozen=True, slots=True)
class Item:
    title: str
    quantity: int
    unit_price_minor: int | None = None
    sku: str | None = None
    variant: str | None = None
    image_url: str | None = None
    url: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "title": self.title,
            "quantity": self.quantity,
            "unit_price_minor": self.unit_price_minor,
            "sku": self.sku,
            "variant": self.variant,
            "image_url": self.image_url,
            "url": self.url,
        }


class TotalParts(TypedDict):
    """The parts of a total as a lane reads them, passed on to ``CartEvent`` as they are."""

    subtotal_minor: int | None
    discount_minor: int | None
    shipping_minor: int | None
    tax_minor: int | None


@dataclass(frozen=True, slots=True)
class OrderInfo:
    external_id: str
    placed_at: datetime
    total_minor: int | None = None
    currency: str | None = None
    updated_at: datetime | None = None  # when the source last changed the order, if it says
    cancelled_at: datetime | None = None
    financial_status: str | None = None  # the platform's word: "paid", "voided", ...
    test: bool = False  # placed in the platform's test mode
    refunds: tuple[tuple[str, int], ...] = ()  # (refund id, minor units), each refund once
    # The platform the order id belongs to, when the event came another way (a CSV row of a
    # Stripe session is a Stripe order): one purchase is one order row however it came.
    platform: str | None = None


@dataclass(frozen=True, slots=True)
class CartEvent:
    """What happened to one cart, in the same words whatever the source.

    ``None`` means "this event does not say"; it never erases what an earlier event said.
    """

    source: str
    external_id: str  # the source's event or delivery id: the dedupe key
    topic: str
    kind: EventKind
    occurred_at: datetime  # source time: decides which of two events is newer
    keys: tuple[tuple[KeyKind, str], ...]
    activity_at: datetime | None = None  # when the shopper last acted, if not occurred_at
    items: tuple[Item, ...] | None = None
    currency: str | None = None
    total_minor: int | None = None
    # The parts of the total, where the source gives them (minor units; the discount is the
    # amount taken off, so not negative): subtotal - discount + shipping + tax = total.
    subtotal_minor: int | None = None
    discount_minor: int | None = None
    shipping_minor: int | None = None
    tax_minor: int | None = None
    email: str | None = None
    # Why the address the source gave is not kept (it is not one mailbox); set with
    # ``email=None``, so the cart says it has no usable address rather than an old one.
    address_problem: str | None = None
    first_name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    accepts_marketing: bool | None = None
    consent_source: str | None = None
    return_url: str | None = None
    order: OrderInfo | None = None
    # Total order over events: source time, then source and id to break ties. Computed
    # once: the fold compares it for every group of fields.
    version: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "version", version_of(self.occurred_at, self.source, self.external_id)
        )

    @property
    def shopper_acted_at(self) -> datetime:
        return self.activity_at or self.occurred_at

    @property
    def is_purchase(self) -> bool:
        return self.kind in (EventKind.ORDER_PLACED, EventKind.CHECKOUT_COMPLETED)


def version_of(at: datetime, source: str, ident: str) -> str:
    """Sortable text: a fixed-width UTC instant first, so text order is time order."""
    instant = at.astimezone(UTC).replace(tzinfo=None).isoformat("T", "microseconds")
    return f"{instant}|{source}|{ident}"


def order_version(placed_at: datetime, source: str, order_id: str) -> str:
    """The version of a purchase matched by email: the same whichever side arrives first,
    and after that of any event (``~`` sorts after every instant), so an order that named
    its cart outranks one matched by the shopper's address."""
    return "~" + version_of(placed_at, source, f"order:{order_id}")


def email_key(email: str | None) -> str | None:
    """The form an email is matched on: normalised, lower case; ``None`` unless it is one
    usable mailbox (``a@x.com, b@y.com`` is not)."""
    if not email:
        return None
    try:
        return mailbox(email).key
    except AddressError:
        return None
