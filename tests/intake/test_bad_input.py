"""Bad input gets a clear error and changes nothing, on every lane."""

from __future__ import annotations

import csv
import io
import json
import secrets
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine
from typer.testing import CliRunner

from cartnudge.app import create_app
from cartnudge.carts.queries import show_cart
from cartnudge.cli import app
from cartnudge.clock import FrozenClock
from cartnudge.config import MAX_BODY_BYTES, Settings
from cartnudge.db.engine import make_engine
from cartnudge.db.migrate import upgrade
from cartnudge.db.session import reading, writing
from cartnudge.intake.csv_import import import_csv
from cartnudge.intake.examples import shopify_checkout, storefront_event, stripe_expired_event
from cartnudge.intake.signatures import sign_shopify, sign_standard, sign_stripe
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.service import add_shop, set_shop
from cartnudge.testing.postgres import PostgresServer
from tests.conftest import T0
from tests.intake.helpers import (
    carts,
    post_shopify,
    post_storefront,
    post_stripe,
    stored_counts,
)

LANES = ["shopify", "stripe", "storefront"]
SHOPIFY_CHECKOUT = orjson.dumps(shopify_checkout(token="t1", cart_token="ct1", updated_at=T0))
OTHER_STANDARD_SECRET = "whsec_" + "c29tZS1vdGhlci1zZWNyZXQtMTIzNDU2"


def valid_body(lane: str) -> bytes:
    if lane == "stripe":
        return orjson.dumps({"id": "evt_1", "type": "checkout.session.expired", "created": 1})
    return orjson.dumps(storefront_event(cart_id="c1", occurred_at=T0))


def signed(
    lane: str, shop: ShopRecord, body: bytes, *, age_s: int = 0, wrong: bool = False
) -> tuple[str, dict[str, str]]:
    ts = int(time.time()) - age_s
    if lane == "shopify":
        secret = "not-the-secret" if wrong else str(shop.shopify_secret)
        return "/webhooks/shopify", {
            "x-shopify-topic": "checkouts/create",
            "x-shopify-shop-domain": str(shop.shopify_domain),
            "x-shopify-webhook-id": "wh-1",
            "x-shopify-hmac-sha256": sign_shopify(body, secret),
        }
    if lane == "stripe":
        secret = "whsec_wrong" if wrong else str(shop.stripe_secret)
        path = f"/webhooks/stripe/{shop.slug}"
        return path, {"stripe-signature": sign_stripe(body, secret, ts)}
    secret = OTHER_STANDARD_SECRET if wrong else shop.storefront_secrets[0]
    return f"/webhooks/storefront/{shop.slug}", sign_standard(body, "msg_1", secret, ts)


SIGNATURE_HEADERS = {
    "shopify": "x-shopify-hmac-sha256",
    "stripe": "stripe-signature",
    "storefront": "webhook-signature",
}


def rejected(lane: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "cartnudge_webhooks_rejected_total", {"lane": lane, "reason": reason}
    )
    return value or 0.0


# Shopify's HMAC carries no timestamp, so only the other lanes can be stale.
SIGNATURE_CASES = [(lane, case) for lane in LANES for case in ("missing", "wrong")] + [
    ("stripe", "stale"),
    ("storefront", "stale"),
]


@pytest.mark.parametrize(("lane", "case"), SIGNATURE_CASES)
def test_bad_signatures_are_401_store_nothing_and_count(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str, case: str
) -> None:
    body = valid_body(lane)
    path, headers = signed(
        lane, shop, body, wrong=case == "wrong", age_s=600 if case == "stale" else 0
    )
    if case == "missing":
        del headers[SIGNATURE_HEADERS[lane]]
    before_count = rejected(lane, "bad_signature")
    before = stored_counts(engine)

    response = client.post(path, content=body, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]
    assert stored_counts(engine) == before
    assert rejected(lane, "bad_signature") == before_count + 1


