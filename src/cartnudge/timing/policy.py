"""When to look at a cart next. Pure functions of plain data; no I/O, no clock.

These are the store-owner-friendly defaults: a small cart waits longer before its first
reminder than a big one. Thresholds are in major units of the cart's currency.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cartnudge.money import minor_digits

SMALL_BELOW = 40  # carts under this total are "small"
BIG_FROM = 150  # carts from this total are "big"
FIRST_WAIT = {
    "small": timedelta(hours=4),
    "medium": timedelta(hours=2),
    "big": timedelta(hours=1),
}


def size_tier(total_minor: int | None, currency: str | None) -> str:
    if total_minor is None or currency is None:
        return "medium"
    unit = 10 ** minor_digits(currency)  # compare in minor units: exact and cheap
    if total_minor < SMALL_BELOW * unit:
        return "small"
    if total_minor >= BIG_FROM * unit:
        return "big"
    return "medium"


def first_wake_at(
    *,
    last_activity_at: datetime,
    total_minor: int | None,
    currency: str | None,
    activated_at: datetime,
) -> datetime | None:
    """The first reminder's due time, or ``None`` for carts from before the shop switched
    on (they are recorded, never reminded: no blast of old carts on day one)."""
    if last_activity_at < activated_at:
        return None
    return last_activity_at + FIRST_WAIT[size_tier(total_minor, currency)]
