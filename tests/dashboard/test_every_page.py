"""Every page of the dashboard, walked as an owner: each answers, and whatever a shopper or
an owner typed (a product title, a shopper's name, the shop's own name) is shown as text,
never as markup, wherever it appears."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.db.models import Cart, Send
from cartnudge.db.session import reading
from cartnudge.export.links import SheetLink, make_link_token
from cartnudge.intake.examples import storefront_event
from tests.conftest import KEY, T0, ShopFactory
from tests.dashboard.helpers import csrf_of, sign_in, user
from tests.delivery.helpers import H, Pass
from tests.intake.helpers import post_storefront

SCRIPT = "<script>alert(1)</script>"
NAME = "Tea <img src=x onerror=alert(2)> House"


def test_every_page_shows_what_was_typed_as_text(
    client: TestClient, engine: Engine, make_shop: ShopFactory, run: Pass
) -> None:
    from tests.conftest import POSTAL_ADDRESS, SENDER

    shop = make_shop(name=NAME, sender=SENDER, postal_address=POSTAL_ADDRESS)
    event = storefront_event(cart_id="c1", occurred_at=T0)
    event["first_name"] = SCRIPT
    event["items"][0]["title"] = SCRIPT  # type: ignore[index]
    assert post_storefront(client, shop, event).status_code == 200
    assert run(T0 + 2 * H)["sent"] == 1
    with reading(engine) as conn:
        cart_id = conn.scalar(select(Cart.c.id))
        send_id = conn.scalar(select(Send.c.id))
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    token = make_link_token(
        KEY.encode(),
        SheetLink(shop.id, int(cart_id or 0), "suppress", datetime(2100, 1, 1, tzinfo=UTC)),
    )
    base = f"/shops/{shop.slug}"
    pages = [
        "/",
        f"{base}/today",
        f"{base}/lift",
        f"{base}/carts",
        f"{base}/carts?email=shopper%40example.com",
        f"{base}/carts/{cart_id}",
        f"{base}/carts/{cart_id}?reveal=address",
        f"{base}/emails/{send_id}",
        f"{base}/connect",
        f"{base}/rules",
        f"{base}/rules/history",
        f"{base}/voice",
        f"{base}/voice/history",
        f"/sheet/{token}",
    ]
    answers = {page: client.get(page) for page in pages}
    csrf = csrf_of(client, f"{base}/carts")
    answers["confirm"] = client.post(
        f"{base}/carts/act", data={"action": "suppress", "cart": str(cart_id), "csrf": csrf}
    )
    voice = answers[f"{base}/voice"].text
    fields = dict(re.findall(r'name="(\w+\.\w+)" value="([^"]*)"', voice))
    fields.update(
        (name, html.unescape(body))
        for name, body in re.findall(r'name="(\w+\.\w+)"[^>]*>([^<]*)</textarea>', voice)
    )
    answers["preview"] = client.post(
        f"{base}/voice",
        data={
            **{k: html.unescape(v) for k, v in fields.items()},
            "csrf": csrf,
            "action": "preview",
            "cart": str(cart_id),
        },
    )

    for page, answer in answers.items():
        assert answer.status_code == 200, page
        text = answer.text
        assert "<script>alert" not in text, page
        assert "<img src=x" not in text, page
        assert html.escape(NAME, quote=False) in text or html.escape(NAME) in text, page
    for page in (f"{base}/carts", f"{base}/carts/{cart_id}", f"{base}/emails/{send_id}"):
        assert html.escape(SCRIPT, quote=False) in answers[page].text, page
    export = client.get(f"{base}/export?since=2026-03-01&format=csv")
    assert export.status_code == 200 and SCRIPT in export.text  # a sheet holds plain text
