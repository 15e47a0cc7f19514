"""Bad input gets a clear error and changes nothing, on every lane."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine

from cartnudge.app import create_app
from cartnudge.clock import FrozenClock
from cartnudge.config import MAX_BODY_BYTES, Settings
from cartnudge.db.engine import make_engine
from cartnudge.db.migrate import upgrade
from cartnudge.db.session import writing
from cartnudge.intake.examples import shopify_checkout, storefront_event, stripe_expired_event
from cartnudge.intake.signatures import sign_shopify, sign_standard, sign_stripe
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.service import add_shop
from cartnudge.testing.postgres import PostgresServer
from tests.conftest import T0
from tests.intake.helpers import post_storefront, stored_counts

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
