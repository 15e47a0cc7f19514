"""How much work one turn at the write lock takes: sized by time, not by a fixed count.

Every writer on a SQLite file waits while one holds the write lock, so a loop's batch is as
long as a webhook may wait behind it. A count tuned on one host (100 carts, 50 sends) is too
long on a slower host or with heavier carts and needlessly short on a faster one. Instead
each loop measures how long its last turns took per item and sizes the next to last about
``TURN_TARGET_S``. PostgreSQL has no single write lock, and each transaction there costs
round trips, so its turns are longer (``PG_TURN_TARGET_S``): still bounded, so row locks and
snapshots are held briefly, but long enough that the round trips do not dominate (at 20 ms
the waiter lost 15-20 % of its carts a second there; bench/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

# A turn this long keeps ack p99 under 50 ms at 1,000 webhooks/s while the loops work (a
# 20-25 ms turn measured 30-44 ms p99 under the soak; 60-90 ms turns gave 130-160 ms).
TURN_TARGET_S = 0.020
PG_TURN_TARGET_S = 0.100
SMOOTHING = 0.3  # weight of the newest turn in the running cost per item


@dataclass
class TurnSize:
    """The number of items the next turn takes, from the measured cost of earlier turns.

    ``limit`` starts at ``first`` and then follows ``target_s / cost per item``, kept within
    ``least`` and ``most``: at least a few items so a slow turn still makes progress, at most
    enough that one claim statement stays cheap.
    """

    target_s: float = TURN_TARGET_S
    first: int = 50
    least: int = 10
    most: int = 1000
    per_item_s: float | None = field(default=None)

    def __post_init__(self) -> None:
        if not 0 < self.least <= self.first <= self.most:
            raise ValueError("need 0 < least <= first <= most")
        if self.target_s <= 0:
            raise ValueError("target_s must be positive")

    def limit(self) -> int:
        if self.per_item_s is None or self.per_item_s <= 0:
            return self.first
        fits = self.target_s / self.per_item_s  # compared as a float: it may be huge
        return self.most if fits >= self.most else max(self.least, int(fits))

    def record(self, items: int, seconds: float) -> None:
        """A turn that handled ``items`` items in ``seconds``. Turns with nothing to do
        measure only the claim's overhead, not the cost of an item, so they are ignored."""
        if items <= 0 or seconds < 0:
            return
        cost = seconds / items
        if self.per_item_s is None:
            self.per_item_s = cost
        else:
            self.per_item_s += SMOOTHING * (cost - self.per_item_s)


def turn_size_for(engine: Engine) -> TurnSize:
    """A fresh ``TurnSize`` with the target that suits the engine's locking."""
    return TurnSize(target_s=TURN_TARGET_S if engine.dialect.name == "sqlite" else PG_TURN_TARGET_S)