@pytest.mark.parametrize("lane", LANES)
def test_oversized_body_is_413(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str
) -> None:
    body = b'{"pad":"' + b"x" * MAX_BODY_BYTES + b'"}'
    path, headers = signed(lane, shop, body)

    response = client.post(path, content=body, headers=headers)

    assert response.status_code == 413
    assert stored_counts(engine)["inbox_events"] == 0


def test_oversized_chunked_body_without_length_is_413(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536

    response = client.post(f"/webhooks/storefront/{shop.slug}", content=chunks())

    assert response.status_code == 413


@pytest.mark.parametrize("lane", LANES)
def test_signed_malformed_json_is_400_with_a_clear_message(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str
) -> None:
    body = b'{"event_id": "e1", "type": '
    path, headers = signed(lane, shop, body)

    response = client.post(path, content=body, headers=headers)

    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed JSON")
    assert stored_counts(engine)["inbox_events"] == 0


@pytest.mark.parametrize("lane", LANES)
def test_unknown_shop_is_404(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str
) -> None:
    body = valid_body(lane)
    path, headers = signed(lane, shop, body)
    path = path.replace(shop.slug, "no-such-shop")
    headers["x-shopify-shop-domain"] = "nobody.myshopify.com"

    response = client.post(path, content=body, headers=headers)

    assert response.status_code == 404
    assert stored_counts(engine)["inbox_events"] == 0


@pytest.mark.parametrize(
    "path",
    ["/webhooks/", "/webhooks/paypal", "/webhooks/storefront/", "/webhooks/stripe/a/b"],
)
def test_unknown_webhook_path_is_404(
    client: TestClient, engine: Engine, shop: ShopRecord, path: str
) -> None:
    body = valid_body("storefront")
    _, headers = signed("storefront", shop, body)

    response = client.post(path, content=body, headers=headers)

    assert response.status_code == 404
    assert response.json() == {"error": "no such webhook path"}
    assert stored_counts(engine)["inbox_events"] == 0


@pytest.mark.parametrize("lane", LANES)
def test_webhooks_only_take_post(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str
) -> None:
    path, headers = signed(lane, shop, valid_body(lane))

    response = client.get(path, headers=headers)

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_database_down_is_503_and_ingest_recovers(tmp_path: Path) -> None:
    """A real PostgreSQL stopped under a running app: the sender is told to retry."""
    with PostgresServer() as server:
        engine = make_engine(server.url)
        upgrade(engine)
        with writing(engine) as conn:
            shop = add_shop(conn, slug="s", name="S", timezone="UTC", currency="USD", now=T0)
        app = create_app(Settings(home=tmp_path), engine=engine, clock=FrozenClock(T0))
        with TestClient(app) as client:

            def send(cart: str) -> int:
                body = orjson.dumps(storefront_event(cart_id=cart, occurred_at=T0))
                headers = sign_standard(
                    body, f"msg-{cart}", shop.storefront_secrets[0], int(time.time())
                )
                return client.post(
                    "/webhooks/storefront/s", content=body, headers=headers
                ).status_code

            assert send("before") == 200
            server.pause()
            assert send("during") == 503
            server.resume()
            assert send("during") == 200  # the sender's retry lands
            assert send("after") == 200
        assert stored_counts(engine)["carts"] == 3
        engine.dispose()


# -- found by the fuzz suite (tests/fuzz): each was a 500, or a 503 forever on PostgreSQL --
@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("occurred_at", "0001-01-01T00:00:00+01:00", "out of range"),  # before year 1 in UTC
        ("occurred_at", "9999-12-31T23:00:00Z", "out of range"),  # a timer past it overflows
    ],
)
def test_an_impossible_time_is_a_dead_letter_with_the_reason(
    client: TestClient, engine: Engine, shop: ShopRecord, field: str, value: str, reason: str
) -> None:
    event = storefront_event(cart_id="c1", occurred_at=T0)
    event[field] = value
    response = post_storefront(client, shop, event)
    assert response.status_code == 422, response.text
    assert response.json()["status"] == "dead"
    assert reason in response.json()["reason"]
    assert stored_counts(engine)["carts"] == 0


