"""The lift report: the carts assigned in a span, reminded against held out, purchases
within the horizon, the intervals, and the words when the groups are too small."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select

from cartnudge.clock import FrozenClock
from cartnudge.db.models import Cart, Order
from cartnudge.db.session import reading, writing
from cartnudge.measurement.lift import lift
from cartnudge.shops.repository import ShopRecord
from cartnudge.testing.carts import insert_open_carts
from cartnudge.timing.waiter import wake_due
from tests.conftest import T0, ShopFactory
from tests.dashboard.helpers import sign_in, user
from tests.test_cli import cli  # noqa: F401 - the fixture

D = timedelta(days=1)
ASSIGNED = T0 + timedelta(hours=5)


def assigned_shop(make_shop: ShopFactory, engine: Engine, carts: int, percent: int) -> ShopRecord:
    """A GBP shop holding out ``percent`` of ``carts`` carts, each assigned at ASSIGNED."""
    shop = make_shop(holdout_percent=percent, currency="GBP")
    insert_open_carts(engine, shop.id, carts, active_at=T0, wake_at=T0, shoppers=True)
    wake_due(engine, ASSIGNED)
    return shop


def groups(engine: Engine, shop: ShopRecord) -> dict[bool, list[int]]:
    with reading(engine) as conn:
        rows = conn.execute(
            select(Cart.c.id, Cart.c.held_out).where(Cart.c.shop_id == shop.id).order_by(Cart.c.id)
        )
        out: dict[bool, list[int]] = {True: [], False: []}
        for row in rows:
            out[bool(row.held_out)].append(row.id)
        return out


def buy(engine: Engine, shop: ShopRecord, cart_ids: list[int], **extra: Any) -> None:
    rows = [
        {
            "shop_id": shop.id,
            "source": "storefront",
            "external_id": f"o-{cart_id}-{extra.get('placed_at', ASSIGNED + D)}",
            "placed_at": ASSIGNED + D,
            "currency": "GBP",
            "total_minor": 5_000,
            "has_cart_keys": True,
            "cart_id": cart_id,
            "created_at": T0,
            **extra,
        }
        for cart_id in cart_ids
    ]
    with writing(engine) as conn:
        conn.execute(insert(Order), rows)


def test_the_lift_of_reminders_over_the_held_out_carts(
    engine: Engine, make_shop: ShopFactory
) -> None:
    shop = assigned_shop(make_shop, engine, 400, 50)
    split = groups(engine, shop)
    rng = random.Random(5)
    # Reminded carts buy 30 in 100, held-out ones 10 in 100: a lift of 20 points.
    bought = [c for c in split[False] if rng.random() < 0.30]
    bought += [c for c in split[True] if rng.random() < 0.10]
    buy(engine, shop, bought)
    # Bought too late to count (after the 7-day horizon), and a cancelled order.
    buy(engine, shop, split[True][:3], placed_at=ASSIGNED + 8 * D)
    buy(engine, shop, split[True][3:5], cancelled_at=ASSIGNED + 2 * D, placed_at=ASSIGNED + 2 * D)

    with reading(engine) as conn:
        got = lift(conn, shop.id, "GBP", T0, T0 + 2 * D)

    r, h = got.reminded, got.held_out
    assert (r.carts, h.carts) == (len(split[False]), len(split[True]))
    expected_r = len([c for c in bought if c in set(split[False])])
    expected_h = len([c for c in bought if c in set(split[True])])
    assert (r.bought, h.bought) == (expected_r, expected_h)
    assert got.too_small is None
    assert got.rate_difference is not None and got.rate_difference.contains(0.20)
    assert got.rate_difference.excludes_zero
    assert got.revenue_difference is not None
    assert got.revenue_difference.estimate == r.revenue_per_cart - h.revenue_per_cart
    assert got.revenue_difference.contains(0.20 * 50)  # 20 points of 50.00 orders
    assert got.incremental_revenue == round(got.revenue_difference.estimate * r.carts, 2)
    assert got.attributed_revenue == 0  # nobody clicked: nothing a vendor would claim
    assert got.carts_needed is not None and got.carts_needed > 1_000


def test_too_few_carts_are_said_in_words_and_no_interval_is_given(
    engine: Engine, make_shop: ShopFactory
) -> None:
    shop = assigned_shop(make_shop, engine, 20, 50)
    buy(engine, shop, groups(engine, shop)[False][:3])
    with reading(engine) as conn:
        got = lift(conn, shop.id, "GBP", T0, T0 + 2 * D)
    assert got.too_small is not None and "too few carts to say anything yet" in got.too_small
    assert (got.rate_difference, got.revenue_difference, got.incremental_revenue) == (
        None,
        None,
        None,
    )
    none = assigned_shop(make_shop, engine, 10, 0)
    with reading(engine) as conn:
        nothing = lift(conn, none.id, "GBP", T0, T0 + 2 * D)
    assert "no carts were held out" in (nothing.too_small or "")


def test_carts_assigned_outside_the_span_are_not_in_it(
    engine: Engine, make_shop: ShopFactory
) -> None:
    shop = assigned_shop(make_shop, engine, 30, 50)
    with reading(engine) as conn:
        before = lift(conn, shop.id, "GBP", T0 - 2 * D, T0)
        after = lift(conn, shop.id, "GBP", T0, T0 + 2 * D)
    assert before.reminded.carts + before.held_out.carts == 0
    assert after.reminded.carts + after.held_out.carts == 30


def test_report_lift_from_the_command_line(
    cli: Any,  # noqa: F811
    engine: Engine,
    make_shop: ShopFactory,
) -> None:
    shop = assigned_shop(make_shop, engine, 200, 50)
    buy(engine, shop, groups(engine, shop)[False][::3] + groups(engine, shop)[True][::9])
    day = T0.date().isoformat()
    text = cli("report", "lift", "--shop", shop.slug, "--since", day)
    assert text.exit_code == 0, text.output
    assert "reminders added" in text.output and "95% interval" in text.output
    assert "attributed on the click rule" in text.output
    as_json = json.loads(
        cli("report", "lift", "--shop", shop.slug, "--since", day, "--json").output
    )
    assert as_json["reminded"]["carts"] + as_json["held_out"]["carts"] == 200
    bad = cli("report", "lift", "--shop", shop.slug, "--since", "yesterday")
    assert bad.exit_code != 0 and "is not a date" in bad.output
    backwards = cli("report", "lift", "--shop", shop.slug, "--since", day, "--until", day)
    assert backwards.exit_code != 0 and "must be after since" in backwards.output
    unknown = cli("report", "lift", "--shop", "nope", "--since", day)
    assert unknown.exit_code != 0


def test_the_lift_page_shows_the_groups_and_the_verdict(
    client: TestClient, engine: Engine, make_shop: ShopFactory, clock: FrozenClock
) -> None:
    shop = assigned_shop(make_shop, engine, 400, 50)
    split = groups(engine, shop)
    buy(engine, shop, split[False][::3] + split[True][::10])
    clock.now = T0 + 3 * D
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")

    page = client.get(f"/shops/{shop.slug}/lift")

    assert page.status_code == 200
    assert "Reminders added" in page.text and "95% interval" in page.text
    assert f'<td class="num">{len(split[False])}</td>' in page.text
    assert "Attributed on the click rule" in page.text
    small = client.get(f"/shops/{shop.slug}/lift?since=2020-01-01&until=2020-02-01")
    assert "No carts were held out, so there is nothing to compare" in small.text
    assert client.get(f"/shops/{shop.slug}/lift?since=soon").status_code == 400
    backwards = client.get(f"/shops/{shop.slug}/lift?since=2026-03-10&until=2026-03-01")
    assert backwards.status_code == 400


def test_the_lift_page_needs_sign_in_and_the_shop(
    client: TestClient, engine: Engine, make_shop: ShopFactory
) -> None:
    shop, other = make_shop(), make_shop()
    answer = client.get(f"/shops/{shop.slug}/lift", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    assert client.get(f"/shops/{other.slug}/lift").status_code == 404
