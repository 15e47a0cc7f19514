"""The sheet from the dashboard: *Export* on the carts page downloads the file (signed in,
one's own shops only, bad dates refused), and a sheet row's link opens the confirmation
page of its action, which is then done through the cart list's own form, or refused."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.clock import FrozenClock
from cartnudge.db.models import AuditEntry, Role
from cartnudge.db.session import reading
from cartnudge.export.links import SheetLink, make_link_token
from cartnudge.shops.repository import ShopRecord
from tests.conftest import KEY, T0, ShopFactory
from tests.dashboard.helpers import hidden, sign_in, user
from tests.dashboard.test_pages import cart_ids, status_of
from tests.delivery.helpers import post


def link(shop_id: int, cart_id: int, action: str = "suppress", days: int = 30) -> str:
    token = make_link_token(
        KEY.encode(), SheetLink(shop_id, cart_id, action, T0 + timedelta(days=days))
    )
    return f"/sheet/{token}"


def test_export_downloads_the_shops_carts_with_their_links(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    post(client, shop, cart_id="c1")
    (cart_id,) = cart_ids(engine, shop)
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    page = client.get(f"/shops/{shop.slug}/carts")
    assert f'action="/shops/{shop.slug}/export"' in page.text
    answer = client.get(f"/shops/{shop.slug}/export?since=2026-03-14&until=2026-03-15&format=csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert (
        f'filename="{shop.slug}-carts-2026-03-14-to-2026-03-15.csv"'
        in answer.headers["content-disposition"]
    )
    header, row = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert row[0] == str(cart_id)
    assert (
        row[header.index("email")] == "s•••@example.com"
        and "shopper@example.com" not in answer.text
    )
    opened = client.get(row[header.index("suppress")].removeprefix("http://testserver"))
    assert opened.status_code == 200 and "Send no reminder about these carts?" in opened.text
    xlsx = client.get(f"/shops/{shop.slug}/export?since=2026-03-14&format=xlsx")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"


def test_no_export_without_sign_in_nor_of_another_shop(
    client: TestClient, make_shop: ShopFactory, engine: Engine
) -> None:
    mine, theirs = make_shop(), make_shop()
    post(client, theirs, cart_id="theirs")
    answer = client.get(f"/shops/{theirs.slug}/export?since=2026-03-14", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")
    user(engine, "owner", shops=[mine.slug])
    sign_in(client, "owner")
    answer = client.get(f"/shops/{theirs.slug}/export?since=2026-03-14")
    assert answer.status_code == 404 and "theirs" not in answer.text


def test_bad_export_dates_get_a_clear_400(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    for query, message in (
        ("since=14%2F03%2F2026", "since: &#39;14/03/2026&#39; is not a date (YYYY-MM-DD)"),
        (
            "since=2026-03-15&until=2026-03-14",
            "until (2026-03-14) must be after since (2026-03-15)",
        ),
        ("", "since: give the first day"),
        ("since=2026-03-14&format=ods", "format: &#39;ods&#39; is not csv or xlsx"),
    ):
        answer = client.get(f"/shops/{shop.slug}/export?{query}")
        assert answer.status_code == 400, query
        assert message in answer.text, answer.text


def test_a_sheet_link_needs_sign_in_then_confirms_and_acts_through_the_form(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    post(client, shop, cart_id="c1")
    (cart_id,) = cart_ids(engine, shop)
    target = link(shop.id, cart_id)
    answer = client.get(target, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == f"/signin?next={target}"
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    page = client.get(target)
    assert page.status_code == 200 and "Send no reminder about these carts?" in page.text
    assert f"#{cart_id}:" in page.text and "s•••@example.com" in page.text
    assert status_of(engine, cart_id) == "open"  # opening it changed nothing
    form = {
        name: hidden(page.text, name) for name in ("csrf", "action", "confirmed", "back", "cart")
    }
    assert form["action"] == "suppress" and form["cart"] == str(cart_id)
    done = client.post(f"/shops/{shop.slug}/carts/act", data={**form, "reason": "from the sheet"})
    assert done.status_code == 200 and "Suppressed: 1 cart(s)." in done.text
    assert status_of(engine, cart_id) == "suppressed"
    with reading(engine) as conn:
        audited = conn.execute(
            select(AuditEntry.c.actor, AuditEntry.c.reason).where(AuditEntry.c.cart_id == cart_id)
        ).all()
    assert ("user:owner", "from the sheet") in [tuple(a) for a in audited]
    # Without the form's CSRF token the same request is refused.
    post(client, shop, cart_id="c2", email="other@example.com")
    second = max(cart_ids(engine, shop))
    refused = client.post(
        f"/shops/{shop.slug}/carts/act",
        data={**form, "cart": str(second), "csrf": "forged", "reason": "x"},
    )
    assert refused.status_code == 403 and status_of(engine, second) == "open"


def test_a_write_off_link_asks_for_the_reason(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    post(client, shop, cart_id="c1")
    (cart_id,) = cart_ids(engine, shop)
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    page = client.get(link(shop.id, cart_id, "write_off"))
    assert "Write off these carts" in page.text and "Reason (needed)" in page.text
    form = {
        name: hidden(page.text, name) for name in ("csrf", "action", "confirmed", "back", "cart")
    }
    answer = client.post(f"/shops/{shop.slug}/carts/act", data=form)
    assert answer.status_code == 400 and status_of(engine, cart_id) == "open"


def test_a_viewer_sees_the_page_but_cannot_act(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    post(client, shop, cart_id="c1")
    (cart_id,) = cart_ids(engine, shop)
    user(engine, "viewer", role=Role.VIEWER, shops=[shop.slug])
    sign_in(client, "viewer")
    page = client.get(link(shop.id, cart_id, "unsubscribe"))
    assert page.status_code == 200 and "Stop every reminder to these carts" in page.text
    assert 'name="confirmed"' not in page.text and "can look but not change anything" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get(f"/shops/{shop.slug}/carts").text)
    answer = client.post(
        f"/shops/{shop.slug}/carts/act",
        data={
            "action": "unsubscribe",
            "cart": str(cart_id),
            "confirmed": "yes",
            "csrf": csrf.group(1) if csrf else "",
        },
    )
    assert answer.status_code == 403 and status_of(engine, cart_id) == "open"


def test_a_link_to_a_shop_or_cart_not_yours_is_404(
    client: TestClient, make_shop: ShopFactory, engine: Engine
) -> None:
    mine, theirs = make_shop(), make_shop()
    post(client, theirs, cart_id="theirs")
    (their_cart,) = cart_ids(engine, theirs)
    user(engine, "owner", shops=[mine.slug])
    sign_in(client, "owner")
    assert client.get(link(theirs.id, their_cart)).status_code == 404
    # Signed for my shop, but the cart is another shop's.
    assert client.get(link(mine.id, their_cart)).status_code == 404
    assert client.get(link(mine.id, 10**12)).status_code == 404
    assert status_of(engine, their_cart) == "open"


def test_an_expired_or_altered_link_is_refused_and_changes_nothing(
    client: TestClient, shop: ShopRecord, engine: Engine, clock: FrozenClock
) -> None:
    post(client, shop, cart_id="c1")
    (cart_id,) = cart_ids(engine, shop)
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    target = link(shop.id, cart_id, days=1)
    token = target.rsplit("/", 1)[1]
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    answer = client.get(f"/sheet/{altered}")
    assert answer.status_code == 400 and "This link is not valid" in answer.text
    forged = make_link_token(
        b"another key", SheetLink(shop.id, cart_id, "suppress", T0 + timedelta(days=1))
    )
    assert client.get(f"/sheet/{forged}").status_code == 400
    assert client.get("/sheet/" + "x" * 300).status_code == 400
    clock.advance(hours=25)
    sign_in(client, "owner")  # the session, too, has ended by then
    answer = client.get(target)
    assert answer.status_code == 410
    assert "Link expired" in answer.text and "export the sheet again" in answer.text
    assert status_of(engine, cart_id) == "open"
