"""Every published fixture webhook, delivered three times in shuffled order, ends in the
state one ordered pass leaves.

Each Shopify and Stripe fixture under ``shared/fixtures`` is delivered as the webhook it
is (those the lanes cannot apply, such as a customer resource or Stripe's ``plan.created``
event, are acknowledged and kept as dead letters), with a storefront cart's whole life
beside them. The copies are replays: same delivery ids, so they must change nothing.
Compared, per shop and without surrogate ids or our own timestamps: the carts (keys,
items, totals, states, timers, contact, consent on the cart), the orders and the cart each
names, the consent each address ends with, privacy requests, and the inbox rows.

Delivered one by one (a transaction each), and in batches that the ingest writer commits
as one transaction each (so copies and related events meet inside one batch), on both
engines.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.carts.matching import why_not_closing
from cartnudge.clock import FrozenClock, system_clock
from cartnudge.db.models import Cart, CartKey, ConsentEntry, InboxEvent, Order, PrivacyRequest
from cartnudge.db.session import reading
from cartnudge.intake.endpoints import (
    SHOPIFY_LANE,
    STOREFRONT_LANE,
    STRIPE_LANE,
    IntakeContext,
    Webhooks,
)
from cartnudge.intake.examples import (
    ExampleRequest,
    signed_shopify,
    signed_stripe,
)
from cartnudge.intake.service import Delivery, Outcome
from cartnudge.intake.writer import IngestWriter
from cartnudge.shops.cache import ShopCache
from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0, load_fixture
from tests.intake.helpers import storefront_life
from tests.intake.test_stripe_lane import expired_event
from tests.tally import record, scaled

SHUFFLES = scaled(2, 25)
COPIES = 3
MAX_BATCH = 12  # "in batches": each shuffled run is cut into batches of 1 to this many
ACCEPTED = (200, 422)  # 422: a storefront delivery kept as a dead letter

MakeShop = Callable[..., ShopRecord]
_counted_fixtures: list[int] = []  # the fixture count is reported once, not once per run


# -- what is delivered --------------------------------------------------------------------
def fixture_deliveries(shop: ShopRecord) -> list[ExampleRequest]:
    """Every fixture once, signed for ``shop``, each with a fixed delivery id (so that
    copies are replays)."""
    now = system_clock()
    out: list[ExampleRequest] = []

    def shopify(topic: str, payload: dict[str, Any], webhook_id: str) -> None:
        out.append(signed_shopify(shop, topic, payload, webhook_id=webhook_id))

    # shopify/rest: checkouts (the abandoned one, the listing, and the current shape with
    # no id, here linked to the second cart), carts, both orders, a customer.
    shopify(
        "checkouts/create", load_fixture("shopify/rest/abandoned_checkout.json")["checkout"], "s1"
    )
    for index, listed in enumerate(load_fixture("shopify/rest/checkouts.json")["checkouts"]):
        shopify("checkouts/update", listed, f"s-list-{index}")
    carts = load_fixture("shopify/rest/carts.json")["carts"]
    current = load_fixture("shopify/rest/checkout.json")["checkout"]
    current["cart_token"] = carts[1]["token"]
    shopify("checkouts/update", current, "s2")
    for index, cart in enumerate(carts):
        shopify("carts/update", cart, f"c{index}")
    shopify("carts/create", carts[0], "c-create-0")
    shopify("orders/create", load_fixture("shopify/rest/order.json")["order"], "s3")
    orders = load_fixture("shopify/rest/orders.json")["orders"]
    for index, order in enumerate(orders):
        shopify("orders/paid", order, f"s4-{index}")
    # An order that names no cart, matched by the shopper's email (the storefront carts).
    keyless = dict(orders[0], id=99, cart_token=None, checkout_token=None)
    keyless.update(
        email="carol@example.com",
        created_at=(T0 + timedelta(hours=2)).isoformat(),
        processed_at=None,
    )
    shopify("orders/create", keyless, "s5")
    # A topic the lane does not apply: kept as a dead letter, acknowledged.
    shopify("customers/update", load_fixture("shopify/rest/customer.json")["customer"], "s7")
    # shopify/webhooks: the compliance topic, queued for the privacy stage.
    shopify("shop/redact", load_fixture("shopify/webhooks/shop/redact.json"), "s6")

    # stripe: the expired session (Stripe's session fixture in Stripe's envelope fixture,
    # see tests/intake/test_stripe_lane.py), both completed events, the asynchronous
    # payment of the second, a paid recovery session of the expired one, and the generic
    # envelope (plan.created, a dead letter).
    expired = expired_event()
    out.append(signed_stripe(shop, expired, now))
    out.append(signed_stripe(shop, load_fixture("stripe/checkout.session.completed.json"), now))
    payment_mode = load_fixture("stripe/checkout.session.completed.payment_mode.json")
    out.append(signed_stripe(shop, payment_mode, now))
    succeeded = dict(
        payment_mode, id="evt_async_1", type="checkout.session.async_payment_succeeded"
    )
    out.append(signed_stripe(shop, succeeded, now))
    recovery = load_fixture("stripe/checkout.session.completed.json")
    recovery["id"] = "evt_recovery_1"
    recovery["data"]["object"].update(
        id="cs_test_recovery", recovered_from=expired["data"]["object"]["id"]
    )
    out.append(signed_stripe(shop, recovery, now))
    out.append(signed_stripe(shop, load_fixture("stripe/event.object.openapi_fixture.json"), now))

    out += storefront_life(shop, now)
    return out


# -- the state compared -------------------------------------------------------------------
CART_SKIP = {"id", "shop_id", "created_at", "updated_at"}
State = dict[str, Any]


def final_state(engine: Engine, shop_id: int) -> State:
    """The shop's rows that event order must not change, each table keyed by a natural
    key; a cart is named by its sorted source keys."""
    carts_t, keys_t, orders_t = Cart, CartKey, Order
    inbox_t, privacy_t, ledger_t = (
        InboxEvent,
        PrivacyRequest,
        ConsentEntry,
    )
    with reading(engine) as conn:
        keys: dict[int, list[tuple[str, str]]] = {}
        for key in conn.execute(select(keys_t).where(keys_t.c.shop_id == shop_id)):
            keys.setdefault(key.cart_id, []).append((key.kind, key.value))

        def name(cart_id: int | None) -> tuple[tuple[str, str], ...] | None:
            return None if cart_id is None else tuple(sorted(keys.get(cart_id, [])))

        carts = {
            name(row.id): {k: v for k, v in row._mapping.items() if k not in CART_SKIP}
            for row in conn.execute(select(carts_t).where(carts_t.c.shop_id == shop_id))
        }
        orders = {
            (row.source, row.external_id): {
                "placed_at": row.placed_at,
                "email_key": row.email_key,
                "currency": row.currency,
                "total_minor": row.total_minor,
                "has_cart_keys": row.has_cart_keys,
                "cart": name(row.cart_id),
                # A test order (Stripe's samples are from its test mode), a cancelled or a
                # voided one names its cart but buys none (this shop's test orders do not).
                "purchase": why_not_closing(
                    cancelled=row.cancelled_at is not None,
                    financial_status=row.financial_status,
                    test=row.test,
                    test_orders_close=False,
                )
                is None,
            }
            for row in conn.execute(select(orders_t).where(orders_t.c.shop_id == shop_id))
        }
        inbox_rows = list(conn.execute(select(inbox_t).where(inbox_t.c.shop_id == shop_id)))
        inbox = {
            (row.source, row.external_id): {
                "topic": row.topic,
                "status": row.status,
                "reason": row.reason,
                "occurred_at": row.occurred_at,
                "payload": row.payload,
                "cart": name(row.cart_id),
            }
            for row in inbox_rows
        }
        delivery_of = {row.id: (row.source, row.external_id) for row in inbox_rows}
        privacy = sorted(
            (row.kind, row.state, delivery_of.get(row.inbox_event_id))
            for row in conn.execute(select(privacy_t).where(privacy_t.c.shop_id == shop_id))
        )
        # The ledger is append-only history: when an address got its answer depends on
        # which event first brought the address, so only the answer it ends with (its
        # latest entry: kind and source) must not depend on order.
        consent: dict[str, tuple[str, str]] = {}
        ledger = select(ledger_t).where(ledger_t.c.shop_id == shop_id)
        for row in conn.execute(ledger.order_by(ledger_t.c.at, ledger_t.c.id)):
            consent[row.email_key] = (row.kind, row.source)
    return {
        "carts": carts,
        "orders": orders,
        "consent": consent,
        "privacy_requests": privacy,
        "inbox_events": inbox,
    }


def differences(expected: State, actual: State) -> list[str]:
    """One line per table entry that is missing, extra, or has a field that differs."""
    found: list[str] = []
    for table, want in expected.items():
        got = actual[table]
        if not isinstance(want, dict):
            if want != got:
                found.append(f"{table}: expected {want!r}, got {got!r}")
            continue
        for key in sorted(set(want) | set(got), key=repr):
            old, new = want.get(key), got.get(key)
            if old == new:
                continue
            if isinstance(old, dict) and isinstance(new, dict):
                for field in sorted(set(old) | set(new)):
                    if old.get(field) != new.get(field):
                        found.append(
                            f"{table} {key!r} {field}: expected {old.get(field)!r}, "
                            f"got {new.get(field)!r}"
                        )
            else:
                found.append(f"{table} {key!r}: expected {old!r}, got {new!r}")
    return found


def misattributed(state: State) -> list[str]:
    """Orders whose cart says another order bought it: a purchase names the cart it bought,
    and an order that is none names a cart it did not buy."""
    found = []
    for (source, external_id), order in state["orders"].items():
        cart = state["carts"].get(order["cart"])
        if cart is not None and (cart["order_ref"] == external_id) != order["purchase"]:
            found.append(
                f"order {source}:{external_id} names cart {order['cart']!r}, "
                f"which order {cart['order_ref']!r} bought"
            )
    return found


# -- delivering ---------------------------------------------------------------------------
def one_by_one(client: TestClient, requests: list[ExampleRequest]) -> None:
    """Each delivery through the app, a request (and a transaction) at a time."""
    for request in requests:
        response = client.post(request.path, content=request.body, headers=request.headers)
        assert response.status_code in ACCEPTED, response.text


class Gathering:
    """A writer for the lanes that holds deliveries until ``flush`` commits everything
    gathered as one batch with the real ingest writer: the test decides the batches."""

    def __init__(self, writer: IngestWriter) -> None:
        self.writer = writer
        self.waiting: list[tuple[Delivery, asyncio.Future[Outcome]]] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    async def deliver(self, delivery: Delivery) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.waiting.append((delivery, future))
        return await future

    def flush(self, order: dict[tuple[str, str], int]) -> int:
        """Commit what is gathered in one transaction, in the order the requests were
        shuffled into (``order``: position of each delivery); answer every request."""
        batch = sorted(self.waiting, key=lambda item: order[_identity(item[0])])
        self.waiting = []
        results = self.writer.write_batch([delivery for delivery, _ in batch])
        for (_, future), result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        return len(batch)


def _identity(delivery: Delivery) -> tuple[str, str]:
    return delivery.source, delivery.external_id


async def in_batches(
    engine: Engine, clock: FrozenClock, requests: list[ExampleRequest], rng: random.Random
) -> int:
    """Every delivery through the lanes, cut into batches of random size, each committed
    as one transaction. Returns the number of batches."""
    gathering = Gathering(IngestWriter(engine, clock))
    lanes = Webhooks(
        IntakeContext(ShopCache(engine), gathering, clock),
        (SHOPIFY_LANE, STRIPE_LANE, STOREFRONT_LANE),
    )
    batches = 0
    transport = httpx.ASGITransport(app=lanes)
    async with httpx.AsyncClient(transport=transport, base_url="http://lanes") as client:
        start = 0
        while start < len(requests):
            chunk = requests[start : start + rng.randint(1, MAX_BATCH)]
            start += len(chunk)
            sent = [
                asyncio.create_task(client.post(r.path, content=r.body, headers=r.headers))
                for r in chunk
            ]
            # Every request of the chunk verified, parsed and waiting for its commit.
            for _ in range(2000):
                if len(gathering.waiting) == len(chunk):
                    break
                await asyncio.sleep(0.001)
            assert len(gathering.waiting) == len(chunk), "requests did not reach the writer"
            # The shuffled position of each delivery decides its place in the batch.
            gathering.flush(_positions(chunk))
            batches += 1
            for response in await asyncio.gather(*sent):
                assert response.status_code in ACCEPTED, response.text
    return batches


def _positions(chunk: list[ExampleRequest]) -> dict[tuple[str, str], int]:
    """Each delivery's first position in the chunk (a copy is the same delivery), by the
    identity its lane dedupes on."""
    order: dict[tuple[str, str], int] = {}
    for position, request in enumerate(chunk):
        order.setdefault(request_identity(request), position)
    return order


def request_identity(request: ExampleRequest) -> tuple[str, str]:
    """(source, delivery id) as the lanes read them: Shopify's webhook id header, the
    Stripe event's id, the Standard Webhooks message id."""
    if request.path == "/webhooks/shopify":
        return "shopify", request.headers["x-shopify-webhook-id"]
    if request.path.startswith("/webhooks/stripe/"):
        return "stripe", str(orjson.loads(request.body)["id"])
    return "storefront", request.headers["webhook-id"]


