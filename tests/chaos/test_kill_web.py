"""kill -9 under a steady webhook load: every acknowledged event is stored.

``cartnudge serve`` takes signed storefront deliveries from concurrent senders at a steady
rate; at a random moment, with requests in flight, it is killed with SIGKILL and started
again on the same database, many times over. The senders retry whatever was not
acknowledged, as real senders do. In the end every acknowledged delivery must be in
``inbox_events`` (applied, with its cart), and nothing else may be.

``serve`` is a web process and an ingest writer process (and the loops): a cycle kills the
web process (its writer must then exit on its own), or both at once, or only the writer
(serve must start another and answer 503 meanwhile), on either engine.

A delivery may be committed while its answer dies with the process: its sender retries
and is answered ``duplicate``. Those are counted (``unacknowledged_stored``): stored
before they were acknowledged, which is allowed; the reverse is not.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cartnudge.testing.postgres import PostgresServer
from tests.chaos.intake_helpers import (
    Served,
    SteadyLoad,
    a_random_moment,
    create_shop,
    gone,
    serve_env,
    sqlite_url,
    stored,
    wait_until,
)
from tests.tally import record, scaled

CYCLES = {"sqlite": scaled(2, 50), "postgresql": scaled(2, 25)}
RATE = scaled(60, 150)  # deliveries per second, offered whatever the server does
SENDERS = 16
DRAIN_TIMEOUT_S = 120.0  # after the last kill, for every delivery to be acknowledged
# What a cycle kills: the first cycles take these in turn (the short run the first two),
# later ones pick at random.
MODES = ["web", "writer", "web and writer"]


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite in the test's home, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "home")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.database("chaos_kill") as url:
        yield url


@pytest.mark.timeout(scaled(300, 3600))  # the full run takes minutes on a busy machine
@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_kill_9_under_load_loses_no_acknowledged_event(database_url: str, tmp_path: Path) -> None:
    engine = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    cycles, modes = CYCLES[engine], MODES
    rng = random.Random(f"kill-web-{engine}")
    env = serve_env(tmp_path / "home", database_url)
    secret = create_shop(database_url)
    served = Served(env, tmp_path / "logs")
    load = SteadyLoad(
        served.webhook_url, secret, rate=RATE, concurrency=SENDERS, tag="k", backlog=2 * RATE
    )
    kills: dict[str, int] = dict.fromkeys(modes, 0)
    in_flight_at_kill = 0
    try:
        served.start()
        load.start()
        for cycle in range(cycles):
            in_flight_at_kill += a_random_moment(load, served, rng, cycle)
            mode = modes[cycle] if cycle < len(modes) else rng.choice(modes)
            kills[mode] += 1
            if mode == "writer":
                served.kill_writer()  # serve itself restarts it
            else:
                served.kill_web(with_writer=mode == "web and writer")
                served.start()
        load.finish(DRAIN_TIMEOUT_S)

        # A writer never outlives its serve: those whose serve was killed under them
        # have exited on their own.
        wait_until(
            lambda: all(gone(pid) for pid in served.orphans),
            15,
            "an ingest writer outlived the serve that started it",
        )
        assert served.alive(), served.log_tail()
        assert served.stop() in (0, -signal.SIGINT), served.log_tail()
    finally:
        try:
            load.close()
        finally:
            served.close()

    saved = stored(database_url)
    sent, acked = set(load.bodies), load.acked
    lost = acked - set(saved.events)
    record(
        f"kill -9 web ({'SQLite' if engine == 'sqlite' else 'PostgreSQL'})",
        cycles=cycles,
        **{f"kills_{mode.replace(' ', '_')}": n for mode, n in kills.items()},
        in_flight_at_kill=in_flight_at_kill,
        sent=len(sent),
        acknowledged=len(acked),
        stored=len(saved.events),
        lost=len(lost),
        unacknowledged_stored=len(load.duplicates),
        answered_503=load.statuses[503],
        connection_errors=sum(load.errors.values()),
    )
    assert not load.surprises, load.surprises[:10]
    assert not lost, f"{len(lost)} acknowledged deliveries not stored: {sorted(lost)[:10]}"
    assert set(saved.events) <= sent, "stored deliveries nobody sent"
    assert acked == sent  # every delivery was acknowledged in the end (finish checks it)
    assert set(saved.events.values()) == {"applied"}
    assert saved.carts == len(saved.events)  # each delivery is a cart of its own
    # The kills did cut requests off.
    assert sum(load.errors.values()) > 0
