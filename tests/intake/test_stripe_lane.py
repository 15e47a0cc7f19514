"""The Stripe lane with Stripe's published objects (shared/fixtures/stripe)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cartnudge.db.session import reading
from cartnudge.intake.replay import dead_letters
from cartnudge.shops.repository import ShopRecord
from tests.conftest import load_fixture
from tests.intake.helpers import carts, post_stripe, stored_counts
from tests.intake.test_order_status import letting_test_orders_close, order_rows


def live(event: dict[str, Any]) -> dict[str, Any]:
    """Stripe's published samples come from its test mode (``livemode: false``); the same
    event from a live account."""
    return {**event, "livemode": True}


def expired_event(**session_changes: Any) -> dict[str, Any]:
    """No published ``checkout.session.expired`` sample exists: this wraps Stripe's own
    Checkout Session fixture (``status: "expired"``) in Stripe's Event envelope fixture."""
    session = load_fixture("stripe/checkout.session.object.openapi_fixture.json")
    session.update(status="expired", currency="usd", amount_total=4200)
    session.update(session_changes)
    event: dict[str, Any] = load_fixture("stripe/event.object.openapi_fixture.json")
    event.update(id="evt_expired_1", type="checkout.session.expired", data={"object": session})
    return event


def test_expired_session_becomes_an_open_cart(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    event = expired_event(
        consent={"promotions": "opt_in", "terms_of_service": None},
        after_expiration={"recovery": {"enabled": True, "url": "https://buy.stripe.com/r/abc"}},
        line_items={
            "object": "list",
            "data": [
                {
                    "description": "Walnut desk tidy",
                    "quantity": 2,
                    "amount_total": 4200,
                    "price": {"id": "price_1", "unit_amount": 2100},
                }
            ],
        },
    )

    response = post_stripe(client, shop, event)

    assert response.status_code == 200, response.text
    [cart] = carts(engine, shop.id)
    assert cart.status == "open"
    assert cart.email == "example@example.com"
    assert (cart.currency, cart.total_minor) == ("USD", 4200)
    assert cart.items[0]["title"] == "Walnut desk tidy"
    assert cart.items[0]["unit_price_minor"] == 2100
    assert cart.return_url == "https://buy.stripe.com/r/abc"
    assert cart.accepts_marketing is True
    assert cart.consent_source == "stripe:consent.promotions"


def test_published_fixture_has_no_recovery_url_and_no_consent(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    post_stripe(client, shop, expired_event())

    [cart] = carts(engine, shop.id)
    assert cart.return_url is None  # recovery enabled, but Stripe gave no URL
    assert cart.accepts_marketing is None  # consent.promotions was not collected
    assert cart.items == []


def test_completed_fixture_records_the_order_and_a_bought_cart(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    completed = live(load_fixture("stripe/checkout.session.completed.json"))
    response = post_stripe(client, shop, completed)

    assert response.status_code == 200, response.text
    [cart] = carts(engine, shop.id)
    assert cart.status == "bought"
    assert cart.order_ref == "cs_test_0000000000000000000000000000000000000000000000000000000000"
    assert stored_counts(engine)["orders"] == 1


def test_paying_the_recovery_session_marks_the_abandoned_cart_bought(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    expired = expired_event()
    post_stripe(client, shop, expired)
    original = expired["data"]["object"]["id"]
    completed = live(load_fixture("stripe/checkout.session.completed.json"))
    completed["data"]["object"].update(id="cs_test_recovery", recovered_from=original)

    post_stripe(client, shop, completed)

    [cart] = carts(engine, shop.id)
    assert cart.status == "bought"
    assert cart.order_ref == "cs_test_recovery"


def test_async_payment_success_after_completion_is_one_order(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    completed = live(load_fixture("stripe/checkout.session.completed.payment_mode.json"))
    post_stripe(client, shop, completed)
    succeeded = dict(completed, id="evt_async_1", type="checkout.session.async_payment_succeeded")

    post_stripe(client, shop, succeeded)

    assert stored_counts(engine)["orders"] == 1
    assert len(carts(engine, shop.id)) == 1


def test_a_test_mode_sale_is_a_test_order_that_closes_no_cart(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    """``livemode: false`` is Stripe's test mode: the order is kept and counted apart, and
    the cart it would have closed stays open (the rule for Shopify's test orders)."""
    expired = expired_event()
    post_stripe(client, shop, expired)
    completed = load_fixture("stripe/checkout.session.completed.json")  # livemode: false
    completed["data"]["object"].update(recovered_from=expired["data"]["object"]["id"])

    response = post_stripe(client, shop, completed)

    assert response.json()["not_closed"] == "a test order; this shop's test orders close no cart"
    [cart] = carts(engine, shop.id)
    assert cart.status == "open"
    [order] = order_rows(engine, shop.id).values()
    assert (order["test"], order["financial_status"]) == (True, "paid")


def test_a_test_mode_sale_closes_its_cart_where_the_shop_says_test_orders_do(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    shop = letting_test_orders_close(engine, shop)
    response = post_stripe(client, shop, load_fixture("stripe/checkout.session.completed.json"))

    [cart] = carts(engine, shop.id)
    assert cart.status == "bought"
    assert response.json()["closed_cart_id"] == cart.id


def test_a_sale_still_being_paid_is_kept_with_stripes_payment_status(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    """A delayed payment method completes the session ``unpaid``: the shopper is done, as
    with a Shopify order pending payment; the order says so until Stripe says paid."""
    completed = live(load_fixture("stripe/checkout.session.completed.json"))
    completed["data"]["object"].update(payment_status="unpaid")
    post_stripe(client, shop, completed)
    [order] = order_rows(engine, shop.id).values()
    assert order["financial_status"] == "unpaid"

    paid = live(load_fixture("stripe/checkout.session.completed.json"))
    paid.update(id="evt_async_paid", type="checkout.session.async_payment_succeeded")
    post_stripe(client, shop, paid)

    [order] = order_rows(engine, shop.id).values()
    assert (order["financial_status"], order["test"]) == ("paid", False)
    [cart] = carts(engine, shop.id)
    assert cart.status == "bought"


def test_unhandled_event_type_is_acknowledged_and_kept(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    response = post_stripe(client, shop, load_fixture("stripe/event.object.openapi_fixture.json"))

    assert response.status_code == 200
    with reading(engine) as conn:
        [letter] = dead_letters(conn, shop.id)
    assert letter["reason"] == "unsupported Stripe event type 'plan.created'"
    assert letter["external_id"] == "evt_1Pgc76B7WZ01zgkWwyRHS12y"


def test_same_stripe_event_twice_changes_nothing(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    post_stripe(client, shop, expired_event())
    before = stored_counts(engine)

    again = post_stripe(client, shop, expired_event())  # re-signed, same event id

    assert again.json()["status"] == "duplicate"
    assert stored_counts(engine) == before


def test_an_expired_session_keeps_the_parts_of_its_total(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    # The parts as a real session gives them (stripe-ruby-mock's completed session).
    paid = load_fixture("stripe/checkout.session.completed.json")["data"]["object"]
    post_stripe(
        client,
        shop,
        expired_event(
            amount_subtotal=paid["amount_subtotal"],
            amount_total=paid["amount_total"],
            total_details=paid["total_details"],
        ),
    )

    [cart] = carts(engine, shop.id)
    assert cart.total_minor == 3000
    parts = (cart.subtotal_minor, cart.discount_minor, cart.shipping_minor, cart.tax_minor)
    assert parts == (3000, 0, 0, 0)
