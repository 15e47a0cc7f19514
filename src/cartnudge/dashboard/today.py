"""*Today*: a shop's numbers over the last 24 hours, today and the previous 6 days, today
and the previous 29 days (days in the shop's time zone), its sends by outcome day by day,
and what needs the owner's attention.

The days before today come from the loops' tallies (``measurement.tally``), at most 29
small rows; only the day still open and the rolling 24 hours are counted live, each figure
one query on an index led by the shop over at most two days of rows. A closed day with no
tally yet (a fresh install, before the loops' first pass) is counted live: the page is
then slower, never wrong.

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

from cartnudge.db.models import InboxEvent, Send, SendStatus
from cartnudge.measurement.tally import (
    OUTCOMES,
    Figures,
    count,
    count_day,
    day_start,
    local_day,
    tallied,
    zone_of,
)

sends, inbox = Send, InboxEvent

# (label, days before today it reaches back); None: the rolling 24 hours.
WINDOWS: tuple[tuple[str, int | None], ...] = (
    ("last 24 hours", None),
    ("today and the previous 6 days", 6),
    ("today and the previous 29 days", 29),
)
DAYS = 14  # the sends chart, today included


@dataclass(frozen=True)
class Window:
    label: str
    seen: int  # carts first active in it
    reminded: int  # carts first reminded in it
    recovered: int  # carts whose first order after a reminder was placed in it
    revenue: dict[str, int]  # currency -> minor units, net of refunds


@dataclass(frozen=True)
class Today:
    windows: list[Window]
    days: list[date]  # oldest first, the shop's days
    by_day: dict[str, list[int]]  # outcome -> count per day of ``days``
    dead_letters: int
    failed: int
    ambiguous: int
    held: int
    timezone: str
    tallied_at: datetime | None  # the oldest tally the page used; None: none used
    counted_live: int  # closed days without a tally yet, counted live instead


def _window(label: str, figures: Figures) -> Window:
    return Window(
        label=label,
        seen=figures.seen,
        reminded=figures.reminded,
        recovered=figures.recovered,
        revenue=figures.revenue,
    )


def today(conn: Connection, shop_id: int, timezone: str, now: datetime) -> Today:
    zone = zone_of(timezone)
    this_day = local_day(now, zone)
    last_24h, open_day = count(
        conn, shop_id, [now - timedelta(days=1), day_start(this_day, zone)], None
    )
    reach = max(back for _, back in WINDOWS if back is not None)
    closed = [this_day - timedelta(days=k) for k in range(reach, 0, -1)]
    kept = tallied(conn, shop_id, closed[0], closed[-1])
    per_day: dict[date, Figures] = {day: t.figures for day, t in kept.items()}
    missing = [day for day in closed if day not in kept]
    for day in missing:
        per_day[day] = count_day(conn, shop_id, day, zone)
    per_day[this_day] = open_day

    windows = []
    for label, back in WINDOWS:
        if back is None:
            windows.append(_window(label, last_24h))
            continue
        total = Figures()
        for k in range(back, -1, -1):
            total = total + per_day[this_day - timedelta(days=k)]
        windows.append(_window(label, total))

    days = [this_day - timedelta(days=k) for k in range(DAYS - 1, -1, -1)]
    by_day = {outcome: [per_day[day].sends.get(outcome, 0) for day in days] for outcome in OUTCOMES}
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
        timezone=timezone,
        tallied_at=min((t.tallied_at for t in kept.values()), default=None),
        counted_live=len(missing),
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
