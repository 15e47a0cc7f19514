"""A reminder as the sender would compose it, for the owner to look at before anything is
sent: about a made-up cart and shopper, or about one of the shop's real carts. Its links
lead nowhere (``/c/preview``, ``/u/preview``): a preview is never a click or an unsubscribe.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import formataddr
from typing import Any

from cartnudge.messages.compose import Draft, Line
from cartnudge.money import to_minor
from cartnudge.shops.repository import ShopRecord

# The made-up cart of a preview: (title, quantity, unit price in major units).
PREVIEW_ITEMS = (("Linen tote bag", 1, 24), ("Stoneware mug", 2, 12))
PREVIEW_SHOPPER = ("Ana", "ana@example.com")


def preview_draft(
    shop: ShopRecord,
    *,
    step: int,
    steps: int,
    saved: bool,
    public_url: str,
    now: datetime,
    cart: Any | None = None,
) -> Draft:
    """A draft as the sender would make it, about ``cart`` (a ``carts`` row of the shop)
    or, without one, about a made-up cart and shopper."""
    base = public_url.rstrip("/")
    sender_email = shop.sender_email or "shop@example.com"
    if cart is None:
        items: tuple[Line, ...] = tuple(
            Line(title, quantity, to_minor(price, shop.currency), None)
            for title, quantity, price in PREVIEW_ITEMS
        )
        first_name, email = PREVIEW_SHOPPER
        locale, currency = shop.locale, shop.currency
        total = sum((line.unit_price_minor or 0) * line.quantity for line in items)
        parts: dict[str, int | None] = {}
    else:
        items = Line.all_of(cart.items)
        first_name, email = cart.first_name, cart.email or PREVIEW_SHOPPER[1]
        locale, currency, total = cart.locale, cart.currency, cart.total_minor
        parts = {
            "subtotal_minor": cart.subtotal_minor,
            "discount_minor": cart.discount_minor,
            "shipping_minor": cart.shipping_minor,
            "tax_minor": cart.tax_minor,
        }
    return Draft(
        step=step,
        last_step=step == steps,
        saved_link=saved,
        shop_name=shop.name,
        sender=shop.sender or formataddr((shop.name, sender_email)),
        postal_address=shop.postal_address or "(the shop's postal address, not set yet)",
        to=email,
        first_name=first_name,
        locale=locale,
        shop_locale=shop.locale,
        currency=currency,
        total_minor=total,
        items=items,
        return_link=f"{base}/c/preview",
        unsubscribe_url=f"{base}/u/preview",
        unsubscribe_mailto=f"mailto:{sender_email}?subject=unsubscribe",
        reply_to=sender_email,
        message_id=f"<preview@{sender_email.rpartition('@')[2]}>",
        date=now,
        **parts,
    )
