"""Two carts found to be one (a checkout seen first without its cart token, then with it):
every send either had stays on record, and the shopper gets each step once."""

from __future__ import annotations

from datetime import datetime

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cartnudge.carts.queries import list_sends, show_cart
from cartnudge.db.session import reading
from cartnudge.shops.repository import ShopRecord
from cartnudge.timing.waiter import wake_due
from tests.conftest import T0
from tests.delivery.helpers import H, Pass, sends
from tests.delivery.test_sender import claimed, deliver
from tests.intake.helpers import carts, post_shopify
from tests.intake.test_shopify_lane import current_checkout

M = H / 60
CART_TOKEN = "cart-token-1"


def checkout(
    client: TestClient,
    shop: ShopRecord,
    token: str,
    at: datetime,
    *,
    cart_token: str | None,
    email: str = "bob.norman@hostmail.com",
) -> None:
    """A Shopify checkout of a 409.94 USD cart (the big tier: reminders 1 h, then 20 h),
    the shopper opted in, last changed at ``at``."""
    payload = current_checkout(
        token=token,
        cart_token=cart_token,
        updated_at=at.isoformat(),
        created_at=at.isoformat(),
        buyer_accepts_marketing=True,
        email=email,
    )
    response = post_shopify(client, shop, "checkouts/update", payload, f"wh-{token}-{at}")
    assert response.status_code == 200, response.text


def merge(client: TestClient, engine: Engine, shop: ShopRecord, at: datetime) -> int:
    """The checkout ``first`` turns out to belong to the cart of ``second``: one cart now."""
    checkout(client, shop, "first", at, cart_token=CART_TOKEN)
    [cart] = carts(engine, shop.id)
    return int(cart.id)


def test_both_carts_sends_of_one_step_stay_on_record_after_the_merge(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    checkout(client, sender_shop, "first", T0, cart_token=None)
    checkout(client, sender_shop, "second", T0 + 10 * M, cart_token=CART_TOKEN)
    assert run(T0 + 65 * M)["sent"] == 1  # the first cart's step 1
    report = run(T0 + 80 * M)  # the second cart's step 1: the same address, just reminded
    assert report["skipped"] == 1
    before = {(s.cart_id, s.step, s.status) for s in sends(engine)}
    first, second = (c.id for c in carts(engine, sender_shop.id))

    cart_id = merge(client, engine, sender_shop, T0 + 90 * M)

    after = sends(engine)
    assert {(s.step, s.status) for s in after} == {(step, st) for _, step, st in before}
    assert {s.cart_id for s in after} == {cart_id}
    with reading(engine) as conn:
        listed = list_sends(conn, sender_shop.id)
        shown = show_cart(conn, cart_id)
    assert shown is not None
    assert cart_id == first
    # The merged cart's send says which cart it was decided for.
    expected = [("sent", None), ("skipped", second)]
    assert sorted((s["status"], s["merged_from"]) for s in listed) == expected
    assert sorted((s["status"], s["merged_from"]) for s in shown["sends"]) == expected


def test_a_step_the_merged_cart_already_had_is_not_sent_again(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    # The cart that is kept (made first) is active later: its step 1 is due after the
    # other one's was sent.
    checkout(client, sender_shop, "first", T0 + 30 * M, cart_token=None)
    checkout(client, sender_shop, "second", T0, cart_token=CART_TOKEN)
    assert run(T0 + 60 * M)["sent"] == 1  # the second cart's step 1
    wake_due(engine, T0 + 90 * M)  # the first cart's step 1 is queued, not sent yet

    merge(client, engine, sender_shop, T0 + 95 * M)
    run(T0 + 100 * M)

    assert len(run.emails()) == 1
    steps = sorted((s.step, s.status) for s in sends(engine))
    assert steps == [(1, "cancelled"), (1, "sent")]
    [cancelled] = [s for s in sends(engine) if s.status == "cancelled"]
    assert "merged" in cancelled.reason


def test_a_queued_step_of_the_absorbed_cart_goes_out_once(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    checkout(client, sender_shop, "first", T0 + 30 * M, cart_token=None)
    checkout(client, sender_shop, "second", T0, cart_token=CART_TOKEN)
    wake_due(engine, T0 + 60 * M)  # the second cart's step 1 is queued, not sent yet

    merge(client, engine, sender_shop, T0 + 65 * M)
    run(T0 + 70 * M)
    run(T0 + 3 * H)  # the merged cart is due again: step 1 is decided already

    assert len(run.emails()) == 1
    assert [(s.step, s.status) for s in sends(engine)] == [(1, "sent")]
    [cart] = carts(engine, sender_shop.id)
    assert cart.reminders_sent == 1


def test_a_claimed_copy_of_a_step_already_sent_is_withdrawn_before_its_hand_over(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    checkout(client, sender_shop, "first", T0, cart_token=None)
    # The same cart, with the address typed differently at checkout.
    work = "bob@work.example"
    checkout(client, sender_shop, "second", T0 + 30 * M, cart_token=CART_TOKEN, email=work)
    assert run(T0 + 60 * M)["sent"] == 1  # the first cart's step 1
    wake_due(engine, T0 + 90 * M)
    [outgoing] = claimed(engine, T0 + 90 * M, run.providers)  # the second cart's step 1

    merge(client, engine, sender_shop, T0 + 95 * M)

    assert deliver(engine, T0 + 95 * M, run.providers, [outgoing])["withdrawn"] == 1
    assert [m["To"] for m in run.emails()] == ["bob.norman@hostmail.com"]
    withdrawn = next(s for s in sends(engine) if s.id == outgoing.send_id)
    assert (withdrawn.status, withdrawn.handed_at) == ("cancelled", None)
