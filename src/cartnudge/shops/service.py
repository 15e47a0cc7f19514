"""Shop use cases: add a shop (with generated secrets) and describe it for its owner."""

from __future__ import annotations

import base64
import re
import secrets
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from sqlalchemy import Connection

from cartnudge.addresses import usable
from cartnudge.db.audit import write_audit
from cartnudge.delivery.providers import MailRouteError, parse_mail_url
from cartnudge.delivery.service import release_held_sends
from cartnudge.durations import format_duration
from cartnudge.money import MoneyError, normalize_currency
from cartnudge.shops.links import cart_url_of, domain_name, link_problem
from cartnudge.shops.repository import ShopRecord, ShopRepository

# An order that names no cart buys the same shopper's carts active this long before it.
DEFAULT_ORDER_MATCH_WINDOW = timedelta(days=7)
MAX_ORDER_MATCH_WINDOW = timedelta(days=90)
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SHEET_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")  # a Google spreadsheet's id
SHOPIFY_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
# Retention settings (``keep_*``): at least a day, so a dead letter can still be replayed
# and a decision explained the next morning; at most ten years.
MIN_KEEP, MAX_KEEP = timedelta(days=1), timedelta(days=3650)
KEEP_OPTIONS = {
    "keep_payloads_s": "--keep-payloads",
    "keep_decisions_s": "--keep-decisions",
    "keep_closed_pii_s": "--keep-closed-pii",
}


class ShopError(ValueError):
    """A shop setting that cannot be accepted; the message says which and why."""


def new_standard_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


DEFAULT_HOLDOUT_PERCENT = 10  # of a new shop's carts held out (``timing.holdout``)
MAX_HOLDOUT_PERCENT = 50


def add_shop(
    conn: Connection,
    *,
    slug: str,
    name: str,
    timezone: str,
    currency: str,
    now: datetime,
    shopify_domain: str | None = None,
    shopify_secret: str | None = None,
    stripe_secret: str | None = None,
    activated_at: datetime | None = None,
    order_match_window: timedelta = DEFAULT_ORDER_MATCH_WINDOW,
    sender: str | None = None,
    postal_address: str | None = None,
    mail_url: str | None = None,
    locale: str = "en",
    holdout_percent: int = DEFAULT_HOLDOUT_PERCENT,
) -> ShopRecord:
    repo = ShopRepository(conn)
    identity = _identity(sender, postal_address, mail_url, locale)
    holdout = _holdout(holdout_percent)
    if not SLUG.match(slug):
        raise ShopError(f"slug {slug!r}: use 1-63 lower-case letters, digits and dashes")
    if repo.by_slug(slug):
        raise ShopError(f"slug {slug!r} is taken")
    if not name.strip():
        raise ShopError("name must not be empty")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ShopError(f"timezone {timezone!r} is not an IANA time zone") from exc
    try:
        code = normalize_currency(currency)
    except MoneyError as exc:
        raise ShopError(str(exc)) from exc
    domain = shopify_domain.strip().lower() if shopify_domain else None
    if domain is not None:
        if not SHOPIFY_DOMAIN.match(domain):
            raise ShopError(f"shopify domain {shopify_domain!r}: expected name.myshopify.com")
        if not shopify_secret:
            raise ShopError("--shopify-secret is required with --shopify-domain")
        if repo.by_shopify_domain(domain):
            raise ShopError(f"shopify domain {domain} belongs to another shop")
    elif shopify_secret:
        raise ShopError("--shopify-domain is required with --shopify-secret")
    if not timedelta(0) < order_match_window <= MAX_ORDER_MATCH_WINDOW:
        raise ShopError("order match window must be more than 0 and at most 90 days")
    if stripe_secret is not None and not stripe_secret.startswith("whsec_"):
        raise ShopError("stripe secret must be the endpoint's signing secret (whsec_…)")
    return repo.insert(
        {
            "slug": slug,
            "name": name.strip(),
            "timezone": timezone,
            "currency": code,
            "shopify_domain": domain,
            "shopify_secret": shopify_secret,
            "stripe_secret": stripe_secret,
            "storefront_secrets": [new_standard_secret()],
            "order_match_window_s": int(order_match_window.total_seconds()),
            "activated_at": activated_at or now,
            "created_at": now,
            **identity,
            **holdout,
        }
    )


