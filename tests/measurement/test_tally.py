"""Today's figures tallied by the shop's own days: a tally holds what a live count of the
same rows says, and Today adds up tallies and live counts to the same figures."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, update

from cartnudge.config import Settings
from cartnudge.dashboard.today import Today, today
from cartnudge.db.models import Cart, DayTally, Order, Send, SendStatus
from cartnudge.db.session import reading, writing
from cartnudge.measurement.tally import (
    OUTCOMES,
    TALLY_DAYS,
    Figures,
    count_day,
    day_start,
    local_day,
    record,
    tallied,
    tally_shop,
    tally_shops,
    zone_of,
)
from cartnudge.shops.repository import ShopRecord
from cartnudge.worker import Loops
from tests.conftest import KEY, ShopFactory, wipe

LA = "America/Los_Angeles"
# 10:30 in Los Angeles on 2026-03-20; the clocks went forward there on 2026-03-08.
NOW = datetime(2026, 3, 20, 17, 30, tzinfo=UTC)
H = timedelta(hours=1)


@dataclass
class Rows:
    """What was stored, kept beside the database to count it again in plain Python."""

    carts: dict[int, datetime] = field(default_factory=dict)  # id -> first active
    sends: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)


def add_cart(conn: Any, rows: Rows, shop_id: int, at: datetime) -> int:
    cart_id = conn.execute(
        insert(Cart).values(
            shop_id=shop_id,
            status="open",
            source="storefront",
            items=[],
            first_activity_at=at,
            last_activity_at=at,
            versions={},
            created_at=at,
            updated_at=at,
        )
    ).inserted_primary_key[0]
    rows.carts[cart_id] = at
    return int(cart_id)


def add_send(
    conn: Any,
    rows: Rows,
    shop_id: int,
    cart_id: int,
    step: int,
    status: str,
    at: datetime,
) -> None:
    values = {
        "shop_id": shop_id,
        "cart_id": cart_id,
        "step": step,
        "status": status,
        "due_at": at,
        "rules_version": 1,
        "created_at": at - H,
        "updated_at": at,
        "sent_at": at if status in ("sent", "failed", "ambiguous") else None,
    }
    send_id = conn.execute(insert(Send).values(**values)).inserted_primary_key[0]
    rows.sends.append({**values, "id": int(send_id)})


def add_order(conn: Any, rows: Rows, shop_id: int, cart_id: int | None, **values: Any) -> int:
    n = len(rows.orders) + 1
    values = {
        "shop_id": shop_id,
        "source": "shopify",
        "external_id": f"o{n}",
        "has_cart_keys": cart_id is not None,
        "cart_id": cart_id,
        "created_at": values["placed_at"],
        "currency": "USD",
        "total_minor": 1000 * n,
        "refunded_minor": 0,
        "cancelled_at": None,
        "test": False,
        **values,
    }
    order_id = conn.execute(insert(Order).values(**values)).inserted_primary_key[0]
    rows.orders.append({**values, "id": int(order_id)})
    return int(order_id)


def store(engine: Engine, shop_id: int, *, days: int = 6, seed: int = 1) -> Rows:
    """Carts, sends and orders over the last ``days`` days before NOW, with every case a
    figure must tell apart: second reminders on a later day, failed and skipped sends,
    orders with and without a reminder before them, cancelled, test, refunded, in two
    currencies or none, two won orders of one cart."""
    rng = random.Random(seed)
    rows = Rows()
    start = NOW - timedelta(days=days)
    span = (NOW - start).total_seconds()
    with writing(engine) as conn:
        for _ in range(120):
            at = start + timedelta(seconds=rng.uniform(0, span))
            cart_id = add_cart(conn, rows, shop_id, at)
            if rng.random() < 0.6:
                first = at + timedelta(hours=rng.uniform(1, 20))
                status = rng.choice(["sent"] * 6 + ["failed", "skipped", "ambiguous", "queued"])
                if first < NOW:
                    add_send(conn, rows, shop_id, cart_id, 1, status, first)
                    second = first + timedelta(hours=rng.uniform(2, 40))
                    if rng.random() < 0.5 and second < NOW:
                        add_send(conn, rows, shop_id, cart_id, 2, "sent", second)
            if rng.random() < 0.4:
                placed = at + timedelta(hours=rng.uniform(0.5, 50))
                if placed < NOW:
                    add_order(
                        conn,
                        rows,
                        shop_id,
                        cart_id,
                        placed_at=placed,
                        currency=rng.choice(["USD", "USD", "EUR", None]),
                        refunded_minor=rng.choice([0, 0, 0, 250]),
                        cancelled_at=placed + H if rng.random() < 0.1 else None,
                        test=rng.random() < 0.1,
                    )
                    if rng.random() < 0.15 and placed + 30 * H < NOW:
                        add_order(conn, rows, shop_id, cart_id, placed_at=placed + 30 * H)
        add_order(conn, rows, shop_id, None, placed_at=NOW - 2 * H)  # matched no cart
    return rows


def recount(rows: Rows, since: datetime, until: datetime | None) -> Figures:
    """The figures of ``[since, until)`` from the rows as stored, in plain Python."""

    def inside(at: datetime | None) -> bool:
        return at is not None and at >= since and (until is None or at < until)

    sent = [s for s in rows.sends if s["status"] == "sent"]
    first_sends: dict[int, dict[str, Any]] = {}
    for s in sorted(sent, key=lambda s: (s["sent_at"], s["id"])):
        first_sends.setdefault(s["cart_id"], s)
    won = [
        o
        for o in rows.orders
        if o["cart_id"] is not None
        and o["cancelled_at"] is None
        and not o["test"]
        and any(s["cart_id"] == o["cart_id"] and s["sent_at"] < o["placed_at"] for s in sent)
    ]
    first_won: dict[int, dict[str, Any]] = {}
    for o in sorted(won, key=lambda o: (o["placed_at"], o["id"])):
        first_won.setdefault(o["cart_id"], o)
    revenue: dict[str, int] = {}
    for o in won:
        if inside(o["placed_at"]) and o["currency"]:
            net = o["total_minor"] - o["refunded_minor"]
            revenue[o["currency"]] = revenue.get(o["currency"], 0) + net
    by_status: dict[str, int] = {}
    for s in rows.sends:
        if inside(s["updated_at"]) and s["status"] in OUTCOMES:
            by_status[s["status"]] = by_status.get(s["status"], 0) + 1
    return Figures(
        seen=sum(1 for at in rows.carts.values() if inside(at)),
        reminded=sum(1 for s in first_sends.values() if inside(s["sent_at"])),
        recovered=sum(1 for o in first_won.values() if inside(o["placed_at"])),
        revenue=revenue,
        sends=by_status,
    )


def figures_of(page: Today) -> list[Any]:
    return [page.windows, page.days, page.by_day]


@pytest.fixture
def la_shop(make_shop: ShopFactory) -> ShopRecord:
    return make_shop(timezone=LA)


def test_every_tallied_day_equals_the_live_count_of_its_rows(
    engine: Engine, la_shop: ShopRecord, make_shop: ShopFactory
) -> None:
    rows = store(engine, la_shop.id)
    other = make_shop(timezone="UTC")
    store(engine, other.id, seed=2)  # another shop's rows count for that shop only
    zone = zone_of(LA)

    report = tally_shops(engine, NOW, everything=True)

    assert report == {"shops": 2, "days": 2 * TALLY_DAYS}
    this_day = local_day(NOW, zone)
    with reading(engine) as conn:
        kept = tallied(conn, la_shop.id, this_day - timedelta(days=TALLY_DAYS), this_day)
        assert sorted(kept) == [this_day - timedelta(days=k) for k in range(TALLY_DAYS, 0, -1)]
        for day, tally in kept.items():
            live = count_day(conn, la_shop.id, day, zone)
            expected = recount(rows, day_start(day, zone), day_start(day + timedelta(days=1), zone))
            assert tally.figures == live == expected, day
            assert tally.tallied_at == NOW
    # The rows were spread so that each figure has something to count on some day.
    busy = [t.figures for t in kept.values()]
    assert all(sum(getattr(f, name) for f in busy) > 0 for name in ("seen", "reminded"))
    assert sum(f.recovered for f in busy) > 0
    assert {c for f in busy for c in f.revenue} == {"USD", "EUR"}
    assert {"sent", "failed", "skipped"} <= {s for f in busy for s in f.sends}


def test_today_without_tallies_equals_today_with_them(engine: Engine, la_shop: ShopRecord) -> None:
    rows = store(engine, la_shop.id, days=35)
    with reading(engine) as conn:
        untallied = today(conn, la_shop.id, LA, NOW)
    assert untallied.counted_live == 29 and untallied.tallied_at is None

    tally_shops(engine, NOW, everything=True)
    with reading(engine) as conn:
        tallied_page = today(conn, la_shop.id, LA, NOW)

    assert tallied_page.counted_live == 0 and tallied_page.tallied_at == NOW
    assert figures_of(tallied_page) == figures_of(untallied)
    zone = zone_of(LA)
    this_day = local_day(NOW, zone)
    day_24h, week, month = tallied_page.windows
    for window, since in (
        (day_24h, NOW - 24 * H),
        (week, day_start(this_day - timedelta(days=6), zone)),
        (month, day_start(this_day - timedelta(days=29), zone)),
    ):
        f = recount(rows, since, None)
        assert (window.seen, window.reminded, window.recovered, window.revenue) == (
            f.seen,
            f.reminded,
            f.recovered,
            f.revenue,
        ), window.label
    # The chart: each of the 14 shop days, today's counted live.
    for i, day in enumerate(tallied_page.days):
        f = recount(rows, day_start(day, zone), day_start(day + timedelta(days=1), zone))
        assert {o: tallied_page.by_day[o][i] for o in OUTCOMES if tallied_page.by_day[o][i]} == (
            f.sends
        )


def test_a_refund_after_the_day_closed_shows_once_the_day_is_tallied_again(
    engine: Engine, la_shop: ShopRecord
) -> None:
    zone = zone_of(LA)
    yesterday = local_day(NOW, zone) - timedelta(days=1)
    noon = day_start(yesterday, zone) + 12 * H
    rows = Rows()
    with writing(engine) as conn:
        cart_id = add_cart(conn, rows, la_shop.id, noon - 3 * H)
        add_send(conn, rows, la_shop.id, cart_id, 1, "sent", noon - 2 * H)
        order_id = add_order(
            conn, rows, la_shop.id, cart_id, placed_at=noon, total_minor=5000, currency="USD"
        )
    tally_shops(engine, NOW, everything=True)

    with writing(engine) as conn:
        conn.execute(update(Order).where(Order.c.id == order_id).values(refunded_minor=1500))
    with reading(engine) as conn:
        assert today(conn, la_shop.id, LA, NOW).windows[1].revenue == {"USD": 5000}

    later = NOW + 10 * timedelta(minutes=1)
    assert tally_shops(engine, later, everything=False) == {"shops": 1, "days": 2}
    with reading(engine) as conn:
        page = today(conn, la_shop.id, LA, later)
    assert page.windows[1].revenue == {"USD": 3500}
    assert page.windows[1].recovered == 1

    # A cancellation, found by the hourly pass: the order no longer counts at all.
    with writing(engine) as conn:
        conn.execute(update(Order).where(Order.c.id == order_id).values(cancelled_at=NOW))
    tally_shops(engine, later + H, everything=True)
    with reading(engine) as conn:
        page = today(conn, la_shop.id, LA, later + H)
    assert page.windows[1].revenue == {} and page.windows[1].recovered == 0


def test_days_are_the_shops_own_from_its_midnight(engine: Engine, la_shop: ShopRecord) -> None:
    zone = zone_of(LA)
    # Los Angeles is UTC-7 since 2026-03-08: its 19 March ends at 07:00 UTC on the 20th.
    midnight = datetime(2026, 3, 20, 7, 0, tzinfo=UTC)
    assert day_start(date(2026, 3, 20), zone) == midnight
    # The day the clocks went forward had 23 hours, and the next began where it ended.
    assert day_start(date(2026, 3, 9), zone) - day_start(date(2026, 3, 8), zone) == 23 * H
    rows = Rows()
    with writing(engine) as conn:
        late = add_cart(conn, rows, la_shop.id, midnight - timedelta(minutes=1))
        add_send(conn, rows, la_shop.id, late, 1, "sent", midnight - timedelta(seconds=1))
        add_cart(conn, rows, la_shop.id, midnight)
        add_cart(conn, rows, la_shop.id, datetime(2026, 3, 9, 6, 30, tzinfo=UTC))  # 8 March, 23:30
    tally_shops(engine, NOW, everything=True)

    with reading(engine) as conn:
        kept = tallied(conn, la_shop.id, date(2026, 3, 1), date(2026, 3, 31))
        page = today(conn, la_shop.id, LA, NOW)
    assert kept[date(2026, 3, 19)].figures == Figures(seen=1, reminded=1, sends={"sent": 1})
    assert kept[date(2026, 3, 8)].figures.seen == 1
    assert kept[date(2026, 3, 9)].figures.seen == 0
    # 24 hours reach back to 10:30 yesterday, 7 days to 14 March, 30 days to 19 February.
    assert [w.seen for w in page.windows] == [2, 2, 3]
    assert page.days[-1] == date(2026, 3, 20) and page.by_day["sent"][-2:] == [1, 0]


def test_a_later_tally_is_never_replaced_by_an_earlier_one(
    engine: Engine, la_shop: ShopRecord
) -> None:
    day = date(2026, 3, 19)
    with writing(engine) as conn:
        record(conn, la_shop.id, day, Figures(seen=5), NOW)
        record(conn, la_shop.id, day, Figures(seen=4), NOW - H)  # begun earlier, came last
        record(conn, la_shop.id, day, Figures(seen=6, revenue={"EUR": 1}), NOW + H)
    with reading(engine) as conn:
        kept = tallied(conn, la_shop.id, day, day)
    assert kept[day].figures == Figures(seen=6, revenue={"EUR": 1})
    assert kept[day].tallied_at == NOW + H


@pytest.fixture
def pg(request: pytest.FixtureRequest) -> Iterator[Engine]:
    shared: Engine = request.getfixturevalue("postgresql_engine")
    wipe(shared)
    yield shared
    wipe(shared)


def test_workers_tallying_the_same_days_at_once_leave_one_correct_row_each(
    pg: Engine,
) -> None:
    from cartnudge.shops.service import add_shop

    with writing(pg) as conn:
        shop = add_shop(
            conn,
            now=NOW,
            slug="racing",
            name="Racing",
            timezone=LA,
            currency="USD",
            activated_at=NOW - timedelta(days=400),
        )
    rows = store(pg, shop.id)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            tally_shop(pg, shop.id, LA, NOW, recent=None)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    zone = zone_of(LA)
    with reading(pg) as conn:
        assert conn.scalar(select(func.count()).select_from(DayTally)) == TALLY_DAYS
        for day, tally in tallied(conn, shop.id, date(2026, 1, 1), date(2026, 12, 31)).items():
            end = day_start(day + timedelta(days=1), zone)
            assert tally.figures == recount(rows, day_start(day, zone), end), day


def test_the_loops_tally_at_once_then_every_interval(
    engine: Engine, la_shop: ShopRecord, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, public_url="http://testserver", secret_key=KEY)
    clock = [1000.0]
    loops = Loops(engine, settings, clock=lambda: NOW, monotonic=lambda: clock[0])

    def rows() -> int:
        with reading(engine) as conn:
            return int(conn.scalar(select(func.count()).select_from(DayTally)) or 0)

    def forget() -> None:
        with writing(engine) as conn:
            conn.execute(DayTally.delete())

    try:
        loops.run_tally_if_due()
        assert rows() == TALLY_DAYS
        forget()
        clock[0] += 599
        loops.run_tally_if_due()
        assert rows() == 0  # not yet: every 10 minutes
        clock[0] += 1
        loops.run_tally_if_due()
        assert rows() == TALLY_DAYS  # the missing days
        with writing(engine) as conn:
            conn.execute(update(DayTally).values(seen=99))
        clock[0] += 600
        loops.run_tally_if_due()
        with reading(engine) as conn:
            seen = dict(conn.execute(select(DayTally.c.day, DayTally.c.seen)).all())
        this_day = local_day(NOW, zone_of(LA))
        # The last two days again; the rest wait for the hourly pass.
        assert sorted(d for d, n in seen.items() if n != 99) == [
            this_day - timedelta(days=2),
            this_day - timedelta(days=1),
        ]
        clock[0] += 3600
        loops.run_tally_if_due()
        with reading(engine) as conn:
            assert conn.scalar(select(func.max(DayTally.c.seen))) == 0
    finally:
        loops.providers.close()


def test_statuses_are_counted_by_day(engine: Engine, la_shop: ShopRecord) -> None:
    # Every outcome has a place in the tally, and a new one needs no migration.
    rows = Rows()
    at = datetime(2026, 3, 19, 18, tzinfo=UTC)
    with writing(engine) as conn:
        for step, status in enumerate(SendStatus, start=1):
            cart_id = add_cart(conn, rows, la_shop.id, at - H)
            add_send(conn, rows, la_shop.id, cart_id, step, status.value, at)
    tally_shops(engine, NOW, everything=True)
    with reading(engine) as conn:
        kept = tallied(conn, la_shop.id, date(2026, 3, 19), date(2026, 3, 19))
    assert kept[date(2026, 3, 19)].figures.sends == {s.value: 1 for s in SendStatus}
