"""A rules change on a shop with more open carts than one batch: the first batch's timers
move with the change, the rest in the loops' passes, a batch per transaction, each to
what the newest rules say."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cartnudge.config import Settings
from cartnudge.db.models import Cart, TimerMove
from cartnudge.db.session import reading, writing
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.versioned import set_document
from cartnudge.testing.carts import insert_open_carts
from cartnudge.timing import service
from cartnudge.timing.policy import CartClock, next_due
from cartnudge.timing.rules import DEFAULT_DOCUMENT, parse_rules
from cartnudge.timing.service import RULES, move_timers
from cartnudge.worker import Loops
from tests.conftest import T0, FrozenClock

SOONER = DEFAULT_DOCUMENT.replace("wait_override: null", "wait_override: [30m, 1d]")
LATER = DEFAULT_DOCUMENT.replace("wait_override: null", "wait_override: [5h, 1d]")
CARTS = 8


@pytest.fixture
def many(engine: Engine, shop: ShopRecord, monkeypatch: pytest.MonkeyPatch) -> ShopRecord:
    monkeypatch.setattr(service, "MOVE_BATCH", 3)
    for n in range(CARTS):  # each active a minute after the one before
        at = T0 + timedelta(minutes=n)
        insert_open_carts(
            engine, shop.id, 1, active_at=at, wake_at=at + timedelta(hours=2), shoppers=True
        )
    return shop


def wakes(engine: Engine) -> list[object]:
    with reading(engine) as conn:
        rows = conn.execute(select(Cart).order_by(Cart.c.id)).all()
    return [row.next_wake_at for row in rows]


def due_under(engine: Engine, text: str) -> list[object]:
    rules = parse_rules(text)
    with reading(engine) as conn:
        rows = conn.execute(select(Cart).order_by(Cart.c.id)).all()
    return [next_due(CartClock.from_row(row), rules) for row in rows]


def left(engine: Engine) -> list[tuple[int, int]]:
    with reading(engine) as conn:
        return [(r.shop_id, r.after_cart_id) for r in conn.execute(select(TimerMove))]


def test_the_first_batch_moves_with_the_change_and_the_loops_move_the_rest(
    engine: Engine, many: ShopRecord
) -> None:
    before = wakes(engine)
    with writing(engine) as conn:
        set_document(conn, RULES, many, SOONER, T0)

    moved_now = [a != b for a, b in zip(before, wakes(engine), strict=True)]
    assert moved_now == [True] * 3 + [False] * (CARTS - 3)  # the oldest activity first
    assert left(engine) == [(many.id, 3)]

    assert move_timers(engine, batches=1) == 3
    assert left(engine) == [(many.id, 6)]
    assert move_timers(engine) == 2
    assert left(engine) == []
    assert wakes(engine) == due_under(engine, SOONER)
    assert move_timers(engine) == 0


def test_a_newer_change_midway_starts_again_with_its_own_rules(
    engine: Engine, many: ShopRecord
) -> None:
    with writing(engine) as conn:
        set_document(conn, RULES, many, SOONER, T0)
    move_timers(engine, batches=1)
    with writing(engine) as conn:
        set_document(conn, RULES, many, LATER, T0)
    assert left(engine) == [(many.id, 3)]

    move_timers(engine)

    assert wakes(engine) == due_under(engine, LATER)
    assert left(engine) == []


def test_a_shop_within_one_batch_leaves_nothing_for_the_loops(
    engine: Engine, shop: ShopRecord
) -> None:
    insert_open_carts(engine, shop.id, 2, active_at=T0, wake_at=T0 + timedelta(hours=2))
    with writing(engine) as conn:
        set_document(conn, RULES, shop, SOONER, T0)
    assert left(engine) == []
    assert wakes(engine) == due_under(engine, SOONER)


def test_the_loops_pass_moves_timers_before_the_waiter_wakes_carts(
    engine: Engine, many: ShopRecord, tmp_path: Path
) -> None:
    with writing(engine) as conn:
        set_document(conn, RULES, many, SOONER, T0)
    settings = Settings(home=tmp_path)
    # Half an hour after the last cart's activity: every cart is due under the new rules,
    # none under the old (2 h), so a timer left unmoved would leave its cart unreminded.
    loops = Loops(engine, settings, FrozenClock(T0 + timedelta(minutes=CARTS + 30)))
    try:
        report = loops.run_once()
    finally:
        loops.providers.close()
    assert report["timers"] == CARTS - 3
    assert report["waiter"]["reminders"] == CARTS
