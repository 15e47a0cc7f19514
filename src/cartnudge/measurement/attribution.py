"""Which orders a reminder may claim, on one stated rule, and what they are worth.

An order is *attributed* to a reminder when the shopper clicked a reminder about the
order's cart and then placed the order within the shop's window after that click (five
days unless the shop says otherwise). The order must be live: a cancelled order or a test
claims nothing, and its worth is its total net of refunds, as recorded when the report is
made (a refund after the recovery lowers it, a cancellation removes it). Of several
clicks, the last one before the order takes the credit, with its reminder's step.

Opens are not used: Apple Mail Privacy Protection opens every email it receives, so an
open-based rule would count orders nobody was nudged into.

This is the figure vendors report. It counts carts that would have come back anyway;
the holdout comparison (``measurement.stats``) says how many did.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from cartnudge.db.models import Click, Order, Send
from cartnudge.db.portable import after_pair

WINDOW = timedelta(days=5)
orders, clicks, sends = Order, Click, Send
PAGE = 1_000  # orders read per query, so a month of a big shop is never held at once


@dataclass(frozen=True, slots=True)
class Attributed:
    order_id: int
    cart_id: int
    placed_at: datetime
    currency: str | None
    net_minor: int  # the order's total net of refunds
    send_id: int  # the reminder whose click takes the credit
    step: int
    clicked_at: datetime


@dataclass
class Summary:
    """What a shop's reminders can claim over a span, on the click rule."""

    window: timedelta
    orders: int = 0  # live orders placed in the span with a cart
    attributed: list[Attributed] = field(default_factory=list)

    @property
    def recovered_carts(self) -> int:
        return len({a.cart_id for a in self.attributed})

    def revenue(self) -> dict[str, int]:
        """Attributed revenue per currency, in minor units."""
        out: dict[str, int] = defaultdict(int)
        for a in self.attributed:
            if a.currency:
                out[a.currency] += a.net_minor
        return dict(out)

    def by_step(self) -> dict[int, dict[str, Any]]:
        """Carts and revenue per reminder step that took the credit."""
        out: dict[int, dict[str, Any]] = {}
        for a in self.attributed:
            entry = out.setdefault(a.step, {"carts": set(), "revenue": defaultdict(int)})
            entry["carts"].add(a.cart_id)
            if a.currency:
                entry["revenue"][a.currency] += a.net_minor
        return {
            step: {"carts": len(v["carts"]), "revenue": dict(v["revenue"])}
            for step, v in sorted(out.items())
        }


def attribute(
    conn: Connection,
    shop_id: int,
    since: datetime,
    until: datetime,
    *,
    window: timedelta = WINDOW,
) -> Summary:
    """The shop's live orders placed in [since, until), and those a reminder's click
    claims. Reads the orders a page at a time (index on shop and placed time) and, per
    page, the clicks on the reminders of their carts."""
    if window <= timedelta(0):
        raise ValueError("an attribution window is more than 0")
    if until <= since:
        raise ValueError("the span's end must come after its start")
    summary = Summary(window)
    after: tuple[datetime, int] | None = None
    while True:
        page = _orders(conn, shop_id, since, until, after)
        if not page:
            return summary
        summary.orders += len(page)
        found = _clicks(conn, shop_id, {row.cart_id for row in page})
        summary.attributed.extend(claim(page, found, window))
        last = page[-1]
        after = (last.placed_at, last.id)


def claim(
    placed: Iterable[Any], found: dict[int, list[Any]], window: timedelta
) -> list[Attributed]:
    """Each order's credit: the last click on a reminder of its cart at or before the
    order and no more than ``window`` before it. ``found``: clicks by cart, each with
    ``at``, ``send_id`` and ``step``."""
    out = []
    for order in placed:
        eligible = [
            click
            for click in found.get(order.cart_id, ())
            if order.placed_at - window <= click.at <= order.placed_at
        ]
        if not eligible:
            continue
        last = max(eligible, key=lambda click: (click.at, click.send_id))
        out.append(
            Attributed(
                order_id=order.id,
                cart_id=order.cart_id,
                placed_at=order.placed_at,
                currency=order.currency,
                net_minor=(order.total_minor or 0) - (order.refunded_minor or 0),
                send_id=last.send_id,
                step=last.step,
                clicked_at=last.at,
            )
        )
    return out


def _orders(
    conn: Connection,
    shop_id: int,
    since: datetime,
    until: datetime,
    after: tuple[datetime, int] | None,
) -> list[Any]:
    stmt = (
        select(
            orders.c.id,
            orders.c.cart_id,
            orders.c.placed_at,
            orders.c.currency,
            orders.c.total_minor,
            orders.c.refunded_minor,
        )
        .where(
            orders.c.shop_id == shop_id,
            orders.c.placed_at >= since,
            orders.c.placed_at < until,
            orders.c.cart_id.is_not(None),
            orders.c.cancelled_at.is_(None),
            orders.c.test.is_(False),
        )
        .order_by(orders.c.placed_at, orders.c.id)
        .limit(PAGE)
    )
    if after is not None:
        stmt = stmt.where(after_pair(orders.c.placed_at, orders.c.id, after))
    return list(conn.execute(stmt))


def _clicks(conn: Connection, shop_id: int, cart_ids: set[int]) -> dict[int, list[Any]]:
    rows = conn.execute(
        select(sends.c.cart_id, clicks.c.send_id, clicks.c.at, sends.c.step)
        .join(sends, sends.c.id == clicks.c.send_id)
        .where(sends.c.shop_id == shop_id, sends.c.cart_id.in_(sorted(cart_ids)))
    )
    out: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        out[row.cart_id].append(row)
    return dict(out)
