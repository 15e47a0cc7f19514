"""PostgreSQL restarted under load: 503 while it is down, recovery on its own, no loss.

``cartnudge serve`` on a PostgreSQL of this test's own takes a steady load of signed
storefront deliveries. Several times over, PostgreSQL is stopped (``fast``: sessions
terminated; ``immediate``: no shutdown at all, crash recovery at the next start) and,
after a while, started again. Meanwhile serve keeps running, untouched:

- while PostgreSQL is down, every delivery is answered 503 (never 2xx, never 500, never
  left without an answer), so senders retry;
- once it is back, deliveries are acknowledged again without anyone restarting serve;
- every delivery ever acknowledged is stored, applied, with its cart.

The test's server runs with fsync off (a machine crash is not what is tested here) but
with synchronous commit on for cartnudge's database, as in production: PostgreSQL then
confirms a commit only once its WAL is written out of the server's memory, so it outlives
an immediate stop. (With synchronous commit off, as the suite's other servers run, an
immediate stop may drop commits PostgreSQL had already confirmed: a finding about the
test's server, not about cartnudge.)
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import text

from cartnudge.db.engine import make_engine
from cartnudge.shops.cache import TTL_S
from cartnudge.testing.postgres import PostgresServer
from tests.chaos.intake_helpers import (
    RECOVERY_TIMEOUT_S,
    Served,
    SteadyLoad,
    a_random_moment,
    create_shop,
    past,
    serve_env,
    stored,
    wait_until,
)
from tests.tally import record, scaled

CYCLES = scaled(2, 12)
RATE = scaled(50, 100)  # deliveries per second
SENDERS = 16
OUTAGE_503S = 20  # answers 503 to see before PostgreSQL comes back
DRAIN_TIMEOUT_S = 120.0


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL for this test alone, since it stops it; removed even on failure."""
    server = PostgresServer()
    try:
        server.start()
        admin = make_engine(server.url, pool_size=1)
        try:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ALTER DATABASE cartnudge SET synchronous_commit = on"))
            admin.dispose()  # a new session sees the database's setting
            with admin.connect() as conn:
                assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "on"
        finally:
            admin.dispose()
        yield server
    finally:
        server.stop()


def test_postgresql_restart_means_503_then_recovery_and_no_loss(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    rng = random.Random("postgres-restart")
    env = serve_env(tmp_path / "home", own_postgres.url)
    secret = create_shop(own_postgres.url)
    served = Served(env, tmp_path / "logs")
    load = SteadyLoad(
        served.webhook_url, secret, rate=RATE, concurrency=SENDERS, tag="pg", backlog=2 * RATE
    )
    recoveries: list[float] = []  # seconds from PostgreSQL back to the first 200
    try:
        served.start()
        load.start()
        for cycle in range(CYCLES):
            a_random_moment(load, served, rng, cycle)  # deliveries flowing, some in flight
            mode = "fast" if cycle % 2 == 0 else "immediate"
            own_postgres.ctl("stop", "-m", mode, "-w")
            down = time.monotonic()  # from here until `up` nothing can be committed
            wait_until(
                partial(load.got, 503, OUTAGE_503S, sent_after=down),
                30,
                f"cycle {cycle}: deliveries were not answered 503 while PostgreSQL was down",
                log=served.log_tail,
            )
            if cycle % 2 == 1:
                # Outlast the web process's shop cache too, so that finding the shop
                # fails as well as storing the delivery.
                wait_until(partial(past, down + TTL_S + 1), TTL_S + 10, "the cache's time")
            up = time.monotonic()
            during = load.in_window(down, up)
            own_postgres.resume()
            back = time.monotonic()
            assert set(during) == {503}, f"cycle {cycle}: answers while down: {dict(during)}"
            wait_until(
                partial(load.got, 200, 1, sent_after=back),
                RECOVERY_TIMEOUT_S,
                f"cycle {cycle}: ingest did not recover after PostgreSQL came back",
                log=served.log_tail,
            )
            recovered = load.first_answer(200, sent_after=back)
            recoveries.append(recovered - back)
            assert served.alive(), served.log_tail()
        load.finish(DRAIN_TIMEOUT_S)
        assert served.stop() in (0, -signal.SIGINT), served.log_tail()
    finally:
        try:
            load.close()
        finally:
            served.close()

    saved = stored(own_postgres.url)
    sent, acked = set(load.bodies), load.acked
    lost = acked - set(saved.events)
    record(
        "PostgreSQL restart",
        cycles=CYCLES,
        sent=len(sent),
        acknowledged=len(acked),
        answered_503=load.statuses[503],
        stored=len(saved.events),
        lost=len(lost),
        unacknowledged_stored=len(load.duplicates),
        ms_to_recover_max=int(max(recoveries) * 1000),
    )
    assert not load.surprises, load.surprises[:10]
    # serve was never restarted: every attempt got an answer (200 or 503), none hung.
    assert not load.errors, dict(load.errors)
    assert set(load.statuses) <= {200, 503}, dict(load.statuses)
    assert not lost, f"{len(lost)} acknowledged deliveries not stored: {sorted(lost)[:10]}"
    assert set(saved.events) <= sent, "stored deliveries nobody sent"
    assert acked == sent
    assert set(saved.events.values()) == {"applied"}
    assert saved.carts == len(saved.events)
