"""Two web processes' writers racing on the same carts: one cart per key, each delivery once."""

from __future__ import annotations

import logging
import random
from concurrent.futures import Future
from datetime import timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, func, select

from cartnudge.clock import FrozenClock
from cartnudge.db.engine import make_engine
from cartnudge.db.models import Cart, CartKey
from cartnudge.db.session import reading
from cartnudge.intake.examples import storefront_event
from cartnudge.intake.lanes import parse_payload
from cartnudge.intake.repository import InboxRepository
from cartnudge.intake.service import Delivery, Outcome
from cartnudge.intake.writer import IngestWriter
from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0
from tests.intake.helpers import stored_counts

CARTS = 40
EVENTS_PER_CART = 8


def deliveries(shop: ShopRecord) -> list[Delivery]:
    out = []
    for cart in range(CARTS):
        for n in range(EVENTS_PER_CART):
            event = storefront_event(
                cart_id=f"c{cart}", event_id=f"e{cart}-{n}", occurred_at=T0 + timedelta(minutes=n)
            )
            body = orjson.dumps(event).decode()
            parsed = parse_payload("storefront", event["type"], f"m{cart}-{n}", event, shop, T0)  # type: ignore[arg-type]
            out.append(
                Delivery(shop, "storefront", f"m{cart}-{n}", "checkout_started", body, parsed, T0)
            )
    return out


def test_two_writers_never_make_two_carts_for_one_key(
    engine: Engine, shop: ShopRecord, clock: FrozenClock
) -> None:
    # A second engine is a second process's connection pool.
    other = make_engine(engine.url.render_as_string(hide_password=False))
    writers = [IngestWriter(engine, clock, batch_max=16), IngestWriter(other, clock, batch_max=16)]
    work = deliveries(shop)
    # Every delivery goes to a random writer; both start with full queues, so their
    # batches overlap and create the same carts at the same moment.
    rnd = random.Random(7)
    futures: list[Future[Outcome]] = [
        rnd.choice(writers).submit(delivery) for delivery in rnd.sample(work, len(work))
    ]
    for writer in writers:
        writer.start()
    outcomes = [future.result(timeout=120) for future in futures]
    # Then a third again, through the other process: retries that found the other door.
    again = [rnd.choice(writers).submit(d) for d in work if rnd.random() < 0.33]
    outcomes += [future.result(timeout=120) for future in again]
    for writer in writers:
        writer.stop()
    other.dispose()

    assert {o.status for o in outcomes} <= {"applied", "duplicate"}
    counts = stored_counts(engine)
    assert counts["inbox_events"] == len(work)
    assert counts["carts"] == CARTS
    keys, carts = CartKey, Cart
    with reading(engine) as conn:
        orphans = conn.execute(
            select(func.count()).select_from(keys).where(keys.c.cart_id.not_in(select(carts.c.id)))
        ).scalar_one()
        latest = conn.execute(select(func.count()).select_from(carts).where(
            carts.c.last_activity_at == T0 + timedelta(minutes=EVENTS_PER_CART - 1)
        )).scalar_one()  # fmt: skip
    assert orphans == 0
    assert latest == CARTS


def test_a_delivery_recorded_by_another_writer_meanwhile_is_a_replay_not_a_second_apply(
    engine: Engine,
    shop: ShopRecord,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Deliveries are applied before their inbox rows go in; another writer can record the
    same delivery after this batch looked for it. The insert finds it there, the batch is
    rolled back and tried again as a race (not logged as a failure), and answers it as the
    replay it is."""
    first, again = deliveries(shop)[0], deliveries(shop)[0]
    writer = IngestWriter(engine, clock)
    [recorded] = writer.write_batch([first])
    assert isinstance(recorded, Outcome) and recorded.status == "applied"
    before = stored_counts(engine)

    looked = InboxRepository.recorded
    blind = iter([True])  # the first look happened before the other writer committed

    def recorded_meanwhile(self: InboxRepository, identities: Any) -> Any:
        return {} if next(blind, False) else looked(self, identities)

    monkeypatch.setattr(InboxRepository, "recorded", recorded_meanwhile)
    with caplog.at_level(logging.INFO, logger="cartnudge.intake.writer"):
        [replayed] = writer.write_batch([again])

    assert [r.getMessage() for r in caplog.records] == [
        "batch retried: it raced another writer (ConcurrentChange)"
    ]
    assert isinstance(replayed, Outcome)
    assert (replayed.status, replayed.inbox_id) == ("duplicate", recorded.inbox_id)
    assert replayed.cart_id == recorded.cart_id
    assert stored_counts(engine) == before
