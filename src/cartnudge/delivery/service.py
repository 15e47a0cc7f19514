"""What earlier stages may ask of the outbox: a cart the owner stopped, carts found to be
one, a shop whose sender identity is now set or whose sending resumes. Each is one call
here, so no other stage reaches into the outbox's repository. The caller commits."""

from __future__ import annotations

from collections.abc import Sequence
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
