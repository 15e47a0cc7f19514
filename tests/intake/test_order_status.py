"""Only a real purchase closes a cart: cancelled, voided and test orders are kept, not counted.

Shopify's own ``orders/create`` sample (what "Send test notification" delivers) is an
order that is cancelled (``cancelled_at`` set), voided (``financial_status: voided``) and
a test (``test: true``); each of those alone is tried here on the fixture order. What
becomes of an order after it closed a cart (``orders/cancelled``, ``refunds/create``) is
recorded on the order; the cart stays bought. Every case runs in every arrival order.
"""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.db.models import Order
from cartnudge.db.session import reading, writing
from cartnudge.intake.examples import ExampleRequest, signed_shopify
from cartnudge.shops.repository import ShopRecord, ShopRepository
from cartnudge.shops.service import set_shop
from tests.conftest import T0, load_fixture
from tests.intake.helpers import carts, post
from tests.intake.test_order_matching import (
    every_arrival_order,
    keyless_order,
    outcome,
    storefront,
)
from tests.test_cli import cli  # noqa: F401 - the fixture

MakeShop = Any
CANCELLED = "2026-03-14T18:00:00+00:00"
# The status fields of Shopify's orders/create sample, one at a time and all together.
NOT_PURCHASES = {
    "cancelled": {"cancelled_at": CANCELLED, "cancel_reason": "customer"},
    "voided": {"financial_status": "voided"},
    "test": {"test": True},
    "shopify's sample": {"cancelled_at": CANCELLED, "financial_status": "voided", "test": True},
}
WHY = {
    "cancelled": "the order was cancelled",
    "voided": "the order's payment was voided",
    "test": "a test order; this shop's test orders close no cart",
    "shopify's sample": "the order was cancelled",
}


def checkout(shop: ShopRecord) -> ExampleRequest:
    payload = load_fixture("shopify/rest/abandoned_checkout.json")["checkout"]
    return signed_shopify(shop, "checkouts/create", payload, webhook_id="wh-checkout")


def order(shop: ShopRecord, topic: str, webhook_id: str, **fields: Any) -> ExampleRequest:
    """The fixture order, which names the checkout's cart by its cart token."""
    payload = load_fixture("shopify/rest/orders.json")["orders"][0]
    payload.update({"financial_status": "paid", "test": False, "cancelled_at": None, **fields})
    return signed_shopify(shop, topic, payload, webhook_id=webhook_id)


def refund(shop: ShopRecord, refund_id: int, amount: str, webhook_id: str) -> ExampleRequest:
    """A ``refunds/create`` delivery: one refund of the fixture order."""
    payload = {
        "id": refund_id,
        "order_id": 450789469,
        "created_at": "2026-03-14T19:00:00+00:00",
        "transactions": [
            {"kind": "refund", "status": "success", "amount": amount, "currency": "USD"},
            {"kind": "refund", "status": "failure", "amount": "99.00", "currency": "USD"},
        ],
    }
    return signed_shopify(shop, "refunds/create", payload, webhook_id=webhook_id)


def order_rows(engine: Engine, shop_id: int) -> dict[str, dict[str, Any]]:
    orders_t = Order
    with reading(engine) as conn:
        rows = conn.execute(select(orders_t).where(orders_t.c.shop_id == shop_id))
        return {
            row.external_id: {
                "cancelled_at": row.cancelled_at,
                "financial_status": row.financial_status,
                "test": row.test,
                "refunded_minor": row.refunded_minor,
            }
            for row in rows
        }


def letting_test_orders_close(engine: Engine, shop: ShopRecord) -> ShopRecord:
    with writing(engine) as conn:
        return set_shop(conn, shop.slug, T0, test_orders_close_carts=True)


@pytest.mark.parametrize("status", NOT_PURCHASES)
def test_an_order_that_is_no_purchase_leaves_its_cart_open_and_says_why(
    client: TestClient, engine: Engine, make_shop: MakeShop, status: str
) -> None:
    for first in (True, False):  # the order before its checkout, and after
        shop = make_shop()
        requests = [checkout(shop), order(shop, "orders/create", "wh-o", **NOT_PURCHASES[status])]
        answers = [post(client, r).json() for r in (requests if first else requests[::-1])]

        [cart] = carts(engine, shop.id)
        assert (cart.status, cart.order_ref, cart.bought_at) == ("open", None, None)
        assert cart.next_wake_at is not None  # still reminded
        answer = answers[1] if first else answers[0]
        assert answer == {
            "status": "applied",
            "cart_id": cart.id,
            "closed_cart_id": None,
            "not_closed": WHY[status],
        }
        kept = order_rows(engine, shop.id)["450789469"]
        assert kept["test"] is (status in ("test", "shopify's sample"))
        assert (kept["cancelled_at"] is not None) is (status in ("cancelled", "shopify's sample"))


@pytest.mark.parametrize("status", NOT_PURCHASES)
def test_an_order_matched_by_address_that_is_no_purchase_buys_no_cart(
    client: TestClient, engine: Engine, make_shop: MakeShop, status: str
) -> None:
    def build(shop: ShopRecord) -> list[ExampleRequest]:
        return [
            storefront(shop, "sf-a", 0),
            keyless_order(shop, 99, T0 + timedelta(hours=2), "wh-99", **NOT_PURCHASES[status]),
        ]

    outcomes = every_arrival_order(client, engine, make_shop, build)

    assert outcomes[0] == {
        "carts": {"sf-a": ("open", None, None)},
        "orders": {"99": (None, 59894)},
    }
    assert all(o == outcomes[0] for o in outcomes), outcomes


