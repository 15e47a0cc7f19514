"""*Today*: a shop's numbers over the last 24 hours, 7 and 30 days, its sends by outcome day
by day, and what needs the owner's attention. Each figure is one query on an index led by
the shop, so the page costs the same with a thousand carts or a million.

*Recovered* here is plain: an order (live, not a test) for a cart that had been sent a
reminder before the order was placed, and its revenue net of refunds. The measurement
issue's attribution (click windows, a holdout) will replace it; until then the page says
what it counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, select

from cartnudge.db.models import Cart, InboxEvent, Order, Send, SendStatus

carts, sends, orders, inbox = Cart, Send, Order, InboxEvent

WINDOWS = (
    ("24 hours", timedelta(days=1)),
    ("7 days", timedelta(days=7)),
    ("30 days", timedelta(days=30)),
)
DAYS = 14  # the sends chart
OUTCOMES = tuple(s.value for s in SendStatus)


@dataclass(frozen=True)
class Window:
    label: str
    seen: int  # carts first active in it
    reminded: int  # carts sent a reminder in it
    recovered: int  # carts whose order followed a reminder, placed in it
    revenue: dict[str, int]  # currency -> minor units, net of refunds


@dataclass(frozen=True)
class Today:
    windows: list[Window]
    days: list[date]  # oldest first (UTC days)
    by_day: dict[str, list[int]]  # outcome -> count per day of ``days``
    dead_letters: int
    failed: int
    ambiguous: int
    held: int


def _window(conn: Connection, shop_id: int, label: str, since: datetime) -> Window:
    seen = conn.scalar(
        select(func.count())
        .select_from(carts)
        .where(carts.c.shop_id == shop_id, carts.c.first_activity_at >= since)
    )
    reminded = conn.scalar(
        select(func.count(func.distinct(sends.c.cart_id))).where(
            sends.c.shop_id == shop_id,
            sends.c.status == SendStatus.SENT.value,
            sends.c.sent_at >= since,
        )
    )
    reminder_before = (
        select(sends.c.id)
        .where(
            sends.c.cart_id == orders.c.cart_id,
            sends.c.status == SendStatus.SENT.value,
            sends.c.sent_at < orders.c.placed_at,
        )
        .exists()
    )
    won = conn.execute(
        select(
            orders.c.currency,
            func.count(func.distinct(orders.c.cart_id)),
            func.coalesce(func.sum(orders.c.total_minor - orders.c.refunded_minor), 0),
        )
        .where(
            orders.c.shop_id == shop_id,
            orders.c.placed_at >= since,
            orders.c.cart_id.is_not(None),
            orders.c.cancelled_at.is_(None),
            orders.c.test.is_(False),
            reminder_before,
        )
        .group_by(orders.c.currency)
    ).all()
    return Window(
        label=label,
        seen=int(seen or 0),
        reminded=int(reminded or 0),
        recovered=sum(int(n) for _, n, _ in won),
        revenue={str(currency): int(total) for currency, _, total in won if currency},
    )


def today(conn: Connection, shop_id: int, now: datetime) -> Today:
    windows = [_window(conn, shop_id, label, now - span) for label, span in WINDOWS]
    first = (now - timedelta(days=DAYS - 1)).date()
    days = [first + timedelta(days=n) for n in range(DAYS)]
    since = datetime.combine(first, datetime.min.time(), tzinfo=now.tzinfo)
    rows = conn.execute(
        select(sends.c.status, sends.c.updated_at).where(
            sends.c.shop_id == shop_id,
            # Every status named: the index (shop, status, updated at) is then read as one
            # range per status, not the shop's every send.
            sends.c.status.in_(OUTCOMES),
            sends.c.updated_at >= since,
        )
    )
    by_day = {outcome: [0] * DAYS for outcome in OUTCOMES}
    for status, at in rows:
        by_day[status][(at.date() - first).days] += 1
    counts: dict[str, Any] = dict(
        conn.execute(
            select(sends.c.status, func.count())
            .where(
                sends.c.shop_id == shop_id,
                sends.c.status.in_((SendStatus.FAILED.value, SendStatus.AMBIGUOUS.value)),
                sends.c.updated_at >= now - timedelta(days=7),
            )
            .group_by(sends.c.status)
        ).all()
    )
    held = conn.scalar(
        select(func.count()).where(
            and_(
                sends.c.shop_id == shop_id,
                sends.c.status == SendStatus.QUEUED.value,
                sends.c.reason.like("held:%"),
            )
        )
    )
    dead = conn.scalar(
        select(func.count()).where(inbox.c.shop_id == shop_id, inbox.c.status == "dead")
    )
    return Today(
        windows=windows,
        days=days,
        by_day=by_day,
        dead_letters=int(dead or 0),
        failed=int(counts.get(SendStatus.FAILED.value, 0)),
        ambiguous=int(counts.get(SendStatus.AMBIGUOUS.value, 0)),
        held=int(held or 0),
    )


def bars(by_day: dict[str, list[int]], width: int = 560, height: int = 140) -> dict[str, Any]:
    """The sends chart as numbers a template draws as SVG: one stacked bar per day."""
    days = len(next(iter(by_day.values()), []))
    totals = [sum(series[d] for series in by_day.values()) for d in range(days)]
    top = max(totals, default=0) or 1
    step = width / max(days, 1)
    columns = []
    for d in range(days):
        y = float(height)
        parts = []
        for outcome, series in by_day.items():
            if series[d]:
                h = series[d] / top * (height - 10)
                y -= h
                parts.append(
                    {"outcome": outcome, "y": round(y, 1), "h": round(h, 1), "n": series[d]}
                )
        columns.append(
            {
                "x": round(d * step + 2, 1),
                "w": round(step - 4, 1),
                "parts": parts,
                "total": totals[d],
            }
        )
    return {"width": width, "height": height, "columns": columns, "top": top}
