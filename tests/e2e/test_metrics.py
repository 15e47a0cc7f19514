"""``/metrics`` of a running ``serve`` adds up all its processes: the write turns taken by
the ingest writer and the loops, each in a process of its own, show on the web process's
page."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from cartnudge.measurement.exposition import PREFIX, remove_stale_folders
from tests.e2e.test_first_run import cli, start_server


def turns_taken(base: str, holder: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
        page = answer.read().decode()
    found = re.search(
        rf'^cartnudge_sqlite_write_turn_held_seconds_count{{holder="{holder}"}} (\S+)$',
        page,
        re.MULTILINE,
    )
    return float(found.group(1)) if found else 0.0


def test_serve_shows_who_held_the_write_turn_in_every_process(tmp_path: Path) -> None:
    before = set(Path(tempfile.gettempdir()).glob(f"{PREFIX}*"))
    process, env, base = start_server(tmp_path)
    try:
        for lane in ("storefront", "shopify"):
            sent = cli(env, "events", "send-example", "--shop", "demo", "--lane", lane)
            assert sent.returncode == 0, sent.stderr
        # The loops pass once a second; each pass takes the waiter's turn.
        deadline = time.monotonic() + 20
        while turns_taken(base, "waiter") == 0 and time.monotonic() < deadline:
            time.sleep(0.2)

        assert turns_taken(base, "ingest") >= 1  # the writer process's commits
        assert turns_taken(base, "waiter") >= 1  # the loops process's passes
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert "Traceback" not in output
    # Its own folder is gone with it (another serve's, or one left before, is not its).
    assert not set(Path(tempfile.gettempdir()).glob(f"{PREFIX}{process.pid}-*")) - before


def test_a_killed_serves_metrics_folder_is_removed_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A serve killed with -9 never removes its metrics folder; the next serve does, and
    leaves alone the folder of one still running."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    program = [sys.executable, "-c", "import os; print(os.getpid())"]
    ended = subprocess.run(program, capture_output=True, text=True, check=True)
    dead = tmp_path / f"{PREFIX}{int(ended.stdout)}-k1ll3d"
    alive = tmp_path / f"{PREFIX}{os.getpid()}-runn1ng"
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"\0" * 16)

    assert remove_stale_folders() == [dead]
    assert not dead.exists()
    assert (alive / "counter_1.db").exists()
