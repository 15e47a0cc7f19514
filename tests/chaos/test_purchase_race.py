"""A purchase that lands within ±100 ms of a reminder's due time: no reminder may leave
for the shopper after the purchase was stored.

What the code promises (``cartnudge.delivery.sender``): the waiter leaves a bought cart
alone; the claim re-reads each cart (the gates refuse a bought one); and each email is
handed over to the provider only by a short transaction that commits while its cart is
still open, just before the SMTP exchange. A purchase stored before that hand-off stops
the email; an email handed over before the purchase was stored is already on the wire and
arrives within one SMTP exchange, perhaps a few milliseconds after the acknowledgement.
So the rule held here is: **every email the server accepted was handed over before its
purchase was acknowledged** (``handed_at`` is stamped just before the hand-off's
transaction reads the cart). The emails on the wire when the purchase landed are counted,
with how long after the acknowledgement the last of them arrived.

Many carts come due one after another on the real clock, each with its own address;
two ``cartnudge worker`` processes on PostgreSQL run pass after pass (the poll interval
shortened so passes follow each other closely: the decision lands right at the due
time, where the purchase is), delivering to a real SMTP server that stamps when it
accepts each email; the Shopify ``orders/create`` webhook for each cart is posted to a
real ``cartnudge web`` at its due time plus uniform(-100 ms, +100 ms). The server's
acceptance and the acknowledgement the webhook's sender received are taken in this
process on one monotonic clock; the hand-off is compared on the machine's wall clock.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, bindparam, func, select, update

from cartnudge.db.engine import make_engine
from cartnudge.db.migrate import upgrade
from cartnudge.db.session import reading, writing
from cartnudge.intake.examples import ExampleRequest, signed_shopify
from cartnudge.shops.repository import ShopRecord
from cartnudge.testing.postgres import PostgresServer
from tests.chaos.delivery_helpers import (
    WAIT,
    Arrival,
    NewCart,
    TimedSink,
    Workers,
    add_sending_shop,
    carts_t,
    child_env,
    insert_carts,
    send_rows,
    start_web,
    status_counts,
    troubles,
    wait_until,
)
from tests.tally import record, scaled

RACES = scaled(250, 3000)
SPACING_S = 0.02  # between one cart's due time and the next one's
WINDOW_S = 0.1  # the purchase comes at the due time plus uniform(-WINDOW_S, +WINDOW_S)
WORKERS = 2
POLL_S = 0.05  # the workers' pause between passes (1 s in production)
LEAD_S = 2.0  # from writing the timers to the first due time
PURCHASE_THREADS = 64  # enough that a slow answer never delays the next purchase
SETTLE_TIMEOUT_S = 120.0
SHOPIFY_SECRET = "chaos-shopify-secret"


@dataclass(frozen=True, slots=True)
class Purchase:
    cart: int  # index in the plan
    sent: float  # monotonic, when the request left
    acked: float  # monotonic, when its answer had arrived
    status: int
    body: Any


def test_no_reminder_leaves_after_the_purchase_is_stored(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    logs = tmp_path / "logs"
    logs.mkdir()
    with ExitStack() as stack:
        url = stack.enter_context(postgres_server.database("chaos_race"))
        engine = make_engine(url, pool_size=2)
        stack.callback(engine.dispose)
        upgrade(engine)
        sink = stack.enter_context(TimedSink())
        shop = add_sending_shop(
            engine, sink.port, shopify_domain="tea.myshopify.com", shopify_secret=SHOPIFY_SECRET
        )
        carts = insert_carts(engine, shop.id, RACES, tag="race", due_at=None)
        env = child_env(url, tmp_path / "home")
        web, base = start_web(env, logs)
        stack.callback(web.stop)
        workers = stack.enter_context(Workers(env, logs, poll_s=POLL_S))
        for slot in range(WORKERS):
            workers.start(slot)
        workers.wait_ready()

        # Each cart due SPACING_S after the one before, from LEAD_S on; its purchase at
        # its due time plus a uniform offset within the window.
        wall0, mono0 = time.time(), time.monotonic()
        first = datetime.fromtimestamp(wall0, UTC) + timedelta(seconds=LEAD_S)
        due = [first + timedelta(seconds=n * SPACING_S) for n in range(RACES)]
        due_mono = [mono0 + (d.timestamp() - wall0) for d in due]
        offsets = [rng.uniform(-WINDOW_S, WINDOW_S) for _ in range(RACES)]
        requests = [
            _order(shop, cart, n, due[n] + timedelta(seconds=offsets[n]))
            for n, cart in enumerate(carts)
        ]
        _set_timers(engine, carts, due)
        assert time.monotonic() < due_mono[0] - 0.5, "the timers were written too late"
        plan = sorted((due_mono[n] + offsets[n], n) for n in range(RACES))
        purchases = _purchase_all(base, requests, plan)

        def settled() -> bool:
            counts = status_counts(engine)
            return not counts["queued"] and not counts["sending"] and _open(engine) == 0

        wait_until(settled, SETTLE_TIMEOUT_S, "every cart bought and every send settled")
        stopped = workers.stop_all()
        web_exit = web.stop()
        sends = send_rows(engine)
        counts = status_counts(engine)
        arrivals = sink.arrivals

    by_cart: dict[int, list[Arrival]] = defaultdict(list)
    index = {cart.id: n for n, cart in enumerate(carts)}
    for arrival in arrivals:
        assert arrival.send_id in sends, f"an email for no send: {arrival}"
        by_cart[index[sends[arrival.send_id][0]]].append(arrival)
    claimed_at = {index[row[0]]: row[4] for row in sends.values() if row[4] is not None}
    handed_at = {index[row[0]]: row[5] for row in sends.values() if row[5] is not None}
    ack_wall = {p.cart: wall0 + (p.acked - mono0) for p in purchases}
    before, on_the_wire, late = 0, [], []
    for n, purchase in enumerate(purchases):
        for arrival in by_cart[n]:
            if arrival.mono < purchase.acked:
                before += 1
            elif n in handed_at and handed_at[n].timestamp() < ack_wall[n]:
                on_the_wire.append((n, arrival))
            else:
                late.append((n, arrival))
    acked_before_due = sum(1 for p in purchases if p.acked < due_mono[p.cart])
    slips = [p.sent - (due_mono[p.cart] + offsets[p.cart]) for p in purchases]
    record(
        "purchase at due ±100 ms",
        races=RACES,
        purchases_before_due=acked_before_due,
        purchases_after_due=RACES - acked_before_due,
        reminders_before_purchase=before,
        reminders_handed_over_after_purchase=len(late),
        on_the_wire_when_purchase_landed=len(on_the_wire),
        last_of_those_after_ack_ms=round(
            max((a.mono - purchases[n].acked for n, a in on_the_wire), default=0) * 1000
        ),
        withdrawn_at_hand_off=sum(
            1 for row in sends.values() if "after the reminder" in (row[3] or "")
        ),
        skipped_as_bought=sum(1 for row in sends.values() if row[3] == "cart is bought"),
        sent_within_100ms=sum(1 for p in purchases if abs(p.sent - due_mono[p.cart]) <= WINDOW_S),
        slowest_ack_ms=round(max(p.acked - p.sent for p in purchases) * 1000),
        latest_purchase_ms=round(max(slips) * 1000),
    )

    refused = [p for p in purchases if p.status != 200 or p.body.get("status") != "applied"]
    assert not refused, f"purchases not applied: {refused[:3]}"
    assert all(p.body["cart_id"] == carts[p.cart].id for p in purchases)
    details = [
        f"cart {n}: claimed {_ms(claimed_at.get(n), due[n])} and handed over "
        f"{_ms(handed_at.get(n), due[n])} after its due time; purchase sent "
        f"{(purchases[n].sent - due_mono[n]) * 1000:+.1f} ms, acknowledged "
        f"{(purchases[n].acked - due_mono[n]) * 1000:+.1f} ms; email accepted "
        f"{(arrival.mono - due_mono[n]) * 1000:+.1f} ms"
        for n, arrival in late[:10]
    ]
    assert not late, (
        f"{len(late)} of {RACES} reminders handed over to the SMTP server after the purchase "
        f"was acknowledged (seed {seed}):\n" + "\n".join(details)
    )
    assert max((len(a) for a in by_cart.values()), default=0) <= 1, "a cart reminded twice"
    assert set(counts) <= {"sent", "skipped"}, counts
    for child in [*stopped, web]:
        assert not troubles(child), f"{child.name}: {troubles(child)[:3]}"
    assert all(c.process.returncode == 0 for c in stopped), [c.output() for c in stopped]
    assert web_exit in (0, -15), web.output()[-2000:]


def _order(shop: ShopRecord, cart: NewCart, n: int, placed: datetime) -> ExampleRequest:
    """The Shopify ``orders/create`` webhook of the cart's checkout, signed."""
    payload: dict[str, object] = {
        "id": f"order-{n}",
        "checkout_token": cart.checkout_token,
        "cart_token": None,
        "email": cart.email,
        "processed_at": placed.isoformat(),
        "created_at": placed.isoformat(),
        "currency": "EUR",
        "presentment_currency": "EUR",
        "total_price": "64.00",
        "customer": {"first_name": "Alex", "email": cart.email},
    }
    return signed_shopify(shop, "orders/create", payload, webhook_id=f"race-{n}")


