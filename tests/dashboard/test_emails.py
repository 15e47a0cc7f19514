"""A reminder's page: the email exactly as the SMTP server received it, its links
disarmed so that reading it neither counts a click nor unsubscribes the shopper, its
HTML in a sandboxed frame, and the shop's walls as on every other page."""

from __future__ import annotations

import email
import html
import re
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, select, update

from cartnudge.dashboard.emails import read_email
from cartnudge.db.models import Click, ConsentEntry, Role, SendMessage, Shop
from cartnudge.db.session import reading, writing
from cartnudge.intake.examples import storefront_event
from cartnudge.privacy.files import PrivacyFiles
from cartnudge.privacy.service import Shopper, erase
from cartnudge.shops.repository import ShopRecord
from cartnudge.testing.smtp import SmtpSink
from tests.conftest import POSTAL_ADDRESS, SENDER, T0, ShopFactory
from tests.dashboard.helpers import sign_in, user
from tests.delivery.helpers import H, Pass, post, sends
from tests.intake.helpers import post_storefront

CSP = (
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
)
SCRIPT = "<script>alert(1)</script>"


def smtp_shop(make_shop: ShopFactory, sink: SmtpSink) -> ShopRecord:
    return make_shop(
        sender=SENDER, postal_address=POSTAL_ADDRESS, mail_url=f"smtp://127.0.0.1:{sink.port}"
    )


def sent_over_smtp(
    client: TestClient, make_shop: ShopFactory, run: Pass, event: dict[str, Any] | None = None
) -> tuple[ShopRecord, EmailMessage]:
    """A shop on a real SMTP server, one cart reminded through the sender; the email as
    the server received it."""
    with SmtpSink() as sink:
        shop = smtp_shop(make_shop, sink)
        event = event or storefront_event(cart_id="c1", occurred_at=T0)
        assert post_storefront(client, shop, event).status_code == 200
        assert run(T0 + 2 * H)["sent"] == 1
        [got] = sink.wait_for(1, timeout_s=10)
    # Read with Python's own line ends, as a mail client shows it.
    data = got.data.replace(b"\r\n", b"\n")
    parsed = email.message_from_bytes(data, _class=EmailMessage, policy=policy.default)
    return shop, parsed


def part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body((subtype,))
    assert body is not None
    return str(body.get_content())


def visible_text(document: str) -> str:
    """What a reader sees of an HTML document, roughly: its text, spaces collapsed."""
    text = re.sub(r"<[^>]*>", " ", document)
    return " ".join(html.unescape(text).split())


def counted(engine: Engine) -> tuple[int, int]:
    with reading(engine) as conn:
        clicks = conn.scalar(select(func.count()).select_from(Click))
        stops = conn.scalar(select(func.count()).select_from(ConsentEntry))
    return int(clicks or 0), int(stops or 0)


def test_the_page_shows_the_email_the_smtp_server_received(
    client: TestClient, engine: Engine, make_shop: ShopFactory, run: Pass
) -> None:
    shop, received = sent_over_smtp(client, make_shop, run)
    [send] = sends(engine)
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    before = counted(engine)

    page = client.get(f"/shops/{shop.slug}/emails/{send.id}")
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"  # the page itself is never framed
    text = page.text
    assert html.escape(str(received["Subject"])) in text
    [shown] = re.findall(r'<pre class="email-text">(.*?)</pre>', text, re.S)
    assert html.unescape(shown) == part(received, "plain")
    assert f"<td>{send.rules_version}</td>" in text and f"<td>{send.voice_version}</td>" in text
    # The shopper's address, masked in the facts and in the To header, and nowhere whole.
    assert "<td>To</td><td>s•••@example.com</td>" in text
    assert "shopper@example.com" not in text
    assert html.escape(str(received["Message-ID"])) in text
    frame = f'<iframe class="email-html" sandbox src="/shops/{shop.slug}/emails/{send.id}/html"'
    assert frame in text
    assert "links are disarmed" in text

    framed = client.get(f"/shops/{shop.slug}/emails/{send.id}/html")
    assert framed.status_code == 200
    assert framed.headers["content-security-policy"] == CSP
    assert framed.headers["x-frame-options"] == "SAMEORIGIN"
    assert framed.headers["content-type"] == "text/html; charset=utf-8"
    assert framed.headers["cache-control"] == "no-store"
    original = part(received, "html")
    links = re.findall(r'href="([^"]+)"', original)
    assert any("/u/" in link for link in links)  # the unsubscribe link, at least
    # Every link disarmed, its address kept readable; the rest as the shopper saw it.
    assert "href" not in framed.text
    for link in links:
        assert f'title="{link}"' in framed.text
    assert visible_text(framed.text) == visible_text(original)
    # Reading it counted no click and stopped no address.
    assert counted(engine) == before

    cart = client.get(f"/shops/{shop.slug}/carts/{send.cart_id}")
    assert f'href="/shops/{shop.slug}/emails/{send.id}"' in cart.text