@pytest.mark.parametrize("lane", ["shopify", "storefront"])
def test_a_delivery_id_the_inbox_cannot_keep_is_400_and_stores_nothing(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str
) -> None:
    before = stored_counts(engine)
    body = valid_body(lane)
    path, headers = signed(lane, shop, body)
    if lane == "shopify":
        headers["x-shopify-webhook-id"] = "w" * 256
    else:  # the Standard Webhooks signature covers the id: sign again with the long one
        headers = sign_standard(body, "m" * 256, shop.storefront_secrets[0], int(time.time()))
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 400
    assert "delivery id" in response.json()["error"]
    assert stored_counts(engine) == before


@pytest.mark.parametrize("total", ["1e999999", "1e999999999"])
def test_an_impossible_amount_is_a_dead_letter_with_the_reason(
    client: TestClient, engine: Engine, shop: ShopRecord, total: str
) -> None:
    # "1e999999" took minutes to turn into an int; "1e999999999" overflowed: both a 500.
    checkout = shopify_checkout(token="t1", cart_token="ct1", updated_at=T0) | {
        "total_price": total
    }
    body = orjson.dumps(checkout)
    path, headers = signed("shopify", shop, body)
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "dead"
    assert "too large" in response.json()["reason"]


def test_a_shop_slug_with_a_nul_is_404(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    response = client.post("/webhooks/storefront/%00", content=b"{}", headers={})
    assert response.status_code == 404


def test_a_shopify_delivery_time_out_of_range_is_ignored_not_a_500(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    path, headers = signed("shopify", shop, SHOPIFY_CHECKOUT)
    headers["x-shopify-triggered-at"] = "0001-01-01T00:00:00+01:00"
    assert client.post(path, content=SHOPIFY_CHECKOUT, headers=headers).status_code == 200


@pytest.mark.parametrize("created", [2**63, 67768036191676800, -62135596801])
def test_a_stripe_time_out_of_range_is_a_dead_letter(
    client: TestClient, engine: Engine, shop: ShopRecord, created: int
) -> None:
    body = orjson.dumps(stripe_expired_event(session_id="cs_1", created=T0) | {"created": created})
    path, headers = signed("stripe", shop, body)
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "dead"
    assert "created" in response.json()["reason"]


# -- finding 4: every lane holds bad data to the same rules (intake/checks.py) -----------
VET_LANES = ["storefront", "shopify", "stripe", "csv"]
CSV_HEADER = ["cart_id", "occurred_at", "email", "first_name", "locale", "currency", "total"]
CSV_HEADER += ["items", "return_url"]


def _stripe_lines(quantities: list[int], unit: int) -> dict[str, object]:
    return {
        "data": [
            {
                "description": f"Mug {n}",
                "quantity": quantity,
                "price": {"id": f"price_{n}", "unit_amount": unit, "product": {"name": "Mug"}},
            }
            for n, quantity in enumerate(quantities)
        ]
    }


def _base(lane: str) -> dict[str, Any]:
    """One valid cart per lane: an abandoned checkout of two lines."""
    if lane == "storefront":
        return dict(storefront_event(cart_id="c1", occurred_at=T0))
    if lane == "shopify":
        return dict(shopify_checkout(token="t1", cart_token="ct1", updated_at=T0))
    if lane == "stripe":
        event: dict[str, Any] = dict(stripe_expired_event(session_id="cs_1", created=T0))
        event["data"]["object"]["line_items"] = _stripe_lines([1, 1], 2900)
        return event
    items = [{"title": "Mug", "quantity": 2, "unit_price": "12.00"}]
    return {
        "cart_id": "c1",
        "occurred_at": T0.isoformat(),
        "email": "shopper@example.com",
        "first_name": "Alex",
        "locale": "en-GB",
        "currency": "GBP",
        "total": "24.00",
        "items": items,
        "return_url": "https://shop.example/cart/c1",
    }


def _set(lane: str, payload: dict[str, Any], field: str, value: Any) -> None:
    """Put a bad value where each lane carries ``field``."""
    session = payload["data"]["object"] if lane == "stripe" else {}
    if field == "first_name":
        if lane == "shopify":
            payload["customer"]["first_name"] = value
        elif lane == "stripe":
            session["customer_details"]["name"] = value
        else:
            payload["first_name"] = value
    elif field == "locale":
        target = {"shopify": payload, "stripe": session}.get(lane, payload)
        target["customer_locale" if lane == "shopify" else "locale"] = value
    elif field == "email":
        if lane == "shopify":
            payload["email"] = payload["customer"]["email"] = value
        elif lane == "stripe":
            session["customer_details"]["email"] = value
        else:
            payload["email"] = value
    elif field == "return_url":
        if lane == "shopify":
            payload["abandoned_checkout_url"] = value
        elif lane == "stripe":
            session["after_expiration"]["recovery"]["url"] = value
        else:
            payload["return_url"] = value
    else:
        raise AssertionError(field)


def _lines(lane: str, payload: dict[str, Any], quantities: list[int], unit: str) -> None:
    """Replace the lines with ``quantities`` of one price (major units), total unchanged."""
    if lane == "stripe":
        session = payload["data"]["object"]
        session["line_items"] = _stripe_lines(quantities, int(Decimal(unit) * 100))
        return
    price_key = "price" if lane == "shopify" else "unit_price"
    payload["items" if lane != "shopify" else "line_items"] = [
        {"title": f"Mug {n}", "quantity": q, price_key: unit} for n, q in enumerate(quantities)
    ]


def _total(lane: str, payload: dict[str, Any], total: str) -> None:
    if lane == "stripe":
        payload["data"]["object"]["amount_total"] = int(Decimal(total) * 100)
    else:
        payload["total_price" if lane == "shopify" else "total"] = total


def _send(client: TestClient, engine: Engine, shop: ShopRecord, lane: str, payload: Any) -> str:
    """Deliver on ``lane``; "stored", "dead" (a kept dead letter, no cart) or "refused"
    (the storefront's 422, no cart)."""
    if lane == "csv":
        row = [
            json.dumps(payload[k]) if k == "items" else str(payload[k] or "") for k in CSV_HEADER
        ]
        out = io.StringIO()
        csv.writer(out).writerows([CSV_HEADER, row])
        summary = import_csv(engine, shop, out.getvalue().encode(), T0)
        return "dead" if summary["dead_letters"] else "stored"
    if lane == "storefront":
        response = post_storefront(client, shop, payload)
    elif lane == "shopify":
        webhook_id = f"wh-{secrets.token_hex(6)}"
        response = post_shopify(client, shop, "checkouts/update", payload, webhook_id)
    else:
        response = post_stripe(client, shop, payload)
    if response.status_code == 422:
        return "refused"
    assert response.status_code == 200, response.text
    return str(response.json()["status"]).replace("applied", "stored")


def _refusal(lane: str) -> str:
    return "refused" if lane == "storefront" else "dead"


def _the_cart(engine: Engine, shop: ShopRecord) -> Any:
    [cart] = carts(engine, shop.id)
    return cart


# A CSV file with a NUL is refused whole as binary, before any row is read (test_csv_import).
CONTROL_CASES = [
    (lane, bad)
    for lane in VET_LANES
    for bad in ("Al\x00ex", "Al\x1bex", "Al\x85ex", "Alex\r\nBcc: x@y.example")
    if not (lane == "csv" and "\x00" in bad)
]


@pytest.mark.parametrize(("lane", "bad"), CONTROL_CASES)
def test_a_control_character_in_text_is_refused_and_stores_no_cart(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str, bad: str
) -> None:
    payload = _base(lane)
    _set(lane, payload, "first_name", bad)

    assert _send(client, engine, shop, lane, payload) == _refusal(lane)
    assert carts(engine, shop.id) == []


@pytest.mark.parametrize("lane", VET_LANES)
def test_a_control_character_in_an_item_title_is_refused_but_a_line_break_is_text(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str
) -> None:
    payload = _base(lane)
    _lines(lane, payload, [1], "24.00")
    title_key = "description" if lane == "stripe" else "title"
    lines = (
        payload["data"]["object"]["line_items"]["data"]
        if lane == "stripe"
        else payload["line_items" if lane == "shopify" else "items"]
    )
    lines[0][title_key] = "Blue\nmug"
    assert _send(client, engine, shop, lane, payload) == "stored"
    lines[0][title_key] = "Blue\x00mug"
    if lane == "shopify":
        payload["token"] = payload["cart_token"] = "t2"
    elif lane == "stripe":
        payload["id"], payload["data"]["object"]["id"] = "evt_2", "cs_2"
    else:
        payload["cart_id"] = "c2"
        payload["event_id"] = "e2"
    expected = "dead" if lane == "csv" else _refusal(lane)
    if lane == "csv":  # the whole file is binary with a NUL: use another control character
        lines[0][title_key] = "Blue\x07mug"
    assert _send(client, engine, shop, lane, payload) == expected
    assert len(carts(engine, shop.id)) == 1


@pytest.mark.parametrize("lane", VET_LANES)
def test_a_malformed_locale_is_refused_on_the_storefront_and_ignored_elsewhere(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str
) -> None:
    payload = _base(lane)
    _set(lane, payload, "locale", "<x>")

    outcome = _send(client, engine, shop, lane, payload)

    if lane == "storefront":
        assert outcome == "refused"
        assert carts(engine, shop.id) == []
    else:
        assert outcome == "stored"
        assert _the_cart(engine, shop).locale is None  # the shop's locale is used


@pytest.mark.parametrize("lane", VET_LANES)
@pytest.mark.parametrize("address", ["a@example.com, evil@x.com", "Ann <ann@example.com>", "ann"])
def test_an_address_that_is_not_one_mailbox_is_kept_as_no_usable_address(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str, address: str
) -> None:
    payload = _base(lane)
    _set(lane, payload, "email", address)

    assert _send(client, engine, shop, lane, payload) == "stored"

    cart = _the_cart(engine, shop)
    assert (cart.email, cart.email_key, cart.next_wake_at is None) == (None, None, False)
    assert cart.address_problem.startswith("not one email address")
    assert "example.com" not in cart.address_problem  # the reason never repeats it
    with reading(engine) as conn:
        shown = show_cart(conn, cart.id)
    assert shown is not None and shown["address_problem"] == cart.address_problem


@pytest.mark.parametrize("lane", VET_LANES)
def test_a_later_good_address_clears_the_problem(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str
) -> None:
    payload = _base(lane)
    _set(lane, payload, "email", "a@example.com, evil@x.com")
    _send(client, engine, shop, lane, payload)
    later = _base(lane)
    _set(lane, later, "email", "Ann@Example.COM")
    if lane == "shopify":
        later["updated_at"] = (T0 + timedelta(minutes=1)).isoformat()
        response = post_shopify(client, shop, "checkouts/update", later, "wh-2")
        assert response.status_code == 200
    elif lane == "stripe":
        later["created"] += 60
        later["id"] = "evt_later"
        assert _send(client, engine, shop, lane, later) == "stored"
    else:
        later["occurred_at"] = (T0 + timedelta(minutes=1)).isoformat()
        assert _send(client, engine, shop, lane, later) == "stored"

    cart = _the_cart(engine, shop)
    assert (cart.email, cart.email_key, cart.address_problem) == (
        "Ann@example.com",
        "ann@example.com",
        None,
    )


@pytest.mark.parametrize("lane", VET_LANES)
@pytest.mark.parametrize(
    ("url", "domains"),
    [
        ("javascript:alert(5)", None),
        ("https://user:pw@shop.example/cart", None),
        ("https://evil.example/cart", "shop.example"),
    ],
)
def test_a_return_link_off_the_shops_domains_is_refused_or_replaced_by_the_cart_url(
    client: TestClient,
    engine: Engine,
    shop: ShopRecord,
    lane: str,
    url: str,
    domains: str | None,
) -> None:
    fallback = f"https://{shop.shopify_domain}/cart"
    if domains is not None:
        fallback = "https://www.shop.example/cart"
        with writing(engine) as conn:
            shop = set_shop(conn, shop.slug, T0, domains=domains, cart_url=fallback)
    payload = _base(lane)
    _set(lane, payload, "return_url", url)

    outcome = _send(client, engine, shop, lane, payload)

    if lane == "storefront":
        assert outcome == "refused"
        assert carts(engine, shop.id) == []
    else:
        assert outcome == "stored"
        assert _the_cart(engine, shop).return_url == fallback


@pytest.mark.parametrize("lane", VET_LANES)
def test_a_return_link_on_the_shops_domains_is_kept(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str
) -> None:
    with writing(engine) as conn:
        shop = set_shop(conn, shop.slug, T0, domains="shop.example")
    url = "https://WWW.Shop.Example/cart/c1?x=1"
    payload = _base(lane)
    _set(lane, payload, "return_url", url)

    assert _send(client, engine, shop, lane, payload) == "stored"
    assert _the_cart(engine, shop).return_url == url


@pytest.mark.parametrize("lane", VET_LANES)
def test_a_line_of_quantity_0_is_refused_from_our_formats_and_dropped_from_platforms(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str
) -> None:
    payload = _base(lane)
    _lines(lane, payload, [0, 2], "12.00")
    _total(lane, payload, "24.00")

    outcome = _send(client, engine, shop, lane, payload)

    if lane in ("storefront", "csv"):
        assert outcome == _refusal(lane)
        assert carts(engine, shop.id) == []
    else:
        assert outcome == "stored"
        assert [item["quantity"] for item in _the_cart(engine, shop).items] == [2]


@pytest.mark.parametrize("lane", VET_LANES)
def test_a_total_below_the_lines_is_replaced_by_their_sum(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str
) -> None:
    payload = _base(lane)
    _lines(lane, payload, [3], "100.00")
    _total(lane, payload, "0.01")

    assert _send(client, engine, shop, lane, payload) == "stored"
    assert _the_cart(engine, shop).total_minor == 30000


@pytest.mark.parametrize("lane", VET_LANES)
def test_a_total_below_the_lines_by_the_stated_discount_is_kept(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str
) -> None:
    payload = _base(lane)
    _lines(lane, payload, [3], "100.00")
    _total(lane, payload, "250.00")
    if lane == "shopify":
        payload["total_discounts"] = "50.00"
    elif lane == "stripe":
        payload["data"]["object"]["total_details"] = {"amount_discount": 5000}
    elif lane == "storefront":
        payload["discount"] = "50.00"
    else:
        CSV_HEADER.append("discount")
        payload["discount"] = "50.00"
    try:
        assert _send(client, engine, shop, lane, payload) == "stored"
    finally:
        if lane == "csv":
            CSV_HEADER.remove("discount")
    assert _the_cart(engine, shop).total_minor == 25000


@pytest.mark.parametrize(
    ("lane", "where"),
    [
        ("shopify", "total"),
        ("shopify", "unit_price"),
        ("stripe", "total"),
        ("stripe", "unit_price"),
        ("storefront", "total"),
        ("csv", "total"),
    ],
)
def test_a_negative_amount_is_refused_and_stores_no_cart(
    client: TestClient, engine: Engine, shop: ShopRecord, lane: str, where: str
) -> None:
    payload = _base(lane)
    if where == "total":
        _total(lane, payload, "-5.00")
    else:
        _lines(lane, payload, [1], "-1.00")

    assert _send(client, engine, shop, lane, payload) == _refusal(lane)
    assert carts(engine, shop.id) == []


def test_a_refused_storefront_event_says_why(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    cases = {
        "first_name": ("Al\x00ex", "first_name: contains a control character (U+0000)"),
        "locale": ("<x>", "locale: '<x>' is not a BCP 47 tag"),
        "return_url": ("javascript:alert(5)", "return_url: is not an http(s) link"),
    }
    for field, (value, reason) in cases.items():
        event = storefront_event(cart_id="c1", occurred_at=T0)
        event[field] = value
        response = post_storefront(client, shop, event)
        assert response.status_code == 422
        assert response.json()["reason"].startswith(reason)
    event = storefront_event(cart_id="c1", occurred_at=T0)
    event["items"][0]["quantity"] = 0  # type: ignore[index]
    response = post_storefront(client, shop, event)
    assert response.status_code == 422
    assert "items.0.quantity" in response.json()["reason"]
    assert carts(engine, shop.id) == []


def _shop_cli(engine: Engine, *args: str) -> Any:
    url = engine.url.render_as_string(hide_password=False)
    env = {"CARTNUDGE_DATABASE_URL": url, "CARTNUDGE_PUBLIC_URL": "https://carts.example"}
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def test_shop_set_lists_the_domains_and_cart_url_and_shows_them(
    engine: Engine, shop: ShopRecord
) -> None:
    result = _shop_cli(
        engine,
        *("shop", "set", shop.slug, "--domains", "Shop.Example, shöp.example,"),
        *("--cart-url", "https://www.shop.example/cart"),
    )
    assert result.exit_code == 0, result.output
    links = json.loads(result.output)["return_links"]
    assert links == {
        "domains": ["shop.example", "xn--shp-tna.example"],
        "cart_url": "https://www.shop.example/cart",
        "fallback": "https://www.shop.example/cart",
    }
    cleared = _shop_cli(engine, "shop", "set", shop.slug, "--domains", "", "--cart-url", "")
    assert json.loads(cleared.output)["return_links"] == {
        "domains": None,
        "cart_url": None,
        "fallback": f"https://{shop.shopify_domain}/cart",
    }


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--domains", "shop example"], "--domains: 'shop example' is not a domain name"),
        (["--domains", "a..b"], "is not a domain name"),
        (["--cart-url", "javascript:alert(5)"], "--cart-url: the cart URL is not an http(s) link"),
        (
            ["--domains", "shop.example", "--cart-url", "https://evil.example/cart"],
            "is not on the shop's domains",
        ),
    ],
)
def test_shop_set_refuses_a_bad_domain_or_cart_url_and_changes_nothing(
    engine: Engine, shop: ShopRecord, args: list[str], error: str
) -> None:
    result = _shop_cli(engine, "shop", "set", shop.slug, *args)
    assert result.exit_code != 0
    assert error in result.output
    shown = json.loads(_shop_cli(engine, "shop", "list").output)
    assert shown[0]["return_links"]["domains"] is None
    assert shown[0]["return_links"]["cart_url"] is None


def test_shop_set_domains_refuses_to_strand_the_cart_url(engine: Engine, shop: ShopRecord) -> None:
    assert (
        _shop_cli(engine, "shop", "set", shop.slug, "--cart-url", "https://a.example/c").exit_code
        == 0
    )
    result = _shop_cli(engine, "shop", "set", shop.slug, "--domains", "b.example")
    assert result.exit_code != 0
    assert "--domains: the cart URL is not on the shop's domains" in result.output
