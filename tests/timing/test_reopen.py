"""A cart the waiter gave up on comes back when the shopper does, with a fresh clock; an
event from before the give-up does not bring it back, and a cart closed for any other
reason (bought, stopped by the owner, deleted at the source) stays closed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.carts.actions import stop_cart
from cartnudge.db.models import AuditEntry, CartStatus
from cartnudge.db.session import reading, writing
from cartnudge.shops.repository import ShopRecord
from cartnudge.timing.waiter import wake_due
from cartnudge.tracking.service import unsubscribe
from tests.conftest import T0
from tests.delivery.helpers import H, Pass, post, sends
from tests.intake.helpers import carts, post_shopify
from tests.intake.test_shopify_lane import current_checkout

D = timedelta(days=1)
# The storefront's 64.00 cart (medium tier): reminders 2 h and 22 h on, given up 2 d later.
GIVEN_UP = T0 + 24 * H + 2 * D
audit_t = AuditEntry


def status_audits(engine: Engine, cart_id: int) -> list[tuple[str, str, str | None]]:
    with reading(engine) as conn:
        rows = conn.execute(
            select(audit_t)
            .where(audit_t.c.cart_id == cart_id, audit_t.c.action.startswith("status:"))
            .order_by(audit_t.c.id)
        )
        return [(r.actor, r.action, r.reason) for r in rows]


def given_up(client: TestClient, engine: Engine, shop: ShopRecord, **event: Any) -> Any:
    post(client, shop, cart_id="c1", occurred_at=T0, **event)
    for at in (T0 + 2 * H, T0 + 24 * H, GIVEN_UP):
        wake_due(engine, at)
    [cart] = carts(engine, shop.id)
    assert (cart.status, cart.given_up_at, cart.next_wake_at) == ("expired", GIVEN_UP, None)
    return cart


def test_an_expired_cart_reopens_when_the_shopper_comes_back_with_a_fresh_clock(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    # No address, so never reminded: given up when a reminded cart would have been.
    cart = given_up(client, engine, sender_shop, email=None)
    assert cart.status_reason == "no address to remind"

    back = T0 + 4 * D  # the shopper returns, and gives their address this time
    post(client, sender_shop, cart_id="c1", event_id="back", occurred_at=back)

    [cart] = carts(engine, sender_shop.id)
    assert (cart.status, cart.status_reason) == ("open", None)
    assert cart.next_wake_at == back + 2 * H  # the first reminder's wait, from the return
    assert status_audits(engine, cart.id)[-2:] == [
        ("waiter", "status:expired", "no address to remind"),
        ("intake:storefront", "status:open", "the shopper came back"),
    ]
    assert run(back + 2 * H)["sent"] == 1
    [message] = run.emails()
    assert message["To"] == "shopper@example.com"


def test_an_event_from_before_the_give_up_does_not_reopen_the_cart(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    cart = given_up(client, engine, shop)

    # Delivered after the give-up, but the shopper acted before it.
    post(client, shop, cart_id="c1", event_id="late", occurred_at=GIVEN_UP - H)
    assert carts(engine, shop.id)[0].status == "expired"
    assert carts(engine, shop.id)[0].next_wake_at is None
    assert status_audits(engine, cart.id)[-1][1] == "status:expired"

    post(client, shop, cart_id="c1", event_id="back", occurred_at=GIVEN_UP + H)
    [cart] = carts(engine, shop.id)
    # Both steps were decided: no reminder is repeated, the cart is given up again later.
    assert (cart.status, cart.next_wake_at) == ("open", GIVEN_UP + H + 2 * D)
    assert wake_due(engine, GIVEN_UP + H + 2 * D).moves["given_up"] == 1
    assert [s.step for s in sends(engine)] == [1, 2]
    [cart] = carts(engine, shop.id)
    assert (cart.status, cart.given_up_at) == ("expired", GIVEN_UP + H + 2 * D)


@pytest.mark.parametrize("closed_by", ["bought", "suppressed", "written_off"])
def test_a_cart_closed_otherwise_stays_closed_when_the_shopper_comes_back(
    client: TestClient, engine: Engine, shop: ShopRecord, closed_by: str
) -> None:
    cart = given_up(client, engine, shop)
    if closed_by == "bought":
        order = {"kind": "order_placed", "order_id": "o1", "event_id": "order"}
        post(client, shop, cart_id="c1", occurred_at=GIVEN_UP + H, **order)
    else:
        with writing(engine) as conn:
            stop_cart(conn, cart.id, CartStatus(closed_by), GIVEN_UP + H, reason="by phone")

    post(client, shop, cart_id="c1", event_id="back", occurred_at=GIVEN_UP + D)

    [cart] = carts(engine, shop.id)
    assert (cart.status, cart.next_wake_at) == (closed_by, None)


def test_a_cart_deleted_at_the_source_stays_closed_when_the_checkout_comes_back(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    checkout = current_checkout(updated_at=T0.isoformat())
    post_shopify(client, shop, "checkouts/create", checkout, "wh-1")
    post_shopify(client, shop, "checkouts/delete", {"token": checkout["token"]}, "wh-2")

    later = current_checkout(updated_at=(T0 + D).isoformat())
    post_shopify(client, shop, "checkouts/update", later, "wh-3")

    [cart] = carts(engine, shop.id)
    assert (cart.status, cart.next_wake_at) == ("closed", None)


def test_an_unsubscribed_shopper_who_comes_back_gets_no_reminder(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    given_up(client, engine, sender_shop, email=None)
    with writing(engine) as conn:
        unsubscribe(
            conn, sender_shop.id, "shopper@example.com", GIVEN_UP, source="link", actor="shopper"
        )

    back = T0 + 4 * D
    post(client, sender_shop, cart_id="c1", event_id="back", occurred_at=back)
    run(back + 2 * H)

    assert run.emails() == []
    [send] = sends(engine)
    assert (send.step, send.status, send.reason) == (1, "skipped", "address unsubscribed")
