"""The one clock. Every time inside is timezone-aware UTC; the clock is injected."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


# Times a shop's events can carry: older is no cart of ours, later overflows the timers.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, tzinfo=UTC)


def ensure_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; refuse naive datetimes, which have no meaning here."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no timezone")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise ValueError(f"{value.isoformat()} is out of range") from None


def plausible(value: datetime) -> datetime:
    """``value`` in UTC if it lies between ``EARLIEST`` and ``LATEST``, else ValueError."""
    utc = ensure_utc(value)
    if not EARLIEST <= utc <= LATEST:
        raise ValueError(f"{utc.isoformat()} is out of range (1970 to 2999)")
    return utc


def parse_instant(text: str) -> datetime:
    """Parse an RFC 3339 / ISO 8601 instant that carries an offset (``Z`` allowed)."""
    value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    return ensure_utc(value)


class FrozenClock:
    """A clock that stands still until moved: for tests, simulations and ``tick --now``."""

    def __init__(self, now: datetime) -> None:
        self.now = ensure_utc(now)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        from datetime import timedelta

        self.now = self.now + timedelta(**delta)
        return self.now
