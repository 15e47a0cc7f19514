"""A dry run of new rules: with these rules, when would the shop's open carts be reminded
(or closed), and how does that differ from the rules in force? Nothing is stored.

It answers the timing question the waiter asks (``timing.policy``) and the one gate that
moves a time, quiet hours (``delivery.policy.next_allowed``), for the shop's most recently
active open carts. Consent and do-not-disturb depend on the shopper's address at send
time; the page says they are checked then.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from cartnudge.db.models import Cart, CartStatus
from cartnudge.delivery.policy import next_allowed
from cartnudge.timing.policy import CartClock, GiveUp, Remind, decide, major_units, next_due
from cartnudge.timing.repository import CLOCK_COLUMNS
from cartnudge.timing.rules import Rules

carts = Cart
LIMIT = 500  # carts looked at: enough to see the shape of a change, quick on any shop


@dataclass(frozen=True, slots=True)
class Plan:
    """What the waiter and the sender would do next with one cart under some rules."""

    what: str  # "reminder 2", "closed", "never"
    at: datetime | None  # when (after quiet hours); None for "never"
    why: str = ""

    @property
    def reminds(self) -> bool:
        return self.what.startswith("reminder")


@dataclass(frozen=True, slots=True)
class CartPlan:
    cart_id: int
    total_minor: int | None
    currency: str | None
    last_activity_at: datetime
    now: Plan
    proposed: Plan

    @property
    def change(self) -> str:
        """How the proposed rules move this cart: same, sooner, later, newly, no longer."""
        a, b = self.now, self.proposed
        if a.reminds != b.reminds:
            return "now reminded" if b.reminds else "no longer reminded"
        if a.what != b.what or a.at is None or b.at is None:
            return "different" if (a.what, a.at) != (b.what, b.at) else "same"
        return "sooner" if b.at < a.at else "later" if b.at > a.at else "same"


@dataclass(frozen=True, slots=True)
class DryRun:
    carts: list[CartPlan]  # the soonest proposed action first
    changes: dict[str, int]  # change -> carts
    limit: int

    @property
    def limited(self) -> bool:
        return len(self.carts) >= self.limit


def plan(cart: CartClock, rules: Rules, now: datetime, zone: ZoneInfo) -> Plan:
    """The next thing that happens to an open cart under ``rules``, and when."""
    total = major_units(cart.total_minor, cart.currency)
    if total is not None and total < rules.minimum_cart_value:
        return Plan("never", None, f"below the minimum of {rules.minimum_cart_value}")
    due = max(next_due(cart, rules), now)  # a past timer is acted on at the next pass
    # What the waiter will decide then (a cart with no address, or held out, is closed).
    move = decide(cart, rules, due)
    if not isinstance(move, Remind):
        return Plan("closed", due, move.reason if isinstance(move, GiveUp) else "")
    if rules.quiet_hours is not None:
        due = next_allowed(due, zone, rules.quiet_hours)
    return Plan(f"reminder {move.step}", due)


def dry_run(
    conn: Connection,
    shop_id: int,
    shop_timezone: str,
    current: Rules,
    proposed: Rules,
    now: datetime,
    *,
    limit: int = LIMIT,
) -> DryRun:
    """Both rules' plans for the shop's ``limit`` most recently active open carts that
    the waiter is watching (one range of the index on shop, status and activity)."""
    rows = conn.execute(
        select(*CLOCK_COLUMNS, carts.c.timezone)
        .where(
            carts.c.shop_id == shop_id,
            carts.c.status == CartStatus.OPEN.value,
            carts.c.next_wake_at.is_not(None),
        )
        .order_by(carts.c.last_activity_at.desc())
        .limit(limit)
    ).all()
    plans = [_both(row, current, proposed, now, shop_timezone) for row in rows]
    plans.sort(key=lambda p: (p.proposed.at is None, p.proposed.at or now, p.cart_id))
    return DryRun(plans, dict(Counter(p.change for p in plans)), limit)


def _both(row: Any, current: Rules, proposed: Rules, now: datetime, shop_tz: str) -> CartPlan:
    clock = CartClock.from_row(row)
    zone = ZoneInfo(row.timezone or shop_tz)  # as the sender's gate reads it (checked at intake)
    return CartPlan(
        row.id,
        row.total_minor,
        row.currency,
        row.last_activity_at,
        plan(clock, current, now, zone),
        plan(clock, proposed, now, zone),
    )
