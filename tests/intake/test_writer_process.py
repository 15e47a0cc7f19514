"""The ingest writer in a process of its own: a web process's deliveries cross a Unix
socket, are committed as one batch, and are answered only after the commit."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine

from cartnudge.clock import FrozenClock
from cartnudge.db.engine import make_engine
from cartnudge.events import CartEvent, EventKind, Item, KeyKind, OrderInfo, Unapplicable
from cartnudge.intake.examples import storefront_event
from cartnudge.intake.lanes import parse_payload
from cartnudge.intake.remote import (
    RemoteWriter,
    WriterServer,
    _delivery,
    _frame,
    _request,
    _requests,
)
from cartnudge.intake.service import Delivery, Parsed
from cartnudge.intake.shopify import ComplianceRequest
from cartnudge.intake.writer import IngestWriter, StorageUnavailable
from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0
from tests.intake.helpers import carts, stored_counts


def delivery(shop: ShopRecord, n: int) -> Delivery:
    event = storefront_event(cart_id=f"c{n % 5}", event_id=f"e{n}", occurred_at=T0)
    parsed = parse_payload("storefront", "checkout_started", f"m{n}", event, shop, T0)
    body = orjson.dumps(event).decode()
    return Delivery(shop, "storefront", f"m{n}", "checkout_started", body, parsed, T0)


def test_deliveries_cross_the_socket_and_are_answered_after_commit(
    engine: Engine, shop: ShopRecord, clock: FrozenClock, tmp_path: Path
) -> None:
    server = WriterServer(IngestWriter(engine, clock), tmp_path / "ingest.sock")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            server.serve_once(timeout=0.05)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def send_all() -> list[str]:
        remote = RemoteWriter(server.path)
        work = [delivery(shop, n) for n in range(40)] + [delivery(shop, 0)]  # one replay
        outcomes = await asyncio.gather(*(remote.deliver(d) for d in work))
        remote.stop()
        return [o.status for o in outcomes]

    statuses = asyncio.run(send_all())
    stop.set()
    thread.join()
    server.close()

    assert statuses.count("applied") == 40
    assert statuses[-1] == "duplicate"
    assert stored_counts(engine)["inbox_events"] == 40
    assert len(carts(engine, shop.id)) == 5


def test_no_writer_process_means_503_not_a_lost_delivery(shop: ShopRecord, tmp_path: Path) -> None:
    async def send() -> None:
        await RemoteWriter(tmp_path / "nobody.sock").deliver(delivery(shop, 1))

    with pytest.raises(StorageUnavailable):
        asyncio.run(send())


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_batch_on_a_dead_connection_is_retried_on_a_new_one(
    engine: Engine, shop: ShopRecord, clock: FrozenClock
) -> None:
    """The writer's pool does not test a connection before each batch (a round trip per
    batch); a connection the server has dropped fails the batch's first statement, and the
    batch is then written on a new connection instead of answered 503."""
    own = make_engine(engine.url.render_as_string(hide_password=False), pre_ping=False)
    writer = IngestWriter(own, clock)
    try:
        [first] = writer.write_batch([delivery(shop, 1)])
        with own.connect() as conn:  # the connection the pool will hand out next
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with engine.connect() as admin:
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
            admin.commit()

        [second] = writer.write_batch([delivery(shop, 2)])
    finally:
        own.dispose()

    assert not isinstance(first, StorageUnavailable) and first.status == "applied"
    assert not isinstance(second, StorageUnavailable), second
    assert second.status == "applied"
    assert stored_counts(engine)["inbox_events"] == 2


def test_every_kind_of_delivery_crosses_the_socket_unchanged(shop: ShopRecord) -> None:
    """A delivery is rebuilt on the writer's side as it was made: a full cart event (an
    order with refunds, items, keys, an instant with an offset), a compliance request and
    a dead letter's reason alike."""
    at = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-5)))
    event = CartEvent(
        source="shopify",
        external_id="d-1",
        topic="orders/create",
        kind=EventKind.ORDER_PLACED,
        occurred_at=at,
        keys=((KeyKind.SHOPIFY_CART, "tok"), (KeyKind.SHOPIFY_CHECKOUT, "chk")),
        items=(Item("Mug", 2, 1200, sku="M", variant="Blue"), Item("Tea", 1)),
        currency="EUR",
        total_minor=2400,
        tax_minor=400,
        email="a@example.com",
        accepts_marketing=False,
        order=OrderInfo("o-1", at, 2400, "EUR", cancelled_at=at, refunds=(("r1", 500),)),
    )
    parsed: list[Parsed] = [event, ComplianceRequest("customers/redact"), Unapplicable("why")]
    for n, value in enumerate(parsed):
        sent = Delivery(shop, "shopify", f"d-{n}", "topic", '{"a": 1}', value, at)
        frame = _frame(_request(n, sent))
        request_id, got = _delivery(_requests.decode(frame[4:]))
        assert request_id == n
        if isinstance(value, Unapplicable):  # exceptions compare by identity
            assert isinstance(got.parsed, Unapplicable) and str(got.parsed) == "why"
            got = replace(got, parsed=value)
        assert got == sent
    assert event.version == got.parsed.version if isinstance(got.parsed, CartEvent) else True


def test_a_frame_the_writer_cannot_read_is_a_503_and_the_writer_goes_on(
    engine: Engine, shop: ShopRecord, clock: FrozenClock, tmp_path: Path
) -> None:
    server = WriterServer(IngestWriter(engine, clock), tmp_path / "ingest.sock")
    stop = threading.Event()
    thread = threading.Thread(
        target=lambda: [server.serve_once(timeout=0.05) for _ in iter(stop.is_set, True)],
        daemon=True,
    )
    thread.start()

    async def garbled_then_good() -> str:
        bad = RemoteWriter(server.path)
        writer = await bad._connect()
        pending = asyncio.ensure_future(bad.deliver(delivery(shop, 1)))
        await asyncio.sleep(0)  # queued, not yet flushed: spoil the frame before it leaves
        bad._outgoing = [b"\x00\x00\x00\x03\xc1\xc1\xc1"]  # 0xc1 is never valid msgpack
        bad._flush(writer)
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(pending, 10)
        good = RemoteWriter(server.path)
        outcome = await good.deliver(delivery(shop, 2))
        good.stop()
        return outcome.status

    try:
        status = asyncio.run(garbled_then_good())
    finally:
        stop.set()
        thread.join()
        server.close()
    assert status == "applied"
    assert stored_counts(engine)["inbox_events"] == 1
