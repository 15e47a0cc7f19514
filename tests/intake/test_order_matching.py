"""Orders and the carts they bought, whatever order the deliveries arrive in.

An order that names its cart (a token, a session, a storefront cart id) is certain; one
that names none is matched by the shopper's address to the carts she was active on
within the shop's window. Every test runs each arrival order and expects one answer.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.clock import system_clock
from cartnudge.db.models import Cart, CartKey, Order
from cartnudge.db.session import reading
from cartnudge.intake.examples import (
    ExampleRequest,
    signed_shopify,
    signed_storefront,
    storefront_event,
)
from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0, load_fixture
from tests.intake.helpers import post

CAROL = "carol@example.com"
MakeShop = Any


def storefront(
    shop: ShopRecord, cart: str, minutes: int, total: str | None = None, **fields: Any
) -> ExampleRequest:
    event = storefront_event(
        cart_id=cart,
        event_id=f"{cart}-{minutes}",
        occurred_at=T0 + timedelta(minutes=minutes),
        email=CAROL,
        **fields,
    )
    if total is not None:
        event.update(total=total, items=None)
    return signed_storefront(shop, event, system_clock(), msg_id=f"msg-{cart}-{minutes}")


def keyless_order(
    shop: ShopRecord, order_id: int, placed: datetime, webhook_id: str, **fields: Any
) -> ExampleRequest:
    """A Shopify order that names no cart or checkout: only Carol's address."""
    order = load_fixture("shopify/rest/orders.json")["orders"][0]
    order.update(id=order_id, cart_token=None, checkout_token=None, email=CAROL)
    order.update({"created_at": placed.isoformat(), "processed_at": None, "updated_at": None})
    order.update(fields)
    return signed_shopify(shop, "orders/create", order, webhook_id=webhook_id)


def outcome(engine: Engine, shop_id: int) -> dict[str, Any]:
    """Per cart (named by its storefront id): status, order and when bought; per order:
    the cart it names and its total."""
    carts_t, keys_t, orders_t = Cart, CartKey, Order
    with reading(engine) as conn:
        name = {
            row.cart_id: row.value
            for row in conn.execute(select(keys_t).where(keys_t.c.shop_id == shop_id))
        }
        carts = {
            name[row.id]: (row.status, row.order_ref, row.bought_at)
            for row in conn.execute(select(carts_t).where(carts_t.c.shop_id == shop_id))
        }
        orders = {
            row.external_id: (name.get(row.cart_id), row.total_minor)
            for row in conn.execute(select(orders_t).where(orders_t.c.shop_id == shop_id))
        }
    return {"carts": carts, "orders": orders}


def timers(engine: Engine) -> list[dict[str, Any]]:
    """Per shop: whether each cart (by its storefront id) still has a timer running."""
    carts_t, keys_t = Cart, CartKey
    with reading(engine) as conn:
        name = {row.cart_id: row.value for row in conn.execute(select(keys_t))}
        by_shop: dict[int, dict[str, bool]] = {}
        for row in conn.execute(select(carts_t)):
            by_shop.setdefault(row.shop_id, {})[name[row.id]] = row.next_wake_at is not None
    return [{"timers": found} for _, found in sorted(by_shop.items())]


def every_arrival_order(
    client: TestClient, engine: Engine, make_shop: MakeShop, build: Any
) -> list[dict[str, Any]]:
    """Deliver ``build(shop)`` in every order, each to a fresh shop; the outcomes."""
    shops = []
    count = len(build(make_shop()))
    for permutation in itertools.permutations(range(count)):
        shop = make_shop()
        requests = build(shop)
        for index in permutation:
            response = post(client, requests[index])
            assert response.status_code == 200, response.text
        shops.append(shop)
    return [outcome(engine, shop.id) for shop in shops]


def test_an_order_that_names_its_cart_outranks_an_earlier_one_matched_by_address(
    client: TestClient, engine: Engine, make_shop: MakeShop
) -> None:
    # Carol's cart, bought by its own order at 3 h; an order of hers at 1 h names no cart
    # (bought elsewhere, say) and falls within the window of that cart.
    def build(shop: ShopRecord) -> list[ExampleRequest]:
        return [
            storefront(shop, "sf-a", 0),
            storefront(shop, "sf-a", 180, kind="order_placed", order_id="own-order"),
            keyless_order(shop, 99, T0 + timedelta(hours=1), "wh-99"),
        ]

    outcomes = every_arrival_order(client, engine, make_shop, build)

    bought_at = T0 + timedelta(hours=3)
    assert outcomes[0] == {
        "carts": {"sf-a": ("bought", "own-order", bought_at)},
        "orders": {"own-order": ("sf-a", 6400), "99": (None, 59894)},
    }
    assert all(o == outcomes[0] for o in outcomes), outcomes


