"""The waiter: one pass over the carts whose timer has come.

For each due cart the pure ``decide`` gives the move; in the same transaction the pass
enqueues the reminder (an outbox row, unique per cart and step), moves or clears the
cart's timer, marks the carts it gives up on expired (until the shopper comes back, see
``carts.state.give_up``), and writes the audit rows. Every handler may
run twice: a second pass over the same cart finds its timer moved, and the outbox's
unique (cart, step) refuses a second copy of a reminder.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from cartnudge.db.audit import write_audit
from cartnudge.db.models import CartStatus, SendStatus
from cartnudge.db.session import writing
from cartnudge.db.turns import TurnSize, turn_size_for
from cartnudge.measurement.metrics import WAITER_MOVES
from cartnudge.timing.holdout import WHY, held_out
from cartnudge.timing.policy import CartClock, GiveUp, Leave, Remind, Wait, decide, next_due
from cartnudge.timing.repository import WaiterRepository
from cartnudge.timing.service import rules_of

# Carts per transaction when a caller fixes the count (``wake_batch``'s default). The loops
# size each transaction by time instead (``TurnSize``): every writer waits while one holds
# SQLite's write lock, so a batch is as long as a webhook may wait (bench/README.md, Soak).
BATCH = 100
ACTOR = "waiter"
HOLDER = "waiter"  # this stage's name on the write-turn timings


@dataclass
class WakeReport:
    woken: int = 0
    moves: Counter[str] = field(default_factory=Counter)

    def add(self, other: WakeReport) -> None:
        self.woken += other.woken
        self.moves.update(other.moves)

    def as_dict(self) -> dict[str, int]:
        return {"woken": self.woken, **{k: self.moves[k] for k in _MOVE_NAMES}}


_MOVE_NAMES = ("reminders", "held_out", "rescheduled", "given_up", "left")


def wake_batch(conn: Connection, now: datetime, limit: int = BATCH) -> WakeReport:
    """Claim up to ``limit`` due carts and act on each; the caller commits."""
    repo = WaiterRepository(conn)
    due = repo.claim_due(now, limit)
    report = WakeReport(woken=len(due))
    if not due:
        return report
    rules = rules_of(conn, {row.shop_id for row in due})
    # Only carts whose first reminder may come due are assigned: the others need no share.
    unassigned = {row.shop_id for row in due if row.held_out is None and not row.reminders_sent}
    holdouts = repo.holdout_percents(unassigned) if unassigned else {}
    assigned: list[dict[str, Any]] = []
    wakes: list[dict[str, Any]] = []
    reminded: list[dict[str, Any]] = []
    expired: list[dict[str, Any]] = []
    queued: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    for row in due:
        shop_rules = rules[row.shop_id]
        cart = CartClock.from_row(row)
        move = decide(cart, shop_rules.value, now)
        if isinstance(move, Remind) and move.step == 1 and row.held_out is None:
            # The cart's first reminder is due: in or out of the holdout, once and for good.
            assigned.append(_assign(row, now, holdouts.get(row.shop_id, 0)))
            if assigned[-1]["_held_out"]:
                wake = next_due(replace(cart, held_out=True), shop_rules.value)
                wakes.append({"_cart_id": row.id, "_wake": wake})
                audits.append(_held_out_audit(row, now, holdouts.get(row.shop_id, 0)))
                report.moves["held_out"] += 1
                continue
        if isinstance(move, Wait):
            wakes.append({"_cart_id": row.id, "_wake": move.until})
            report.moves["rescheduled"] += 1
        elif isinstance(move, Remind):
            after = replace(cart, reminders_sent=move.step, last_reminder_at=now)
            reminded.append(
                {
                    "_cart_id": row.id,
                    "_step": move.step,
                    "_at": now,
                    "_wake": next_due(after, shop_rules.value),
                }
            )
            queued.append(
                {
                    "shop_id": row.shop_id,
                    "cart_id": row.id,
                    "step": move.step,
                    "status": SendStatus.QUEUED.value,
                    "due_at": now,
                    "rules_version": shop_rules.version,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            audits.append(
                _audit(row, now, f"reminder:{move.step}", f"rules version {shop_rules.version}")
            )
            report.moves["reminders"] += 1
        elif isinstance(move, GiveUp):
            expired.append({"_cart_id": row.id, "_reason": move.reason, "_at": now})
            change = ({"status": row.status}, {"status": CartStatus.EXPIRED.value})
            audits.append(_audit(row, now, "status:expired", move.reason, *change))
            report.moves["given_up"] += 1
        else:
            assert isinstance(move, Leave)
            wakes.append({"_cart_id": row.id, "_wake": None})
            report.moves["left"] += 1
    repo.assign(assigned)
    repo.enqueue(queued)
    repo.mark_reminded(reminded)
    repo.set_wakes(wakes)
    repo.expire(expired)
    write_audit(conn, audits)
    return report


def _assign(row: Any, now: datetime, percent: int) -> dict[str, Any]:
    return {"_cart_id": row.id, "_held_out": held_out(row.shop_id, row.id, percent), "_at": now}


def _held_out_audit(row: Any, now: datetime, percent: int) -> dict[str, Any]:
    why = WHY.format(percent=percent)
    return _audit(row, now, "holdout:held_out", why, None, {"held_out": True})


def wake_due(
    engine: Engine, now: datetime, *, limit: int | None = None, turns: TurnSize | None = None
) -> WakeReport:
    """Batches until no cart is due at ``now``; each batch its own transaction, of
    ``limit`` carts if given, else sized by ``turns`` to last about its target (a caller
    that keeps ``turns`` from pass to pass starts each pass at the size it learnt)."""
    turns = turns or turn_size_for(engine)
    total = WakeReport()
    while True:
        size = limit or turns.limit()
        started = time.perf_counter()
        with writing(engine, HOLDER) as conn:
            report = wake_batch(conn, now, size)
        turns.record(report.woken, time.perf_counter() - started)
        total.add(report)
        for move, n in report.moves.items():  # counted once each batch is committed
            WAITER_MOVES.labels(move).inc(n)
        if report.woken < size:
            return total


def _audit(
    row: Any,
    now: datetime,
    action: str,
    reason: str | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "shop_id": row.shop_id,
        "cart_id": row.id,
        "at": now,
        "actor": ACTOR,
        "action": action,
        "reason": reason,
        "before": before,
        "after": after,
    }
