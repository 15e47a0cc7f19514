"""Attribution on the click rule, through the real pipeline: a reminder sent, its link
clicked, an order placed; the window, refunds and cancellations recorded later, test
orders, and the last click taking the credit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update

from cartnudge.clock import FrozenClock
from cartnudge.db.models import Order
from cartnudge.db.session import reading, writing
from cartnudge.measurement.attribution import Summary, attribute
from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0
from tests.delivery.helpers import H, Pass, post
from tests.tracking.test_links import links_of

D = timedelta(days=1)
SPAN = (T0 - 30 * D, T0 + 30 * D)


def report(engine: Engine, shop: ShopRecord, **kw: Any) -> Summary:
    with reading(engine) as conn:
        return attribute(conn, shop.id, *SPAN, **kw)


def click(client: TestClient, clock: FrozenClock, link: str, at: Any) -> None:
    clock.now = at
    assert client.get(link, follow_redirects=False).status_code == 302


def buy(client: TestClient, shop: ShopRecord, cart: str, at: Any, order: str = "o1") -> None:
    post(client, shop, cart_id=cart, kind="order_placed", order_id=order, occurred_at=at)


@pytest.fixture
def reminded(client: TestClient, sender_shop: ShopRecord, run: Pass) -> str:
    """A cart reminded once; its reminder's click link."""
    post(client, sender_shop, cart_id="c1")
    assert run(T0 + 2 * H)["sent"] == 1
    return links_of(run)["click"]


def test_an_order_within_the_window_after_a_click_is_claimed_net_of_refunds(
    client: TestClient,
    engine: Engine,
    sender_shop: ShopRecord,
    clock: FrozenClock,
    reminded: str,
) -> None:
    click(client, clock, reminded, T0 + 3 * H)
    buy(client, sender_shop, "c1", T0 + 4 * D)

    got = report(engine, sender_shop)

    assert (got.orders, got.recovered_carts) == (1, 1)
    (claimed,) = got.attributed
    assert (claimed.step, claimed.net_minor, claimed.clicked_at) == (1, 6400, T0 + 3 * H)
    assert got.revenue() == {"GBP": 6400}
    assert got.by_step() == {1: {"carts": 1, "revenue": {"GBP": 6400}}}

    with writing(engine) as conn:  # a partial refund recorded after the recovery
        conn.execute(update(Order).values(refunded_minor=1_200))
    assert report(engine, sender_shop).revenue() == {"GBP": 5_200}
    with writing(engine) as conn:  # then the order is cancelled
        conn.execute(update(Order).values(cancelled_at=T0 + 6 * D))
    cancelled = report(engine, sender_shop)
    assert (cancelled.orders, cancelled.attributed) == (0, [])


def test_an_order_after_the_window_or_before_the_click_is_not_claimed(
    client: TestClient,
    engine: Engine,
    sender_shop: ShopRecord,
    clock: FrozenClock,
    reminded: str,
) -> None:
    click(client, clock, reminded, T0 + 3 * H)
    buy(client, sender_shop, "c1", T0 + 3 * H + timedelta(days=5, minutes=1))  # the default: 5 days
    late = report(engine, sender_shop)
    assert (late.orders, late.attributed) == (1, [])
    # The same order with a window of a week is claimed: the window is the shop's rule.
    assert report(engine, sender_shop, window=timedelta(days=7)).recovered_carts == 1


def test_a_click_after_the_order_claims_nothing(
    client: TestClient,
    engine: Engine,
    sender_shop: ShopRecord,
    clock: FrozenClock,
    reminded: str,
) -> None:
    buy(client, sender_shop, "c1", T0 + 3 * H)
    click(client, clock, reminded, T0 + 4 * H)
    assert report(engine, sender_shop).attributed == []


def test_the_last_click_before_the_order_takes_the_credit(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, clock: FrozenClock, run: Pass
) -> None:
    post(client, sender_shop, cart_id="c1")
    assert run(T0 + 2 * H)["sent"] == 1
    first = links_of(run)["click"]
    assert run(T0 + 2 * D)["sent"] == 1  # the second reminder
    second = next(link for link in (links_of_all(run)) if link != first)
    click(client, clock, first, T0 + 3 * H)
    click(client, clock, second, T0 + 2 * D + H)
    buy(client, sender_shop, "c1", T0 + 2 * D + 2 * H)
    (claimed,) = report(engine, sender_shop).attributed
    assert claimed.step == 2


def links_of_all(run: Pass) -> list[str]:
    import re

    found = []
    for message in run.emails():
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        found += re.findall(r"http://testserver(/c/[A-Za-z0-9_-]+)", text)
    return found


def test_a_test_order_claims_nothing(
    client: TestClient,
    engine: Engine,
    sender_shop: ShopRecord,
    clock: FrozenClock,
    reminded: str,
) -> None:
    click(client, clock, reminded, T0 + 3 * H)
    buy(client, sender_shop, "c1", T0 + D)
    with writing(engine) as conn:
        conn.execute(update(Order).values(test=True))
    assert report(engine, sender_shop).orders == 0


def test_a_span_or_window_that_is_not_one_is_refused(
    engine: Engine, sender_shop: ShopRecord
) -> None:
    with reading(engine) as conn:
        with pytest.raises(ValueError, match="window"):
            attribute(conn, sender_shop.id, *SPAN, window=timedelta(0))
        with pytest.raises(ValueError, match="end must come after"):
            attribute(conn, sender_shop.id, SPAN[1], SPAN[0])
