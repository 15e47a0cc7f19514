"""The rules every lane's data meets before it reaches a cart, in one place.

Each lane turns its payload into a ``CartEvent`` and hands it to ``vet`` with its shop's
link rules. What is refused raises ``Unapplicable`` (kept as a dead letter with the reason;
the storefront lane answers 422); what is ignored is dropped or replaced. docs/webhooks.md
says the same to store owners:

- text: no control character (C0, DEL, C1) in any field; tab and line breaks only in an
  item's title and variant, which are free text. Refused.
- amounts: no negative unit price, total, discount or order total. Refused.
- quantities: at least 1. Our own formats (storefront, CSV) refuse a 0 in their schema;
  from Shopify and Stripe a line of 0 is a removed line and is dropped.
- total: at least the sum of the lines less any discount the source states; a total
  below that (0.01 for three items of 100) is ignored and the basket total used.
- locale: a well-formed BCP 47 tag that Babel knows; else refused (``strict``) or ignored.
- address: one mailbox (``cartnudge.addresses``); else the cart keeps no address and
  records why.
- return link: http(s), no credentials, on the shop's domains once the owner has listed
  them; else refused (``strict``) or replaced by the shop's cart URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from urllib.parse import urlsplit

from babel import Locale, UnknownLocaleError

from cartnudge.addresses import AddressError, mailbox
from cartnudge.events import CartEvent, Item, Unapplicable
from cartnudge.shops.links import LINE_CONTROL, cart_url_of, link_problem
from cartnudge.shops.repository import ShopRecord

# Free text may keep tab, line feed and carriage return; the composer folds them to spaces.
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_BCP47 = re.compile(r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$")
# Stripe hosts its Checkout recovery pages itself; a Stripe lane's link may point there.
STRIPE_HOSTS = ("checkout.stripe.com", "buy.stripe.com")


@dataclass(frozen=True, slots=True)
class Links:
    """Where a shop's return links may point, and the link used when one may not."""

    hosts: tuple[str, ...] | None  # None: any host (the owner has not listed domains)
    fallback: str | None

    @classmethod
    def of(cls, shop: ShopRecord, *lane_hosts: str) -> Links:
        hosts = None
        if shop.return_domains is not None:
            own = [shop.shopify_domain] if shop.shopify_domain else []
            cart = urlsplit(shop.cart_url).hostname if shop.cart_url else None
            hosts = (*shop.return_domains, *own, *([cart] if cart else []), *lane_hosts)
        return cls(hosts, cart_url_of(shop))


@lru_cache(maxsize=1024)  # a shop's shoppers share a handful of locales
def known_locale(tag: str) -> bool:
    """A well-formed BCP 47 tag (``en-GB``; ``en_GB`` is read too) that Babel knows."""
    if not _BCP47.match(tag):
        return False
    try:
        Locale.parse(tag.replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError):
        return False
    return True


def vet(
    event: CartEvent, links: Links, *, strict: bool, discount_minor: int | None = None
) -> CartEvent:
    """``event`` as the rules above allow it, or ``Unapplicable`` naming the field.

    ``strict`` (our own storefront lane, whose sender can fix what it sends) refuses a bad
    locale or return link instead of ignoring it. ``discount_minor`` is the discount the
    source states, if any, which the total may fall short of the lines by.
    """
    _refuse_control_characters(event)
    _refuse_negative_amounts(event, discount_minor)
    changes: dict[str, object] = {}
    items = event.items
    if items is not None:
        for index, item in enumerate(items):
            if item.quantity < 1 and strict:
                raise Unapplicable(f"items.{index}.quantity: must be at least 1")
        items = tuple(item for item in items if item.quantity >= 1)
        changes["items"] = items
    if event.total_minor is not None and items:
        changes["total_minor"] = sound_total(event.total_minor, items, discount_minor)
    if event.locale is not None and not known_locale(event.locale):
        if strict:
            raise Unapplicable(f"locale: {event.locale!r} is not a BCP 47 tag we know (en-GB)")
        changes["locale"] = None
    if event.email is not None:
        try:
            changes["email"] = mailbox(event.email).address
        except AddressError as exc:
            changes["email"], changes["address_problem"] = None, str(exc)
    if event.return_url is not None:
        problem = link_problem(event.return_url, links.hosts)
        if problem is not None:
            if strict:
                raise Unapplicable(f"return_url: {problem}")
            changes["return_url"] = links.fallback
    # Most events pass as they came; rebuilding one (``replace``) is most of the cost here.
    changed = {name: value for name, value in changes.items() if getattr(event, name) != value}
    return replace(event, **changed) if changed else event  # type: ignore[arg-type]


def sound_total(total: int, items: tuple[Item, ...], discount_minor: int | None) -> int:
    """The stated total if the lines allow it, else the basket's: a total may exceed the
    lines (tax, shipping) but fall short of them only by the stated discount."""
    if any(item.unit_price_minor is None for item in items):
        return total  # the lines' worth is not known: nothing to hold the total to
    basket = sum((item.unit_price_minor or 0) * item.quantity for item in items)
    return total if total >= basket - (discount_minor or 0) else basket


def _refuse_control_characters(event: CartEvent) -> None:
    single = {
        "email": event.email,
        "first_name": event.first_name,
        "locale": event.locale,
        "timezone": event.timezone,
        "currency": event.currency,
        "return_url": event.return_url,
        "order_id": event.order.external_id if event.order else None,
    }
    single.update({f"key {kind.value}": value for kind, value in event.keys})
    free: dict[str, str | None] = {}
    for index, item in enumerate(event.items or ()):
        free[f"items.{index}.title"] = item.title
        free[f"items.{index}.variant"] = item.variant
        single[f"items.{index}.sku"] = item.sku
        single[f"items.{index}.image_url"] = item.image_url
        single[f"items.{index}.url"] = item.url
    for fields, pattern in ((single, LINE_CONTROL), (free, _TEXT_CONTROL)):
        for name, value in fields.items():
            if value is not None and (found := pattern.search(value)):
                raise Unapplicable(
                    f"{name}: contains a control character (U+{ord(found.group()):04X})"
                )


def _refuse_negative_amounts(event: CartEvent, discount_minor: int | None) -> None:
    amounts = {
        "total": event.total_minor,
        "discount": discount_minor,
        "order total": event.order.total_minor if event.order else None,
    }
    for index, item in enumerate(event.items or ()):
        amounts[f"items.{index}.unit_price"] = item.unit_price_minor
    for name, amount in amounts.items():
        if amount is not None and amount < 0:
            raise Unapplicable(f"{name}: must not be negative")
