"""Shopify's three compliance webhooks, fed through the real webhook lane and acted on by
the privacy run: an export of everything held, an erasure that leaves the shop's counts
alone, and a shop's deletion that leaves no row of it."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, inspect, select, text

from cartnudge.db.models import Cart, PrivacyLogEntry, SendMessage
from cartnudge.db.session import reading
from cartnudge.privacy.worker import run_privacy
from cartnudge.shops.repository import ShopRecord
from tests.conftest import SENDER, T0, ShopFactory, load_fixture
from tests.delivery.helpers import H, Pass, sends
from tests.intake.helpers import post_shopify
from tests.privacy.helpers import (
    BOB,
    ORDER_ID,
    OTHER,
    aggregates,
    bob_history,
    checkout,
    customer_redact,
    data_request,
    every_value,
    files_of,
    iso,
    traces_in_database,
)

log_t = PrivacyLogEntry


def privacy_log(engine: Engine) -> list[dict[str, object]]:
    with reading(engine) as conn:
        return [dict(row._mapping) for row in conn.execute(select(log_t).order_by(log_t.c.id))]


def kept_emails(engine: Engine) -> list[tuple[str]]:
    """The kept copies of emails, as text."""
    with reading(engine) as conn:
        bodies = conn.execute(select(SendMessage.c.body).order_by(SendMessage.c.send_id))
        return [(zlib.decompress(body).decode(),) for (body,) in bodies]


def test_a_data_request_exports_everything_held_about_the_shopper(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass, tmp_path: Path
) -> None:
    bob_history(client, sender_shop, run)
    body = data_request(sender_shop, BOB, [ORDER_ID])
    response = post_shopify(client, sender_shop, "customers/data_request", body, "w-dr")
    assert response.status_code == 200

    report = run_privacy(engine, T0 + 7 * H, files_of(tmp_path))

    [handled] = report["requests"]
    assert (handled["kind"], handled["state"]) == ("customers/data_request", "done")
    [path] = (tmp_path / "exports" / sender_shop.slug).glob("*.json")
    assert path.stat().st_mode & 0o777 == 0o600
    document = json.loads(path.read_text())
    assert OTHER not in path.read_text()  # nobody else's data
    carts = document["carts"]
    assert [(c["email"], c["status"]) for c in carts] == [(BOB, "bought"), (BOB, "open")]
    assert carts[0]["first_name"] == "Bob"
    # Events with their raw bodies (still within retention): the street and phone are there.
    first_events = carts[0]["events"]
    assert [e["topic"] for e in first_events] == ["checkouts/create", "orders/create"]
    assert first_events[0]["payload"]["billing_address"]["address1"] == "Chestnut Street 92"
    # The reminders, what they said, the decisions, and the click.
    [reminder] = carts[0]["sends"]
    assert reminder["status"] == "sent" and reminder["subject"]
    assert f"To: {BOB}\r\n" in reminder["email"] and reminder["subject"] in reminder["email"]
    assert len(reminder["clicks"]) == 1
    assert any(a["action"] == "reminder:1" for a in carts[0]["audit"])
    assert [o["order_id"] for o in document["orders"]] == [str(ORDER_ID)]
    assert {(e["kind"], e["source"]) for e in document["consent"]} == {
        ("opt_in", "shopify:buyer_accepts_marketing")
    }
    # The privacy log says an export was made, in counts; never for whom.
    [entry] = privacy_log(engine)
    assert (entry["action"], entry["actor"]) == ("export", "webhook:customers/data_request")
    assert entry["counts"] == {"carts": 2, "orders": 1, "consent_entries": 2}
    # Listing the requests shows where the export is.
    assert report["requests"][0]["id"] == entry["request_id"]


def test_customers_redact_erases_the_shopper_and_keeps_the_counts(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass, tmp_path: Path
) -> None:
    bob_history(client, sender_shop, run)
    files = files_of(tmp_path)
    # Bob asked for his data earlier: the export is his data too.
    post_shopify(
        client, sender_shop, "customers/data_request", data_request(sender_shop, BOB, []), "w-dr"
    )
    run_privacy(engine, T0 + 7 * H, files)
    assert list((tmp_path / "exports").rglob("*.json"))
    before = aggregates(engine, sender_shop.id)
    # Bob's first reminder and the other shopper's (do-not-disturb skipped Bob's second).
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == 2
    assert traces_in_database(engine)  # the check below can fail
    assert len(kept_emails(engine)) == 2  # Bob's reminder and the other shopper's

    body = customer_redact(sender_shop, BOB, [ORDER_ID])
    assert post_shopify(client, sender_shop, "customers/redact", body, "w-cr").status_code == 200
    report = run_privacy(engine, T0 + 8 * H, files)

    assert [r["state"] for r in report["requests"]] == ["done"]
    assert traces_in_database(engine) == []
    with reading(engine) as conn:
        names = conn.execute(text("SELECT first_name FROM carts WHERE first_name IS NOT NULL"))
        assert [n for (n,) in names] == ["Alex"]  # the other shopper's
    assert aggregates(engine, sender_shop.id) == before
    # Bob's rendered emails and his earlier export are gone; the other shopper's email stays.
    left = list((tmp_path / "outbox").rglob("*.eml"))
    assert len(left) == 1 and OTHER in left[0].read_text()
    assert list((tmp_path / "exports").rglob("*.json")) == []
    assert any(OTHER in value for _, value in every_value(engine))
    erased = [e for e in privacy_log(engine) if e["action"] == "erase"]
    assert [e["actor"] for e in erased] == ["webhook:customers/redact"]
    assert erased[0]["counts"]["carts"] == 2 and erased[0]["counts"]["email_files"] == 1
    # The kept copy of Bob's email is deleted; the other shopper's stays.
    [(to_other,)] = kept_emails(engine)
    assert f"To: {OTHER}" in to_other and "bob" not in to_other.lower()
    counts = erased[0]["counts"]
    assert isinstance(counts, dict) and counts["email_copies"] == 1

    # The request is done: a replay of the same webhook changes nothing.
    post_shopify(client, sender_shop, "customers/redact", body, "w-cr")
    assert run_privacy(engine, T0 + 9 * H, files)["requests"] == []


def test_an_unsubscribe_outlives_the_erasure_of_the_address(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass, tmp_path: Path
) -> None:
    from cartnudge.db.session import writing
    from cartnudge.tracking.service import unsubscribe

    bob_history(client, sender_shop, run)
    with writing(engine) as conn:
        unsubscribe(conn, sender_shop.id, BOB, T0 + 6 * H, source="one_click", actor="shopper")
    body = customer_redact(sender_shop, BOB, [])
    post_shopify(client, sender_shop, "customers/redact", body, "w-cr")
    run_privacy(engine, T0 + 7 * H, files_of(tmp_path))
    assert traces_in_database(engine) == []

    # Bob comes back with a new checkout: still unsubscribed, so no reminder.
    again = post_shopify(
        client, sender_shop, "checkouts/create", checkout("tC", "cC", iso(30)), "w9"
    )
    assert again.status_code == 200
    run(T0 + 40 * H)
    latest = sends(engine)[-1]  # the new cart's (sends come in cart order)
    assert latest.cart_id == max(s.cart_id for s in sends(engine))
    assert (latest.status, latest.reason) == ("skipped", "address unsubscribed")


def test_shop_redact_leaves_no_row_of_the_shop(
    client: TestClient,
    engine: Engine,
    sender_shop: ShopRecord,
    make_shop: ShopFactory,
    run: Pass,
    tmp_path: Path,
) -> None:
    other = make_shop(sender=SENDER, postal_address="2 Other Road")
    bob_history(client, sender_shop, run)
    bob_history(client, other, run)
    assert (tmp_path / "outbox" / sender_shop.slug).is_dir()

    payload = load_fixture("shopify/webhooks/shop/redact.json")
    response = post_shopify(client, sender_shop, "shop/redact", payload, "w-sr")
    assert response.status_code == 200
    report = run_privacy(engine, T0 + 50 * 24 * H, files_of(tmp_path))

    assert [(r["kind"], r["state"]) for r in report["requests"]] == [("shop/redact", "done")]
    for table in inspect(engine).get_table_names():
        columns = {c["name"] for c in inspect(engine).get_columns(table)}
        key = "shop_id" if "shop_id" in columns else "id" if table == "shops" else None
        if key is None:
            continue
        with reading(engine) as conn:
            rows = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE {key} = :id"), {"id": sender_shop.id}
            ).scalar_one()
        assert rows == 0, table
    assert not (tmp_path / "outbox" / sender_shop.slug).exists()
    # The other shop is untouched, and the log records the deletion without the shop.
    assert aggregates(engine, other.id)["carts"] == 3
    [entry] = [e for e in privacy_log(engine) if e["action"] == "shop_erase"]
    assert entry["shop_id"] is None and entry["counts"]["carts"] == 3
    with reading(engine) as conn:
        assert conn.execute(select(Cart.c.id)).all()  # the other shop's


def test_a_request_that_names_nobody_fails_visibly_and_is_tried_again(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, tmp_path: Path
) -> None:
    body = {"shop_id": 954889, "shop_domain": sender_shop.shopify_domain, "customer": {}}
    post_shopify(client, sender_shop, "customers/redact", body, "w-bad")

    first = run_privacy(engine, T0, files_of(tmp_path))
    again = run_privacy(engine, T0 + H, files_of(tmp_path))

    assert [r["state"] for r in first["requests"]] == ["failed"]
    assert [r["state"] for r in again["requests"]] == ["failed"]
    with reading(engine) as conn:
        error = conn.execute(text("SELECT error FROM privacy_requests")).scalar_one()
    assert error == "a data request must name an email address or orders"
