"""The links in a reminder, followed through the real app: a click lands on the cart with
UTM tags; unsubscribe is a page on GET and a one-click POST; a token works only for its
own email, purpose and shop."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from cartnudge.db.models import AuditEntry, Click, ConsentEntry
from cartnudge.db.session import reading
from cartnudge.shops.repository import ShopRecord
from cartnudge.tracking.policy import landing_url
from cartnudge.tracking.tokens import Purpose, make_token, send_of
from tests.conftest import KEY, T0
from tests.delivery.helpers import H, Pass, post, sends

ledger_t = ConsentEntry
# The ledger's unsubscribes (checkout opt-ins are in the ledger from the start).
unsubscribes = select(ledger_t).where(ledger_t.c.kind == "unsubscribe").subquery()
clicks_t = Click
audit_t = AuditEntry


def count(engine: Engine, table: Any) -> int:
    with reading(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def links_of(run: Pass) -> dict[str, str]:
    [message] = run.emails()
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    found = dict.fromkeys(re.findall(r"http://testserver/[cu]/[A-Za-z0-9_-]+", text))
    click = next(u for u in found if "/c/" in u)
    unsubscribe = next(u for u in found if "/u/" in u)
    header = message["List-Unsubscribe"]
    assert f"<{unsubscribe}>" in header and "<mailto:" in header
    return {"click": click.removeprefix("http://testserver"), "u": unsubscribe[17:]}


@pytest.fixture
def sent(client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass) -> Any:
    post(client, sender_shop, cart_id="c1")
    run(T0 + 2 * H)
    return links_of(run)


def test_a_click_is_recorded_and_lands_on_the_cart_with_utm_tags(
    client: TestClient, engine: Engine, sent: dict[str, str]
) -> None:
    response = client.get(sent["click"], follow_redirects=False)
    assert response.status_code == 302
    target = urlsplit(response.headers["location"])
    assert (target.netloc, target.path) == ("shop.example", "/cart/c1")
    assert parse_qs(target.query) == {
        "utm_source": ["cartnudge"],
        "utm_medium": ["email"],
        "utm_campaign": ["cart_recovery"],
        "utm_content": ["step1"],
    }
    assert count(engine, clicks_t) == 1


def test_get_shows_a_page_and_changes_nothing_post_unsubscribes_once(
    client: TestClient, engine: Engine, sent: dict[str, str], sender_shop: ShopRecord, run: Pass
) -> None:
    page = client.get(sent["u"])
    assert page.status_code == 200
    assert 'method="post"' in page.text and "s•••@example.com" in page.text
    assert "shopper@example.com" not in page.text  # the page does not print the address
    with reading(engine) as conn:
        before = conn.execute(select(ledger_t)).all()
    # Only the opt-in captured at checkout so far: looking at the page changed nothing.
    assert [(r.kind, r.source) for r in before] == [("opt_in", "storefront:accepts_marketing")]

    # The RFC 8058 request: a form body, no cookies, no login; 200 and no redirect.
    one_click = client.post(
        sent["u"],
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert one_click.status_code == 200
    assert "unsubscribed" in one_click.text
    assert client.post(sent["u"], content="List-Unsubscribe=One-Click").status_code == 200
    with reading(engine) as conn:
        rows = conn.execute(select(ledger_t).where(ledger_t.c.id > before[-1].id)).all()
    assert [(r.kind, r.source, r.email_key) for r in rows] == [
        ("unsubscribe", "one_click", "shopper@example.com")
    ]
    assert "You are unsubscribed" in client.get(sent["u"]).text
    # The cart's second reminder is cancelled, and the audit row names no address.
    run(T0 + 24 * H)
    assert [(s.step, s.status) for s in sends(engine)] == [(1, "sent"), (2, "skipped")]
    with reading(engine) as conn:
        audits = conn.execute(
            select(audit_t).where(audit_t.c.action == "consent:unsubscribe")
        ).all()
    assert len(audits) == 1 and "example.com" not in str(audits[0]._mapping)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # one character off
        lambda t: t[:20],  # cut short
        lambda t: "not-a-token",
        lambda t: "A" * 300,
        lambda t: "_" * 32,  # well formed, naming send id 2**64 - 1: no column holds it
    ],
)
def test_a_bad_token_is_refused_and_records_nothing(
    client: TestClient, engine: Engine, sent: dict[str, str], mangle: Any
) -> None:
    for path in (sent["click"], sent["u"]):
        prefix, token = path.rsplit("/", 1)
        bad = f"{prefix}/{mangle(token)}"
        assert client.get(bad, follow_redirects=False).status_code == 404
    bad_unsubscribe = f"/u/{mangle(sent['u'].rsplit('/', 1)[1])}"
    assert client.post(bad_unsubscribe, content="List-Unsubscribe=One-Click").status_code == 404
    assert (count(engine, clicks_t), count(engine, unsubscribes)) == (0, 0)


def test_a_token_is_bound_to_its_purpose_send_shop_and_address(
    client: TestClient, engine: Engine, sent: dict[str, str], sender_shop: ShopRecord
) -> None:
    click_token = sent["click"].rsplit("/", 1)[1]
    one_click = {"content": "List-Unsubscribe=One-Click"}
    # A click token is not an unsubscribe token for the same email.
    assert client.post(f"/u/{click_token}", **one_click).status_code == 404
    named = send_of(click_token)
    assert named is not None
    send_id = named[0]
    key = KEY.encode()
    genuine = make_token(key, Purpose.UNSUBSCRIBE, send_id, sender_shop.id, "shopper@example.com")
    assert f"/u/{genuine}" == sent["u"]
    # The same send signed for another shop, another address, or by another installation.
    forged = [
        make_token(key, Purpose.UNSUBSCRIBE, send_id, sender_shop.id + 1, "shopper@example.com"),
        make_token(key, Purpose.UNSUBSCRIBE, send_id, sender_shop.id, "other@example.com"),
        make_token(
            b"elsewhere", Purpose.UNSUBSCRIBE, send_id, sender_shop.id, "shopper@example.com"
        ),
    ]
    for token in forged:
        assert client.post(f"/u/{token}", **one_click).status_code == 404
    assert count(engine, unsubscribes) == 0


def test_landing_urls_keep_the_shops_query_and_refuse_other_schemes() -> None:
    url = landing_url("https://shop.example/cart?id=7&utm_source=old", 2)
    assert url is not None
    assert parse_qs(urlsplit(url).query) == {
        "id": ["7"],
        "utm_source": ["cartnudge"],
        "utm_medium": ["email"],
        "utm_campaign": ["cart_recovery"],
        "utm_content": ["step2"],
    }
    for bad in ("javascript:alert(1)", "ftp://x.example/", "//no-scheme.example", "", None):
        assert landing_url(bad, 1) is None
