"""Today: carts seen, reminded and recovered over 24 hours, 7 and 30 days, the sends by
outcome per day, and what needs the owner's attention."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cartnudge.clock import FrozenClock
from cartnudge.dashboard.today import today
from cartnudge.db.session import reading
from cartnudge.measurement.tally import tally_shops
from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0, ShopFactory
from tests.dashboard.helpers import sign_in, user
from tests.delivery.helpers import H, Pass, post


def row(text: str, heading: str) -> list[str]:
    found = re.search(rf"<tr><th>{heading}</th>(.*?)</tr>", text, re.S)
    assert found, heading
    return [
        re.sub(r"<[^>]+>", " ", cell).strip()
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", found.group(1), re.S)
    ]


def test_today_counts_what_was_seen_reminded_and_recovered(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass, clock: FrozenClock
) -> None:
    post(client, sender_shop, cart_id="c1")
    post(client, sender_shop, cart_id="c2", email="other@example.com")
    post(client, sender_shop, cart_id="old", email=None, occurred_at=T0 - 10 * 24 * H)
    assert run(T0 + 2 * H)["sent"] == 2
    post(
        client,
        sender_shop,
        cart_id="c1",
        kind="order_placed",
        order_id="o1",
        occurred_at=T0 + 3 * H,
    )
    clock.advance(hours=4)
    user(engine, "owner", shops=[sender_shop.slug])
    sign_in(client, "owner")
    page = client.get(f"/shops/{sender_shop.slug}/today")
    assert page.status_code == 200
    assert row(page.text, "Carts seen") == ["2", "2", "3"]
    assert row(page.text, "Carts reminded") == ["2", "2", "2"]
    assert row(page.text, "Recovered after a reminder") == ["1", "1", "1"]
    assert row(page.text, "Their revenue") == ["£64.00"] * 3
    with reading(engine) as conn:
        figures = today(conn, sender_shop.id, sender_shop.timezone, clock())
    assert figures.by_day["sent"][-1] == 2 and sum(figures.by_day["sent"]) == 2
    assert page.text.count("<rect") >= 1 + 7  # a bar, and the legend's seven swatches
    assert "Needs your attention" not in page.text


def test_today_says_what_needs_attention(
    client: TestClient, engine: Engine, shop: ShopRecord, run: Pass, clock: FrozenClock
) -> None:
    post(client, shop, cart_id="c1")  # this shop has no sender yet: its reminder is held
    assert run(T0 + 2 * H)["held"] == 1
    clock.advance(hours=2)
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    page = client.get(f"/shops/{shop.slug}/today").text
    assert "Needs your attention" in page
    assert "reminder(s) held: the shop cannot send yet" in page


def test_today_is_one_shops_and_needs_sign_in(
    client: TestClient, engine: Engine, make_shop: ShopFactory
) -> None:
    mine, theirs = make_shop(), make_shop()
    assert client.get(f"/shops/{mine.slug}/today", follow_redirects=False).status_code == 303
    user(engine, "owner", shops=[mine.slug])
    sign_in(client, "owner")
    assert client.get(f"/shops/{theirs.slug}/today").status_code == 404
    assert client.get(f"/shops/{mine.slug}/today").status_code == 200


def test_today_says_what_its_windows_are_and_when_the_days_were_tallied(
    client: TestClient, engine: Engine, shop: ShopRecord, clock: FrozenClock
) -> None:
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    page = client.get(f"/shops/{shop.slug}/today").text
    headings = re.findall(r'<th class="num">([^<]*)</th>', page)
    assert headings[:3] == [
        "last 24 hours",
        "today and the previous 6 days",
        "today and the previous 29 days",
    ]
    assert "Days are America/New_York days" in page
    assert "29 earlier day(s) not tallied yet were counted as you look" in page

    tally_shops(engine, clock(), everything=True)
    page = client.get(f"/shops/{shop.slug}/today").text
    # T0 is 15:09 UTC, 11:09 in New York (daylight time since 8 March).
    assert "(the oldest tally used: 2026-03-14 11:09)" in page
    assert "not tallied yet" not in page
