"""/readyz: ready when the database answers and a loops process beat within the minute;
each loops process beats on its own row, and rows of processes long gone are removed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.clock import FrozenClock
from cartnudge.config import Settings
from cartnudge.db.models import Heartbeat
from cartnudge.db.session import reading, writing
from cartnudge.measurement.heartbeat import STALE_AFTER, beat
from cartnudge.worker import Loops
from tests.conftest import KEY, T0


def workers(engine: Engine) -> list[str]:
    with reading(engine) as conn:
        return sorted(conn.scalars(select(Heartbeat.c.worker)))


def test_not_ready_until_the_loops_beat_and_again_once_they_stop(
    client: TestClient, engine: Engine, clock: FrozenClock, tmp_path: Path
) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "unavailable",
        "database": "ok",
        "loops": "stopped",
        "last_beat": None,
    }
    assert client.get("/healthz").status_code == 200  # alive, and storing webhooks

    settings = Settings(home=tmp_path, public_url="http://testserver", secret_key=KEY)
    tick = [100.0]
    loops = Loops(engine, settings, clock=clock, monotonic=lambda: tick[0])
    try:
        loops.run_once()
        loops.beat_if_due()
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["loops"] == "running"
        assert ready.json()["last_beat"] == T0.isoformat()

        clock.advance(seconds=STALE_AFTER.total_seconds() - 1)
        assert client.get("/readyz").status_code == 200
        clock.advance(seconds=2)  # a minute and a second without a beat
        assert client.get("/readyz").json()["loops"] == "stopped"

        tick[0] += 5
        loops.beat_if_due()  # not yet time for the next beat
        assert client.get("/readyz").status_code == 503
        tick[0] += 5
        loops.beat_if_due()
        assert client.get("/readyz").status_code == 200
    finally:
        loops.providers.close()
    assert workers(engine) == [loops.worker]


def test_each_worker_beats_on_its_own_row_and_long_gone_ones_are_forgotten(
    engine: Engine,
) -> None:
    with writing(engine) as conn:
        beat(conn, "host-a:1", T0)
        beat(conn, "host-b:2", T0 + timedelta(minutes=1))
        beat(conn, "host-a:1", T0 + timedelta(minutes=2))
    assert workers(engine) == ["host-a:1", "host-b:2"]
    with writing(engine) as conn:
        beat(conn, "host-c:3", T0 + timedelta(days=1, minutes=1, seconds=30))
    assert workers(engine) == ["host-a:1", "host-c:3"]
