"""A newcomer's first minutes, as the README tells them: serve, send an example, see it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cartnudge.testing.postgres import free_port
from cartnudge.testing.serve import wait_healthy

CARTNUDGE = str(Path(sys.executable).parent / "cartnudge")


def start_server(
    tmp_path: Path,
    command: str = "serve",
    extra_env: dict[str, str] | None = None,
    *,
    public_url: bool = True,
) -> tuple[subprocess.Popen[str], dict[str, str], str]:
    """``cartnudge serve`` (or ``web``) on a new SQLite home, healthy; with the env to
    reach it (``public_url=False``: without CARTNUDGE_PUBLIC_URL, as a newcomer has it)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTNUDGE_")}
    # The session's data key (tests/conftest.py), so the test can read the shops it adds.
    env["CARTNUDGE_DATA_KEYS"] = os.environ["CARTNUDGE_DATA_KEYS"]
    env["CARTNUDGE_HOME"] = str(tmp_path / "var")
    env.update(extra_env or {})
    process = subprocess.Popen(
        [CARTNUDGE, command, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    if not wait_healthy(base, process, 30):
        process.kill()
        pytest.fail(f"server did not start: {process.communicate()[0]}")
    if public_url:
        env["CARTNUDGE_PUBLIC_URL"] = base
    return process, env, base


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    process, env, base = start_server(tmp_path)
    yield env, base
    process.terminate()
    output, _ = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output
    assert "created the demo shop" in output
    assert f"{base}/webhooks/storefront/demo" in output


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CARTNUDGE, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_serve_creates_demo_shop_and_each_example_lands_as_a_cart(
    server: tuple[dict[str, str], str],
) -> None:
    env, _ = server
    for lane in ("storefront", "shopify", "stripe"):
        sent = cli(env, "events", "send-example", "--shop", "demo", "--lane", lane)
        assert sent.returncode == 0, sent.stderr
        assert "-> 200" in sent.stdout

    listed = cli(env, "carts", "list", "--shop", "demo", "--json")

    assert listed.returncode == 0, listed.stderr
    carts = json.loads(listed.stdout)
    assert sorted(c["source"] for c in carts) == ["shopify", "storefront", "stripe"]
    assert all(c["status"] == "open" and c["email"] for c in carts)


def test_send_example_to_a_server_that_is_not_running_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTNUDGE_")}
    env["CARTNUDGE_HOME"] = str(tmp_path)
    cli(env, "shop", "add", "s", "--name", "S", "--timezone", "UTC", "--currency", "USD")

    result = cli(
        env, "events", "send-example", "--shop", "s", "--url", f"http://127.0.0.1:{free_port()}"
    )

    assert result.returncode == 2
    assert "is `make run` running?" in result.stderr


def test_commands_in_a_second_terminal_reach_the_server_on_its_own_port(tmp_path: Path) -> None:
    # `make run PORT=…` and then the README's commands, with no CARTNUDGE_PUBLIC_URL set.
    process, env, base = start_server(tmp_path, public_url=False)
    try:
        sent = cli(env, "events", "send-example", "--shop", "demo")
        shops = json.loads(cli(env, "shop", "list").stdout)
        listed = json.loads(cli(env, "carts", "list", "--shop", "demo", "--json").stdout)
        recorded = (tmp_path / "var" / "server.json").exists()
    finally:
        process.terminate()
        process.communicate(timeout=30)

    assert sent.returncode == 0, sent.stderr
    assert "-> 200" in sent.stdout
    assert shops[0]["webhooks"]["storefront"]["url"] == f"{base}/webhooks/storefront/demo"
    assert len(listed) == 1
    # Stopped, the server no longer claims the address: a command says nothing is running.
    assert recorded
    assert not (tmp_path / "var" / "server.json").exists()
    after = cli(env, "events", "send-example", "--shop", "demo")
    assert after.returncode == 2
    assert "is `make run` running?" in after.stderr


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_load_everything_from_the_app_itself(client: TestClient, page: str) -> None:
    # On a machine with no way out, a page whose scripts come from a CDN is blank.
    html = client.get(page)
    assert html.status_code == 200
    references = re.findall(r'(?:src|href|spec-url)="([^"]+)"', html.text)
    references += re.findall(r"url: '([^']+)'", html.text)

    assert any(ref.endswith(".js") for ref in references), html.text
    assert "/openapi.json" in references
    for ref in references:
        assert ref.startswith("/"), f"{page} loads {ref} from elsewhere"
        answer = client.get(ref)
        assert answer.status_code == 200, ref
        assert answer.content, ref
    assert "https://" not in html.text


def test_demo_tells_every_carts_story_and_its_database_opens_with_the_printed_command(
    tmp_path: Path,
) -> None:
    # As a newcomer runs it: no CARTNUDGE_* settings but the data folder.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTNUDGE_")}
    env["CARTNUDGE_HOME"] = "var"

    ran = subprocess.run(
        [CARTNUDGE, "demo", "--carts", "12"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip

    assert ran.returncode == 0, ran.stderr
    accounts = [line for line in ran.stdout.splitlines() if line.startswith("  cart-")]
    assert [line.split()[0] for line in accounts] == [f"cart-{n:04d}" for n in range(12)]
    assert all(re.search(r"bought|gave up|still", line) for line in accounts), accounts
    assert any("sent" in line for line in accounts)
    (command,) = [line for line in ran.stdout.splitlines() if line.startswith("look closer: ")]
    assert "CARTNUDGE_HOME=var/demo" in command

    opened = subprocess.run(
        ["bash", "-c", command.removeprefix("look closer: ") + " --json"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert opened.returncode == 0, opened.stderr
    assert len(json.loads(opened.stdout)) == 12