def set_shop(
    conn: Connection,
    slug: str,
    now: datetime,
    *,
    sender: str | None = None,
    postal_address: str | None = None,
    mail_url: str | None = None,
    locale: str | None = None,
    keep: dict[str, timedelta] | None = None,
    test_orders_close_carts: bool | None = None,
    domains: str | None = None,
    cart_url: str | None = None,
    export_hour: int | None = None,
    export_to: str | None = None,
    export_format: str | None = None,
    holdout_percent: int | None = None,
    actor: str = "owner:cli",
) -> ShopRecord:
    """Change how a shop's reminders are sent (who they come from, the postal address
    they carry, the mail route, the fallback locale) and how long its data is kept
    (``keep``, by column name), whether test orders close carts, and where carts' return
    links may point (``domains``, a comma-separated list; ``cart_url``, the link used when
    a cart's own is refused; an empty value clears either). Only the given settings
    change. The nightly sheet's hour (shop local, 0-23), destination (an absolute folder,
    or ``sheets:<spreadsheet id>``; empty to stop it) and format (csv or xlsx) likewise.
    Sends held for want of a sender identity become due at once when it is complete."""
    repo = ShopRepository(conn)
    shop = repo.by_slug(slug)
    if shop is None:
        raise ShopError(f"no shop {slug!r}")
    changes = {
        **_identity(sender, postal_address, mail_url, locale),
        **_retention(keep or {}),
        **_links(shop, domains, cart_url),
        **_nightly(export_hour, export_to, export_format),
        **_holdout(holdout_percent),
    }
    if test_orders_close_carts is not None:
        changes["test_orders_close_carts"] = test_orders_close_carts
    if not changes:
        raise ShopError(
            "nothing to change: give --sender, --address, --mail, --locale, --domains, "
            "--cart-url, --test-orders-close-carts, --holdout, an --export-… or a --keep-… "
            "option"
        )
    before = {k: getattr(shop, k) for k in changes}
    repo.update(shop.id, changes)
    updated = repo.by_id(shop.id)
    assert updated is not None
    # Which settings changed, never their values: a sender or address can name a person.
    write_audit(
        conn,
        [
            {
                "shop_id": shop.id,
                "cart_id": None,
                "at": now,
                "actor": actor,
                "action": "shop:set",
                "reason": None,
                "before": {"changed": sorted(k for k in changes if before[k] != changes[k])},
                "after": None,
            }
        ],
    )
    if updated.sender is not None and updated.postal_address:
        release_held_sends(conn, shop.id, now)
    return updated


def _identity(
    sender: str | None, postal_address: str | None, mail_url: str | None, locale: str | None
) -> dict[str, Any]:
    """The sending settings given, validated and normalised for storage."""
    values: dict[str, Any] = {}
    if sender is not None:
        values["sender_name"], values["sender_email"] = parse_sender(sender)
    if postal_address is not None:
        values["postal_address"] = parse_postal_address(postal_address)
    if mail_url is not None:
        try:
            route = parse_mail_url(mail_url)
        except MailRouteError as exc:
            raise ShopError(f"--mail: {exc}") from exc
        values["mail_url"] = None if route.kind == "file" else mail_url.strip()
    if locale is not None:
        try:
            values["locale"] = str(Locale.parse(locale.replace("-", "_")))
        except (ValueError, TypeError, UnknownLocaleError) as exc:
            raise ShopError(f"--locale: {locale!r} is not a known locale") from exc
    return values


def parse_sender(text: str) -> tuple[str, str]:
    """``"Name <address>"`` → (name, address), refusing anything that could not go in a
    From header as it is (a line break there would let text inject a header)."""
    if _CONTROL.search(text):
        raise ShopError("--sender must be on one line, without control characters")
    name, address = parseaddr(text)
    if not name.strip() or not address:
        raise ShopError(f"--sender {text!r}: expected 'Name <address>'")
    if not usable(address) or len(name) > 200:
        raise ShopError(f"--sender: {address!r} is not a usable email address")
    return name.strip(), address


