"""What other stages may ask of the outbox: a cart the owner stopped, carts found to be
one, a shop whose sender identity is now set or whose sending resumes, and (for the
dashboard) a send with the email it handed over. Each is one call here, so no other stage
reaches into the outbox's repository. The caller commits."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from cartnudge.delivery.repository import PAUSED, SenderRepository


def cancel_cart_sends(conn: Connection, cart_id: int, now: datetime, reason: str) -> list[int]:
    """Cancel the cart's sends that have not left; the cancelled send ids."""
    return SenderRepository(conn).cancel_pending(now, reason, cart_ids=[cart_id])


def hand_over_sends(
    conn: Connection, shop_id: int, keep_id: int, gone_ids: Sequence[int], now: datetime
) -> list[int]:
    """Carts ``gone_ids`` are ``keep_id``: their sends become its own, and a step queued
    twice goes once (``SenderRepository.take_over``). The cancelled send ids."""
    return SenderRepository(conn).take_over(shop_id, keep_id, gone_ids, now)


def release_held_sends(conn: Connection, shop_id: int, now: datetime) -> int:
    """The shop can now send: its held sends are due now. How many."""
    return SenderRepository(conn).release_held(shop_id, now)


def release_paused_sends(conn: Connection, shop_id: int, now: datetime) -> int:
    """The shop's sending resumes: the sends its pause held are due now. How many."""
    return SenderRepository(conn).release_held(shop_id, now, PAUSED)


@dataclass(frozen=True, slots=True)
class SentEmail:
    """One send as the owner reads it, with the email it handed over when that was kept."""

    id: int
    cart_id: int
    step: int
    status: str
    reason: str | None
    email_key: str | None  # the address it went to (None once erased)
    subject: str | None
    sent_at: datetime | None
    handed_at: datetime | None  # given to the mail route (None: never, or a retry waits)
    due_at: datetime
    rules_version: int
    voice_version: int | None
    provider: str | None
    stored_at: datetime | None
    raw: bytes | None  # the RFC 5322 bytes as handed over; None when none were kept


def sent_email(conn: Connection, shop_id: int, send_id: int) -> SentEmail | None:
    """The shop's send ``send_id`` with its email, or None when the shop has no such send."""
    row = SenderRepository(conn).with_message(shop_id, send_id)
    if row is None:
        return None
    values = row._asdict()
    body = values.pop("body")
    return SentEmail(**values, raw=zlib.decompress(body) if body is not None else None)
