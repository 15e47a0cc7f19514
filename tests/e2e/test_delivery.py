"""The whole loop as an operator runs it: signed HTTP events into `cartnudge web`,
`cartnudge tick --now` at chosen instants, and real SMTP delivery to a server started
here. Checks what the shopper receives, that the links in it work (a click lands on the
cart, the one-click POST unsubscribes), and that a purchase between the decision and the
delivery stops the send."""

from __future__ import annotations

import email
import json
import re
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from cartnudge.db.engine import make_engine
from cartnudge.db.session import reading
from cartnudge.intake.examples import signed_storefront, storefront_event
from cartnudge.shops.repository import ShopRecord, ShopRepository
from cartnudge.testing.smtp import SmtpSink
from tests.e2e.test_first_run import cli, start_server

DAY = datetime(2027, 1, 12, tzinfo=UTC)  # a Tuesday in winter: London is on UTC


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    # Only the web app: the loops run when the test says, through `tick --now`.
    process, env, base = start_server(tmp_path, "web", {"CARTNUDGE_SECRET_KEY": "e2e-signing-key"})
    yield env, base
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert "Traceback" not in output, output


def tick(env: dict[str, str], at: datetime) -> dict[str, Any]:
    result = cli(env, "tick", "--now", at.isoformat())
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def shop_record(env: dict[str, str], slug: str) -> ShopRecord:
    engine = make_engine(f"sqlite:///{env['CARTNUDGE_HOME']}/cartnudge.db")
    try:
        with reading(engine) as conn:
            shop = ShopRepository(conn).by_slug(slug)
    finally:
        engine.dispose()
    assert shop is not None
    return shop


def post_event(base: str, shop: ShopRecord, event: dict[str, Any]) -> None:
    request = signed_storefront(shop, event, datetime.now(UTC))
    response = httpx.post(base + request.path, content=request.body, headers=request.headers)
    assert response.status_code == 200, response.text


def parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, _class=EmailMessage, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_events_then_ticks_deliver_by_smtp_and_the_links_work(
    web: tuple[dict[str, str], str], sink: SmtpSink
) -> None:
    env, base = web
    added = cli(
        env, "shop", "add", "tea", "--name", "Tea House", "--timezone", "Europe/London",
        "--currency", "GBP", "--activated-at", "2026-01-01T00:00:00Z",
        "--sender", "Tea House <hello@tea.example>",
        "--address", "1 Leaf Lane\\nBristol BS1 1AA",
        "--mail", f"smtp://127.0.0.1:{sink.port}", "--holdout", "0",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    shop = shop_record(env, "tea")

    # Ana's 64.00 cart at 10:00: the medium tier reminds her at 12:00.
    ana = storefront_event(cart_id="ana", occurred_at=DAY + timedelta(hours=10))
    ana["email"], ana["first_name"] = "ana@example.com", "Ana"
    post_event(base, shop, ana)
    # Ben's cart at 19:30: his reminder is decided at 21:30, in quiet hours, so it waits
    # for 08:00; he buys at 22:00, between the decision and the delivery.
    ben = storefront_event(cart_id="ben", occurred_at=DAY + timedelta(hours=19, minutes=30))
    # (A name with a line break would be refused at intake: tests/intake/test_bad_input.py.)
    ben["email"], ben["first_name"] = "ben@example.com", "Ben Bcc: victim@example.com"
    post_event(base, shop, ben)

    assert tick(env, DAY + timedelta(hours=11))["sender"]["sent"] == 0
    first = tick(env, DAY + timedelta(hours=12))
    assert (first["waiter"]["reminders"], first["sender"]["sent"]) == (1, 1)
    [received] = sink.wait_for(1)
    assert (received.mail_from, received.rcpt_tos) == ("hello@tea.example", ("ana@example.com",))
    message = parsed(received.data)
    assert message["From"] == "Tea House <hello@tea.example>"
    assert message["To"] == "ana@example.com"
    assert message["Message-ID"].endswith("@tea.example>")
    assert message["Date"] and message["Reply-To"].startswith("hello+r-")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_header = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])
    assert unsubscribe_header[0].startswith(f"{base}/u/")
    assert unsubscribe_header[1].startswith("mailto:hello@tea.example?subject=unsubscribe")
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Hi Ana" in text
    for needle in ("Blue enamel mug", "Earl Grey, 250 g", "£64.00", "1 Leaf Lane", "Bristol"):
        assert needle in text and needle in html, needle
    click = re.search(rf"{re.escape(base)}/c/[A-Za-z0-9_-]+", text)
    assert click is not None

    # The click lands on the cart with the campaign's tags.
    landed = httpx.get(click.group(0), follow_redirects=False)
    assert landed.status_code == 302
    target = urlsplit(landed.headers["location"])
    assert target.path == "/cart/ana"
    assert parse_qs(target.query)["utm_content"] == ["step1"]

    # The one-click POST a mail client sends: 200, no redirect; then no second reminder.
    one_click = httpx.post(
        unsubscribe_header[0],
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 200
    assert "unsubscribed" in one_click.text

    night = tick(env, DAY + timedelta(hours=21, minutes=30))
    assert (night["sender"]["deferred"], night["sender"]["sent"]) == (1, 0)
    bought = storefront_event(
        cart_id="ben",
        occurred_at=DAY + timedelta(hours=22),
        kind="order_placed",
        order_id="order-ben",
    )
    bought["email"] = "ben@example.com"
    post_event(base, shop, bought)
    morning = tick(env, DAY + timedelta(days=1, hours=8))
    assert (morning["sender"]["skipped"], morning["sender"]["sent"]) == (1, 0)

    # Ana's second reminder comes due the next day and is refused: she unsubscribed.
    later = tick(env, DAY + timedelta(days=1, hours=12))
    assert later["sender"]["sent"] == 0
    assert len(sink.received) == 1

    listed = cli(env, "sends", "list", "--shop", "tea")
    sends = {(s["cart_id"], s["step"]): s for s in json.loads(listed.stdout)}
    reasons = sorted((s["status"], s["reason"]) for s in sends.values())
    assert reasons == [
        ("sent", None),
        ("skipped", "address unsubscribed"),
        ("skipped", "cart is bought"),
    ]
