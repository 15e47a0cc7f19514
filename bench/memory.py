"""What a running ``cartnudge serve`` (web process, ingest writer, waiter and sender loops)
holds in memory at idle on an empty database, and with a million open carts waiting (the same
database gives the waiter's sweep at a million).

A million carts are written straight into the database (``insert_open_carts``, about 45 s
on SQLite here), due a week from now on the real clock, so the server's own loops sweep
them on every pass without waking any. Nothing the server holds should grow with them:
carts are read a batch at a time, only when due.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from bench.machine import memory_mib
from bench.server import HOST, ServerProcess
from cartnudge.db.engine import make_engine
from cartnudge.db.models import Shop
from cartnudge.db.session import reading
from cartnudge.testing.carts import insert_open_carts
from cartnudge.worker import POLL_INTERVAL_S

SETTLE_S = 5 * POLL_INTERVAL_S  # several passes of the loops before memory is read


@contextmanager
def filled_server(open_carts: int, database_url: str | None = None) -> Iterator[ServerProcess]:
    """A server (not yet started) whose database holds the bench shop and ``open_carts``
    open carts due a week from now; removed on exit."""
    server = ServerProcess(database_url)
    try:
        server.add_shop()
        if open_carts:
            engine = make_engine(server.database_url)
            try:
                shops = Shop  # the id only: the secrets are sealed with serve's key
                with reading(engine) as conn:
                    shop_id = conn.execute(
                        select(shops.c.id).where(shops.c.slug == "bench")
                    ).scalar_one()
                now = datetime.now(UTC)
                insert_open_carts(
                    engine, shop_id, open_carts, active_at=now, wake_at=now + timedelta(days=7)
                )
            finally:
                engine.dispose()
        yield server
    finally:
        server.cleanup()


def resident(server: ServerProcess) -> dict[str, Any]:
    """Start the server, let its loops pass a few times, read its process tree's memory once
    it has also answered a metrics scrape, then stop it."""
    server.start()
    try:
        time.sleep(SETTLE_S)
        with urllib.request.urlopen(f"http://{HOST}:{server.port}/metrics", timeout=30) as r:
            r.read()
        return memory_mib(server.pid)
    finally:
        server.stop()