def test_a_product_called_script_is_text_on_the_page_and_in_the_frame(
    client: TestClient, engine: Engine, make_shop: ShopFactory, run: Pass
) -> None:
    event = storefront_event(cart_id="c1", occurred_at=T0)
    event["items"][0]["title"] = SCRIPT  # type: ignore[index]
    shop, received = sent_over_smtp(client, make_shop, run, event)
    assert SCRIPT in part(received, "plain")  # the text part says it as it is
    [send] = sends(engine)
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    page = client.get(f"/shops/{shop.slug}/emails/{send.id}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert html.escape(SCRIPT, quote=False) in page.text
    framed = client.get(f"/shops/{shop.slug}/emails/{send.id}/html")
    assert "<script" not in framed.text
    assert html.escape(SCRIPT, quote=False) in framed.text


def test_sign_in_comes_first(client: TestClient, engine: Engine, sender_shop: ShopRecord) -> None:
    post(client, sender_shop, cart_id="c1")
    for path in ("1", "1/html"):
        answer = client.get(f"/shops/{sender_shop.slug}/emails/{path}", follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"] == (
            f"/signin?next=/shops/{sender_shop.slug}/emails/{path}"
        )


def test_another_shops_email_or_no_email_at_all_is_not_found(
    client: TestClient, engine: Engine, make_shop: ShopFactory, run: Pass
) -> None:
    theirs = make_shop(sender=SENDER, postal_address=POSTAL_ADDRESS)
    ours = make_shop(sender=SENDER, postal_address=POSTAL_ADDRESS)
    post(client, theirs, cart_id="c1")
    assert run(T0 + 2 * H)["sent"] == 1
    [send] = sends(engine)
    user(engine, "owner", shops=[ours.slug])
    sign_in(client, "owner")
    for path in (
        f"/shops/{ours.slug}/emails/{send.id}",  # their send, asked of our shop
        f"/shops/{ours.slug}/emails/{send.id}/html",
        f"/shops/{theirs.slug}/emails/{send.id}",  # their shop, not ours to see
        f"/shops/{theirs.slug}/emails/{send.id}/html",
        f"/shops/{ours.slug}/emails/{send.id + 1000}",
        f"/shops/{ours.slug}/emails/abc",
        f"/shops/{ours.slug}/emails/-1",
        f"/shops/{ours.slug}/emails/{'9' * 40}",
        f"/shops/{ours.slug}/emails/abc/html",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "There is nothing here, or it is not yours to see." in answer.text
        assert "Subject" not in answer.text


def test_a_viewer_may_read_it(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    post(client, sender_shop, cart_id="c1")
    run(T0 + 2 * H)
    [send] = sends(engine)
    user(engine, "viewer", role=Role.VIEWER, shops=[sender_shop.slug])
    sign_in(client, "viewer")
    page = client.get(f"/shops/{sender_shop.slug}/emails/{send.id}")
    assert page.status_code == 200 and "Blue enamel mug" in page.text
    assert client.get(f"/shops/{sender_shop.slug}/emails/{send.id}/html").status_code == 200


@pytest.mark.parametrize("case", ["queued", "before_copies", "erased"])
def test_a_send_with_no_copy_says_why(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass, case: str
) -> None:
    post(client, sender_shop, cart_id="c1")
    if case == "queued":
        with writing(engine) as conn:  # the owner paused sending: the reminder waits
            conn.execute(update(Shop).values(paused_at=T0, paused_by="owner"))
        assert run(T0 + 2 * H)["held"] == 1
    else:
        assert run(T0 + 2 * H)["sent"] == 1
        if case == "before_copies":
            with writing(engine) as conn:
                conn.execute(delete(SendMessage))
        else:  # the erasure takes the copy with it
            files = PrivacyFiles(run.outbox, run.outbox / "exports", run.outbox)
            with writing(engine) as conn:
                shopper = Shopper("shopper@example.com")
                erase(conn, sender_shop, shopper, T0 + 3 * H, files, actor="owner:cli")
    [send] = sends(engine)
    user(engine, "owner", shops=[sender_shop.slug])
    sign_in(client, "owner")
    page = client.get(f"/shops/{sender_shop.slug}/emails/{send.id}")
    assert page.status_code == 200
    expected = {
        "queued": "This reminder has not been sent yet (queued",
        "before_copies": "This reminder was sent before cartnudge kept a copy of each email",
        "erased": "the shopper's personal data has since been erased",
    }[case]
    assert expected in page.text
    assert "<iframe" not in page.text
    assert client.get(f"/shops/{sender_shop.slug}/emails/{send.id}/html").status_code == 404


def test_whatever_html_a_copy_holds_nothing_in_it_navigates() -> None:
    """The composer writes the HTML, but the page does not rely on it: a copy with every
    kind of live link, script and refresh is shown with none of them."""
    hostile = (
        "<!DOCTYPE html><html><head>"
        '<meta http-equiv="refresh" content="0;url=https://evil.example/">'
        '<base href="https://evil.example/"><style>p > b { color: red }</style></head>'
        '<body onload="steal()"><p title="kept">A &amp; B &lt;i&gt;</p>'
        '<a href="https://carts.example/u/TOKEN?a=1&amp;b=2" onclick="x()">Unsubscribe</a>'
        '<a href="javascript:alert(1)">js</a><area href="https://carts.example/c/T">'
        '<form action="https://carts.example/u/TOKEN"><button formaction="/x">Go</button></form>'
        '<img src="https://img.example/pixel.gif" ping="https://t.example/">'
        "<script>alert(1)</script><!-- a comment --></body></html>"
    )
    message = EmailMessage()
    message["To"] = "Alex <alex@example.com>"
    message["Subject"] = "Hello"
    message.set_content("plain text")
    message.add_alternative(hostile, subtype="html")
    view = read_email(message.as_bytes())
    assert dict(view.headers)["To"] == "Alex <a•••@example.com>"
    assert view.text == "plain text\n"
    shown = view.html
    assert shown is not None
    for gone in ("href", "action", "ping", "onload", "onclick", "<script", "<base", "refresh"):
        assert gone not in shown, gone
    assert 'title="https://carts.example/u/TOKEN?a=1&amp;b=2">Unsubscribe</a>' in shown
    assert 'title="javascript:alert(1)">js</a>' in shown
    assert "<style>p > b { color: red }</style>" in shown  # a style sheet stays as written
    assert '<p title="kept">A &amp; B &lt;i&gt;</p>' in shown
    assert "a comment" not in shown
