"""Signed, unguessable tokens for the links in a reminder.

A token names one send and carries an HMAC over (purpose, send, shop, address) under the
installation's key. It cannot be guessed (128 bits of MAC), cannot be turned into the
click link of the same email or the unsubscribe link of another one (the purpose is
signed), and never works for another address or shop: the check recomputes the MAC from
the send's own shop and address as stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from enum import StrEnum

_ID_BYTES = 8
_MAC_BYTES = 16


class Purpose(StrEnum):
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"
    REPLY = "reply"


def mac_of(key: bytes, *parts: object) -> bytes:
    """The installation's MAC over ``parts`` (the first names what the token is for, so a
    token for one thing never passes for another): HMAC-SHA256, cut to 128 bits."""
    message = "\x00".join(str(part) for part in parts).encode()
    return hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES]


def _mac(key: bytes, purpose: Purpose, send_id: int, shop_id: int, email_key: str) -> bytes:
    return mac_of(key, purpose.value, send_id, shop_id, email_key)


def make_token(key: bytes, purpose: Purpose, send_id: int, shop_id: int, email_key: str) -> str:
    raw = send_id.to_bytes(_ID_BYTES, "big") + _mac(key, purpose, send_id, shop_id, email_key)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def send_of(token: str) -> tuple[int, bytes] | None:
    """The send id a token names and its MAC, or ``None`` if it is not a token at all.
    Nothing is proven until ``verify`` has compared the MAC."""
    if len(token) > 64:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _ID_BYTES + _MAC_BYTES:
        return None
    send_id = int.from_bytes(raw[:_ID_BYTES], "big")
    if send_id >= 2**63:  # no row has it, and no database column holds it
        return None
    return send_id, raw[_ID_BYTES:]


def verify(
    key: bytes, purpose: Purpose, mac: bytes, send_id: int, shop_id: int, email_key: str
) -> bool:
    return hmac.compare_digest(mac, _mac(key, purpose, send_id, shop_id, email_key))
