"""``serve`` runs the waiter and sender loops in a process beside the web process and, on
SQLite, one ingest writer process: if the writer dies, webhooks are answered 503 (so
senders retry) until serve has restarted it; a dead loops process is restarted too; if
serve dies, neither outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from cartnudge.intake.examples import example_request
from tests.e2e.test_delivery import shop_record
from tests.e2e.test_first_run import cli, start_server

WRITER, LOOPS = "cartnudge.intake.writer_process", "cartnudge.worker"


def child_pids(serve_pid: int, module: str = WRITER) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-f", f"{module} .*--parent {serve_pid}"],
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
    process, env, base = served
    [writer] = child_pids(process.pid)
    assert "-> 200" in send(env)
    shop = shop_record(env, "demo")

    os.kill(writer, signal.SIGKILL)
    wait_for(lambda: writer not in child_pids(process.pid))
    # Straight from here, not through the CLI: serve restarts the writer after
    # RESTART_DELAY_S, and a command's start-up can take that long on a loaded machine.
    request = example_request(shop, "storefront", datetime.now(UTC))
    answer = httpx.post(base + request.path, content=request.body, headers=request.headers)
    assert answer.status_code == 503, answer.text

    wait_for(lambda: len(child_pids(process.pid)) == 1)
    wait_for(lambda: "-> 200" in send(env))
    listed = cli(env, "carts", "list", "--shop", "demo", "--json")
    assert listed.stdout.count('"id"') == 2  # the 503 changed nothing; the retry landed


def test_a_dead_loops_process_is_restarted(
    served: tuple[subprocess.Popen[str], dict[str, str], str],
) -> None:
    process, _, _ = served
    [loops] = child_pids(process.pid, LOOPS)

    os.kill(loops, signal.SIGKILL)

    wait_for(lambda: [p for p in child_pids(process.pid, LOOPS) if p != loops], timeout=20)


@pytest.mark.parametrize("module", [WRITER, LOOPS])
def test_no_child_outlives_serve(
    served: tuple[subprocess.Popen[str], dict[str, str], str], module: str
) -> None:
    process, _, _ = served
    [child] = child_pids(process.pid, module)

    process.kill()
    process.wait(timeout=10)

    wait_for(lambda: not Path(f"/proc/{child}").exists() or _zombie(child), timeout=10)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


def test_stopping_serve_stops_its_children_and_keeps_every_acknowledged_event(
    served: tuple[subprocess.Popen[str], dict[str, str], str],
) -> None:
    process, env, base = served
    [writer] = child_pids(process.pid)
    [loops] = child_pids(process.pid, LOOPS)
    for _ in range(3):
        assert "-> 200" in send(env)

    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)

    for child in (writer, loops):
        assert not Path(f"/proc/{child}").exists() or _zombie(child)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/healthz", timeout=1)
    listed = cli(env, "carts", "list", "--shop", "demo", "--json")
    assert listed.stdout.count('"id"') == 3
