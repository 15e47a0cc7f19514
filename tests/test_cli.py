"""The ``cartnudge`` command: shops, carts, dead letters; bad input exits 2 and changes nothing."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from cartnudge.cli import app
from cartnudge.cli_support import SERVER_FILE
from cartnudge.clock import system_clock
from cartnudge.intake.examples import LANES, example_request, storefront_event, stripe_expired_event
from cartnudge.shops.repository import ShopRecord
from cartnudge.testing.postgres import free_port
from tests.conftest import T0, ShopFactory
from tests.intake.helpers import (
    post,
    post_shopify,
    post_storefront,
    post_stripe,
    stored_counts,
)


@pytest.fixture
def cli(engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    monkeypatch.setenv("CARTNUDGE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CARTNUDGE_HOME", str(tmp_path))
    monkeypatch.setenv("CARTNUDGE_PUBLIC_URL", "https://carts.example")
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), catch_exceptions=False)

    return run


def test_shop_add_prints_webhook_urls_and_secrets(cli: Any) -> None:
    result = cli(
        "shop", "add", "tea-house", "--name", "Tea House", "--timezone", "Europe/Paris",
        "--currency", "eur", "--shopify-domain", "Tea-House.myshopify.com",
        "--shopify-secret", "shpss_1", "--stripe-secret", "whsec_abc",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    shop = json.loads(result.output)
    assert shop["currency"] == "EUR"
    assert shop["order_match_window"] == "1w"  # the 7-day default
    hooks = shop["webhooks"]
    assert hooks["shopify"] == {
        "url": "https://carts.example/webhooks/shopify",
        "shop_domain": "tea-house.myshopify.com",
        "secret": "shpss_1",
    }
    assert hooks["stripe"]["url"] == "https://carts.example/webhooks/stripe/tea-house"
    assert hooks["storefront"]["url"] == "https://carts.example/webhooks/storefront/tea-house"
    assert hooks["storefront"]["secret"].startswith("whsec_")

    listed = json.loads(cli("shop", "list").output)
    assert [s["slug"] for s in listed] == ["tea-house"]
    assert listed[0]["webhooks"]["shopify"]["secret"] == "shpss_1"[:10] + "…"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad Slug"], "slug 'Bad Slug'"),
        (["s", "--timezone", "Mars/Olympus"], "not an IANA time zone"),
        (["s", "--currency", "XXY"], "unknown currency"),
        (["s", "--shopify-domain", "example.com", "--shopify-secret", "x"], "myshopify.com"),
        (["s", "--shopify-domain", "a.myshopify.com"], "--shopify-secret is required"),
        (["s", "--shopify-secret", "x"], "--shopify-domain is required"),
        (["s", "--stripe-secret", "sk_live_123"], "whsec_"),
        (["s", "--activated-at", "yesterday"], "--activated-at"),
        (["s", "--order-match-window", "a week"], "--order-match-window"),
        (["s", "--order-match-window", "0d"], "order match window must be more than 0"),
        (["s", "--order-match-window", "91d"], "at most 90 days"),
    ],
)
def test_shop_add_refuses_bad_input_and_stores_nothing(
    cli: Any, engine: Engine, args: list[str], message: str
) -> None:
    defaults = {"--name": "S", "--timezone": "UTC", "--currency": "USD"}
    for option, value in defaults.items():
        if option not in args:
            args = [*args, option, value]

    result = cli("shop", "add", *args)

    assert result.exit_code == 2
    assert message in result.output
    assert json.loads(cli("shop", "list").output) == []


def test_shop_add_refuses_a_taken_slug(cli: Any) -> None:
    base = ["--name", "S", "--timezone", "UTC", "--currency", "USD"]
    assert cli("shop", "add", "s", *base).exit_code == 0
    result = cli("shop", "add", "s", *base)
    assert result.exit_code == 2
    assert "is taken" in result.output


def test_carts_list_and_show_with_timeline(cli: Any, client: TestClient, shop: ShopRecord) -> None:
    post_storefront(client, shop, storefront_event(cart_id="c-1", occurred_at=T0))
    order = storefront_event(cart_id="c-1", occurred_at=T0, kind="order_placed", order_id="o-9")
    post_storefront(client, shop, order)
    post_storefront(client, shop, storefront_event(cart_id="c-2", occurred_at=T0))

    listed = json.loads(cli("carts", "list", "--shop", shop.slug, "--json").output)
    bought = json.loads(
        cli("carts", "list", "--shop", shop.slug, "--status", "bought", "--json").output
    )
    shown = json.loads(cli("carts", "show", str(bought[0]["id"]), "--json").output)

    assert len(listed) == 2
    assert [c["order_ref"] for c in bought] == ["o-9"]
    assert [e["topic"] for e in shown["events"]] == ["checkout_started", "order_placed"]
    assert [a["action"] for a in shown["audit"]] == ["created", "status:bought"]
    assert shown["audit"][1]["before"]["status"] == "open"
    assert shown["keys"] == [{"kind": "storefront_cart", "value": "c-1"}]
    assert "c-1" in cli("carts", "list", "--shop", shop.slug).output or listed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["carts", "list", "--shop", "nope"], "no shop 'nope'"),
        (["carts", "list", "--shop", "shop1", "--status", "lost"], "unknown status"),
        (["carts", "show", "999"], "no cart 999"),
        (["events", "replay", "999"], "no event 999"),
        (["events", "send-example", "--shop", "shop1", "--lane", "fax"], "unknown lane"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(
    cli: Any, shop: ShopRecord, args: list[str], message: str
) -> None:
    result = cli(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_dead_letters_listed_and_replaying_an_applied_event_is_refused(
    cli: Any, client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    post_shopify(client, shop, "products/create", {"id": 1}, "wh-1")
    post_storefront(client, shop, storefront_event(cart_id="c-1", occurred_at=T0))

    letters = json.loads(cli("events", "dead-letters", "--shop", shop.slug).output)
    assert [letter["topic"] for letter in letters] == ["products/create"]
    still_dead = cli("events", "replay", str(letters[0]["id"]))
    assert still_dead.exit_code == 1
    assert "unsupported Shopify topic" in still_dead.output

    before = stored_counts(engine)
    applied_id = letters[0]["id"] + 1
    refused = cli("events", "replay", str(applied_id))
    assert refused.exit_code == 2
    assert "not a dead letter" in refused.output
    assert stored_counts(engine) == before


def test_storefront_secret_rotation_accepts_both_until_finished(
    cli: Any, client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    from dataclasses import replace

    old = shop.storefront_secrets[0]
    started = json.loads(cli("shop", "rotate-secret", shop.slug).output)["webhooks"]["storefront"]
    assert started["previous_secret"] == old
    assert started["secret"] != old
    assert cli("shop", "rotate-secret", shop.slug).exit_code == 2  # one rotation at a time

    # The web process caches shops for a few seconds; a fresh app sees the change at once.
    signed_with_old = replace(shop, storefront_secrets=(old,))
    signed_with_new = replace(shop, storefront_secrets=(started["secret"],))
    client.app.state.intake.shops.clear()  # type: ignore[attr-defined]
    assert (
        post_storefront(
            client, signed_with_old, storefront_event(cart_id="a", occurred_at=T0)
        ).status_code
        == 200
    )
    assert (
        post_storefront(
            client, signed_with_new, storefront_event(cart_id="b", occurred_at=T0)
        ).status_code
        == 200
    )

    finished = json.loads(cli("shop", "rotate-secret", shop.slug, "--finish").output)
    assert finished["webhooks"]["storefront"]["previous_secret"] is None
    client.app.state.intake.shops.clear()  # type: ignore[attr-defined]
    refused = post_storefront(
        client, signed_with_old, storefront_event(cart_id="c", occurred_at=T0)
    )
    assert refused.status_code == 401
    assert cli("shop", "rotate-secret", shop.slug, "--finish").exit_code == 2
    assert cli("shop", "rotate-secret", "nope").exit_code == 2


def _server_record(home: Path, pid: int, listen_url: str) -> None:
    record = {"pid": pid, "listen_url": listen_url, "public_url": listen_url}
    (home / "server.json").write_text(json.dumps(record))


def test_commands_use_the_running_servers_address_unless_told_otherwise(
    cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CARTNUDGE_PUBLIC_URL")
    _server_record(tmp_path, os.getpid(), "http://127.0.0.1:8765")  # a live process
    base = ["--name", "S", "--timezone", "UTC", "--currency", "USD"]

    added = json.loads(cli("shop", "add", "s", *base).output)
    monkeypatch.setenv("CARTNUDGE_PUBLIC_URL", "https://carts.example")
    listed = json.loads(cli("shop", "list").output)

    assert added["webhooks"]["stripe"]["url"] == "http://127.0.0.1:8765/webhooks/stripe/s"
    assert listed[0]["webhooks"]["stripe"]["url"] == "https://carts.example/webhooks/stripe/s"


def test_a_stale_server_record_is_ignored(
    cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A server killed before it could remove its record: its process is gone.
    gone = subprocess.Popen(["true"])
    gone.wait()
    monkeypatch.delenv("CARTNUDGE_PUBLIC_URL")
    _server_record(tmp_path, gone.pid, "http://127.0.0.1:8765")
    base = ["--name", "S", "--timezone", "UTC", "--currency", "USD"]

    added = json.loads(cli("shop", "add", "s", *base).output)

    assert added["webhooks"]["stripe"]["url"] == "http://127.0.0.1:8000/webhooks/stripe/s"


def test_shop_add_without_a_sender_says_what_is_missing_and_the_next_command(cli: Any) -> None:
    base = ["--name", "Tea House", "--timezone", "UTC", "--currency", "USD"]

    added = json.loads(cli("shop", "add", "tea", *base).output)

    assert added["sending"]["ready"] is False
    assert added["sending"]["missing"] == ["--sender", "--address"]
    (command,) = added["next"]
    assert command.startswith("cartnudge shop set tea --sender ")
    # The printed command, as a newcomer would paste it, makes the shop ready.
    args = shlex.split(command)[1:]
    done = json.loads(cli(*args).output)
    assert done["sending"]["ready"] is True
    assert "next" not in done
    assert "missing" not in done["sending"]


def test_shop_add_with_sender_and_address_needs_no_next_step(cli: Any) -> None:
    base = ["--name", "S", "--timezone", "UTC", "--currency", "USD"]
    sending = ["--sender", "S <s@s.example>", "--address", "1 Road, Town"]

    added = json.loads(cli("shop", "add", "s", *base, *sending).output)

    assert added["sending"]["ready"] is True
    assert "next" not in added


def test_carts_list_shows_money_as_people_read_it_and_json_keeps_minor_units(
    cli: Any, client: TestClient, shop: ShopRecord
) -> None:
    post_storefront(client, shop, storefront_event(cart_id="c-1", occurred_at=T0))  # 64.00 GBP

    human = cli("carts", "list", "--shop", shop.slug).output
    (row,) = json.loads(cli("carts", "list", "--shop", shop.slug, "--json").output)

    assert "£64.00" in human
    assert "6400" not in human
    assert (row["total_minor"], row["currency"], row["total"]) == (6400, "GBP", "£64.00")


def test_a_cart_from_before_the_shop_was_switched_on_says_why_it_gets_no_reminder(
    cli: Any, client: TestClient, make_shop: ShopFactory
) -> None:
    # A Checkout Session expires a day after it was made: the cart's last activity is
    # then, before a shop switched on an hour ago, so it is kept and never reminded.
    shop = make_shop(activated_at=T0)
    expired = stripe_expired_event(session_id="cs_test_1", created=T0 + timedelta(hours=1))
    assert post_stripe(client, shop, expired).status_code == 200
    fresh = storefront_event(cart_id="c-1", occurred_at=T0 + timedelta(hours=1))
    assert post_storefront(client, shop, fresh).status_code == 200

    listed = json.loads(cli("carts", "list", "--shop", shop.slug, "--json").output)
    by_source = {cart["source"]: cart for cart in listed}
    shown = json.loads(cli("carts", "show", str(by_source["stripe"]["id"])).output)
    human = cli("carts", "list", "--shop", shop.slug).output
    sends = cli("sends", "list", "--shop", shop.slug)

    assert "before the shop was switched on" in by_source["stripe"]["not_reminded"]
    assert by_source["storefront"]["not_reminded"] is None
    assert shown["not_reminded"] == by_source["stripe"]["not_reminded"]
    stripe_line = next(line for line in human.splitlines() if "€58.00" in line)
    assert "not reminded" in stripe_line
    assert json.loads(sends.stdout) == []
    assert "1 open cart(s) will not be reminded" in sends.stderr


def test_each_example_is_a_shopper_of_its_own_and_gets_its_own_reminder(
    cli: Any, client: TestClient, sender_shop: ShopRecord
) -> None:
    now = system_clock()
    for lane in LANES:
        assert post(client, example_request(sender_shop, lane, now)).status_code == 200

    ticked = cli("tick", "--now", (now + timedelta(hours=3)).isoformat())
    sends = json.loads(cli("sends", "list", "--shop", sender_shop.slug).stdout)

    assert ticked.exit_code == 0, ticked.output
    assert len(sends) == len(LANES)
    assert [s for s in sends if "do not disturb" in (s["reason"] or "")] == []


def test_an_unreachable_database_is_named_without_its_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://owner:s3cret-pw@127.0.0.1:{port}/cartnudge"
    monkeypatch.setenv("CARTNUDGE_DATABASE_URL", url)
    monkeypatch.setenv("CARTNUDGE_HOME", str(tmp_path))

    result = CliRunner().invoke(app, ["shop", "list"])

    assert result.exit_code == 2
    assert f"127.0.0.1:{port}" in result.output and "owner:***@" in result.output
    assert "s3cret-pw" not in result.output


def test_serve_names_an_unreachable_database_from_its_migration_child(tmp_path: Any) -> None:
    """``serve`` migrates in a child process of its own; what the child hit is what the
    operator reads, with the password masked, and serve starts nothing else."""
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://owner:s3cret-pw@127.0.0.1:{port}/cartnudge"
    env = {**os.environ, "CARTNUDGE_DATABASE_URL": url, "CARTNUDGE_HOME": str(tmp_path)}
    cli = Path(sys.executable).with_name("cartnudge")

    done = subprocess.run(
        [str(cli), "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr and "owner:***@" in done.stderr
    assert "connection" in done.stderr.lower()  # the child's own error, not a bare failure
    assert "s3cret-pw" not in done.stdout + done.stderr
    assert not (tmp_path / SERVER_FILE).exists()  # it never got as far as serving
