"""Durations as owners write them: ``90s``, ``30m``, ``4h``, ``2d`` (also ``1w``)."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


class DurationError(ValueError):
    """A duration that is not a whole number followed by s, m, h, d or w."""


def parse_duration(text: str) -> timedelta:
    match = _PATTERN.match(text.lower())
    if match is None:
        raise DurationError(f"{text!r} is not a duration like 90s, 30m, 4h or 2d")
    amount, unit = match.groups()
    return timedelta(seconds=int(amount) * _UNITS[unit])


def format_duration(value: timedelta) -> str:
    """The largest unit that divides the duration exactly: 7 days is ``7d``."""
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
