"""Where a shop's links may point: its cart page, the domains the owner lists, and what a
return link must be. Shop settings check a domain or cart URL with these as the owner types
it; every lane checks an event's return link with the same words (``intake.checks``)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from cartnudge.shops.repository import ShopRecord

# C0, DEL and C1 control characters: never in a link.
LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# ... nor white space (``\s`` is what ``str.isspace`` calls white space).
_NOT_IN_A_LINK = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


def cart_url_of(shop: ShopRecord) -> str | None:
    """The shop's cart page: its own setting, else a Shopify shop's ``/cart`` (which sends
    the shopper to the cart in their browser), else the first listed domain's home page."""
    if shop.cart_url:
        return shop.cart_url
    if shop.shopify_domain:
        return f"https://{shop.shopify_domain}/cart"
    if shop.return_domains:
        return f"https://{shop.return_domains[0]}/"
    return None


def link_problem(url: str, hosts: tuple[str, ...] | None) -> str | None:
    """Why ``url`` may not be a return link, or ``None`` if it may."""
    if _NOT_IN_A_LINK.search(url):
        return "contains white space or a control character"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return "is not a URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "is not an http(s) link"
    if not parts.hostname:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "carries a user name or password"
    if hosts is not None and not on_domains(parts.hostname, hosts):
        return "is not on the shop's domains (cartnudge shop set --domains)"
    return None


def on_domains(host: str, domains: tuple[str, ...]) -> bool:
    """Whether ``host`` is one of ``domains`` or under one (``www.a.com`` under ``a.com``)."""
    try:
        name = host.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return False
    return any(name == d or name.endswith("." + d) for d in domains)


def domain_name(text: str) -> str:
    """A host name for a shop's domain list, in lower-case ASCII; ``ValueError`` if it is
    not one."""
    name = text.strip().rstrip(".").lower()
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"{text!r} is not a domain name") from exc
    labels = ascii_name.split(".")
    label = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    if not name or len(ascii_name) > 253 or not all(label.match(part) for part in labels):
        raise ValueError(f"{text!r} is not a domain name")
    return ascii_name
