"""The dashboard as a browser without JavaScript sees it: sign-in first, each owner only
their shops, forms that change anything need their CSRF token, viewers only look, and
whatever a shopper typed is shown as text."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from cartnudge.clock import FrozenClock
from cartnudge.db.models import AuditEntry, Cart, Role
from cartnudge.db.session import reading
from cartnudge.intake.examples import storefront_event
from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0, ShopFactory
from tests.dashboard.helpers import csrf_of, sign_in, user
from tests.delivery.helpers import H, post
from tests.intake.helpers import post_storefront


def cart_ids(engine: Engine, shop: ShopRecord) -> list[int]:
    with reading(engine) as conn:
        return list(
            conn.scalars(select(Cart.c.id).where(Cart.c.shop_id == shop.id).order_by(Cart.c.id))
        )


def status_of(engine: Engine, cart_id: int) -> str:
    with reading(engine) as conn:
        return str(conn.scalar(select(Cart.c.status).where(Cart.c.id == cart_id)))


def test_every_page_and_action_needs_sign_in(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    post(client, shop, cart_id="c1")
    (cart_id,) = cart_ids(engine, shop)
    for page in ("/", f"/shops/{shop.slug}/carts", f"/shops/{shop.slug}/carts/{cart_id}"):
        answer = client.get(page, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/signin")
    answer = client.post(
        f"/shops/{shop.slug}/carts/act",
        data={"action": "suppress", "cart": str(cart_id), "confirmed": "yes", "csrf": "x"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/signin"
    assert status_of(engine, cart_id) == "open"


def test_signed_in_an_owner_sees_their_carts_and_back_to_the_page_asked(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    post(client, shop, cart_id="c1")
    user(engine, "owner@shop.example", shops=[shop.slug])
    first = client.get(f"/shops/{shop.slug}/carts", follow_redirects=False)
    form = client.get(first.headers["location"])
    assert f'value="/shops/{shop.slug}/carts"' in form.text  # where to go next
    answer = sign_in(client, "Owner@Shop.example")
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=43200" in cookie
    page = client.get(f"/shops/{shop.slug}/carts")
    assert page.status_code == 200
    assert "Blue enamel mug ×2" in page.text
    assert "s•••@example.com" in page.text and "shopper@example.com" not in page.text


def test_sign_in_goes_back_only_to_a_page_of_this_site(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    user(engine, "owner", shops=[shop.slug])
    form = client.get("/signin?next=//evil.example/x")
    assert "evil.example" not in form.text
    token = form.text.split('name="form_token" value="')[1].split('"')[0]
    answer = client.post(
        "/signin",
        data={
            "login": "owner",
            "password": "correct horse battery",
            "form_token": token,
            "next": "https://evil.example/",
        },
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/"


def test_an_owner_of_one_shop_gets_404_for_another_shops_cart(
    client: TestClient, make_shop: ShopFactory, engine: Engine
) -> None:
    mine, theirs = make_shop(), make_shop()
    post(client, theirs, cart_id="theirs")
    (their_cart,) = cart_ids(engine, theirs)
    user(engine, "owner", shops=[mine.slug])
    sign_in(client, "owner")
    assert client.get(f"/shops/{theirs.slug}/carts").status_code == 404
    assert client.get(f"/shops/{mine.slug}/carts/{their_cart}").status_code == 404
    csrf = csrf_of(client, f"/shops/{mine.slug}/carts")
    for slug in (mine.slug, theirs.slug):
        answer = client.post(
            f"/shops/{slug}/carts/act",
            data={"action": "suppress", "cart": str(their_cart), "confirmed": "yes", "csrf": csrf},
            follow_redirects=False,
        )
        assert answer.status_code in (303, 404)
    assert status_of(engine, their_cart) == "open"


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    post(client, shop, cart_id="c1")
    (cart_id,) = cart_ids(engine, shop)
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    for csrf in (None, "", "not-the-token"):
        data = {"action": "suppress", "cart": str(cart_id), "confirmed": "yes"}
        if csrf is not None:
            data["csrf"] = csrf
        answer = client.post(f"/shops/{shop.slug}/carts/act", data=data)
        assert answer.status_code == 403
        assert "did not come from this site" in answer.text
    assert status_of(engine, cart_id) == "open"
    # Signing in needs the form's own token too.
    client.cookies.clear()
    answer = client.post("/signin", data={"login": "owner", "password": "correct horse battery"})
    assert answer.status_code == 403 and "expired" in answer.text


def test_what_a_shopper_typed_is_shown_as_text(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    event = storefront_event(cart_id="x", occurred_at=T0)
    event["first_name"] = "<script>alert(1)</script>"
    event["items"][0]["title"] = "<script>alert(1)</script>"  # type: ignore[index]
    assert post_storefront(client, shop, event).status_code == 200
    (cart_id,) = cart_ids(engine, shop)
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    for page in (f"/shops/{shop.slug}/carts", f"/shops/{shop.slug}/carts/{cart_id}"):
        text = client.get(page).text
        assert "<script>alert(1)</script>" not in text
        assert html.escape("<script>alert(1)</script>") in text
    answer = client.get(f"/shops/{shop.slug}/carts/{cart_id}")
    assert "script-src 'self'" in answer.headers["content-security-policy"]


def test_a_viewer_can_look_but_not_act(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    post(client, shop, cart_id="c1")
    (cart_id,) = cart_ids(engine, shop)
    user(engine, "viewer", role=Role.VIEWER, shops=[shop.slug])
    sign_in(client, "viewer")
    page = client.get(f"/shops/{shop.slug}/carts/{cart_id}")
    assert page.status_code == 200 and "Suppress…" not in page.text
    csrf = csrf_of(client, f"/shops/{shop.slug}/carts")
    answer = client.post(
        f"/shops/{shop.slug}/carts/act",
        data={"action": "suppress", "cart": str(cart_id), "confirmed": "yes", "csrf": csrf},
    )
    assert answer.status_code == 403
    assert status_of(engine, cart_id) == "open"


def test_suppress_is_confirmed_first_then_done_and_audited_under_the_users_name(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    post(client, shop, cart_id="c1")
    post(client, shop, cart_id="c2", email="other@example.com")
    first, second = cart_ids(engine, shop)
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    csrf = csrf_of(client, f"/shops/{shop.slug}/carts")
    asked = {"action": "suppress", "cart": [str(first), str(second)], "csrf": csrf}
    confirm = client.post(f"/shops/{shop.slug}/carts/act", data=asked)
    assert confirm.status_code == 200 and "Send no reminder about these carts?" in confirm.text
    assert status_of(engine, first) == "open"  # asking changed nothing
    done = client.post(
        f"/shops/{shop.slug}/carts/act", data={**asked, "confirmed": "yes", "reason": "asked"}
    )
    assert "Suppressed: 2 cart(s)." in done.text
    assert status_of(engine, first) == status_of(engine, second) == "suppressed"
    with reading(engine) as conn:
        actors = set(conn.scalars(select(AuditEntry.c.actor).where(AuditEntry.c.cart_id == first)))
    assert "user:owner" in actors
    page = client.get(f"/shops/{shop.slug}/carts/{first}")
    assert "status:suppressed by user:owner" in page.text
    assert "status: open → suppressed" in page.text  # the change, not two JSON objects


def test_write_off_needs_a_reason(client: TestClient, shop: ShopRecord, engine: Engine) -> None:
    post(client, shop, cart_id="c1")
    (cart_id,) = cart_ids(engine, shop)
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    csrf = csrf_of(client, f"/shops/{shop.slug}/carts")
    answer = client.post(
        f"/shops/{shop.slug}/carts/act",
        data={"action": "write_off", "cart": str(cart_id), "confirmed": "yes", "csrf": csrf},
    )
    assert answer.status_code == 400 and "a reason is needed" in answer.text
    assert status_of(engine, cart_id) == "open"


def test_a_crafted_notice_is_not_shown(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    page = client.get(f"/shops/{shop.slug}/carts?done=Call+us+on+555")
    assert "Call us" not in page.text


def test_the_lockout_holds_whatever_password_comes_next(
    client: TestClient, shop: ShopRecord, engine: Engine, clock: FrozenClock
) -> None:
    user(engine, "owner", shops=[shop.slug])
    for _ in range(5):
        assert sign_in(client, "owner", "wrong password!!").status_code == 401
    locked = sign_in(client, "owner")
    assert locked.status_code == 401 and "too many failed sign-ins" in locked.text
    clock.advance(seconds=31)
    assert sign_in(client, "owner").status_code == 303
    # An unknown login is refused in the same words as a wrong password.
    assert "wrong login or password" in sign_in(client, "nobody", "whatever it is").text


def test_a_one_time_password_must_be_replaced_before_anything_else(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    from cartnudge.dashboard.accounts import first_admin
    from cartnudge.db.session import writing

    with writing(engine) as conn:
        given = first_admin(conn, T0)
    assert given is not None
    assert sign_in(client, "admin", given).status_code == 303
    answer = client.get(f"/shops/{shop.slug}/carts", follow_redirects=False)
    assert answer.headers["location"] == "/account/password"
    csrf = csrf_of(client, "/account/password")
    bad = client.post(
        "/account/password",
        data={"csrf": csrf, "current": given, "new": "short", "repeat": "short"},
    )
    assert bad.status_code == 400 and "at least 12 characters" in bad.text
    good = client.post(
        "/account/password",
        data={
            "csrf": csrf,
            "current": given,
            "new": "a much longer one",
            "repeat": "a much longer one",
        },
        follow_redirects=False,
    )
    assert good.status_code == 303
    assert client.get(f"/shops/{shop.slug}/carts").status_code == 200
    with writing(engine) as conn:
        assert first_admin(conn, T0) is None  # once only


def test_pages_of_carts_cover_every_cart_once_newest_first(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    for n in range(120):
        post(client, shop, cart_id=f"c{n}", occurred_at=T0 + (n // 3) * H)  # ties on the instant
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    seen: list[int] = []
    page = client.get(f"/shops/{shop.slug}/carts")
    while True:
        seen += [int(n) for n in re.findall(rf'href="/shops/{shop.slug}/carts/(\d+)"', page.text)]
        if 'rel="next"' not in page.text:
            break
        link = page.text.split('rel="next" href="')[1].split('"')[0]
        page = client.get(html.unescape(link))
    assert sorted(seen) == cart_ids(engine, shop) and len(seen) == 120
    with reading(engine) as conn:
        newest = conn.scalars(
            select(Cart.c.id)
            .where(Cart.c.shop_id == shop.id)
            .order_by(Cart.c.last_activity_at.desc(), Cart.c.id.desc())
        ).all()
    assert seen == list(newest)


def test_bad_filters_and_links_get_a_clear_400(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    base = f"/shops/{shop.slug}/carts"
    for query, words in (
        ("status=lost", "no status"),
        ("tier=huge", "no tier"),
        ("since=yesterday", "is not a date"),
        ("email=a@x.com,b@y.com", "not one email address"),
        ("reminded=maybe", "yes or no"),
        ("after=garbage", "page link is not valid"),
    ):
        answer = client.get(f"{base}?{query}")
        assert answer.status_code == 400, query
        assert words in answer.text, query
    assert client.get(f"{base}/not-a-number").status_code == 404
    with reading(engine) as conn:
        assert conn.scalar(select(func.count()).select_from(Cart)) == 0


def test_an_owner_pauses_sending_in_one_click_and_every_page_says_so(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    post(client, shop, cart_id="c1")
    (cart_id,) = cart_ids(engine, shop)
    user(engine, "owner", shops=[shop.slug])
    user(engine, "viewer", role=Role.VIEWER, shops=[shop.slug])
    sign_in(client, "viewer")
    csrf = csrf_of(client, f"/shops/{shop.slug}/carts")
    assert "Pause all sending" not in client.get(f"/shops/{shop.slug}/carts").text
    refused = client.post(f"/shops/{shop.slug}/sending", data={"csrf": csrf, "switch": "pause"})
    assert refused.status_code == 403
    client.cookies.clear()
    sign_in(client, "owner")
    csrf = csrf_of(client, f"/shops/{shop.slug}/carts")
    assert client.post(f"/shops/{shop.slug}/sending", data={"switch": "pause"}).status_code == 403
    paused = client.post(
        f"/shops/{shop.slug}/sending",
        data={"csrf": csrf, "switch": "pause", "reason": "new copy", "back": "/elsewhere"},
    )
    assert paused.status_code == 404  # back to /elsewhere: a path of this site, not found
    for page in (f"/shops/{shop.slug}/carts", f"/shops/{shop.slug}/carts/{cart_id}"):
        text = client.get(page).text
        assert "Sending is paused for" in text and "new copy" in text and "by user:owner" in text
    again = client.post(f"/shops/{shop.slug}/sending", data={"csrf": csrf, "switch": "pause"})
    assert again.status_code == 400 and "already paused" in again.text
    resumed = client.post(f"/shops/{shop.slug}/sending", data={"csrf": csrf, "switch": "resume"})
    assert "Sending resumed" in resumed.text and "Sending is paused for" not in resumed.text
    bad = client.post(f"/shops/{shop.slug}/sending", data={"csrf": csrf, "switch": "off"})
    assert bad.status_code == 400


def test_a_session_ends_after_its_lifetime_and_expired_ones_are_removed(
    client: TestClient, shop: ShopRecord, engine: Engine, clock: FrozenClock
) -> None:
    from cartnudge.db.models import WebSession

    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    assert client.get(f"/shops/{shop.slug}/carts").status_code == 200
    clock.advance(hours=12, seconds=1)
    expired = client.get(f"/shops/{shop.slug}/carts", follow_redirects=False)
    assert expired.status_code == 303 and expired.headers["location"].startswith("/signin")
    sign_in(client, "owner")
    with reading(engine) as conn:
        assert conn.scalar(select(func.count()).select_from(WebSession)) == 1


def test_a_cart_page_offers_only_the_actions_that_would_change_it(
    client: TestClient, shop: ShopRecord, engine: Engine
) -> None:
    post(client, shop, cart_id="c1")
    post(client, shop, cart_id="anon", email=None)
    first, anonymous = cart_ids(engine, shop)
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    page = client.get(f"/shops/{shop.slug}/carts/{first}").text
    assert all(f'value="{a}"' in page for a in ("suppress", "write_off", "unsubscribe"))
    assert 'value="unsubscribe"' not in client.get(f"/shops/{shop.slug}/carts/{anonymous}").text

    csrf = csrf_of(client, f"/shops/{shop.slug}/carts")
    client.post(
        f"/shops/{shop.slug}/carts/act",
        data={"action": "suppress", "cart": str(first), "confirmed": "yes", "csrf": csrf},
    )

    page = client.get(f"/shops/{shop.slug}/carts/{first}").text
    assert 'value="suppress"' not in page and 'value="write_off"' not in page
    assert 'value="unsubscribe"' in page  # the address may still be stopped for good
