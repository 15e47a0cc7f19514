"""SQLite writers in several processes take turns: one that writes non-stop does not keep
another waiting (see ``cartnudge.db.turnstile``)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from cartnudge.db.engine import make_engine
from cartnudge.db.session import writing

# Another process writes back to back for a few seconds, each transaction holding the
# write lock 5 ms and letting go of it for a few microseconds.
HOG = """
import sys, time
from sqlalchemy import text
from cartnudge.db.engine import make_engine
from cartnudge.db.session import writing

engine = make_engine(sys.argv[1])
print("ready", flush=True)
until = time.monotonic() + float(sys.argv[2])
while time.monotonic() < until:
    with writing(engine) as conn:
        conn.execute(text("UPDATE counter SET n = n + 1"))
        time.sleep(0.005)
"""


def test_a_writer_gets_its_turn_next_to_one_that_writes_non_stop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'turns.db'}"
    engine = make_engine(url)
    with writing(engine) as conn:
        conn.execute(text("CREATE TABLE counter (n INTEGER)"))
        conn.execute(text("INSERT INTO counter VALUES (0)"))
    hog = subprocess.Popen([sys.executable, "-c", HOG, url, "4"], stdout=subprocess.PIPE, text=True)
    try:
        assert hog.stdout is not None and hog.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        waits = []
        for _ in range(20):
            started = time.monotonic()
            with writing(engine) as conn:
                waits.append(time.monotonic() - started)
                conn.execute(text("UPDATE counter SET n = n - 1"))
            time.sleep(0.02)
        assert hog.poll() is None, "the other writer stopped before the measurement ended"
    finally:
        hog.wait(timeout=30)
        hog.stdout.close()  # type: ignore[union-attr]
    # In turn: at most about one of the other's 5 ms transactions, with room for a busy
    # machine. Left to SQLite's busy handler alone, waits here run to seconds.
    assert max(waits) < 0.25, sorted(waits)
