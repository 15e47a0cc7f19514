"""Tracking use cases: follow a link, record a click, unsubscribe an address. The caller
commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from cartnudge.db.models import ConsentKind
from cartnudge.privacy.consent import stop, stopped
from cartnudge.tracking.policy import landing_url
from cartnudge.tracking.repository import TrackingRepository
from cartnudge.tracking.tokens import Purpose, send_of, verify


@dataclass(frozen=True, slots=True)
class Link:
    """The send a verified token names."""

    send_id: int
    shop_id: int
    cart_id: int
    step: int
    email_key: str
    return_url: str | None
    shop_name: str


def follow(conn: Connection, key: bytes, purpose: Purpose, token: str) -> Link | None:
    """The send behind ``token`` if the token is genuine for it and this purpose."""
    named = send_of(token)
    if named is None:
        return None
    send_id, mac = named
    row = TrackingRepository(conn).send(send_id)
    if row is None or row.email_key is None:
        return None
    if not verify(key, purpose, mac, row.id, row.shop_id, row.email_key):
        return None
    return Link(
        row.id, row.shop_id, row.cart_id, row.step, row.email_key, row.return_url, row.shop_name
    )


def click(conn: Connection, link: Link, now: datetime) -> str | None:
    """Record the click; where to send the shopper (``None``: the cart has no return URL)."""
    TrackingRepository(conn).add_click(link.shop_id, link.send_id, now)
    return landing_url(link.return_url, link.step)


def is_unsubscribed(conn: Connection, shop_id: int, email_key: str) -> bool:
    """Whether the address gets no more reminders (unsubscribed, complained or bounced)."""
    return bool(stopped(conn, shop_id, [email_key]))


def unsubscribe(
    conn: Connection,
    shop_id: int,
    email_key: str,
    now: datetime,
    *,
    source: str,
    send_id: int | None = None,
    actor: str,
) -> bool:
    """Put the address on the shop's unsubscribe list: a ledger entry, pending reminders
    to it cancelled, an audit row. Idempotent: ``False`` (and nothing written) when the
    address is already unsubscribed."""
    return stop(
        conn,
        shop_id,
        email_key,
        now,
        kind=ConsentKind.UNSUBSCRIBE,
        source=source,
        actor=actor,
        send_id=send_id,
    )