def _set_timers(engine: Engine, carts: list[NewCart], due: list[datetime]) -> None:
    """Each cart last active ``WAIT`` before its due time, its timer at that time."""
    stmt = (
        update(carts_t)
        .where(carts_t.c.id == bindparam("_id"))
        .values(
            first_activity_at=bindparam("_active"),
            last_activity_at=bindparam("_active"),
            next_wake_at=bindparam("_due"),
        )
    )
    with writing(engine) as conn:
        conn.execute(
            stmt,
            [
                {"_id": c.id, "_active": d - WAIT, "_due": d}
                for c, d in zip(carts, due, strict=True)
            ],
        )


def _purchase_all(
    base: str, requests: list[ExampleRequest], plan: list[tuple[float, int]]
) -> list[Purchase]:
    """Post each purchase at its planned moment (several in flight at once); every one's
    answer, in cart order."""
    limits = httpx.Limits(
        max_connections=PURCHASE_THREADS, max_keepalive_connections=PURCHASE_THREADS
    )
    with (
        httpx.Client(base_url=base, timeout=60, limits=limits) as client,
        ThreadPoolExecutor(PURCHASE_THREADS) as pool,
    ):

        def post(n: int) -> Purchase:
            request = requests[n]
            sent = time.monotonic()
            answer = client.post(request.path, content=request.body, headers=request.headers)
            acked = time.monotonic()
            return Purchase(n, sent, acked, answer.status_code, answer.json())

        futures = []
        for at, n in plan:
            wait = at - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the purchase's moment: a schedule, not a condition
            futures.append(pool.submit(post, n))
        done = sorted((f.result() for f in futures), key=lambda p: p.cart)
    return done


def _open(engine: Engine) -> int:
    with reading(engine) as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(carts_t).where(carts_t.c.status == "open")
            ).scalar_one()
        )


def _ms(at: datetime | None, due: datetime) -> str:
    return "never" if at is None else f"{(at - due).total_seconds() * 1000:+.1f} ms"
