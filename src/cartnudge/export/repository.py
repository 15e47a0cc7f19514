"""Every SQL statement of the sheet that the cart list does not already have: a page of
carts' orders, and the nightly run's claims. Each is on an index led by the shop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cartnudge.db.models import NightlyExport, Order, Send, SendStatus, Shop

orders, sends, nightly, shops = Order, Send, NightlyExport, Shop


@dataclass
class Bought:
    """What a cart's live orders (not cancelled, not tests) came to."""

    totals: dict[str, int] = field(default_factory=dict)  # currency -> minor, net of refunds
    recovered: bool = False  # one of them followed a reminder sent to the cart


def orders_of(conn: Connection, shop_id: int, cart_ids: Sequence[int]) -> dict[int, Bought]:
    """The live orders of these carts of the shop, by cart. *Recovered* is Today's: an
    order placed after a reminder to the cart was sent."""
    if not cart_ids:
        return {}
    reminder_before = (
        select(sends.c.id)
        .where(
            sends.c.shop_id == shop_id,
            sends.c.cart_id == orders.c.cart_id,
            sends.c.status == SendStatus.SENT.value,
            sends.c.sent_at < orders.c.placed_at,
        )
        .exists()
    )
    rows = conn.execute(
        select(
            orders.c.cart_id,
            orders.c.currency,
            orders.c.total_minor,
            orders.c.refunded_minor,
            reminder_before.label("after_reminder"),
        ).where(
            orders.c.shop_id == shop_id,
            orders.c.cart_id.in_(list(cart_ids)),
            orders.c.cancelled_at.is_(None),
            orders.c.test.is_(False),
        )
    )
    found: dict[int, Bought] = {}
    for row in rows:
        bought = found.setdefault(int(row.cart_id), Bought())
        if row.currency is not None and row.total_minor is not None:
            net = int(row.total_minor) - int(row.refunded_minor or 0)
            bought.totals[row.currency] = bought.totals.get(row.currency, 0) + net
        bought.recovered = bought.recovered or bool(row.after_reminder)
    return found


# -- the nightly run ---------------------------------------------------------------------


def shops_with_a_nightly_sheet(conn: Connection) -> list[Any]:
    return list(
        conn.execute(
            select(shops.c.id).where(
                shops.c.export_hour.is_not(None), shops.c.export_to.is_not(None)
            )
        ).scalars()
    )


def done_days(conn: Connection, wanted: Sequence[tuple[int, date]]) -> set[tuple[int, date]]:
    """Which of these (shop, day) sheets are written already."""
    if not wanted:
        return set()
    done = set()
    for shop_id, day in wanted:  # a handful of shops are due at any hour: one lookup each
        row = conn.execute(
            select(nightly.c.done_at).where(nightly.c.shop_id == shop_id, nightly.c.day == day)
        ).first()
        if row is not None and row.done_at is not None:
            done.add((shop_id, day))
    return done


def claim(conn: Connection, shop_id: int, day: date, now: datetime, until: datetime) -> int | None:
    """Take the (shop, day) sheet for this worker until ``until``: a new row, or one whose
    earlier attempt failed (and whose wait before the next has passed) or whose worker's
    claim lapsed. Which attempt this is; None when it is written, or another worker holds
    it, or a failed attempt's wait is not over. One statement each way, so on PostgreSQL
    two workers can never both take it (the primary key refuses the second insert; the
    update re-checks its condition on the row the first one changed)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    added = conn.execute(
        dialect.insert(nightly)
        .values(shop_id=shop_id, day=day, claimed_until=until, attempts=1)
        .on_conflict_do_nothing(index_elements=["shop_id", "day"])
        .returning(nightly.c.attempts)
    ).first()
    if added is not None:
        return int(added.attempts)
    taken = conn.execute(
        update(nightly)
        .where(
            nightly.c.shop_id == shop_id,
            nightly.c.day == day,
            nightly.c.done_at.is_(None),
            or_(nightly.c.claimed_until.is_(None), nightly.c.claimed_until <= now),
        )
        .values(claimed_until=until, attempts=nightly.c.attempts + 1)
        .returning(nightly.c.attempts)
    ).first()
    return None if taken is None else int(taken.attempts)


def finish(
    conn: Connection,
    shop_id: int,
    day: date,
    now: datetime,
    *,
    rows: int | None = None,
    target: str | None = None,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> None:
    """Record the attempt: written (``error`` None), or failed and free to be tried again
    from ``retry_at`` (a failed attempt holds its claim until then)."""
    values: dict[str, Any] = {"claimed_until": retry_at, "error": error}
    if error is None:
        values.update(done_at=now, rows=rows, target=target)
    conn.execute(
        update(nightly)
        .where(and_(nightly.c.shop_id == shop_id, nightly.c.day == day))
        .values(**values)
    )


def nightly_record(conn: Connection, shop_id: int, day: date) -> Any:
    return conn.execute(
        select(nightly).where(nightly.c.shop_id == shop_id, nightly.c.day == day)
    ).first()
