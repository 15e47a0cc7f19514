"""When to look at a cart next, and what to do then. Pure functions of plain data and an
explicit ``now``; no I/O, no clock.

``decide`` is the waiter's one question: given a cart as it is now and the shop's rules,
is the shopper still shopping (look again later), is reminder N due, or is it time to give
up? Quiet hours, consent and do-not-disturb are the sender's gates, not moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from cartnudge.db.models import CartStatus
from cartnudge.money import minor_digits
from cartnudge.timing.rules import Rules


@dataclass(frozen=True, slots=True)
class CartClock:
    """What the move depends on: a cart's status, money and timeline."""

    status: CartStatus
    last_activity_at: datetime
    total_minor: int | None
    currency: str | None
    reminders_sent: int  # steps already decided (enqueued), whatever became of them
    last_reminder_at: datetime | None  # when the latest step was decided
    # The cart has an address to write to. One without is never reminded (the sender
    # would skip every step), so the waiter looks at it once, to close it when it would
    # have been given up; an event that brings an address sets its timer again.
    reachable: bool = True
    # Held out of reminders to measure their lift (``timing.holdout``): like a cart with
    # no address, it is looked at once more, to close it when it would have been given up.
    held_out: bool = False

    @classmethod
    def from_row(cls, row: Any) -> CartClock:
        """From a ``carts`` row (or any object with its columns)."""
        return cls(
            CartStatus(row.status),
            row.last_activity_at,
            row.total_minor,
            row.currency,
            row.reminders_sent,
            row.last_reminder_at,
            row.email_key is not None,
            bool(row.held_out),
        )


@dataclass(frozen=True, slots=True)
class Wait:
    """Still shopping, or not due yet: look again at ``until``."""

    until: datetime


@dataclass(frozen=True, slots=True)
class Remind:
    step: int  # 1-based


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


@dataclass(frozen=True, slots=True)
class Leave:
    """Not an open cart (bought, closed, suppressed, written off): no timer, no send."""

    reason: str


Move = Wait | Remind | GiveUp | Leave


def major_units(total_minor: int | None, currency: str | None) -> Decimal | None:
    if total_minor is None or currency is None:
        return None
    return Decimal(total_minor).scaleb(-minor_digits(currency))


def next_due(cart: CartClock, rules: Rules) -> datetime:
    """When the next step (or giving up, after the last one) is due."""
    waits = rules.waits_for(major_units(cart.total_minor, cart.currency))
    step = cart.reminders_sent + 1
    if cart.last_reminder_at is None:
        anchor = cart.last_activity_at
    else:
        # Activity after a reminder restarts the clock; otherwise count from the reminder.
        anchor = max(cart.last_activity_at, cart.last_reminder_at)
    if step > len(waits):
        return anchor + rules.give_up_after
    if not cart.reachable or cart.held_out:  # when it would be given up had every step gone
        return anchor + sum(waits[step - 1 :], rules.give_up_after)
    return anchor + waits[step - 1]


def decide(cart: CartClock, rules: Rules, now: datetime) -> Move:
    """The waiter's move for one cart at ``now``. Same inputs, same move."""
    if cart.status is not CartStatus.OPEN:
        return Leave(f"cart is {cart.status.value}")
    total = major_units(cart.total_minor, cart.currency)
    if total is not None and total < rules.minimum_cart_value:
        return GiveUp(f"cart total below the minimum of {rules.minimum_cart_value}")
    due = next_due(cart, rules)
    if now < due:
        return Wait(due)
    steps = len(rules.waits_for(total))
    if cart.reminders_sent >= steps:
        return GiveUp(f"no purchase after {cart.reminders_sent} reminder(s)")
    if not cart.reachable:
        return GiveUp("no address to remind")
    if cart.held_out:
        return GiveUp("held out: never reminded, to measure what reminders add")
    return Remind(cart.reminders_sent + 1)


def wake_at(
    *,
    status: CartStatus,
    last_activity_at: datetime,
    total_minor: int | None,
    currency: str | None,
    activated_at: datetime,
    rules: Rules,
    reminders_sent: int = 0,
    last_reminder_at: datetime | None = None,
    reachable: bool = True,
) -> datetime | None:
    """When the waiter should next look at a cart, or ``None``: a cart that is not open,
    or one from before the shop switched on (recorded, never reminded: no blast of old
    carts on day one)."""
    if status is not CartStatus.OPEN or last_activity_at < activated_at:
        return None
    clock = CartClock(
        status, last_activity_at, total_minor, currency, reminders_sent, last_reminder_at,
        reachable,
    )  # fmt: skip
    return next_due(clock, rules)
