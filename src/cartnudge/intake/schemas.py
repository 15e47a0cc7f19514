"""Payloads we define ourselves: the storefront event (published as JSON Schema in docs/)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from cartnudge.clock import plausible

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Decimal = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^\d+(\.\d+)?$", max_length=32),
    Field(description='A decimal amount in major units, as a string: "19.99".'),
]


def _aware(value: datetime) -> datetime:
    return plausible(value)


class StorefrontEventType(StrEnum):
    CART_UPDATED = "cart_updated"
    CHECKOUT_STARTED = "checkout_started"
    ORDER_PLACED = "order_placed"
    CART_SAVED = "cart_saved"


class StorefrontItem(BaseModel):
    model_config = ConfigDict(extra="ignore", title="StorefrontItem")

    sku: Text | None = None
    title: Text = Field(description="No control characters but tab and line breaks.")
    quantity: int = Field(ge=1, le=100_000, description="At least 1; a line of 0 is refused.")
    unit_price: Decimal | None = None
    image_url: Text | None = None
    url: Text | None = None
    variant: Text | None = Field(
        default=None, description='What the shopper chose of the product, e.g. "Red / M".'
    )


class StorefrontEvent(BaseModel):
    """One event from any storefront, signed with Standard Webhooks.

    No text field may hold a control character (tab and line breaks only in an item's
    title); amounts are never negative. An event that breaks a rule is refused with a 422
    naming the field, and changes no cart."""

    model_config = ConfigDict(
        extra="ignore",
        title="cartnudge storefront event",
        json_schema_extra={
            "$id": "https://cartnudge.dev/schemas/storefront-event.json",
        },
    )

    event_id: Text = Field(description="Your id for this event; unique per shop.")
    type: StorefrontEventType
    cart_id: Text = Field(description="Your id for the cart; every event of one cart shares it.")
    occurred_at: Annotated[datetime, AfterValidator(_aware)] = Field(
        description="RFC 3339 time with an offset, when the shopper acted."
    )
    email: Text | None = Field(
        default=None,
        description="One mailbox (no list, no display name). Anything else is kept as "
        "'no usable address', with the reason, and gets no reminder.",
    )
    first_name: Text | None = None
    locale: Text | None = Field(
        default=None,
        description="BCP 47 language tag, e.g. en-GB; a malformed or unknown one is refused.",
    )
    timezone: Text | None = Field(default=None, description="IANA time zone, e.g. Europe/Paris.")
    currency: Text | None = Field(default=None, description="ISO 4217 code; the shop's if absent.")
    total: Decimal | None = Field(
        default=None,
        description="At least the sum of the items less `discount`; a smaller total is "
        "ignored and the items' sum used. The items' sum if absent.",
    )
    items: list[StorefrontItem] | None = Field(default=None, max_length=500)
    return_url: Text | None = Field(
        default=None,
        description="Where the shopper resumes the cart: an http(s) URL on one of the "
        "shop's domains (once the owner lists them); anything else is refused.",
    )
    accepts_marketing: bool | None = None
    order_id: Text | None = Field(default=None, description="Required when type is order_placed.")
    subtotal: Decimal | None = Field(default=None, description="The items, before discounts.")
    discount: Decimal | None = Field(
        default=None, description="Any discount the total already takes off the items."
    )
    shipping: Decimal | None = None
    tax: Decimal | None = Field(
        default=None,
        description="The tax in the total, whether added to the prices or included in them.",
    )


def storefront_json_schema() -> dict[str, object]:
    """The published JSON Schema (docs/storefront-event.schema.json is this, verbatim)."""
    schema = StorefrontEvent.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
