"""Every SQL statement of the waiter: claim due carts, enqueue sends, move timers."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from cartnudge.db.models import Cart, CartStatus, Send, Shop, TimerMove
from cartnudge.db.types import UtcDateTime

carts = Cart
shops = Shop
sends = Send

# The due carts, oldest timer first. On PostgreSQL the rows stay locked by this
# transaction and other workers skip them (SKIP LOCKED); a worker that dies mid-batch
# loses its connection, its transaction rolls back and the carts are due again at once.
# On SQLite the writing transaction holds the only write lock, so one worker claims.
# What the waiter's move for a cart depends on (``timing.policy.CartClock.from_row``).
CLOCK_COLUMNS = (
    carts.c.id,
    carts.c.shop_id,
    carts.c.status,
    carts.c.last_activity_at,
    carts.c.total_minor,
    carts.c.currency,
    carts.c.reminders_sent,
    carts.c.last_reminder_at,
    carts.c.next_wake_at,
    carts.c.email_key,
    carts.c.held_out,
)
_DUE = (
    select(*CLOCK_COLUMNS)
    .where(carts.c.next_wake_at <= bindparam("now", type_=UtcDateTime()))
    .order_by(carts.c.next_wake_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
# Open carts of a shop that have a timer, with what the move needs (a rules change
# moves their timers), a batch at a time in the order of the index on (shop, status, last
# activity): each batch one range of it, never a sort of the shop's open carts. A cart
# active again meanwhile moves ahead of the cursor, and is met again; no cart is missed.
_OPEN_TIMED = (
    select(*CLOCK_COLUMNS)
    .where(
        carts.c.shop_id == bindparam("shop_id"),
        carts.c.status == CartStatus.OPEN.value,
        tuple_(carts.c.last_activity_at, carts.c.id)
        > tuple_(bindparam("after_at", type_=UtcDateTime()), bindparam("after_id")),
        carts.c.next_wake_at.is_not(None),
    )
    .order_by(carts.c.last_activity_at, carts.c.id)
    .limit(bindparam("limit"))
)
START = (datetime(1970, 1, 1, tzinfo=UTC), 0)  # before every cart
moves = TimerMove
_SET_WAKE = (
    update(carts)
    .where(carts.c.id == bindparam("_cart_id"))
    .values(next_wake_at=bindparam("_wake", type_=UtcDateTime()))
)
_ASSIGN = (
    update(carts)
    .where(carts.c.id == bindparam("_cart_id"))
    .values(held_out=bindparam("_held_out"), assigned_at=bindparam("_at", type_=UtcDateTime()))
)
_REMINDED = (
    update(carts)
    .where(carts.c.id == bindparam("_cart_id"))
    .values(
        reminders_sent=bindparam("_step"),
        last_reminder_at=bindparam("_at", type_=UtcDateTime()),
        next_wake_at=bindparam("_wake", type_=UtcDateTime()),
    )
)
# Giving up (``carts.state.give_up`` on an open cart the shopper has left): expired as of
# now, which only activity after now undoes.
_EXPIRED = (
    update(carts)
    .where(carts.c.id == bindparam("_cart_id"))
    .values(
        status=CartStatus.EXPIRED.value,
        status_reason=bindparam("_reason"),
        given_up_at=bindparam("_at", type_=UtcDateTime()),
        next_wake_at=None,
        updated_at=bindparam("_at", type_=UtcDateTime()),
    )
)


@cache
def _enqueue(dialect: str) -> Any:
    """Insert sends; a (cart, step) the cart already decided is left as it was. Sends it
    took over from a merged cart are outside that rule (see ``Send``)."""
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(sends).on_conflict_do_nothing(
        index_elements=["shop_id", "cart_id", "step"], index_where=sends.c.merged_from.is_(None)
    )


class WaiterRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def claim_due(self, now: datetime, limit: int) -> list[Any]:
        return list(self.conn.execute(_DUE, {"now": now, "limit": limit}))

    def open_with_timers(
        self, shop_id: int, *, after: tuple[datetime, int], limit: int
    ) -> list[Any]:
        """Up to ``limit`` of the shop's open carts with a timer, after ``after`` (last
        activity, cart id) in that order."""
        params = {"shop_id": shop_id, "after_at": after[0], "after_id": after[1], "limit": limit}
        return list(self.conn.execute(_OPEN_TIMED, params))

    def timers_left(self, shop_id: int, after: tuple[datetime, int] | None) -> None:
        """Record that the shop's carts after ``after`` (last activity, cart id) still
        have timers to move (None: none left)."""
        self.conn.execute(delete(moves).where(moves.c.shop_id == shop_id))
        if after is not None:
            at, cart_id = after
            self.conn.execute(
                insert(moves).values(shop_id=shop_id, after_activity_at=at, after_cart_id=cart_id)
            )

    def next_timer_move(self) -> Any | None:
        """A shop with timers still to move, taken for this transaction (another worker
        on PostgreSQL takes another, or none)."""
        stmt = select(moves).order_by(moves.c.shop_id).limit(1).with_for_update(skip_locked=True)
        return self.conn.execute(stmt).first()

    def holdout_percents(self, shop_ids: set[int]) -> dict[int, int]:
        rows = self.conn.execute(
            select(shops.c.id, shops.c.holdout_percent).where(shops.c.id.in_(sorted(shop_ids)))
        )
        return {row.id: row.holdout_percent for row in rows}

    def assign(self, rows: list[dict[str, Any]]) -> None:
        """Rows of ``_cart_id``, ``_held_out`` and ``_at``: each cart's holdout assignment."""
        if rows:
            self.conn.execute(_ASSIGN, rows)

    def set_wakes(self, rows: list[dict[str, Any]]) -> None:
        """Rows of ``_cart_id`` and ``_wake`` (``None``: no timer)."""
        if rows:
            self.conn.execute(_SET_WAKE, rows)

    def mark_reminded(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(_REMINDED, rows)

    def expire(self, rows: list[dict[str, Any]]) -> None:
        """Rows of ``_cart_id``, ``_reason`` and ``_at``."""
        if rows:
            self.conn.execute(_EXPIRED, rows)

    def enqueue(self, rows: list[dict[str, Any]]) -> None:
        """Outbox rows; a (cart, step) already queued stays as it was."""
        if rows:
            self.conn.execute(_enqueue(self.conn.dialect.name), rows)
