"""Each email handed to a mail route is kept, byte for byte, in the hand-off's own
transaction: one that leaves always has its copy, one withdrawn before it left has none,
and a retry's copy replaces the attempt's before it."""

from __future__ import annotations

import zlib
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.db.models import SendMessage
from cartnudge.db.session import reading
from cartnudge.shops.repository import ShopRecord
from cartnudge.testing.smtp import SmtpSink
from cartnudge.timing.waiter import wake_due
from tests.conftest import POSTAL_ADDRESS, SENDER, T0, ShopFactory
from tests.delivery.helpers import H, Pass, post, sends
from tests.delivery.test_sender import claimed, deliver


def kept(engine: Engine) -> list[Any]:
    with reading(engine) as conn:
        return list(conn.execute(select(SendMessage).order_by(SendMessage.c.send_id)))


def test_the_email_a_smtp_server_received_is_the_one_kept(
    client: TestClient, engine: Engine, make_shop: ShopFactory, run: Pass
) -> None:
    with SmtpSink() as sink:
        shop = make_shop(
            sender=SENDER, postal_address=POSTAL_ADDRESS, mail_url=f"smtp://127.0.0.1:{sink.port}"
        )
        post(client, shop, cart_id="c1")
        assert run(T0 + 2 * H)["sent"] == 1
        [got] = sink.wait_for(1, timeout_s=10)
    [send] = sends(engine)
    [copy] = kept(engine)
    assert (copy.send_id, copy.shop_id, copy.stored_at) == (send.id, shop.id, send.handed_at)
    assert zlib.decompress(copy.body) == got.data
    assert b"To: shopper@example.com\r\n" in got.data
    assert len(copy.body) < len(got.data)  # compressed


def test_a_retry_keeps_the_email_that_went_last(
    client: TestClient, engine: Engine, make_shop: ShopFactory, run: Pass
) -> None:
    with SmtpSink() as sink:
        shop = make_shop(
            sender=SENDER, postal_address=POSTAL_ADDRESS, mail_url=f"smtp://127.0.0.1:{sink.port}"
        )
        post(client, shop, cart_id="c1")
        sink.fail_next("rcpt", "451 4.7.1 Greylisted, please try again later")
        assert run(T0 + 2 * H)["retrying"] == 1
        [first] = kept(engine)
        assert first.stored_at == T0 + 2 * H  # refused, but it was handed over
        [send] = sends(engine)
        assert run(send.due_at)["sent"] == 1
        [got] = sink.wait_for(1, timeout_s=10)
    [copy] = kept(engine)
    assert copy.stored_at == send.due_at
    assert zlib.decompress(copy.body) == got.data != zlib.decompress(first.body)  # its Date


def test_an_email_withdrawn_before_it_left_keeps_no_copy(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    post(client, sender_shop, cart_id="c1")
    post(client, sender_shop, cart_id="c2", email="other@example.com")
    wake_due(engine, T0 + 2 * H)
    outgoing = claimed(engine, T0 + 2 * H, run.providers)
    post(client, sender_shop, cart_id="c1", kind="order_placed", order_id="o1")
    assert deliver(engine, T0 + 2 * H, run.providers, outgoing)["withdrawn"] == 1
    by_cart = {s.email_key: s.id for s in sends(engine)}
    [copy] = kept(engine)
    assert copy.send_id == by_cart["other@example.com"]
    [written] = run.outbox.rglob("*.eml")  # the file route's copy is the same email
    assert zlib.decompress(copy.body) == written.read_bytes()
