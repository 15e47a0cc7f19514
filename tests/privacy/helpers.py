"""A shopper's history in a shop, built through the real webhook lanes, and the compliance
payloads Shopify sends about them.

The shopper is Shopify's own example customer, Bob Norman, as he appears in the published
checkout and order fixtures (shared/fixtures/shopify/rest). The compliance bodies follow
the shapes Shopify documents (Shopify/shopify-app-template-node, ``web/gdpr.js``), naming
Bob's address and order instead of the template's placeholder customer.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from cartnudge.db.models import Cart, CartStatus, Click, Order, Send, metadata
from cartnudge.db.session import reading
from cartnudge.privacy.files import PrivacyFiles
from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0, load_fixture
from tests.delivery.helpers import H, Pass
from tests.delivery.helpers import post as post_storefront_cart
from tests.intake.helpers import post_shopify

BOB = "bob.norman@hostmail.com"
ORDER_ID = 450789469  # the published order fixture's id
# What identifies Bob anywhere: his address, surname, street, phone (the first name "Bob"
# is checked where it is stored, not as a substring of everything).
TRACES = ("bob.norman", "hostmail", "norman", "chestnut street", "555-625-1199")
OTHER = "other.shopper@example.org"


def checkout(token: str, cart_token: str, at: str) -> dict[str, Any]:
    """Shopify's abandoned checkout fixture as a recent API version sends it, at ``at``,
    with the box "email me" ticked."""
    payload: dict[str, Any] = copy.deepcopy(
        load_fixture("shopify/rest/abandoned_checkout.json")["checkout"]
    )
    del payload["id"]
    payload.update(
        token=token,
        cart_token=cart_token,
        created_at=at,
        updated_at=at,
        buyer_accepts_marketing=True,
    )
    return payload


def order(cart_token: str, at: str) -> dict[str, Any]:
    payload: dict[str, Any] = copy.deepcopy(load_fixture("shopify/rest/order.json")["order"])
    payload.update(cart_token=cart_token, created_at=at, processed_at=at, updated_at=at)
    return payload


def data_request(shop: ShopRecord, email: str, orders: list[int]) -> dict[str, Any]:
    return {
        "shop_id": 954889,
        "shop_domain": shop.shopify_domain,
        "orders_requested": orders,
        "customer": {"id": 191167, "email": email, "phone": "555-625-1199"},
        "data_request": {"id": 9999},
    }


def customer_redact(shop: ShopRecord, email: str, orders: list[int]) -> dict[str, Any]:
    return {
        "shop_id": 954889,
        "shop_domain": shop.shopify_domain,
        "customer": {"id": 191167, "email": email, "phone": "555-625-1199"},
        "orders_to_redact": orders,
    }


def iso(hours: float) -> str:
    return (T0 + hours * H).isoformat()


def bob_history(client: TestClient, shop: ShopRecord, run: Pass) -> None:
    """Bob leaves a checkout, gets a reminder, clicks it and buys; then leaves a second
    checkout and gets a reminder about that. Another shopper has a cart alongside."""
    ok = post_shopify(client, shop, "checkouts/create", checkout("tA", "cA", iso(0)), "w1")
    assert ok.status_code == 200, ok.text
    post_storefront_cart(client, shop, cart_id="other-1", email=OTHER)
    run(T0 + 2 * H)
    link = re.search(r"http://testserver(/c/[A-Za-z0-9_-]+)", _text_of(run, BOB))
    assert link is not None
    assert client.get(link[1], follow_redirects=False).status_code == 302
    bought = post_shopify(client, shop, "orders/create", order("cA", iso(3)), "w2")
    assert bought.status_code == 200, bought.text
    again = post_shopify(client, shop, "checkouts/create", checkout("tB", "cB", iso(4)), "w3")
    assert again.status_code == 200, again.text
    run(T0 + 6 * H)


def _text_of(run: Pass, address: str) -> str:
    for message in run.emails():
        if address in str(message["To"]):
            body = message.get_body(("plain",))
            assert body is not None
            return str(body.get_content())
    raise AssertionError(f"no email to {address}")


def files_of(tmp_path: Path) -> PrivacyFiles:
    """The privacy stage's view of the test's file outbox (the ``run`` fixture's)."""
    return PrivacyFiles(tmp_path / "outbox", tmp_path / "exports")


def every_value(engine: Engine) -> list[tuple[str, str]]:
    """(table, value as text) for every non-null value of every row of every table."""
    found = []
    with reading(engine) as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                found += [(table.name, str(v)) for v in row if v is not None]
    return found


def traces_in_database(engine: Engine) -> list[tuple[str, str]]:
    return [
        (table, value)
        for table, value in every_value(engine)
        if any(trace in value.lower() for trace in TRACES)
    ]


def aggregates(engine: Engine, shop_id: int) -> dict[str, Any]:
    """What the owner's reports count: carts, reminders, clicks, recovered revenue."""
    carts, sends, clicks, orders = (m for m in (Cart, Send, Click, Order))
    with reading(engine) as conn:

        def one(stmt: Any) -> Any:
            return conn.execute(stmt).scalar_one()

        return {
            "carts": one(select(func.count()).where(carts.c.shop_id == shop_id)),
            "reminders_sent": one(
                select(func.count()).where(sends.c.shop_id == shop_id, sends.c.status == "sent")
            ),
            "clicks": one(select(func.count()).where(clicks.c.shop_id == shop_id)),
            "recovered_minor": one(
                select(func.coalesce(func.sum(carts.c.total_minor), 0)).where(
                    carts.c.shop_id == shop_id, carts.c.status == CartStatus.BOUGHT.value
                )
            ),
            "orders": one(select(func.count()).where(orders.c.shop_id == shop_id)),
            "order_revenue_minor": one(
                select(func.coalesce(func.sum(orders.c.total_minor), 0)).where(
                    orders.c.shop_id == shop_id
                )
            ),
        }