def test_an_order_matched_by_address_moves_to_the_cart_no_other_order_bought(
    client: TestClient, engine: Engine, make_shop: MakeShop
) -> None:
    # Two carts of Carol's: the first bought at 30 min by its own order, the second left
    # open. Her order at 2 h names neither: it bought the second, whichever came first.
    def build(shop: ShopRecord) -> list[ExampleRequest]:
        return [
            storefront(shop, "sf-a", 0),
            storefront(shop, "sf-a", 30, kind="order_placed", order_id="own-order"),
            storefront(shop, "sf-b", 10),
            keyless_order(shop, 99, T0 + timedelta(hours=2), "wh-99"),
        ]

    outcomes = every_arrival_order(client, engine, make_shop, build)

    assert outcomes[0] == {
        "carts": {
            "sf-a": ("bought", "own-order", T0 + timedelta(minutes=30)),
            "sf-b": ("bought", "99", T0 + timedelta(hours=2)),
        },
        "orders": {"own-order": ("sf-a", 6400), "99": ("sf-b", 59894)},
    }
    assert all(o == outcomes[0] for o in outcomes), outcomes


def test_an_order_matched_by_address_buys_only_the_cart_she_was_active_on_last(
    client: TestClient, engine: Engine, make_shop: MakeShop
) -> None:
    # Carol left two carts; her order names neither. It bought one of them, the one she
    # was active on last; the other is still open and still waits for its reminder.
    def build(shop: ShopRecord) -> list[ExampleRequest]:
        return [
            storefront(shop, "sf-a", 0),
            storefront(shop, "sf-b", 20),
            storefront(shop, "sf-a", 10),
            keyless_order(shop, 99, T0 + timedelta(hours=2), "wh-99"),
        ]

    outcomes = every_arrival_order(client, engine, make_shop, build)

    placed = T0 + timedelta(hours=2)
    assert outcomes[0] == {
        "carts": {"sf-a": ("open", None, None), "sf-b": ("bought", "99", placed)},
        "orders": {"99": ("sf-b", 59894)},
    }
    assert all(o == outcomes[0] for o in outcomes), outcomes
    assert all(o["timers"] == {"sf-a": True, "sf-b": False} for o in timers(engine)), timers(engine)


def test_an_order_matched_by_address_prefers_the_cart_whose_total_it_paid(
    client: TestClient, engine: Engine, make_shop: MakeShop
) -> None:
    # Carol's older cart holds 64.00 GBP, her latest 30.00 GBP; her order paid 64.00 GBP:
    # it bought the older cart, and the latest stays open.
    def build(shop: ShopRecord) -> list[ExampleRequest]:
        return [
            storefront(shop, "sf-a", 0),
            storefront(shop, "sf-b", 20, total="30.00"),
            keyless_order(
                shop, 99, T0 + timedelta(hours=2), "wh-99",
                total_price="64.00", currency="GBP", presentment_currency="GBP",
            ),
        ]  # fmt: skip

    outcomes = every_arrival_order(client, engine, make_shop, build)

    assert outcomes[0] == {
        "carts": {
            "sf-a": ("bought", "99", T0 + timedelta(hours=2)),
            "sf-b": ("open", None, None),
        },
        "orders": {"99": ("sf-a", 6400)},
    }
    assert all(o == outcomes[0] for o in outcomes), outcomes


def test_two_orders_matched_by_address_buy_two_carts(
    client: TestClient, engine: Engine, make_shop: MakeShop
) -> None:
    # Two carts, two orders naming neither: each order bought a cart of its own, the
    # earlier order the cart she was active on last before it.
    def build(shop: ShopRecord) -> list[ExampleRequest]:
        return [
            storefront(shop, "sf-a", 0),
            storefront(shop, "sf-b", 20),
            keyless_order(shop, 98, T0 + timedelta(hours=1), "wh-98"),
            keyless_order(shop, 99, T0 + timedelta(hours=2), "wh-99"),
        ]

    outcomes = every_arrival_order(client, engine, make_shop, build)

    assert outcomes[0] == {
        "carts": {
            "sf-a": ("bought", "99", T0 + timedelta(hours=2)),
            "sf-b": ("bought", "98", T0 + timedelta(hours=1)),
        },
        "orders": {"98": ("sf-b", 59894), "99": ("sf-a", 59894)},
    }
    assert all(o == outcomes[0] for o in outcomes), outcomes


@pytest.mark.parametrize("newer_first", [False, True])
def test_two_deliveries_of_one_order_keep_the_newer_snapshot(
    client: TestClient, engine: Engine, shop: ShopRecord, newer_first: bool
) -> None:
    placed = T0 + timedelta(hours=1)
    created = keyless_order(shop, 77, placed, "wh-create", total_price="10.00")
    later = (placed + timedelta(minutes=5)).isoformat()
    edited = keyless_order(shop, 77, placed, "wh-edit", total_price="8.50", updated_at=later)
    for request in [edited, created] if newer_first else [created, edited]:
        assert post(client, request).status_code == 200

    assert outcome(engine, shop.id)["orders"] == {"77": (None, 850)}
