"""Connecting a store from the browser: add a shop (its secrets in full once), see what it
lacks before it can send, and send a test event through its real lane."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from cartnudge.db.models import Cart, Role, Shop
from cartnudge.db.session import reading
from cartnudge.shops.repository import ShopRecord, ShopRepository
from tests.dashboard.helpers import csrf_of, sign_in, user

GOOD = {
    "slug": "tea-house",
    "name": "Tea <House>",
    "timezone": "Europe/Paris",
    "currency": "eur",
    "stripe_secret": "whsec_abc123",
}


def shops(engine: Engine) -> int:
    with reading(engine) as conn:
        return int(conn.scalar(select(func.count()).select_from(Shop)) or 0)


def test_an_owner_adds_a_shop_sees_its_secrets_once_and_runs_it(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    csrf = csrf_of(client, "/shops/new")
    added = client.post("/shops/new", data={**GOOD, "csrf": csrf})
    assert added.status_code == 200
    with reading(engine) as conn:
        record = ShopRepository(conn).by_slug("tea-house")
    assert record is not None
    secret = record.storefront_secrets[0]
    assert secret in added.text and "whsec_abc123" in added.text
    assert "Tea &lt;House&gt;" in added.text
    assert "/webhooks/storefront/tea-house" in added.text
    again = client.get("/shops/tea-house/connect")  # theirs now; secrets shortened
    assert again.status_code == 200
    assert secret not in again.text and secret[:10] in again.text
    checklist = re.findall(r'<li class="(done|missing)">', again.text)
    assert checklist == ["missing", "missing", "missing", "missing"]


def test_a_bad_setting_is_shown_beside_its_field_and_adds_nothing(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    csrf = csrf_of(client, "/shops/new")
    before = shops(engine)
    for change, field_name, words in (
        ({"timezone": "Mars/Olympus"}, "timezone", "not an IANA time zone"),
        ({"slug": "Bad Slug"}, "slug", "lower-case"),
        ({"slug": shop.slug}, "slug", "is taken"),
        ({"currency": "XYZ"}, "currency", "XYZ"),
        ({"stripe_secret": "sk_live_oops"}, "stripe_secret", "signing secret"),
        ({"sender": "no address here"}, "sender", ""),
    ):
        answer = client.post("/shops/new", data={**GOOD, **change, "csrf": csrf})
        assert answer.status_code == 400, change
        error = re.search(rf'id="{field_name}-error" role="alert">([^<]*)<', answer.text)
        assert error, (change, answer.text[-1500:])
        assert words in error.group(1), (change, error.group(1))
        assert "whsec_abc123" not in answer.text  # a secret is never echoed back
    assert shops(engine) == before


def test_a_viewer_cannot_add_and_a_form_needs_its_token(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    user(engine, "viewer", role=Role.VIEWER, shops=[shop.slug])
    sign_in(client, "viewer")
    assert client.get("/shops/new").status_code == 403
    csrf = csrf_of(client, f"/shops/{shop.slug}/carts")
    assert client.post("/shops/new", data={**GOOD, "csrf": csrf}).status_code == 403
    client.cookies.clear()
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    assert client.post("/shops/new", data=GOOD).status_code == 403
    assert client.post(f"/shops/{shop.slug}/test-event").status_code == 403
    assert shops(engine) == 1


def test_a_test_event_goes_through_the_real_lane_and_shows_its_cart(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    csrf = csrf_of(client, f"/shops/{shop.slug}/connect")
    answer = client.post(f"/shops/{shop.slug}/test-event", data={"csrf": csrf})
    assert answer.status_code == 200
    found = re.search(
        r"Arrived: answered 200, applied as <a href=\"[^\"]+/carts/(\d+)\"", answer.text
    )
    assert found, answer.text
    with reading(engine) as conn:
        cart = conn.execute(select(Cart).where(Cart.c.id == int(found.group(1)))).one()
    assert (cart.shop_id, cart.email) == (shop.id, None)  # never reminded: no address
    assert '<li class="done">✓ a first event received' in answer.text