def test_a_test_order_closes_carts_where_the_shop_says_so(
    client: TestClient, engine: Engine, make_shop: MakeShop
) -> None:
    shop = letting_test_orders_close(engine, make_shop())
    assert post(client, checkout(shop)).status_code == 200
    answer = post(client, order(shop, "orders/create", "wh-o", test=True)).json()

    [cart] = carts(engine, shop.id)
    assert (cart.status, cart.order_ref) == ("bought", "450789469")
    assert answer == {"status": "applied", "cart_id": cart.id, "closed_cart_id": cart.id}
    assert order_rows(engine, shop.id)["450789469"]["test"] is True  # counted apart

    keyless_shop = letting_test_orders_close(engine, make_shop())
    post(client, storefront(keyless_shop, "sf-a", 0))
    post(client, keyless_order(keyless_shop, 99, T0 + timedelta(hours=2), "wh-99", test=True))
    assert outcome(engine, keyless_shop.id)["carts"] == {
        "sf-a": ("bought", "99", T0 + timedelta(hours=2))
    }


def test_a_cancellation_and_refunds_after_the_purchase_are_kept_on_the_order(
    client: TestClient, engine: Engine, make_shop: MakeShop
) -> None:
    # Bought, then cancelled with a refund on the order, and a second refund on its own:
    # the cart stays bought (a purchase is terminal; no reminder starts again), and the
    # order says what to net out, whatever order the deliveries arrive in.
    def build(shop: ShopRecord) -> list[ExampleRequest]:
        first_refund = {
            "id": 801,
            "transactions": [{"kind": "refund", "status": "success", "amount": "100.00"}],
        }
        return [
            checkout(shop),
            order(shop, "orders/create", "wh-create"),
            order(
                shop, "orders/cancelled", "wh-cancel", cancelled_at=CANCELLED,
                financial_status="partially_refunded", refunds=[first_refund],
                updated_at="2026-03-14T18:00:00+00:00",
            ),
            refund(shop, 802, "25.50", "wh-refund-802"),
            refund(shop, 801, "100.00", "wh-refund-801"),  # the first refund, on its own
        ]  # fmt: skip

    ends = []
    for permutation in itertools.permutations(range(5)):
        shop = make_shop()
        requests = build(shop)
        for index in permutation:
            assert post(client, requests[index]).status_code == 200
        [cart] = carts(engine, shop.id)
        ends.append((cart.status, cart.order_ref, cart.next_wake_at, order_rows(engine, shop.id)))

    assert ends[0] == (
        "bought",
        "450789469",
        None,
        {
            "450789469": {
                "cancelled_at": T0.replace(hour=18, minute=0, second=0),
                "financial_status": "partially_refunded",
                "test": False,
                "refunded_minor": 12550,
            }
        },
    )
    assert all(end == ends[0] for end in ends), set(map(repr, ends))


def test_an_order_matched_by_address_and_cancelled_later_keeps_its_cart_bought(
    client: TestClient, engine: Engine, make_shop: MakeShop
) -> None:
    placed = T0 + timedelta(hours=2)

    def build(shop: ShopRecord) -> list[ExampleRequest]:
        return [
            storefront(shop, "sf-a", 0),
            keyless_order(shop, 99, placed, "wh-99"),
            keyless_order(
                shop, 99, placed, "wh-99-cancel",
                cancelled_at=CANCELLED, updated_at=CANCELLED,
            ),
        ]  # fmt: skip

    outcomes = every_arrival_order(client, engine, make_shop, build)

    assert outcomes[0] == {
        "carts": {"sf-a": ("bought", "99", placed)},
        "orders": {"99": ("sf-a", 59894)},
    }
    assert all(o == outcomes[0] for o in outcomes), outcomes


def test_the_answer_to_an_order_names_the_cart_it_closed(
    client: TestClient, engine: Engine, make_shop: MakeShop
) -> None:
    shop = make_shop()
    post(client, checkout(shop))
    named = post(client, order(shop, "orders/create", "wh-o")).json()
    [cart] = carts(engine, shop.id)
    assert named == {"status": "applied", "cart_id": cart.id, "closed_cart_id": cart.id}

    post(client, storefront(shop, "sf-a", 0))
    matched = post(client, keyless_order(shop, 99, T0 + timedelta(hours=2), "wh-99")).json()
    sf_a = next(c for c in carts(engine, shop.id) if c.id != cart.id)
    assert matched == {"status": "applied", "cart_id": None, "closed_cart_id": sf_a.id}

    alone = post(client, keyless_order(shop, 98, T0 - timedelta(days=30), "wh-98")).json()
    assert alone == {
        "status": "applied",
        "cart_id": None,
        "closed_cart_id": None,
        "not_closed": "no cart of this address open within the order match window",
    }


def test_shop_set_says_whether_test_orders_close_carts(
    cli: Any,  # noqa: F811
    engine: Engine,
    shop: ShopRecord,
) -> None:
    def stored() -> bool:
        with reading(engine) as conn:
            found = ShopRepository(conn).by_slug(shop.slug)
        assert found is not None
        return found.test_orders_close_carts

    bad = cli("shop", "set", shop.slug, "--test-orders-close-carts", "maybe")
    assert bad.exit_code == 2 and "is not yes or no" in bad.output, bad.output
    assert stored() is False  # the default, unchanged

    result = cli("shop", "set", shop.slug, "--test-orders-close-carts", "yes")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["test_orders_close_carts"] is True
    assert stored() is True
    assert cli("shop", "set", shop.slug, "--test-orders-close-carts", "no").exit_code == 0
    assert stored() is False
