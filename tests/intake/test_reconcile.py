"""``cartnudge reconcile stripe`` against a local server speaking Stripe's list wire format
(``GET /v1/checkout/sessions``: ``object: "list"``, ``data``, ``has_more``, ``url``,
``starting_after`` paging, Bearer key auth), driven by the official ``stripe`` SDK."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from cartnudge.cli import app
from cartnudge.intake.reconcile import reconcile_stripe
from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0, load_fixture
from tests.intake.helpers import carts, post_stripe, stored_counts, stripe_completed_event
from tests.intake.test_order_status import order_rows

GOOD_KEY = "sk_test_reconcile"
SINCE = T0 - timedelta(days=2)


def session(session_id: str, status: str, created_hours_ago: float, **changes: Any) -> Any:
    """Stripe's own Checkout Session fixture, with ``line_items`` expanded."""
    created = int((T0 - timedelta(hours=created_hours_ago)).timestamp())
    value = load_fixture("stripe/checkout.session.object.openapi_fixture.json")
    value.update(
        id=session_id,
        status=status,
        payment_status="paid" if status == "complete" else "unpaid",
        created=created,
        expires_at=created + 24 * 3600,
        currency="eur",
        amount_total=4200,
        line_items={
            "object": "list",
            "data": [
                {
                    "id": f"li_{session_id}",
                    "object": "item",
                    "description": "Walnut desk tidy",
                    "quantity": 2,
                    "amount_total": 4200,
                    "price": {"id": "price_1", "object": "price", "unit_amount": 2100},
                }
            ],
            "has_more": False,
            "url": f"/v1/checkout/sessions/{session_id}/line_items",
        },
    )
    value.update(changes)
    return value


