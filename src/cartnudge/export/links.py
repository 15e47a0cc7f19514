"""The signed links in each row of the sheet: ``{public_url}/sheet/{token}`` opens the
dashboard's confirmation page for one action (suppress, unsubscribe, write off) on one
cart.

A token carries the shop, the cart, the action and when it stops working, and a MAC over
all four under the installation's key (the same MAC as the links in reminders,
``tracking.tokens.mac_of``), so none of them can be changed without the link failing. The
link proves nothing about who opens it: the page still needs a signed-in user who sees the
shop, and the action itself goes through the dashboard's form, CSRF token and all.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cartnudge.tracking.tokens import mac_of

SHEET_ACTIONS = ("suppress", "unsubscribe", "write_off")  # the link columns, in this order
LINK_LIFETIME = timedelta(days=30)
_PURPOSE = "sheet"
_INT = 8  # bytes for the shop, the cart and the expiry (seconds since 1970, UTC)
_MAC = 16
_LENGTH = 3 * _INT + 1 + _MAC
MAX_TOKEN = 80  # characters; a longer one is refused before it is decoded


@dataclass(frozen=True, slots=True)
class SheetLink:
    shop_id: int
    cart_id: int
    action: str  # one of SHEET_ACTIONS
    expires_at: datetime


class LinkRefused(Exception):
    """Not a link we made (``expired`` false: altered, cut short, another key) or one past
    its time (``expired`` true)."""

    def __init__(self, message: str, *, expired: bool) -> None:
        super().__init__(message)
        self.expired = expired


def make_link_token(key: bytes, link: SheetLink) -> str:
    expires = int(link.expires_at.timestamp())
    action = SHEET_ACTIONS.index(link.action)
    raw = (
        link.shop_id.to_bytes(_INT, "big")
        + link.cart_id.to_bytes(_INT, "big")
        + action.to_bytes(1, "big")
        + expires.to_bytes(_INT, "big")
        + _mac(key, link.shop_id, link.cart_id, link.action, expires)
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def sheet_url(public_url: str, key: bytes, link: SheetLink) -> str:
    return f"{public_url.rstrip('/')}/sheet/{make_link_token(key, link)}"


def read_link_token(key: bytes, token: str, now: datetime) -> SheetLink:
    """The link a token signs, or ``LinkRefused``. The MAC is checked before the expiry is
    believed: an altered expiry is an altered link, not an expired one."""
    refused = LinkRefused("this link is not valid (altered or cut short)", expired=False)
    if len(token) > MAX_TOKEN:
        raise refused
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise refused from None
    if len(raw) != _LENGTH:
        raise refused
    shop_id = int.from_bytes(raw[:_INT], "big")
    cart_id = int.from_bytes(raw[_INT : 2 * _INT], "big")
    action_at = raw[2 * _INT]
    expires = int.from_bytes(raw[2 * _INT + 1 : 3 * _INT + 1], "big")
    mac = raw[3 * _INT + 1 :]
    if action_at >= len(SHEET_ACTIONS) or max(shop_id, cart_id, expires) >= 2**63:
        raise refused
    action = SHEET_ACTIONS[action_at]
    if not hmac.compare_digest(mac, _mac(key, shop_id, cart_id, action, expires)):
        raise refused
    expires_at = datetime.fromtimestamp(expires, UTC)
    if now >= expires_at:
        raise LinkRefused(
            f"this link expired on {expires_at:%Y-%m-%d %H:%M} UTC; "
            "export the sheet again for fresh links",
            expired=True,
        )
    return SheetLink(shop_id, cart_id, action, expires_at)


def _mac(key: bytes, shop_id: int, cart_id: int, action: str, expires: int) -> bytes:
    return mac_of(key, _PURPOSE, action, shop_id, cart_id, expires)