# -- the test -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["one by one", "in batches"])
def test_three_shuffled_copies_of_every_fixture_end_as_one_ordered_pass(
    client: TestClient, engine: Engine, make_shop: MakeShop, clock: FrozenClock, mode: str
) -> None:
    reference = make_shop()
    ordered = fixture_deliveries(reference)
    one_by_one(client, ordered)
    expected = final_state(engine, reference.id)
    # The fixtures meet: bought and open carts, orders, a dead letter, a privacy request.
    assert {c["status"] for c in expected["carts"].values()} == {"open", "bought"}
    assert expected["orders"] and expected["consent"] and expected["privacy_requests"]
    assert {row["status"] for row in expected["inbox_events"].values()} == {"applied", "dead"}
    assert len(expected["inbox_events"]) == len(ordered)
    found = [f"ordered pass: {line}" for line in misattributed(expected)]

    for seed in range(SHUFFLES):
        shop = make_shop()
        requests = fixture_deliveries(shop) * COPIES
        rng = random.Random(seed)
        rng.shuffle(requests)
        if mode == "one by one":
            one_by_one(client, requests)
        else:
            asyncio.run(in_batches(engine, clock, requests, rng))
        state = final_state(engine, shop.id)
        found += [f"seed {seed}: {line}" for line in differences(expected, state)]
        found += [f"seed {seed}: {line}" for line in misattributed(state)]

    record(
        "fixtures replayed 3× shuffled",
        fixtures=0 if _counted_fixtures else len(ordered),  # the same fixtures every run
        shuffles=SHUFFLES,
        deliveries=SHUFFLES * COPIES * len(ordered),
        differences=len(found),
    )
    _counted_fixtures.append(len(ordered))
    assert not found, f"{len(found)} differences:\n" + "\n".join(found[:20])
