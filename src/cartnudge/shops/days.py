"""Spans of a shop's own days: ``YYYY-MM-DD`` dates read in the shop's time zone, as the
owner counts them (the sheet's span, a report's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cartnudge.shops.repository import ShopRecord

__all__ = ["Span", "SpanError", "day_span", "span_of"]


class SpanError(ValueError):
    """Dates that make no span; the message says which."""


@dataclass(frozen=True, slots=True)
class Span:
    """Where a span starts and stops, as instants (``until`` None: up to now)."""

    since: datetime
    until: datetime | None


def span_of(shop: ShopRecord, since: str, until: str | None) -> Span:
    """``YYYY-MM-DD`` dates, read as days in the shop's time zone: from the start of
    ``since`` up to (not including) the start of ``until``."""
    first = _date(since, "since")
    last = _date(until, "until") if until else None
    if last is not None and last <= first:
        raise SpanError(
            f"until ({last}) must be after since ({first}): a span covers since up to, "
            "not including, until"
        )
    zone = ZoneInfo(shop.timezone)
    return Span(
        datetime.combine(first, time(0), zone),
        datetime.combine(last, time(0), zone) if last else None,
    )


def day_span(shop: ShopRecord, day: date) -> Span:
    zone = ZoneInfo(shop.timezone)
    return Span(
        datetime.combine(day, time(0), zone),
        datetime.combine(day + timedelta(days=1), time(0), zone),
    )


def _date(text: str, name: str) -> date:
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d").date()
    except ValueError:
        raise SpanError(f"{name}: {text!r} is not a date (YYYY-MM-DD)") from None
