"""The storefront lane end to end: Standard Webhooks signatures, our event, the cart list."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cartnudge.clock import FrozenClock, system_clock
from cartnudge.db.models import InboxEvent
from cartnudge.intake.examples import signed_storefront, storefront_event
from cartnudge.intake.signatures import sign_standard
from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0
from tests.intake.helpers import carts, count, post, post_storefront, stored_counts


def test_checkout_started_creates_one_open_cart(
    client: TestClient, engine: Engine, shop: ShopRecord, clock: FrozenClock
) -> None:
    response = post_storefront(client, shop, storefront_event(cart_id="c-1", occurred_at=T0))

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "applied"
    [cart] = carts(engine, shop.id)
    assert cart.status == "open"
    assert cart.email == "shopper@example.com"
    assert cart.currency == "GBP"
    assert cart.total_minor == 6400
    assert [i["title"] for i in cart.items] == ["Blue enamel mug", "Earl Grey, 250 g"]
    assert cart.items[0]["unit_price_minor"] == 1200
    assert cart.accepts_marketing is True
    assert cart.consent_source == "storefront:accepts_marketing"
    assert cart.last_activity_at == T0
    # GBP 64 is a "medium" cart: first look two hours after the last activity.
    assert cart.next_wake_at == T0 + timedelta(hours=2)


def test_replayed_delivery_is_answered_200_and_changes_nothing(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    request = signed_storefront(
        shop, storefront_event(cart_id="c-1", occurred_at=T0), system_clock()
    )
    assert post(client, request).status_code == 200
    before = stored_counts(engine)

    again = post(client, request)

    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert stored_counts(engine) == before


def test_rotation_accepts_either_of_two_signatures_in_one_header(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    body = (
        b'{"event_id":"e1","type":"cart_updated","cart_id":"c9",'
        b'"occurred_at":"2026-03-14T15:00:00Z"}'
    )
    ts = int(system_clock().timestamp())
    old = sign_standard(body, "msg_1", "whsec_" + "b2xkLXNlY3JldC1rZXktMTIzNDU2Nzg=", ts)
    new = sign_standard(body, "msg_1", shop.storefront_secrets[0], ts)
    headers = dict(
        new, **{"webhook-signature": f"{old['webhook-signature']} {new['webhook-signature']}"}
    )

    response = client.post(f"/webhooks/storefront/{shop.slug}", content=body, headers=headers)

    assert response.status_code == 200, response.text
    assert count(engine, InboxEvent) == 1


def test_missing_field_is_kept_as_dead_letter_and_answered_422(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    event = storefront_event(cart_id="c-1", occurred_at=T0)
    del event["occurred_at"]

    response = post_storefront(client, shop, event)

    assert response.status_code == 422
    assert "occurred_at" in response.json()["reason"]
    assert count(engine, InboxEvent) == 1
    assert carts(engine, shop.id) == []


def test_order_placed_marks_the_cart_bought_and_later_updates_do_not_reopen_it(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    post_storefront(client, shop, storefront_event(cart_id="c-1", occurred_at=T0))
    bought_at = T0 + timedelta(minutes=5)
    order = storefront_event(
        cart_id="c-1", occurred_at=bought_at, kind="order_placed", order_id="o-1"
    )
    assert post_storefront(client, shop, order).status_code == 200
    later = storefront_event(
        cart_id="c-1", occurred_at=T0 + timedelta(hours=1), kind="cart_updated"
    )
    assert post_storefront(client, shop, later).status_code == 200

    [cart] = carts(engine, shop.id)
    assert cart.status == "bought"
    assert cart.bought_at == bought_at
    assert cart.order_ref == "o-1"
    assert cart.next_wake_at is None


def test_hostile_strings_are_stored_verbatim_as_data(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    # Markup is data; control characters (a header break) are refused: tests/intake/
    # test_bad_input.py.
    event = storefront_event(cart_id="c-1", occurred_at=T0)
    event["first_name"] = "Eve <b>Bcc: everyone@example.com</b>"
    event["items"][0]["title"] = '<img src=x onerror="alert(1)">'  # type: ignore[index]

    assert post_storefront(client, shop, event).status_code == 200

    [cart] = carts(engine, shop.id)
    assert cart.first_name == "Eve <b>Bcc: everyone@example.com</b>"
    assert cart.items[0]["title"] == '<img src=x onerror="alert(1)">'


def test_more_decimals_than_the_currency_has_is_refused_not_rounded(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    event = storefront_event(cart_id="c-1", occurred_at=T0)
    event["total"] = "64.001"

    response = post_storefront(client, shop, event)

    assert response.status_code == 422
    assert "more decimals than GBP allows" in response.json()["reason"]
    assert carts(engine, shop.id) == []


def test_the_variant_and_the_parts_of_the_total_are_kept(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    event = storefront_event(cart_id="c-1", occurred_at=T0)
    event["items"][0]["variant"] = "Blue / 350 ml"  # type: ignore[index]
    event.update(subtotal="64.00", discount="6.40", shipping="4.95", tax="0", total="62.55")

    response = post_storefront(client, shop, event)

    assert response.status_code == 200, response.text
    [cart] = carts(engine, shop.id)
    assert [i["variant"] for i in cart.items] == ["Blue / 350 ml", None]
    parts = (cart.subtotal_minor, cart.discount_minor, cart.shipping_minor, cart.tax_minor)
    assert parts == (6400, 640, 495, 0)
    assert cart.total_minor == 6255


def test_a_negative_discount_is_refused(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    event = storefront_event(cart_id="c-1", occurred_at=T0)
    event["discount"] = "-5.00"

    response = post_storefront(client, shop, event)

    assert response.status_code == 422
    assert "discount" in response.text
    assert carts(engine, shop.id) == []
