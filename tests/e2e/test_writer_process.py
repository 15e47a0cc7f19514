"""On SQLite, ``serve`` runs one ingest writer process beside the web process: if the writer
dies, webhooks are answered 503 (so senders retry) until serve has restarted it; if serve
dies, the writer does not outlive it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_first_run import cli, start_server


def writer_pids(serve_pid: int) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-f", f"cartnudge.intake.writer_process .*--parent {serve_pid}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [int(pid) for pid in found.stdout.split()]


def wait_for(condition: object, timeout: float = 15.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out")
        time.sleep(0.05)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str], str]]:
    process, env, base = start_server(tmp_path)
    yield process, env, base
    if process.poll() is None:
        process.terminate()
    output, _ = process.communicate(timeout=30)
    assert "Traceback" not in output


def send(env: dict[str, str]) -> str:
    sent = cli(env, "events", "send-example", "--shop", "demo")
    return sent.stdout + sent.stderr


def test_a_dead_writer_means_503_then_serve_restarts_it(
    served: tuple[subprocess.Popen[str], dict[str, str], str],
) -> None:
    process, env, _ = served
    [writer] = writer_pids(process.pid)
    assert "-> 200" in send(env)

    os.kill(writer, signal.SIGKILL)
    wait_for(lambda: writer not in writer_pids(process.pid))
    assert "-> 503" in send(env)

    wait_for(lambda: len(writer_pids(process.pid)) == 1)
    wait_for(lambda: "-> 200" in send(env))
    listed = cli(env, "carts", "list", "--shop", "demo", "--json")
    assert listed.stdout.count('"id"') == 2  # the 503 changed nothing; the retry landed


def test_the_writer_does_not_outlive_serve(
    served: tuple[subprocess.Popen[str], dict[str, str], str],
) -> None:
    process, _, _ = served
    [writer] = writer_pids(process.pid)

    process.kill()
    process.wait(timeout=10)

    wait_for(lambda: not Path(f"/proc/{writer}").exists() or _zombie(writer), timeout=10)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


def test_stopping_serve_stops_the_writer_and_keeps_every_acknowledged_event(
    served: tuple[subprocess.Popen[str], dict[str, str], str],
) -> None:
    process, env, base = served
    [writer] = writer_pids(process.pid)
    for _ in range(3):
        assert "-> 200" in send(env)

    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)

    assert not Path(f"/proc/{writer}").exists() or _zombie(writer)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/healthz", timeout=1)
    listed = cli(env, "carts", "list", "--shop", "demo", "--json")
    assert listed.stdout.count('"id"') == 3
