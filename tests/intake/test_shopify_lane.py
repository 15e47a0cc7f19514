"""The Shopify lane with Shopify's published payloads (shared/fixtures/shopify)."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.db.models import PrivacyRequest
from cartnudge.db.session import reading, writing
from cartnudge.events import CartEvent, Unapplicable
from cartnudge.intake import shopify
from cartnudge.intake.replay import dead_letters, replay
from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0, load_fixture
from tests.intake.helpers import carts, post_shopify, stored_counts


def abandoned_checkout() -> dict[str, Any]:
    payload: dict[str, Any] = load_fixture("shopify/rest/abandoned_checkout.json")["checkout"]
    return payload


def current_checkout(**changes: Any) -> dict[str, Any]:
    """Recent API versions: ``token`` and ``cart_token``, no top-level ``id``."""
    payload = abandoned_checkout()
    del payload["id"]
    payload.update(changes)
    return payload


def test_abandoned_checkout_fixture_becomes_a_cart(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    response = post_shopify(client, shop, "checkouts/create", abandoned_checkout(), "wh-1")

    assert response.status_code == 200, response.text
    [cart] = carts(engine, shop.id)
    assert cart.status == "open"
    assert cart.email == "bob.norman@hostmail.com"
    assert cart.first_name == "Bob"
    assert (cart.currency, cart.total_minor) == ("USD", 40994)
    assert [(i["title"], i["variant"], i["unit_price_minor"]) for i in cart.items] == [
        ("IPod Nano - 8GB", "Red", 19900),
        ("IPod Nano - 8GB", "Pink", 19900),
    ]
    assert cart.return_url.startswith("https://checkout.local/orders/690933842/")
    assert cart.accepts_marketing is False
    assert cart.consent_source == "shopify:buyer_accepts_marketing"
    # 409.94 USD is a big cart: the first look is an hour after the checkout.
    assert cart.next_wake_at == cart.last_activity_at + timedelta(hours=1)


def test_checkout_without_id_and_its_earlier_cart_are_one_cart(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    cart_payload = load_fixture("shopify/rest/carts.json")["carts"][0]
    post_shopify(client, shop, "carts/create", cart_payload, "wh-cart")
    checkout = current_checkout(cart_token=cart_payload["token"])

    post_shopify(client, shop, "checkouts/update", checkout, "wh-checkout")

    [cart] = carts(engine, shop.id)
    assert cart.email == "bob.norman@hostmail.com"
    assert cart.total_minor == 40994  # the newer event (the checkout) wins the basket
    assert cart.source == "shopify"


def test_order_without_cart_token_matches_by_checkout_token(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    order = load_fixture("shopify/rest/orders.json")["orders"][0]
    order["cart_token"] = None
    checkout = current_checkout(
        token=order["checkout_token"], updated_at="2008-01-10T10:40:00-05:00"
    )
    post_shopify(client, shop, "checkouts/create", checkout, "wh-1")

    post_shopify(client, shop, "orders/create", order, "wh-2")

    [cart] = carts(engine, shop.id)
    assert cart.status == "bought"
    assert cart.order_ref == "450789469"
    assert cart.next_wake_at is None


def test_order_then_cart_then_linking_checkout_merge_into_one_bought_cart(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    order = load_fixture("shopify/rest/orders.json")["orders"][0]
    order["cart_token"] = None
    cart_payload = load_fixture("shopify/rest/carts.json")["carts"][0]
    post_shopify(client, shop, "orders/create", order, "wh-order")
    post_shopify(client, shop, "carts/update", cart_payload, "wh-cart")
    assert len(carts(engine, shop.id)) == 2

    checkout = current_checkout(token=order["checkout_token"], cart_token=cart_payload["token"])
    post_shopify(client, shop, "checkouts/update", checkout, "wh-checkout")

    [cart] = carts(engine, shop.id)
    assert cart.status == "bought"
    assert cart.total_minor == 40994


@pytest.mark.parametrize(
    ("order_delay", "bought"), [(timedelta(hours=3), True), (timedelta(days=8), False)]
)
@pytest.mark.parametrize("order_first", [False, True])
def test_order_with_no_tokens_matches_same_email_within_window(
    client: TestClient,
    engine: Engine,
    shop: ShopRecord,
    order_delay: timedelta,
    bought: bool,
    order_first: bool,
) -> None:
    order = load_fixture("shopify/rest/orders.json")["orders"][0]
    order.update(cart_token=None, checkout_token=None, email="Bob.Norman@hostmail.com ")
    placed = T0 + order_delay
    order.update(created_at=placed.isoformat(), processed_at=placed.isoformat())
    checkout = current_checkout(updated_at=T0.isoformat())
    deliveries = [("checkouts/create", checkout, "wh-1"), ("orders/create", order, "wh-2")]
    for topic, payload, webhook_id in reversed(deliveries) if order_first else deliveries:
        assert post_shopify(client, shop, topic, payload, webhook_id).status_code == 200

    [cart] = carts(engine, shop.id)
    assert (cart.status == "bought") is bought


def test_the_email_window_is_the_shops_own(
    client: TestClient, engine: Engine, make_shop: Any
) -> None:
    from datetime import timedelta as td

    shop = make_shop(order_match_window=td(hours=1))
    order = load_fixture("shopify/rest/orders.json")["orders"][0]
    order.update(cart_token=None, checkout_token=None, email="bob.norman@hostmail.com")
    placed = T0 + td(hours=3)  # within the default week, outside this shop's hour
    order.update(created_at=placed.isoformat(), processed_at=placed.isoformat())
    post_shopify(
        client, shop, "checkouts/create", current_checkout(updated_at=T0.isoformat()), "w1"
    )

    post_shopify(client, shop, "orders/create", order, "w2")

    [cart] = carts(engine, shop.id)
    assert cart.status == "open"


def test_orders_create_and_paid_record_one_order(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    order = load_fixture("shopify/rest/orders.json")["orders"][0]
    post_shopify(client, shop, "orders/create", order, "wh-1")
    post_shopify(client, shop, "orders/paid", order, "wh-2")

    assert stored_counts(engine)["orders"] == 1
    assert stored_counts(engine)["inbox_events"] == 2


def test_a_bought_cart_is_never_reopened_by_a_later_checkout_update(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    order = load_fixture("shopify/rest/order.json")["order"]  # cart_token 6877…, 2008
    post_shopify(client, shop, "orders/create", order, "wh-1")
    later = current_checkout(updated_at="2030-01-01T00:00:00Z")  # same cart_token, much later

    post_shopify(client, shop, "checkouts/update", later, "wh-2")

    [cart] = carts(engine, shop.id)
    assert cart.status == "bought"
    assert cart.next_wake_at is None


def test_checkout_delete_closes_an_open_cart(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    checkout = current_checkout()
    post_shopify(client, shop, "checkouts/create", checkout, "wh-1")

    post_shopify(client, shop, "checkouts/delete", {"token": checkout["token"]}, "wh-2")

    [cart] = carts(engine, shop.id)
    assert cart.status == "closed"
    assert cart.next_wake_at is None


@pytest.mark.parametrize("topic", sorted(shopify.COMPLIANCE_TOPICS))
def test_compliance_topics_are_recorded_for_the_privacy_stage(
    client: TestClient, engine: Engine, shop: ShopRecord, topic: str
) -> None:
    payload = load_fixture("shopify/webhooks/shop/redact.json")

    response = post_shopify(client, shop, topic, payload, "wh-privacy")

    assert response.status_code == 200
    table = PrivacyRequest
    with reading(engine) as conn:
        [request] = conn.execute(select(table)).all()
    assert (request.kind, request.state, request.shop_id) == (topic, "pending", shop.id)


def test_unknown_topic_is_a_dead_letter_acknowledged_with_200(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    response = post_shopify(client, shop, "products/update", {"id": 1}, "wh-1")

    assert response.status_code == 200
    assert response.json()["status"] == "dead"
    with reading(engine) as conn:
        [letter] = dead_letters(conn, shop.id)
    assert "unsupported Shopify topic 'products/update'" in letter["reason"]
    assert carts(engine, shop.id) == []


def test_checkout_missing_its_time_is_kept_and_says_why(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    checkout = current_checkout()
    del checkout["updated_at"], checkout["created_at"]

    response = post_shopify(client, shop, "checkouts/create", checkout, "wh-1")

    assert response.status_code == 200
    assert "missing field: updated_at or created_at" in response.json()["reason"]


def test_a_dead_letter_is_replayed_after_the_fix(
    client: TestClient, engine: Engine, shop: ShopRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_parse = shopify.parse

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise Unapplicable("parser bug")

    monkeypatch.setattr(shopify, "parse", broken)
    post_shopify(client, shop, "checkouts/create", copy.deepcopy(abandoned_checkout()), "wh-1")
    with reading(engine) as conn:
        [letter] = dead_letters(conn, shop.id)
    assert carts(engine, shop.id) == []

    monkeypatch.setattr(shopify, "parse", real_parse)  # the fix is deployed
    with writing(engine) as conn:
        outcome = replay(conn, letter["id"], T0)

    assert outcome.status == "applied"
    [cart] = carts(engine, shop.id)
    assert cart.id == outcome.cart_id
    with reading(engine) as conn:
        assert dead_letters(conn, shop.id) == []


def test_a_crash_while_applying_keeps_the_delivery_as_a_dead_letter(
    client: TestClient, engine: Engine, shop: ShopRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cartnudge.intake import service

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(service, "apply_events", crash)
    response = post_shopify(client, shop, "checkouts/create", abandoned_checkout(), "wh-1")

    assert response.status_code == 200
    assert response.json()["reason"] == "could not apply: RuntimeError"
    monkeypatch.undo()
    with reading(engine) as conn:
        [letter] = dead_letters(conn, shop.id)
    with writing(engine) as conn:
        assert replay(conn, letter["id"], T0).status == "applied"
    assert len(carts(engine, shop.id)) == 1


PARTS = ("subtotal_minor", "discount_minor", "shipping_minor", "tax_minor")


def test_a_checkout_keeps_the_parts_of_its_total(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    post_shopify(client, shop, "checkouts/create", abandoned_checkout(), "wh-1")

    [cart] = carts(engine, shop.id)
    # 398.00 of lines, no discount, free shipping and 11.94 of tax make 409.94.
    assert [getattr(cart, name) for name in PARTS] == [39800, 0, 0, 1194]
    assert cart.total_minor == 40994


def test_the_rest_checkout_resource_names_its_parts_differently(shop: ShopRecord) -> None:
    # ``shipping_line`` and ``applied_discount`` instead of ``shipping_lines`` and
    # ``total_discounts``; ``subtotal_price`` is net of the discount.
    payload = load_fixture("shopify/rest/checkout.json")["checkout"]
    payload.update(applied_discount={"amount": "10.00"}, subtotal_price="388.00")
    del payload["total_line_items_price"]

    event = shopify.parse("checkouts/update", "wh-1", payload, shop=shop, triggered_at=T0)

    assert isinstance(event, CartEvent)
    assert (event.subtotal_minor, event.discount_minor) == (39800, 1000)
    assert (event.shipping_minor, event.tax_minor) == (0, 1194)


def test_a_later_cart_without_the_parts_clears_them(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    checkout = current_checkout()
    post_shopify(client, shop, "checkouts/create", checkout, "wh-1")
    cart_payload = load_fixture("shopify/rest/carts.json")["carts"][0]
    cart_payload.update(token=checkout["cart_token"], updated_at="2030-01-01T00:00:00Z")
    post_shopify(client, shop, "carts/update", cart_payload, "wh-2")

    [cart] = carts(engine, shop.id)
    assert [i["title"] for i in cart.items] == ["test"]
    # The checkout's tax and shipping were for its own lines, not this basket's.
    assert [getattr(cart, name) for name in PARTS] == [None, None, None, None]
    assert cart.total_minor == 100
