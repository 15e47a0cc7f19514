"""What reminders added, measured against the holdout: the carts assigned in a span (their
first reminder came due in it), those reminded and those held out, how many of each were
bought within ``HORIZON`` of the assignment, and the revenue per cart of each group, with
the intervals of ``measurement.stats`` and, beside them, the attributed figure vendors
report. When the groups are too small to say anything, the report says so in words.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from cartnudge.db.models import Cart, Order
from cartnudge.db.portable import after_pair
from cartnudge.measurement.attribution import attribute
from cartnudge.measurement.stats import (
    Interval,
    bca_difference_of_means,
    newcombe_difference,
    proportion_sample_size,
    too_small,
    wilson,
)
from cartnudge.money import minor_digits

HORIZON = timedelta(days=7)  # a purchase this long after the assignment counts
LIFT_TO_SEE = 0.02  # the sample-size question: carts needed to see two points of lift
PAGE = 2_000
carts, orders = Cart, Order


@dataclass(frozen=True)
class Group:
    carts: int
    bought: int
    revenue: list[float]  # per cart, in the shop's currency (major units)

    @property
    def rate(self) -> Interval | None:
        return wilson(self.bought, self.carts) if self.carts else None

    @property
    def revenue_per_cart(self) -> float:
        return sum(self.revenue) / self.carts if self.carts else 0.0


@dataclass(frozen=True)
class Lift:
    since: datetime
    until: datetime
    currency: str
    reminded: Group
    held_out: Group
    rate_difference: Interval | None
    revenue_difference: Interval | None
    incremental_revenue: float | None  # revenue difference per cart, times the reminded carts
    attributed_revenue: float  # on the click rule, for comparison
    too_small: str | None
    carts_needed: int | None  # per group, to see LIFT_TO_SEE at the held-out baseline

    def as_dict(self) -> dict[str, Any]:
        def interval(i: Interval | None) -> dict[str, float] | None:
            return None if i is None else {"estimate": i.estimate, "low": i.low, "high": i.high}

        def group(g: Group) -> dict[str, Any]:
            return {
                "carts": g.carts,
                "bought": g.bought,
                "purchase_rate": interval(g.rate),
                "revenue_per_cart": round(g.revenue_per_cart, 2),
            }

        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "currency": self.currency,
            "reminded": group(self.reminded),
            "held_out": group(self.held_out),
            "purchase_rate_difference": interval(self.rate_difference),
            "revenue_per_cart_difference": interval(self.revenue_difference),
            "incremental_revenue": self.incremental_revenue,
            "attributed_revenue": self.attributed_revenue,
            "too_small": self.too_small,
            "carts_needed_per_group_for_2_points": self.carts_needed,
        }


def lift(
    conn: Connection,
    shop_id: int,
    currency: str,
    since: datetime,
    until: datetime,
    *,
    horizon: timedelta = HORIZON,
    seed: int = 0,
) -> Lift:
    """The lift of the shop's carts assigned in [since, until)."""
    if until <= since:
        raise ValueError("the span's end must come after its start")
    scale = 10 ** minor_digits(currency)
    groups: dict[bool, tuple[int, int, list[float]]] = {True: (0, 0, []), False: (0, 0, [])}
    after: tuple[datetime, int] | None = None
    while True:
        page = _assigned(conn, shop_id, since, until, after)
        if not page:
            break
        bought = _bought(conn, shop_id, page, horizon, currency)
        for row in page:
            n, b, revenue = groups[bool(row.held_out)]
            won = bought.get(row.id)
            groups[bool(row.held_out)] = (
                n + 1,
                b + (won is not None),
                [*revenue, (won or 0) / scale],
            )
        after = (page[-1].assigned_at, page[-1].id)
    reminded, held = (Group(*groups[False]), Group(*groups[True]))
    small = too_small(reminded.carts, held.carts, reminded.bought, held.bought)
    rate_difference = revenue_difference = None
    incremental = None
    if small is None:
        rate_difference = newcombe_difference(
            reminded.bought, reminded.carts, held.bought, held.carts
        )
        revenue_difference = bca_difference_of_means(reminded.revenue, held.revenue, seed=seed)
        incremental = round(revenue_difference.estimate * reminded.carts, 2)
    attributed = attribute(conn, shop_id, since, until + horizon).revenue().get(currency, 0)
    needed = None
    if held.carts and 0 < held.bought < held.carts:
        needed = proportion_sample_size(held.bought / held.carts, LIFT_TO_SEE)
    return Lift(
        since,
        until,
        currency,
        reminded,
        held,
        rate_difference,
        revenue_difference,
        incremental,
        attributed / scale,
        small,
        needed,
    )


def _assigned(
    conn: Connection,
    shop_id: int,
    since: datetime,
    until: datetime,
    after: tuple[datetime, int] | None,
) -> list[Any]:
    stmt = (
        select(carts.c.id, carts.c.held_out, carts.c.assigned_at)
        .where(
            carts.c.shop_id == shop_id,
            carts.c.assigned_at >= since,
            carts.c.assigned_at < until,
            carts.c.held_out.is_not(None),
        )
        .order_by(carts.c.assigned_at, carts.c.id)
        .limit(PAGE)
    )
    if after is not None:
        stmt = stmt.where(after_pair(carts.c.assigned_at, carts.c.id, after))
    return list(conn.execute(stmt))


def _bought(
    conn: Connection, shop_id: int, page: list[Any], horizon: timedelta, currency: str
) -> dict[int, int]:
    """Each cart's live orders placed within ``horizon`` after its assignment: their
    revenue net of refunds (minor units; 0 for an order in another currency)."""
    assigned = {row.id: row.assigned_at for row in page}
    rows = conn.execute(
        select(
            orders.c.cart_id,
            orders.c.placed_at,
            orders.c.currency,
            orders.c.total_minor,
            orders.c.refunded_minor,
        ).where(
            orders.c.shop_id == shop_id,
            orders.c.cart_id.in_(sorted(assigned)),
            orders.c.cancelled_at.is_(None),
            orders.c.test.is_(False),
        )
    )
    out: dict[int, int] = defaultdict(int)
    for row in rows:
        start = assigned[row.cart_id]
        if start <= row.placed_at <= start + horizon:
            net = (row.total_minor or 0) - (row.refunded_minor or 0)
            out[row.cart_id] += net if row.currency == currency else 0
    return dict(out)
