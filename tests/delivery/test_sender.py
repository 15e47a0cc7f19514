"""The sender over real carts and a real database: what leaves, what waits, what never
does, and what an interrupted delivery leaves behind."""

from __future__ import annotations

import random
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update

from cartnudge.db.models import SendStatus
from cartnudge.db.session import writing
from cartnudge.delivery.sender import (
    BATCH,
    LEASE,
    Outgoing,
    Providers,
    SendReport,
    _deliver,
    claim_batch,
)
from cartnudge.intake.examples import shopify_checkout, storefront_event
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.service import set_shop
from cartnudge.testing.smtp import SmtpSink
from cartnudge.timing.waiter import wake_due
from cartnudge.tracking.service import unsubscribe
from tests.conftest import POSTAL_ADDRESS, SENDER, T0, ShopFactory
from tests.delivery.helpers import LINKS, H, Pass, post, sends, sends_t
from tests.intake.helpers import post_shopify, post_storefront


def test_a_due_reminder_is_composed_delivered_and_recorded(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    post(client, sender_shop, cart_id="c1")
    assert run(T0 + H)["claimed"] == 0
    report = run(T0 + 2 * H)
    assert (report["claimed"], report["sent"]) == (1, 1)

    [send] = sends(engine)
    assert send.status == "sent"
    assert send.consent_basis.startswith("opt_in:")
    assert send.provider == "file"
    assert send.sent_at == T0 + 2 * H
    assert send.email_key == "shopper@example.com"
    [message] = run.emails()
    assert message["To"] == "shopper@example.com"
    assert message["From"] == SENDER
    assert message["Message-ID"] == send.message_id
    assert message["Subject"] == send.subject
    assert "List-Unsubscribe=One-Click" in message["List-Unsubscribe-Post"]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Blue enamel mug" in text and "1 Leaf Lane" in text
    # A second pass finds nothing to do: the send is recorded, the email not written twice.
    assert run(T0 + 2 * H)["claimed"] == 0
    assert len(run.emails()) == 1


def test_a_shop_without_sender_identity_holds_its_sends_until_it_is_set(
    client: TestClient, engine: Engine, shop: ShopRecord, run: Pass, clock: Any
) -> None:
    post(client, shop, cart_id="c1")
    assert run(T0 + 2 * H)["held"] == 1
    [send] = sends(engine)
    assert (send.status, send.reason.startswith("held:")) == ("queued", True)
    assert run.emails() == []

    with writing(engine) as conn:
        set_shop(conn, shop.slug, T0 + 3 * H, sender=SENDER)
    assert run(T0 + 3 * H)["held"] == 1  # an address is needed too
    with writing(engine) as conn:
        set_shop(conn, shop.slug, T0 + 3 * H, postal_address=POSTAL_ADDRESS)
    # Released at once, not after the hold runs out.
    assert run(T0 + 3 * H)["sent"] == 1
    assert [s.status for s in sends(engine)] == ["sent"]


def test_a_purchase_after_the_decision_stops_the_send(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    # Active at 20:09 in London: the reminder is decided at 22:09, inside quiet hours,
    # so it waits for 08:00; the shopper buys in between.
    post(client, sender_shop, cart_id="c1", occurred_at=T0 + 5 * H)
    report = run(T0 + 7 * H)
    assert report["deferred"] == 1
    [send] = sends(engine)
    morning = datetime.fromisoformat("2026-03-15T08:00:00+00:00")
    assert (send.status, send.due_at) == ("queued", morning)
    assert "quiet hours in Europe/London" in send.reason

    post(
        client,
        sender_shop,
        cart_id="c1",
        occurred_at=T0 + 8 * H,
        kind="order_placed",
        order_id="o1",
    )
    report = run(morning)
    assert (report["claimed"], report["skipped"], report["sent"]) == (1, 1, 0)
    [send] = sends(engine)
    assert (send.status, send.reason) == ("skipped", "cart is bought")
    assert run.emails() == []


def test_one_address_gets_one_reminder_about_one_cart_inside_do_not_disturb(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    post(client, sender_shop, cart_id="c1")
    post(client, sender_shop, cart_id="c2", occurred_at=T0 + 1 * H)
    run(T0 + 3 * H)  # both carts due in one pass: one send goes, the other is refused
    by_cart = {s.cart_id: s for s in sends(engine)}
    assert sorted(s.status for s in by_cart.values()) == ["sent", "skipped"]
    skipped = next(s for s in by_cart.values() if s.status == "skipped")
    assert skipped.reason.startswith("do not disturb")
    # A day later: the sent cart's own second reminder is not blocked by its first; the
    # other cart's still is.
    run(T0 + 3 * H + 22 * H)
    second = {s.cart_id: s.status for s in sends(engine) if s.step == 2}
    sent_cart = next(c for c, s in by_cart.items() if s.status == "sent")
    assert second == {sent_cart: "sent", skipped.cart_id: "skipped"}


def test_an_unsubscribed_address_gets_nothing(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    post(client, sender_shop, cart_id="c1")
    with writing(engine) as conn:
        unsubscribe(
            conn, sender_shop.id, "shopper@example.com", T0, source="owner", actor="owner:cli"
        )
    run(T0 + 2 * H)
    [send] = sends(engine)
    assert (send.status, send.reason) == ("skipped", "address unsubscribed")
    assert run.emails() == []


def test_a_worker_stopped_mid_delivery_leaves_no_send_in_limbo(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    for n in range(3):
        post(client, sender_shop, cart_id=f"c{n}", email=f"s{n}@example.com")
    wake_due(engine, T0 + 2 * H)
    # As a worker leaves its sends when it dies after claiming: sending, lease running; it
    # had handed the first two over (one to the file outbox, one to SMTP), not the third.
    first, second, third = (s.id for s in sends(engine))
    with writing(engine) as conn:
        conn.execute(
            update(sends_t).values(
                status="sending", provider="smtp", claimed_until=T0 + 2 * H + LEASE
            )
        )
        conn.execute(
            update(sends_t).where(sends_t.c.id.in_((first, second))).values(handed_at=T0 + 2 * H)
        )
        conn.execute(update(sends_t).where(sends_t.c.id == first).values(provider="file"))
    assert run(T0 + 2 * H + LEASE / 2)["claimed"] == 0  # the lease still runs
    report = run(T0 + 2 * H + LEASE)
    # The file outbox can write the same email again harmlessly, and an email never handed
    # over can go; SMTP might duplicate one it had been given.
    assert (report["requeued"], report["ambiguous"], report["sent"]) == (2, 1, 2)
    status = {s.id: (s.status, s.reason) for s in sends(engine)}
    assert status[first] == status[third] == ("sent", None)
    assert status[second][0] == "ambiguous" and "not sent again" in status[second][1]
    assert sorted(m["To"] for m in run.emails()) == ["s0@example.com", "s2@example.com"]


def claimed(engine: Engine, at: datetime, providers: Providers) -> list[Outgoing]:
    """Step 1 of a pass alone: due sends claimed, gated and marked sending."""
    with writing(engine) as conn:
        return claim_batch(conn, at, providers, LINKS, BATCH, SendReport())


def deliver(engine: Engine, at: datetime, providers: Providers, items: list[Outgoing]) -> Any:
    report = SendReport()
    _deliver(engine, lambda: at, providers, items, report, random.Random(1))
    return report.as_dict()


def test_a_purchase_stored_after_the_claim_stops_the_email_before_it_is_handed_over(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    post(client, sender_shop, cart_id="c1")
    post(client, sender_shop, cart_id="c2", email="other@example.com")
    wake_due(engine, T0 + 2 * H)
    outgoing = claimed(engine, T0 + 2 * H, run.providers)
    assert len(outgoing) == 2
    # The shopper buys while the batch waits for its lane.
    post(client, sender_shop, cart_id="c1", kind="order_placed", order_id="o1")
    report = deliver(engine, T0 + 2 * H, run.providers, outgoing)
    assert (report["sent"], report["withdrawn"]) == (1, 1)
    by_cart = {s.email_key: s for s in sends(engine)}
    bought = by_cart["shopper@example.com"]
    assert (bought.status, bought.handed_at, bought.sent_at) == ("skipped", None, None)
    assert bought.reason == "not sent: the cart became bought after the reminder was claimed"
    assert by_cart["other@example.com"].handed_at == T0 + 2 * H
    assert [m["To"] for m in run.emails()] == ["other@example.com"]


def test_an_unsubscribe_after_the_claim_cancels_the_email_before_it_is_handed_over(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    post(client, sender_shop, cart_id="c1")
    wake_due(engine, T0 + 2 * H)
    outgoing = claimed(engine, T0 + 2 * H, run.providers)
    with writing(engine) as conn:
        unsubscribe(
            conn, sender_shop.id, "shopper@example.com", T0, source="owner", actor="owner:cli"
        )
    assert deliver(engine, T0 + 2 * H, run.providers, outgoing)["withdrawn"] == 1
    [send] = sends(engine)
    assert send.status == "cancelled" and send.handed_at is None
    assert run.emails() == []


def test_a_temporary_refusal_is_retried_and_the_retry_is_handed_over_again(
    client: TestClient, engine: Engine, make_shop: ShopFactory, run: Pass
) -> None:
    with SmtpSink() as sink:
        shop = make_shop(
            sender=SENDER, postal_address=POSTAL_ADDRESS, mail_url=f"smtp://127.0.0.1:{sink.port}"
        )
        post(client, shop, cart_id="c1")
        sink.fail_next("rcpt", "451 4.7.1 Greylisted, please try again later")
        assert run(T0 + 2 * H)["retrying"] == 1
        [send] = sends(engine)
        assert (send.status, send.handed_at, send.sent_at) == ("queued", None, None)
        assert run(send.due_at)["sent"] == 1
        [send] = sends(engine)
        assert (send.status, send.handed_at, send.attempts) == ("sent", send.due_at, 2)
        assert len(sink.wait_for(1, timeout_s=10)) == 1


def test_no_consent_is_skipped_under_require_opt_in(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    event = storefront_event(cart_id="c1", occurred_at=T0)
    event["accepts_marketing"] = False
    assert post_storefront(client, sender_shop, event).status_code == 200
    run(T0 + 2 * H)
    [send] = sends(engine)
    assert send.status == "skipped" and send.reason.startswith("no consent")
    assert send.status != SendStatus.SENT


def test_international_addresses_are_sent_in_their_wire_form(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    addresses = {"c2": "zoë@example.com", "c3": "ana@müller.example"}
    for cart_id, address in addresses.items():
        post(client, sender_shop, cart_id=cart_id, email=address)
    report = run(T0 + 2 * H)
    assert (report["sent"], report["skipped"], report["failed"]) == (2, 0, 0)
    assert sorted(str(m["To"]) for m in run.emails()) == [
        "ana@xn--mller-kva.example",
        "zoë@example.com",
    ]


@pytest.mark.parametrize("offered", [True, False])
def test_a_non_ascii_local_part_goes_out_where_the_server_offers_smtputf8(
    client: TestClient, engine: Engine, make_shop: ShopFactory, run: Pass, offered: bool
) -> None:
    with SmtpSink(smtputf8=offered) as sink:
        shop = make_shop(
            sender=SENDER, postal_address=POSTAL_ADDRESS, mail_url=f"smtp://127.0.0.1:{sink.port}"
        )
        post(client, shop, cart_id="c1", email="zoë@müller.example")
        report = run(T0 + 2 * H)
        [send] = sends(engine)
        if offered:
            assert report["sent"] == 1 and send.status == "sent"
            [got] = sink.wait_for(1, timeout_s=10)
            assert got.rcpt_tos == ("zoë@xn--mller-kva.example",)
            assert "To: zoë@xn--mller-kva.example\r\n".encode() in got.data
        else:
            # Refused for good, with the reason, and never retried.
            assert report["failed"] == 1 and send.status == "failed"
            assert "SMTPUTF8" in send.reason
            assert sink.received == []
            assert run(T0 + 3 * H)["claimed"] == 0


def test_a_cart_that_came_with_bad_data_is_emailed_with_sound_figures_and_a_working_link(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    checkout = shopify_checkout(token="t1", cart_token="ct1", updated_at=T0)
    checkout.update(
        abandoned_checkout_url="javascript:alert(5)",
        total_price="0.01",
        currency="EUR",
        presentment_currency="EUR",
        line_items=[
            {"title": "Teapot", "quantity": 3, "price": "100.00"},
            {"title": "Spoon", "quantity": 0, "price": "5.00"},
        ],
    )
    response = post_shopify(client, sender_shop, "checkouts/create", checkout, "wh-1")
    assert response.status_code == 200 and response.json()["status"] == "applied"

    assert run(T0 + 2 * H)["sent"] == 1
    [message] = run.emails()
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "€300.00" in text and "0.01" not in text
    assert "Teapot: 3 × €100.00 = €300.00" in text and "Spoon" not in text
    # The refused link gave way to the shop's cart page: the button is there and lands on it.
    click = re.search(r"http://testserver(/c/[A-Za-z0-9_-]+)", text)
    assert click is not None
    landed = client.get(click[1], follow_redirects=False)
    assert landed.status_code == 302
    target = urlsplit(landed.headers["location"])
    assert (target.scheme, target.netloc, target.path) == (
        "https",
        sender_shop.shopify_domain,
        "/cart",
    )