class FakeStripe:
    """Serves ``self.sessions`` newest first, ``page_size`` per page, filtered by
    ``status`` and ``created[gte]`` as Stripe does; records every request."""

    def __init__(self) -> None:
        self.sessions: list[dict[str, Any]] = []
        self.page_size = 2
        self.requests: list[dict[str, list[str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                fake.requests.append(query)
                if self.headers.get("Authorization") != f"Bearer {GOOD_KEY}":
                    error = {"message": "Invalid API Key provided: sk_test_****", "type": "x"}
                    return self.answer(401, {"error": error})
                if url.path != "/v1/checkout/sessions":
                    return self.answer(404, {"error": {"message": "Unrecognized request URL"}})
                self.answer(200, fake.page(query))

            def answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def page(self, query: dict[str, list[str]]) -> dict[str, Any]:
        since = int(query["created[gte]"][0])
        found = [
            s
            for s in sorted(self.sessions, key=lambda s: -s["created"])
            if s["status"] == query["status"][0] and s["created"] >= since
        ]
        if after := query.get("starting_after"):
            found = found[[s["id"] for s in found].index(after[0]) + 1 :]
        size = min(self.page_size, int(query["limit"][0]))
        return {
            "object": "list",
            "data": found[:size],
            "has_more": len(found) > size,
            "url": "/v1/checkout/sessions",
        }


@pytest.fixture
def stripe_api() -> Iterator[FakeStripe]:
    fake = FakeStripe()
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join()


def run_cli(engine: Engine, *args: str, key: str | None = None) -> Result:
    env = {
        "CARTNUDGE_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "CARTNUDGE_STRIPE_API_KEY": key,
    }
    return CliRunner().invoke(app, ["reconcile", "stripe", *args], env=env)


def test_two_pages_of_expired_sessions_and_a_completed_one_are_applied(
    engine: Engine, shop: ShopRecord, stripe_api: FakeStripe
) -> None:
    stripe_api.sessions = [
        session("cs_a", "expired", 30),
        session("cs_b", "expired", 28),
        session("cs_c", "expired", 26, amount_total=20000),
        session("cs_old", "expired", 24 * 5),  # created before --since
        session("cs_b_paid", "complete", 1, recovered_from="cs_b", livemode=True),
    ]

    summary = reconcile_stripe(engine, shop, GOOD_KEY, SINCE, T0, api_base=stripe_api.base)

    assert summary["sessions"] == 4
    assert (summary["created"], summary["updated"], summary["purchases"]) == (3, 1, 1)
    # Three expired sessions at two per page: the SDK asked for a second page.
    expired_pages = [q for q in stripe_api.requests if q["status"] == ["expired"]]
    assert [q.get("starting_after") for q in expired_pages] == [None, ["cs_b"]]
    assert all(q["expand[0]"] == ["data.line_items"] for q in stripe_api.requests)
    assert all(q["created[gte]"] == [str(int(SINCE.timestamp()))] for q in stripe_api.requests)
    by_total = {c.total_minor: c for c in carts(engine, shop.id)}
    assert set(by_total) == {4200, 20000}
    big = by_total[20000]
    assert (big.status, big.currency) == ("open", "EUR")
    assert big.items[0]["title"] == "Walnut desk tidy"
    assert big.items[0]["unit_price_minor"] == 2100
    statuses = sorted(c.status for c in carts(engine, shop.id))
    assert statuses == ["bought", "open", "open"]  # cs_b was recovered by cs_b_paid


def test_a_session_from_stripes_test_mode_is_reconciled_as_a_test_order(
    engine: Engine, shop: ShopRecord, stripe_api: FakeStripe
) -> None:
    """The session says ``livemode``; the event made from it says it too, so a test-mode
    sale found by reconcile is a test order, as its webhook would have been."""
    stripe_api.sessions = [
        session("cs_t", "expired", 30),
        session("cs_t_paid", "complete", 1, recovered_from="cs_t"),  # livemode: false
    ]

    reconcile_stripe(engine, shop, GOOD_KEY, SINCE, T0, api_base=stripe_api.base)

    [cart] = carts(engine, shop.id)
    assert cart.status == "open"
    [order] = order_rows(engine, shop.id).values()
    assert order["test"] is True


def test_running_reconcile_again_stores_nothing_new(
    engine: Engine, shop: ShopRecord, stripe_api: FakeStripe
) -> None:
    stripe_api.sessions = [session("cs_a", "expired", 30), session("cs_z", "complete", 3)]
    args = ["--shop", shop.slug, "--since", SINCE.isoformat(), "--api-base", stripe_api.base]
    first = run_cli(engine, *args, key=GOOD_KEY)
    assert first.exit_code == 0, first.output
    before = stored_counts(engine)

    again = run_cli(engine, *args, key=GOOD_KEY)

    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert (summary["sessions"], summary["duplicates"], summary["created"]) == (2, 2, 0)
    assert stored_counts(engine) == before


def test_a_rejected_key_is_a_clear_error_and_stores_nothing(
    engine: Engine, shop: ShopRecord, stripe_api: FakeStripe
) -> None:
    stripe_api.sessions = [session("cs_a", "expired", 30)]

    result = run_cli(
        engine,
        "--shop",
        shop.slug,
        "--since",
        SINCE.isoformat(),
        "--api-base",
        stripe_api.base,
        "--api-key",
        "sk_test_wrong",
    )

    assert result.exit_code == 2
    assert "HTTP 401" in result.stderr
    assert "Invalid API Key provided" in result.stderr
    assert "nothing was stored" in result.stderr
    assert set(stored_counts(engine).values()) == {0}


def test_a_missing_key_is_refused_before_anything_is_asked(
    engine: Engine, shop: ShopRecord, stripe_api: FakeStripe
) -> None:
    result = run_cli(
        engine, "--shop", shop.slug, "--since", SINCE.isoformat(), "--api-base", stripe_api.base
    )

    assert result.exit_code == 2
    assert "CARTNUDGE_STRIPE_API_KEY" in result.stderr
    assert stripe_api.requests == []


def test_a_later_real_webhook_lands_on_the_reconciled_cart(
    client: TestClient, engine: Engine, shop: ShopRecord, stripe_api: FakeStripe
) -> None:
    stripe_api.sessions = [session("cs_late", "expired", 30)]
    reconcile_stripe(engine, shop, GOOD_KEY, SINCE, T0, api_base=stripe_api.base)
    response = post_stripe(client, shop, stripe_completed_event("cs_late"))

    assert response.status_code == 200, response.text
    [cart] = carts(engine, shop.id)
    assert (cart.status, cart.order_ref) == ("bought", "cs_late")
