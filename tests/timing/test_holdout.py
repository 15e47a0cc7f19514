"""The holdout: a stable share of a shop's carts gets no reminder, decided once per cart
when its first reminder comes due, kept through restarts, rules changes and a new share,
said on the cart's timeline, and closed when a reminded cart would have been."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.db.models import AuditEntry, Cart, Send
from cartnudge.db.session import reading, writing
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.service import ShopError, set_shop
from cartnudge.shops.versioned import set_document
from cartnudge.testing.carts import insert_open_carts
from cartnudge.timing.holdout import held_out, share_of
from cartnudge.timing.rules import DEFAULT_DOCUMENT
from cartnudge.timing.service import RULES
from cartnudge.timing.waiter import wake_due
from tests.conftest import T0, ShopFactory
from tests.dashboard.helpers import sign_in, user
from tests.test_cli import cli  # noqa: F401 - the fixture

CARTS = 40


def carts_of(engine: Engine) -> dict[int, object]:
    with reading(engine) as conn:
        rows = conn.execute(select(Cart.c.id, Cart.c.held_out).order_by(Cart.c.id))
        return {row.id: row.held_out for row in rows}


def sent_carts(engine: Engine) -> set[int]:
    with reading(engine) as conn:
        return set(conn.scalars(select(Send.c.cart_id)))


def test_the_share_is_stable_and_even() -> None:
    assert share_of(3, 17) == share_of(3, 17)
    assert share_of(3, 17) != share_of(4, 17)  # each shop its own draw
    held = sum(held_out(1, cart_id, 10) for cart_id in range(1, 20_001))
    assert 1_880 <= held <= 2_120  # 10% of 20,000, within about 3.5 standard deviations
    assert not any(held_out(1, cart_id, 0) for cart_id in range(1, 2_001))


@pytest.fixture
def half(make_shop: ShopFactory, engine: Engine) -> ShopRecord:
    """A shop holding out half its carts, with CARTS open carts whose first reminder is due."""
    shop = make_shop(holdout_percent=50)
    insert_open_carts(engine, shop.id, CARTS, active_at=T0, wake_at=T0, shoppers=True)
    return shop


def test_held_out_carts_get_no_reminder_and_say_why(engine: Engine, half: ShopRecord) -> None:
    report = wake_due(engine, T0 + timedelta(hours=5))

    expected = {cart_id: held_out(half.id, cart_id, 50) for cart_id in carts_of(engine)}
    assert carts_of(engine) == expected
    out = {cart_id for cart_id, held in expected.items() if held}
    assert 10 < len(out) < 30
    assert report.moves["held_out"] == len(out)
    assert report.moves["reminders"] == CARTS - len(out)
    assert sent_carts(engine) == set(expected) - out
    with reading(engine) as conn:
        audited = conn.execute(
            select(AuditEntry.c.cart_id, AuditEntry.c.reason).where(
                AuditEntry.c.action == "holdout:held_out"
            )
        ).all()
    assert {row.cart_id for row in audited} == out
    assert all("one of the 50% of the shop's carts" in row.reason for row in audited)


def test_a_held_out_cart_closes_when_a_reminded_one_would_be_given_up(
    engine: Engine, half: ShopRecord
) -> None:
    wake_due(engine, T0 + timedelta(hours=5))
    out = {cart_id for cart_id, held in carts_of(engine).items() if held}
    with reading(engine) as conn:
        wake = conn.scalar(select(Cart.c.next_wake_at).where(Cart.c.id == min(out)))
    # The default rules for a 64.00 cart: 2h and 22h of waits, then 2d to give up.
    assert wake == T0 + timedelta(hours=2 + 22, days=2)
    wake_due(engine, wake - timedelta(minutes=1))
    wake_due(engine, wake)
    with reading(engine) as conn:
        row = conn.execute(select(Cart).where(Cart.c.id == min(out))).one()
    assert (row.status, row.status_reason) == (
        "expired",
        "held out: never reminded, to measure what reminders add",
    )
    assert min(out) not in sent_carts(engine)


def test_the_assignment_holds_through_rules_changes_and_a_new_share(
    engine: Engine, half: ShopRecord
) -> None:
    wake_due(engine, T0 + timedelta(hours=5))
    before = carts_of(engine)
    with writing(engine) as conn:
        fast = DEFAULT_DOCUMENT.replace("wait_override: null", "wait_override: [30m, 1d]")
        set_document(conn, RULES, half, fast, T0)
        set_shop(conn, half.slug, T0, holdout_percent=0)
    for hours in (6, 30, 60, 100):  # every later wake, to the end of every cart
        wake_due(engine, T0 + timedelta(hours=hours))
    assert carts_of(engine) == before
    assert not sent_carts(engine) & {c for c, held in before.items() if held}
    # A cart assigned after the change is never held out: the share is now 0.
    insert_open_carts(engine, half.id, 5, active_at=T0, wake_at=T0, shoppers=True)
    wake_due(engine, T0 + timedelta(hours=101))
    assert [held for c, held in carts_of(engine).items() if c not in before] == [False] * 5


def test_the_timeline_says_the_cart_was_held_out(
    client: TestClient, engine: Engine, half: ShopRecord
) -> None:
    wake_due(engine, T0 + timedelta(hours=5))
    cart_id = min(c for c, held in carts_of(engine).items() if held)
    user(engine, "owner", shops=[half.slug])
    sign_in(client, "owner")
    page = client.get(f"/shops/{half.slug}/carts/{cart_id}")
    assert "holdout:held_out" in page.text and "no reminder about this cart" in page.text


@pytest.mark.parametrize("bad", [-1, 51, 100])
def test_a_share_outside_0_to_50_is_refused(engine: Engine, shop: ShopRecord, bad: int) -> None:
    with pytest.raises(ShopError, match="from 0 to 50"), writing(engine) as conn:
        set_shop(conn, shop.slug, T0, holdout_percent=bad)
    with reading(engine) as conn:
        from cartnudge.shops.repository import ShopRepository

        assert ShopRepository(conn).by_slug(shop.slug).holdout_percent == 0  # type: ignore[union-attr]


def test_a_new_shop_holds_out_ten_percent_unless_told(cli: Any) -> None:  # noqa: F811
    added = cli(
        "shop", "add", "tea", "--name", "Tea", "--timezone", "Europe/London", "--currency", "GBP"
    )
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["holdout_percent"] == 10
    none = cli(
        "shop", "add", "mugs", "--name", "Mugs", "--timezone", "Europe/London",
        "--currency", "GBP", "--holdout", "0",
    )  # fmt: skip
    assert json.loads(none.output)["holdout_percent"] == 0
    refused = cli("shop", "set", "tea", "--holdout", "60")
    assert refused.exit_code != 0 and "from 0 to 50" in refused.output
    changed = cli("shop", "set", "tea", "--holdout", "5")
    assert json.loads(changed.output)["holdout_percent"] == 5


def test_the_dry_run_shows_a_held_out_cart_closed_not_reminded(
    engine: Engine, half: ShopRecord
) -> None:
    from cartnudge.dashboard.dry_run import dry_run
    from cartnudge.timing.rules import default_rules

    wake_due(engine, T0 + timedelta(hours=5))
    out = {cart_id for cart_id, held in carts_of(engine).items() if held}
    with reading(engine) as conn:
        run = dry_run(conn, half.id, half.timezone, default_rules(), default_rules(), T0)
    plans = {p.cart_id: p.proposed for p in run.carts}
    assert out and all(plans[c].what == "closed" for c in out)
    assert all(plans[c].why.startswith("held out") for c in out)
    assert all(plans[c].what == "reminder 2" for c in plans if c not in out)
