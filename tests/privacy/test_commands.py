"""``cartnudge privacy …``, ``cartnudge unsubscribe --kind`` and the retention options of
``shop set``, as an owner runs them: what they print, and bad input refused with nothing
changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0
from tests.delivery.helpers import H, Pass
from tests.intake.helpers import carts, post_shopify
from tests.privacy.helpers import (
    BOB,
    ORDER_ID,
    bob_history,
    checkout,
    customer_redact,
    every_value,
)
from tests.privacy.helpers import traces_in_database as traces
from tests.test_cli import cli  # noqa: F401 - the fixture


def test_export_prints_or_writes_everything_held(
    cli: Any,  # noqa: F811
    client: TestClient,
    sender_shop: ShopRecord,
    run: Pass,
    tmp_path: Path,
) -> None:
    bob_history(client, sender_shop, run)

    printed = cli(
        "privacy", "export", "--shop", sender_shop.slug, "--email", " Bob.Norman@HostMail.com "
    )
    assert printed.exit_code == 0, printed.output
    document = json.loads(printed.output)
    assert [c["email"] for c in document["carts"]] == [BOB, BOB]

    target = tmp_path / "bob.json"
    written = cli(
        "privacy", "export", "--shop", sender_shop.slug, "--email", BOB, "--out", str(target)
    )
    assert written.exit_code == 0, written.output
    assert target.stat().st_mode & 0o777 == 0o600
    assert json.loads(target.read_text())["carts"] == document["carts"]

    # Named by order only (a request by order number): the same shopper is found.
    by_order = cli(
        "privacy", "export", "--shop", sender_shop.slug, "--email", "nobody@x.example",
        "--order", str(ORDER_ID),
    )  # fmt: skip
    assert [c["status"] for c in json.loads(by_order.output)["carts"]] == ["bought"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shop", "nope", "--email", BOB], "no shop 'nope'"),
        (["--shop", "{shop}", "--email", "not-an-address"], "is not an email address"),
        (["--shop", "{shop}", "--email", "a b@c.example"], "is not an email address"),
        (["--shop", "{shop}", "--email", BOB, "--out", "{tmp}"], "is a folder"),
        (["--shop", "{shop}", "--email", BOB, "--out", "{tmp}/no/such/x.json"], "no folder"),
    ],
)
def test_export_refuses_bad_input(
    cli: Any,  # noqa: F811
    sender_shop: ShopRecord,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    filled = [a.format(shop=sender_shop.slug, tmp=tmp_path) for a in args]
    result = cli("privacy", "export", *filled)
    assert result.exit_code == 2
    assert message in result.output


def test_erase_asks_first_and_then_erases(
    cli: Any,  # noqa: F811
    engine: Engine,
    client: TestClient,
    sender_shop: ShopRecord,
    run: Pass,
) -> None:
    bob_history(client, sender_shop, run)
    before = every_value(engine)

    declined = cli("privacy", "erase", "--shop", sender_shop.slug, "--email", BOB)
    assert declined.exit_code == 2 and "not erased" in declined.output
    assert every_value(engine) == before  # nothing changed

    erased = cli("privacy", "erase", "--shop", sender_shop.slug, "--email", BOB, "--yes")
    assert erased.exit_code == 0, erased.output
    assert json.loads(erased.output)["erased"]["carts"] == 2
    assert traces(engine) == []
    # A second erasure finds nothing more.
    again = cli("privacy", "erase", "--shop", sender_shop.slug, "--email", BOB, "--yes")
    assert json.loads(again.output)["erased"]["carts"] == 0


def test_erase_refuses_bad_input(
    cli: Any,  # noqa: F811
    sender_shop: ShopRecord,
) -> None:
    assert cli("privacy", "erase", "--shop", "nope", "--email", BOB, "--yes").exit_code == 2
    bad = cli("privacy", "erase", "--shop", sender_shop.slug, "--email", "@", "--yes")
    assert bad.exit_code == 2 and "is not an email address" in bad.output


def test_requests_and_run_show_what_became_of_compliance_webhooks(
    cli: Any,  # noqa: F811
    client: TestClient,
    sender_shop: ShopRecord,
    run: Pass,
) -> None:
    bob_history(client, sender_shop, run)
    body = customer_redact(sender_shop, BOB, [ORDER_ID])
    post_shopify(client, sender_shop, "customers/redact", body, "w-cr")

    pending = json.loads(cli("privacy", "requests", "--shop", sender_shop.slug).output)
    assert [(r["kind"], r["state"]) for r in pending] == [("customers/redact", "pending")]
    ran = cli("privacy", "run", "--now", (T0 + 7 * H).isoformat())
    assert ran.exit_code == 0, ran.output
    # The JSON report on stdout (the run also logs a line on stderr).
    assert json.loads(ran.stdout)["requests"][0]["state"] == "done"
    [done] = json.loads(cli("privacy", "requests", "--shop", sender_shop.slug).output)
    assert done["state"] == "done" and done["result"]["carts"] == 2

    assert cli("privacy", "run", "--now", "yesterday").exit_code == 2
    assert cli("privacy", "requests", "--shop", "nope").exit_code == 2


def test_unsubscribe_records_why_and_consent_shows_the_history(
    cli: Any,  # noqa: F811
    sender_shop: ShopRecord,
) -> None:
    slug = sender_shop.slug
    done = cli("unsubscribe", BOB, "--shop", slug, "--kind", "complaint", "--note", "FBL report")
    assert done.exit_code == 0 and "complaint recorded" in done.output
    again = cli("unsubscribe", BOB, "--shop", slug, "--kind", "complaint")
    assert "already complaint recorded" in again.output

    shown = json.loads(cli("privacy", "consent", "--shop", slug, "--email", BOB).output)
    assert shown["stopped"] == "address complained (marked a reminder as spam)"
    assert [(e["kind"], e["evidence"]) for e in shown["history"]] == [
        ("complaint", {"note": "FBL report"})
    ]

    bad_kind = cli("unsubscribe", BOB, "--shop", slug, "--kind", "opt_in")
    assert bad_kind.exit_code == 2 and "choose one of" in bad_kind.output
    long_note = cli("unsubscribe", BOB, "--shop", slug, "--note", "x" * 501)
    assert long_note.exit_code == 2 and "at most 500" in long_note.output
    nobody = json.loads(cli("privacy", "consent", "--shop", slug, "--email", "a@b.example").output)
    assert nobody == {"stopped": None, "history": []}


def test_shop_set_changes_retention_and_refuses_bad_values(
    cli: Any,  # noqa: F811
    sender_shop: ShopRecord,
) -> None:
    slug = sender_shop.slug
    shown = cli("shop", "set", slug, "--keep-payloads", "2d", "--keep-closed-pii", "90d")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["retention"] == {
        "raw_payloads": "2d",
        "decision_inputs": "30d",
        "closed_cart_personal_data": "90d",
    }
    for option, value, message in [
        ("--keep-payloads", "2 days", "is not a duration"),
        ("--keep-decisions", "12h", "at least 1 day"),
        ("--keep-closed-pii", "3651d", "at most 3650 days"),
    ]:
        refused = cli("shop", "set", slug, option, value)
        assert refused.exit_code == 2 and message in refused.output, refused.output
    listed = json.loads(cli("shop", "list").output)
    assert listed[0]["retention"]["raw_payloads"] == "2d"  # unchanged by the refusals


def test_an_erased_shoppers_given_up_cart_stays_closed_when_the_checkout_comes_back(
    cli: Any,  # noqa: F811
    engine: Engine,
    client: TestClient,
    sender_shop: ShopRecord,
    run: Pass,
) -> None:
    bob_history(client, sender_shop, run)
    for days in (2, 10, 30):  # the last reminder, then the waiter gives up: expired
        run(T0 + days * 24 * H)
    [expired] = [
        c for c in carts(engine, sender_shop.id) if c.status == "expired" and c.email == BOB
    ]

    erased = cli("privacy", "erase", "--shop", sender_shop.slug, "--email", BOB, "--yes")
    assert erased.exit_code == 0, erased.output
    # The same checkout comes back, later than the give-up: an erased cart does not reopen.
    late = checkout("tB", "cB", (T0 + 31 * 24 * H).isoformat())
    assert post_shopify(client, sender_shop, "checkouts/update", late, "w9").status_code == 200

    [cart] = [c for c in carts(engine, sender_shop.id) if c.id == expired.id]
    assert (cart.status, cart.next_wake_at) == ("closed", None)
