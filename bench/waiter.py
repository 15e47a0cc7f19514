"""Waiter figures: carts decided and enqueued per second, and the cost of a sweep that finds
nothing due, with few or many open carts (the due-timer index keeps it flat).

Run by ``python -m bench.run --only waiter,sweep`` (add ``waiter_pg,sweep_pg`` for
PostgreSQL). Each decide run starts from a new database filled directly with open carts (a
one-item 64.00 EUR cart, due 2 h after its last activity).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from cartnudge.db.engine import make_engine
from cartnudge.db.migrate import upgrade
from cartnudge.db.models import Send
from cartnudge.db.session import reading, writing
from cartnudge.db.turns import turn_size_for
from cartnudge.shops.service import add_shop
from cartnudge.testing.carts import insert_open_carts
from cartnudge.timing.waiter import wake_due

T0 = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)
DUE_AT = T0 + timedelta(hours=2)
SWEEP_PASSES = 200


def fill(engine: Engine, due: int, waiting: int) -> None:
    """``due`` carts whose first reminder is due at ``DUE_AT``, ``waiting`` due days later."""
    with writing(engine) as conn:
        shop = add_shop(
            conn, slug="bench", name="Bench", timezone="Europe/London", currency="EUR", now=T0
        )
    # The due ones have an address: a cart without one is only ever closed, never reminded.
    insert_open_carts(engine, shop.id, due, active_at=T0, wake_at=DUE_AT, shoppers=True)
    insert_open_carts(engine, shop.id, waiting, active_at=T0, wake_at=T0 + timedelta(days=3))


def decide_figure(url: str, due: int, limit: int | None = None) -> dict[str, Any]:
    """``wake_due`` on ``due`` due carts, a transaction a turn: ``limit`` carts a turn if
    given, else as many as fit the loops' turn target (``TurnSize``, as ``serve`` runs it);
    verified when every cart got exactly one queued send."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        fill(engine, due, 0)
        turns = turn_size_for(engine)
        started = time.perf_counter()
        report = wake_due(engine, DUE_AT, limit=limit, turns=turns)
        elapsed = time.perf_counter() - started
        with reading(engine) as conn:
            queued = conn.execute(select(func.count()).select_from(Send)).scalar_one()
    finally:
        engine.dispose()
    return {
        "due": due,
        "seconds": round(elapsed, 2),
        "carts_per_s": round(due / elapsed),
        "turn": (
            f"{limit} carts a turn"
            if limit
            else f"turns of {turns.target_s * 1000:.0f} ms ({turns.limit()} carts by the end)"
        ),
        "verified": report.moves["reminders"] == due == queued,
    }


def filled(url: str, open_carts: int) -> Engine:
    """A migrated database holding ``open_carts`` open carts, none due at ``DUE_AT``."""
    engine = make_engine(url)
    upgrade(engine)
    fill(engine, 0, open_carts)
    return engine


def sweep_figure(engine: Engine, now: datetime = DUE_AT) -> dict[str, Any]:
    """The waiter's pass when nothing is due at ``now``, averaged over ``SWEEP_PASSES``."""
    wake_due(engine, now)  # warm: the first pass reads the index pages from disk
    started = time.perf_counter()
    woken = sum(wake_due(engine, now).woken for _ in range(SWEEP_PASSES))
    elapsed = time.perf_counter() - started
    return {"sweep_ms": round(elapsed / SWEEP_PASSES * 1000, 3), "verified": woken == 0}