def parse_postal_address(text: str) -> str:
    """A postal address, one or more lines (a literal ``\\n`` or a real line break)."""
    lines = [line.strip() for line in text.replace("\\n", "\n").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ShopError("--address must not be empty: reminders carry the shop's postal address")
    if any(_CONTROL.search(line) for line in lines) or sum(map(len, lines)) > 500:
        raise ShopError("--address: at most 500 characters, without control characters")
    return "\n".join(lines)


def rotate_storefront_secret(conn: Connection, slug: str, *, finish: bool) -> ShopRecord:
    """Start a rotation (a new secret first, the current one still accepted) or finish it
    (only the newest secret is accepted). Stores sign with either while they switch."""
    repo = ShopRepository(conn)
    shop = repo.by_slug(slug)
    if shop is None:
        raise ShopError(f"no shop {slug!r}")
    current = list(shop.storefront_secrets)
    if finish:
        if len(current) < 2:
            raise ShopError("no rotation in progress: there is only one storefront secret")
        secrets_after = current[:1]
    else:
        if len(current) > 1:
            raise ShopError("a rotation is in progress; finish it first (--finish)")
        secrets_after = [new_standard_secret(), *current]
    repo.set_storefront_secrets(shop.id, secrets_after)
    updated = repo.by_id(shop.id)
    assert updated is not None
    return updated


def _links(shop: ShopRecord, domains: str | None, cart_url: str | None) -> dict[str, Any]:
    """The return-link settings given, validated: each domain a host name, the cart URL
    an http(s) link on the domains the shop will have."""
    values: dict[str, Any] = {}
    listed = shop.return_domains
    if domains is not None:
        names = [part for part in domains.split(",") if part.strip()]
        try:
            listed = tuple(dict.fromkeys(domain_name(name) for name in names)) or None
        except ValueError as exc:
            raise ShopError(f"--domains: {exc}") from exc
        values["return_domains"] = list(listed) if listed is not None else None
    own = (shop.shopify_domain,) if shop.shopify_domain else ()
    hosts = (*listed, *own) if listed is not None else None
    url = shop.cart_url if cart_url is None else (cart_url.strip() or None)
    if url is not None and (problem := link_problem(url, hosts)):
        option = "--cart-url" if cart_url is not None else "--domains"
        raise ShopError(f"{option}: the cart URL {problem}")
    if cart_url is not None:
        values["cart_url"] = url
    return values


def _holdout(percent: int | None) -> dict[str, Any]:
    if percent is None:
        return {}
    if not 0 <= percent <= MAX_HOLDOUT_PERCENT:
        raise ShopError(
            f"--holdout: {percent} is not a share of carts from 0 to {MAX_HOLDOUT_PERCENT} (%)"
        )
    return {"holdout_percent": percent}


def _nightly(hour: int | None, to: str | None, fmt: str | None) -> dict[str, Any]:
    """The nightly sheet's settings given, validated."""
    values: dict[str, Any] = {}
    if hour is not None:
        if not 0 <= hour <= 23:
            raise ShopError(f"--export-hour: {hour} is not an hour of the day (0-23)")
        values["export_hour"] = hour
    if to is not None:
        target = to.strip()
        if not target:
            values["export_to"] = None
        elif target.startswith("sheets:"):
            if not SHEET_ID.match(target.removeprefix("sheets:")):
                raise ShopError(f"--export-to: {to!r} names no spreadsheet (sheets:<id>)")
            values["export_to"] = target
        elif _CONTROL.search(target) or not target.startswith("/"):
            raise ShopError(
                f"--export-to: {to!r} is neither an absolute folder nor sheets:<spreadsheet id>"
            )
        else:
            values["export_to"] = target
    if fmt is not None:
        if fmt not in ("csv", "xlsx"):
            raise ShopError(f"--export-format: {fmt!r} is not csv or xlsx")
        values["export_format"] = fmt
    return values


def _retention(keep: dict[str, timedelta]) -> dict[str, int]:
    changes = {}
    for column, value in keep.items():
        option = KEEP_OPTIONS[column]
        if not MIN_KEEP <= value <= MAX_KEEP:
            raise ShopError(f"{option}: keep at least 1 day and at most 3650 days")
        changes[column] = int(value.total_seconds())
    return changes


def describe(shop: ShopRecord, public_url: str, *, show_secrets: bool = True) -> dict[str, Any]:
    """The shop as its owner needs it: where to point each source, and with which secret."""
    base = public_url.rstrip("/")

    def secret(value: str | None) -> str | None:
        if value is None or show_secrets:
            return value
        return value[:10] + "…"

    return {
        "id": shop.id,
        "slug": shop.slug,
        "name": shop.name,
        "timezone": shop.timezone,
        "currency": shop.currency,
        "activated_at": shop.activated_at.isoformat(),
        "order_match_window": format_duration(timedelta(seconds=shop.order_match_window_s)),
        "test_orders_close_carts": shop.test_orders_close_carts,
        "sending": {
            "sender": shop.sender,
            "postal_address": shop.postal_address,
            "mail": parse_mail_url(shop.mail_url).redacted(),
            "locale": shop.locale,
            "ready": shop.sender is not None and bool(shop.postal_address),
            "paused": (
                {
                    "since": shop.paused_at.isoformat(),
                    "by": shop.paused_by,
                    "reason": shop.paused_reason,
                }
                if shop.paused_at is not None
                else None
            ),
        },
        "return_links": {
            # None: any http(s) host is accepted until the owner lists the shop's domains.
            "domains": list(shop.return_domains) if shop.return_domains is not None else None,
            "cart_url": shop.cart_url,
            "fallback": cart_url_of(shop),
        },
        "holdout_percent": shop.holdout_percent,
        "nightly_sheet": (
            {"hour": shop.export_hour, "to": shop.export_to, "format": shop.export_format}
            if shop.export_hour is not None and shop.export_to
            else None
        ),
        "retention": {
            "raw_payloads": format_duration(timedelta(seconds=shop.keep_payloads_s)),
            "decision_inputs": format_duration(timedelta(seconds=shop.keep_decisions_s)),
            "closed_cart_personal_data": format_duration(timedelta(seconds=shop.keep_closed_pii_s)),
        },
        "webhooks": {
            "shopify": {
                "url": f"{base}/webhooks/shopify",
                "shop_domain": shop.shopify_domain,
                "secret": secret(shop.shopify_secret),
            },
            "stripe": {
                "url": f"{base}/webhooks/stripe/{shop.slug}",
                "secret": secret(shop.stripe_secret),
            },
            "storefront": {
                "url": f"{base}/webhooks/storefront/{shop.slug}",
                "secret": secret(shop.storefront_secrets[0] if shop.storefront_secrets else None),
                # During a rotation the previous secret is still accepted.
                "previous_secret": secret(
                    shop.storefront_secrets[1] if len(shop.storefront_secrets) > 1 else None
                ),
            },
        },
    }
