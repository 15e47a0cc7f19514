"""What an owner can do from the CLI: suppress or write off a cart, unsubscribe an
address, give a shop its sender identity. Each cancels what is pending and leaves an
audit row; bad input exits 2 and changes nothing."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.db.models import AuditEntry
from cartnudge.db.session import reading
from cartnudge.shops.repository import ShopRecord
from cartnudge.timing.waiter import wake_due
from tests.conftest import T0
from tests.delivery.helpers import H, Pass, post, sends
from tests.intake.helpers import carts
from tests.test_cli import cli  # noqa: F401 - the fixture

audit_t = AuditEntry


def audit_actions(engine: Engine, cart_id: int | None) -> list[tuple[str, str, str | None]]:
    with reading(engine) as conn:
        rows = conn.execute(
            select(audit_t).where(audit_t.c.cart_id == cart_id).order_by(audit_t.c.id)
        )
        return [(r.actor, r.action, r.reason) for r in rows]


def test_suppress_stops_the_cart_and_cancels_its_queued_reminder(
    cli: Any,  # noqa: F811
    client: TestClient,
    engine: Engine,
    sender_shop: ShopRecord,
    run: Pass,
) -> None:
    post(client, sender_shop, cart_id="c1", occurred_at=T0 + 5 * H)
    run(T0 + 7 * H)  # decided at 22:09 London time: deferred to the morning
    [cart] = carts(engine, sender_shop.id)
    result = cli("carts", "suppress", str(cart.id), "--reason", "asked by phone")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["after"] == {"status": "suppressed"}
    assert len(body["cancelled_sends"]) == 1
    [send] = sends(engine)
    assert (send.status, send.reason) == ("cancelled", "cart suppressed by the owner")
    [cart] = carts(engine, sender_shop.id)
    assert (cart.status, cart.next_wake_at) == ("suppressed", None)
    assert ("owner:cli", "status:suppressed", "asked by phone") in audit_actions(engine, cart.id)

    # Nothing goes out in the morning, and a later event does not reopen the cart.
    assert run(T0 + 24 * H)["sent"] == 0
    post(client, sender_shop, cart_id="c1", occurred_at=T0 + 25 * H)
    assert wake_due(engine, T0 + 40 * H).woken == 0
    assert carts(engine, sender_shop.id)[0].status == "suppressed"
    assert run.emails() == []


def test_write_off_needs_a_reason_and_refuses_what_cannot_apply(
    cli: Any,  # noqa: F811
    client: TestClient,
    engine: Engine,
    sender_shop: ShopRecord,
) -> None:
    post(client, sender_shop, cart_id="c1")
    [cart] = carts(engine, sender_shop.id)
    assert cli("carts", "write-off", str(cart.id)).exit_code == 2  # --reason is required
    assert cli("carts", "write-off", str(cart.id), "--reason", "  ").exit_code == 2
    missing = cli("carts", "suppress", "999999")
    assert (missing.exit_code, "no cart 999999" in missing.output) == (2, True)
    assert carts(engine, sender_shop.id)[0].status == "open"
    assert [a for a in audit_actions(engine, cart.id) if a[0] == "owner:cli"] == []

    ok = cli("carts", "write-off", str(cart.id), "--reason", "ordered by phone")
    assert ok.exit_code == 0, ok.output
    again = cli("carts", "suppress", str(cart.id))
    assert again.exit_code == 2 and "written_off" in again.output

    post(client, sender_shop, cart_id="c2", kind="order_placed", order_id="o1")
    bought = next(c for c in carts(engine, sender_shop.id) if c.status == "bought")
    refused = cli("carts", "write-off", str(bought.id), "--reason", "x")
    assert refused.exit_code == 2 and "bought" in refused.output


def test_unsubscribe_by_the_owner_cancels_pending_reminders_once(
    cli: Any,  # noqa: F811
    client: TestClient,
    engine: Engine,
    sender_shop: ShopRecord,
    run: Pass,
) -> None:
    post(client, sender_shop, cart_id="c1", occurred_at=T0 + 5 * H)
    run(T0 + 7 * H)  # queued for the morning
    first = cli("unsubscribe", "Shopper@Example.com", "--shop", sender_shop.slug)
    assert first.exit_code == 0 and "unsubscribed" in first.output
    again = cli("unsubscribe", "shopper@example.com", "--shop", sender_shop.slug)
    assert again.exit_code == 0 and "already unsubscribed" in again.output
    [send] = sends(engine)
    assert (send.status, send.reason) == ("cancelled", "address unsubscribed")
    assert [a[1] for a in audit_actions(engine, None) if a[1].startswith("consent")] == [
        "consent:unsubscribe"
    ]
    for bad in (["not-an-address", "--shop", sender_shop.slug], ["a@b.example", "--shop", "nope"]):
        assert cli("unsubscribe", *bad).exit_code == 2


def test_shop_set_validates_the_sender_identity_and_mail_route(
    cli: Any,  # noqa: F811
    engine: Engine,
    shop: ShopRecord,
) -> None:
    for args, message in [
        (["--sender", "hello@tea.example"], "expected 'Name <address>'"),
        (["--sender", "Tea <not an address>"], "not a usable email address"),
        (["--sender", "Tea\r\nBcc: x@evil.example <hello@tea.example>"], "one line"),
        (["--address", "  "], "must not be empty"),
        (["--mail", "http://relay.example"], "--mail"),
        (["--mail", "smtp://user:secret@relay.example:25"], "--mail"),
        (["--locale", "xx_NOPE"], "--locale"),
        ([], "nothing to change"),
    ]:
        result = cli("shop", "set", shop.slug, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert cli("shop", "set", "nope", "--locale", "fr").exit_code == 2

    result = cli(
        "shop", "set", shop.slug,
        "--sender", "Tea House <hello@tea.example>",
        "--address", "1 Leaf Lane\\nBristol",
        "--mail", "smtp+starttls://user:hunter2pw@relay.example:587",
        "--locale", "en-GB",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sending = json.loads(result.output)["sending"]
    assert sending["sender"] == "Tea House <hello@tea.example>"
    assert sending["postal_address"] == "1 Leaf Lane\nBristol"
    assert sending["locale"] == "en_GB" and sending["ready"] is True
    assert "hunter2pw" not in result.output  # the SMTP password is never printed
    assert [a[1] for a in audit_actions(engine, None)] == ["shop:set"]
