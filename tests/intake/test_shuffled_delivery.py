"""Every fixture delivered three times in shuffled order ends in the identical state."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cartnudge.clock import system_clock
from cartnudge.intake.examples import (
    ExampleRequest,
    signed_shopify,
    signed_stripe,
)
from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0, load_fixture
from tests.intake.helpers import cart_state, post, stored_counts, storefront_life
from tests.intake.test_stripe_lane import expired_event


def deliveries(shop: ShopRecord) -> list[ExampleRequest]:
    """Each fixture once, signed, with a fixed delivery id (so copies are replays)."""
    now = system_clock()
    checkout = load_fixture("shopify/rest/abandoned_checkout.json")["checkout"]
    current = load_fixture("shopify/rest/checkout.json")["checkout"]
    current["cart_token"] = load_fixture("shopify/rest/carts.json")["carts"][1]["token"]
    order = load_fixture("shopify/rest/orders.json")["orders"][0]
    keyless = dict(order, id=99, cart_token=None, checkout_token=None, email="carol@example.com")
    keyless.update(created_at=(T0 + timedelta(hours=2)).isoformat(), processed_at=None)
    out = [
        signed_shopify(shop, "checkouts/create", checkout, webhook_id="s1"),
        signed_shopify(shop, "checkouts/update", current, webhook_id="s2"),
        signed_shopify(
            shop, "orders/create", load_fixture("shopify/rest/order.json")["order"], webhook_id="s3"
        ),
        signed_shopify(shop, "orders/paid", order, webhook_id="s4"),
        signed_shopify(shop, "orders/create", keyless, webhook_id="s5"),
        signed_shopify(
            shop, "shop/redact", load_fixture("shopify/webhooks/shop/redact.json"), webhook_id="s6"
        ),
        signed_stripe(shop, expired_event(), now),
        signed_stripe(shop, load_fixture("stripe/checkout.session.completed.json"), now),
        signed_stripe(shop, load_fixture("stripe/event.object.openapi_fixture.json"), now),
    ]
    for index, cart in enumerate(load_fixture("shopify/rest/carts.json")["carts"]):
        out.append(signed_shopify(shop, "carts/update", cart, webhook_id=f"c{index}"))
    out += storefront_life(shop, now)
    return out


def deliver_all(client: TestClient, requests: list[ExampleRequest]) -> None:
    for request in requests:
        response = post(client, request)
        assert response.status_code in (200, 422), response.text


def test_three_shuffled_copies_end_in_the_same_state_as_one_ordered_pass(
    client: TestClient, engine: Engine, make_shop: Any
) -> None:
    reference_shop = make_shop()
    deliver_all(client, deliveries(reference_shop))
    expected = cart_state(engine, reference_shop.id)
    assert {c["status"] for c in expected} == {"open", "bought"}

    for seed in range(3):
        shop = make_shop()
        requests = deliveries(shop) * 3
        random.Random(seed).shuffle(requests)
        deliver_all(client, requests)
        assert cart_state(engine, shop.id) == expected, f"seed {seed}"


def test_copies_are_recorded_once(client: TestClient, engine: Engine, shop: ShopRecord) -> None:
    requests = deliveries(shop)
    deliver_all(client, requests * 3)

    assert stored_counts(engine)["inbox_events"] == len(requests)


@pytest.mark.parametrize("seed", [11, 12])
def test_shuffled_order_on_a_single_storefront_cart(
    client: TestClient, engine: Engine, make_shop: Any, seed: int
) -> None:
    first, second = make_shop(), make_shop()
    ordered = [r for r in deliveries(first) if "storefront" in r.path]
    deliver_all(client, ordered)
    shuffled = [r for r in deliveries(second) if "storefront" in r.path]
    random.Random(seed).shuffle(shuffled)
    deliver_all(client, shuffled)

    assert cart_state(engine, first.id) == cart_state(engine, second.id)
