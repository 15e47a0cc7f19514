"""The waiter over real carts: reminders at the rules' times, once each, never after a
purchase; several workers on PostgreSQL share due carts without sending one twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from cartnudge.db.models import AuditEntry, Send
from cartnudge.db.session import reading, writing
from cartnudge.intake.examples import storefront_event
from cartnudge.shops.repository import ShopRecord
from cartnudge.testing.carts import insert_open_carts
from cartnudge.timing.waiter import wake_batch, wake_due
from tests.conftest import T0
from tests.intake.helpers import carts, post_storefront
from tests.test_cli import cli  # noqa: F401 - the fixture

H = timedelta(hours=1)
sends_t = Send


def sends(engine: Engine) -> list[Any]:
    with reading(engine) as conn:
        return list(conn.execute(select(sends_t).order_by(sends_t.c.cart_id, sends_t.c.step)))


def test_a_carts_reminders_come_at_the_rules_times_then_it_is_given_up(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    # A 64.00 cart: the default medium tier, reminders 2 h after activity and 22 h later.
    assert (
        post_storefront(client, shop, storefront_event(cart_id="c1", occurred_at=T0)).status_code
        == 200
    )

    assert wake_due(engine, T0 + H).woken == 0
    first = wake_due(engine, T0 + 2 * H)
    assert first.as_dict() == {
        "woken": 1,
        "reminders": 1,
        "held_out": 0,
        "rescheduled": 0,
        "given_up": 0,
        "left": 0,
    }
    [cart] = carts(engine, shop.id)
    assert (cart.reminders_sent, cart.last_reminder_at) == (1, T0 + 2 * H)
    assert cart.next_wake_at == T0 + 24 * H

    assert wake_due(engine, T0 + 23 * H).woken == 0
    assert wake_due(engine, T0 + 24 * H).moves["reminders"] == 1
    assert wake_due(engine, T0 + 24 * H + timedelta(days=2)).moves["given_up"] == 1
    assert wake_due(engine, T0 + timedelta(days=30)).woken == 0

    [cart] = carts(engine, shop.id)
    assert (cart.status, cart.next_wake_at) == ("expired", None)
    assert [(s.step, s.status, s.due_at) for s in sends(engine)] == [
        (1, "queued", T0 + 2 * H),
        (2, "queued", T0 + 24 * H),
    ]
    audit = AuditEntry
    with reading(engine) as conn:
        actions = conn.execute(
            select(audit.c.action).where(audit.c.actor == "waiter").order_by(audit.c.id)
        ).scalars()
        assert list(actions) == ["reminder:1", "reminder:2", "status:expired"]


def test_activity_restarts_the_wait_and_a_purchase_stops_everything(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    post_storefront(client, shop, storefront_event(cart_id="c1", occurred_at=T0))
    wake_due(engine, T0 + 2 * H)  # reminder 1
    back = storefront_event(cart_id="c1", event_id="e2", occurred_at=T0 + 3 * H)
    post_storefront(client, shop, back)
    assert carts(engine, shop.id)[0].next_wake_at == T0 + 25 * H  # 22 h after the activity

    bought = storefront_event(
        cart_id="c1", event_id="e3", occurred_at=T0 + 4 * H, kind="order_placed", order_id="o1"
    )
    post_storefront(client, shop, bought)

    assert wake_due(engine, T0 + timedelta(days=10)).woken == 0
    assert [s.step for s in sends(engine)] == [1]
    assert carts(engine, shop.id)[0].status == "bought"


def test_a_second_pass_at_the_same_instant_sends_nothing_more(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    post_storefront(client, shop, storefront_event(cart_id="c1", occurred_at=T0))

    wake_due(engine, T0 + 2 * H)
    again = wake_due(engine, T0 + 2 * H)

    assert again.woken == 0
    assert len(sends(engine)) == 1


def test_a_cart_without_an_address_expires_unreminded_until_an_address_comes(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    anonymous = storefront_event(cart_id="c1", event_id="e1", occurred_at=T0, email=None)
    post_storefront(client, shop, anonymous)
    # Medium tier: 2 h and 22 h of waits, then 2 d: expired when a reminded cart would be.
    closing = T0 + 24 * H + timedelta(days=2)
    assert carts(engine, shop.id)[0].next_wake_at == closing
    assert wake_due(engine, T0 + 2 * H).woken == 0

    second = storefront_event(cart_id="c2", event_id="e2", occurred_at=T0, email=None)
    post_storefront(client, shop, second)
    # An event with the shopper's address: reminded 2 h after it, as any cart.
    told = storefront_event(cart_id="c2", event_id="e3", occurred_at=T0 + H)
    post_storefront(client, shop, told)
    assert carts(engine, shop.id)[1].next_wake_at == T0 + 3 * H

    assert wake_due(engine, T0 + 3 * H).moves["reminders"] == 1
    assert wake_due(engine, closing).moves["given_up"] == 1
    first = carts(engine, shop.id)[0]
    assert (first.status, first.status_reason, first.next_wake_at) == (
        "expired",
        "no address to remind",
        None,
    )
    # Reminders went only to the cart with an address: its two steps.
    told_id = carts(engine, shop.id)[1].id
    assert [(s.cart_id, s.step) for s in sends(engine)] == [(told_id, 1), (told_id, 2)]


def test_carts_from_before_the_shop_switched_on_are_never_reminded(
    client: TestClient, engine: Engine, make_shop: Any
) -> None:
    shop = make_shop(activated_at=T0)
    old = storefront_event(cart_id="old", occurred_at=T0 - H)
    post_storefront(client, shop, old)

    assert carts(engine, shop.id)[0].next_wake_at is None
    assert wake_due(engine, T0 + timedelta(days=30)).woken == 0


def test_tick_runs_one_pass_as_of_the_given_instant(
    cli: Any,  # noqa: F811
    client: TestClient,
    shop: ShopRecord,
) -> None:
    post_storefront(client, shop, storefront_event(cart_id="c1", occurred_at=T0))

    early = cli("tick", "--now", (T0 + H).isoformat())
    due = cli("tick", "--now", (T0 + 2 * H).isoformat())

    assert '"woken": 0' in early.output
    assert '"reminders": 1' in due.output
    bad = cli("tick", "--now", "tomorrow")
    assert bad.exit_code == 2
    assert "--now: 'tomorrow' is not an RFC 3339 time" in bad.output


# -- several workers on PostgreSQL ----------------------------------------------------------
def due_carts(engine: Engine, shop: ShopRecord, count: int) -> None:
    insert_open_carts(engine, shop.id, count, active_at=T0, wake_at=T0 + 2 * H, shoppers=True)


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_four_workers_share_thousands_of_due_carts_and_send_each_reminder_once(
    engine: Engine, shop: ShopRecord
) -> None:
    due_carts(engine, shop, 3000)
    reports = []

    def work() -> None:
        reports.append(wake_due(engine, T0 + 2 * H, limit=100))

    workers = [threading.Thread(target=work) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)

    assert sum(r.moves["reminders"] for r in reports) == 3000
    assert sum(1 for r in reports if r.moves["reminders"]) > 1  # the work was shared
    with reading(engine) as conn:
        per_cart = conn.execute(
            select(sends_t.c.cart_id, func.count()).group_by(sends_t.c.cart_id)
        ).all()
    assert len(per_cart) == 3000
    assert {n for _, n in per_cart} == {1}


KILLED_WORKER = """
import os, sys, time
from cartnudge.db.engine import make_engine
from cartnudge.timing.waiter import wake_batch
from datetime import datetime
engine = make_engine(sys.argv[1])
conn = engine.connect()
conn.begin()
report = wake_batch(conn, datetime.fromisoformat(sys.argv[2]), 200)
print(report.woken, flush=True)
time.sleep(600)  # killed here, mid-batch, before its commit
"""


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_worker_killed_mid_batch_leaves_its_carts_to_the_others(
    engine: Engine, shop: ShopRecord
) -> None:
    due_carts(engine, shop, 300)
    url = engine.url.render_as_string(hide_password=False)
    worker = subprocess.Popen(
        [sys.executable, "-c", KILLED_WORKER, url, (T0 + 2 * H).isoformat()],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "200"  # it holds 200 carts, uncommitted
    with writing(engine) as conn:
        assert wake_batch(conn, T0 + 2 * H, 1000).woken == 100  # the other 100 only

    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    worker.stdout.close()

    assert wake_due(engine, T0 + 2 * H).moves["reminders"] == 200
    assert len(sends(engine)) == 300
