"""What the fault and fuzz suites report at the end of a run, and how big they run.

`make test` runs them short; `make chaos` sets ``CARTNUDGE_CHAOS=full`` for the long version.
Each test adds its counts (cycles run, events, duplicates found, violations) with ``record``,
and the root conftest prints them after the summary, so a green run still says what it tried.
"""

from __future__ import annotations

import os
from collections import defaultdict

FULL = os.environ.get("CARTNUDGE_CHAOS", "") == "full"

_COUNTS: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))


def scaled(short: int, full: int) -> int:
    """How many cycles, events or examples to run: ``full`` under `make chaos`."""
    return full if FULL else short


def record(check: str, **counts: int) -> None:
    """Add to the counts of one check; calling again for the same check adds up."""
    for name, value in counts.items():
        _COUNTS[check][name] += value


def report() -> list[str]:
    """One line per check, in the order the checks first reported."""
    return [
        f"{check}: " + ", ".join(f"{name} {value:,}" for name, value in counts.items())
        for check, counts in _COUNTS.items()
    ]
