"""The ingest writer in a process of its own: a web process's deliveries cross a Unix
socket, are committed as one batch, and are answered only after the commit."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine

from cartnudge.clock import FrozenClock
from cartnudge.db.engine import make_engine
from cartnudge.intake.examples import storefront_event
from cartnudge.intake.lanes import parse_payload
from cartnudge.intake.remote import RemoteWriter, WriterServer
from cartnudge.intake.service import Delivery
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
