"""The loops size each turn at the write lock by time: the pure sizing rule, and the waiter
and sender following it over real carts."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

from cartnudge.db.turns import TurnSize
from cartnudge.delivery.sender import Providers, send_due
from cartnudge.measurement.metrics import WRITE_TURN_HELD
from cartnudge.shops.repository import ShopRecord
from cartnudge.testing.carts import insert_open_carts
from cartnudge.timing.waiter import wake_due
from tests.conftest import T0
from tests.delivery.helpers import LINKS

costs = st.floats(min_value=1e-6, max_value=1.0)


@given(st.lists(st.tuples(st.integers(0, 5000), st.floats(0, 10)), max_size=30))
def test_the_size_stays_within_its_bounds_whatever_the_turns_took(
    turns: list[tuple[int, float]],
) -> None:
    size = TurnSize(least=10, first=50, most=1000)
    for items, seconds in turns:
        size.record(items, seconds)
        assert 10 <= size.limit() <= 1000


@given(costs)
def test_steady_turns_settle_on_the_size_that_lasts_the_target(cost: float) -> None:
    size = TurnSize(target_s=0.02, least=1, first=50, most=100_000)
    for _ in range(60):
        items = size.limit()
        size.record(items, items * cost)
    assert size.limit() == max(1, min(100_000, int(0.02 / cost)))


def test_a_slower_host_gets_shorter_turns_and_a_faster_one_longer() -> None:
    slow, fast = TurnSize(), TurnSize()
    for _ in range(20):
        slow.record(slow.limit(), slow.limit() * 0.001)  # 1 ms a cart: 20 carts a turn
        fast.record(fast.limit(), fast.limit() * 0.0001)  # 0.1 ms a cart: 200 a turn
    assert (slow.limit(), fast.limit()) == (20, 200)


def test_turns_with_nothing_to_do_teach_nothing() -> None:
    size = TurnSize(first=50)
    size.record(0, 5.0)
    assert size.limit() == 50


def test_bounds_that_cannot_hold_are_refused() -> None:
    with pytest.raises(ValueError, match="least"):
        TurnSize(least=0)
    with pytest.raises(ValueError, match="least"):
        TurnSize(least=60, first=50)
    with pytest.raises(ValueError, match="target"):
        TurnSize(target_s=0)


def _turns_taken(holder: str) -> float:
    return sum(
        sample.value
        for metric in WRITE_TURN_HELD.collect()
        for sample in metric.samples
        if sample.name.endswith("_count") and sample.labels.get("holder") == holder
    )


def test_the_waiter_and_sender_take_as_many_carts_a_turn_as_the_size_says(
    engine: Engine, sender_shop: ShopRecord, tmp_path: Path
) -> None:
    insert_open_carts(
        engine, sender_shop.id, 23, active_at=T0 - timedelta(hours=3), wake_at=T0, shoppers=True
    )
    waiter_before = _turns_taken("waiter")
    sender_before = _turns_taken("sender")

    report = wake_due(engine, T0, turns=TurnSize(least=5, first=5, most=5))
    sent = send_due(
        engine,
        lambda: T0,
        Providers(tmp_path),
        LINKS,
        turns=TurnSize(least=10, first=10, most=10),
        rng=random.Random(1),
    )

    assert report.moves["reminders"] == 23
    assert sent.as_dict() == {**sent.as_dict(), "claimed": 23, "sent": 23}
    assert len(list(tmp_path.rglob("*.eml"))) == 23
    if engine.dialect.name == "sqlite":  # PostgreSQL has no write turn to time
        assert _turns_taken("waiter") - waiter_before == 5  # 5 + 5 + 5 + 5 + 3
        # Claims of 10, 10 and 3, each followed by at least one turn recording outcomes.
        assert _turns_taken("sender") - sender_before >= 6
