"""``cartnudge import csv``: a Stripe Checkout Sessions export and our own columns, applied
through the webhooks' own inbox, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner, Result

from cartnudge.cli import app
from cartnudge.clock import FrozenClock, system_clock
from cartnudge.db.models import CartKey, Order
from cartnudge.db.session import reading, writing
from cartnudge.intake.csv_import import Format, ImportRefused, import_csv, read_table
from cartnudge.intake.examples import signed_storefront, signed_stripe, storefront_event
from cartnudge.intake.replay import dead_letters, replay
from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0, ShopFactory
from tests.intake.helpers import (
    carts,
    post,
    post_stripe,
    stored_counts,
    stripe_completed_event,
)

DATA = Path(__file__).parent / "data"
HEADER = "cart_id,occurred_at,email,currency,total,status,order_id"


def run_cli(engine: Engine, *args: str) -> Result:
    url = engine.url.render_as_string(hide_password=False)
    return CliRunner().invoke(app, list(args), env={"CARTNUDGE_DATABASE_URL": url})


def import_file(engine: Engine, shop: ShopRecord, name: str, **options: Any) -> dict[str, Any]:
    return import_csv(engine, shop, (DATA / name).read_bytes(), T0, **options)


def keys_of(engine: Engine, cart_id: int) -> set[tuple[str, str]]:
    table = CartKey
    with reading(engine) as conn:
        rows = conn.execute(select(table.c.kind, table.c.value).where(table.c.cart_id == cart_id))
        return {(row.kind, row.value) for row in rows}


def test_stripe_export_becomes_abandoned_carts_and_a_recovered_purchase(
    engine: Engine, shop: ShopRecord
) -> None:
    summary = import_file(engine, shop, "stripe_checkout_sessions.csv")

    assert summary["format"] == "stripe"
    assert {k: summary[k] for k in ("rows", "created", "updated", "purchases")} == {
        "rows": 3,
        "created": 2,
        "updated": 1,
        "purchases": 1,
    }
    assert (summary["duplicates"], summary["dead_letters"]) == (0, 0)
    expired, still_open = carts(engine, shop.id)
    # Decimal major units in the export: "58.00" EUR is 5800 cents.
    assert (expired.currency, expired.total_minor) == ("EUR", 5800)
    assert expired.email == "ann@example.com"
    assert expired.first_name == "Ann"
    assert expired.locale == "fr"
    # The session paid from this one's recovery link names it in "Recovered From".
    assert expired.status == "bought"
    assert expired.order_ref == "cs_test_paid3"
    assert expired.next_wake_at is None
    assert keys_of(engine, expired.id) == {
        ("stripe_session", "cs_test_expired1"),
        ("stripe_session", "cs_test_paid3"),
    }
    assert (still_open.currency, still_open.total_minor) == ("USD", 125000)
    assert still_open.status == "open"
    assert still_open.locale is None  # "auto" says nothing
    created = datetime(2026, 3, 14, 12, 30, 15, tzinfo=UTC)  # "(UTC)" times carry no offset
    assert still_open.last_activity_at == created
    assert still_open.next_wake_at == created + timedelta(hours=1)  # a big cart: one hour


def test_our_columns_through_the_command(engine: Engine, shop: ShopRecord) -> None:
    result = run_cli(
        engine, "import", "csv", str(DATA / "cartnudge_carts.csv"), "--shop", shop.slug
    )

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary == {
        "format": "cartnudge",
        "rows": 3,
        "created": 3,
        "updated": 0,
        "purchases": 1,
        "duplicates": 0,
        "dead_letters": 0,
        "not_reminded_before_activation": 0,
        "dry_run": False,
        "bad_rows": [],
    }
    mug, euro, bought = carts(engine, shop.id)
    assert keys_of(engine, mug.id) == {("storefront_cart", "c-100")}
    assert mug.items[0]["title"] == "Blue enamel mug"
    assert mug.items[0]["unit_price_minor"] == 1200
    assert (mug.currency, mug.total_minor) == ("GBP", 2400)  # the basket's sum
    assert mug.accepts_marketing is True
    assert mug.timezone == "Europe/London"
    assert mug.return_url == "https://shop.example/cart/c-100"
    assert mug.last_activity_at == datetime(2026, 3, 14, 11, 0, tzinfo=UTC)
    assert mug.next_wake_at == mug.last_activity_at + timedelta(hours=4)  # a small cart
    assert (euro.currency, euro.total_minor, euro.accepts_marketing) == ("EUR", 8000, False)
    assert euro.status == "open"
    assert bought.status == "bought"
    assert bought.order_ref == "order-300"
    assert bought.next_wake_at is None


def test_running_the_same_file_twice_creates_nothing_new(engine: Engine, shop: ShopRecord) -> None:
    import_file(engine, shop, "stripe_checkout_sessions.csv")
    before = stored_counts(engine)

    again = import_file(engine, shop, "stripe_checkout_sessions.csv")

    assert stored_counts(engine) == before
    assert (again["created"], again["updated"], again["duplicates"]) == (0, 0, 3)


def test_dry_run_reports_what_would_happen_and_writes_nothing(
    engine: Engine, shop: ShopRecord
) -> None:
    import_file(engine, shop, "cartnudge_carts.csv")
    before = stored_counts(engine)
    target = str(DATA / "cartnudge_bad_rows.csv")

    result = run_cli(engine, "import", "csv", target, "--shop", shop.slug, "--dry-run")

    assert result.exit_code == 0, result.output
    planned = json.loads(result.stdout)
    assert stored_counts(engine) == before
    assert planned["dry_run"] is True
    assert (planned["created"], planned["dead_letters"]) == (1, 4)
    assert len(planned["bad_rows"]) == 4
    # What the dry run promised is what the real run does.
    done = import_file(engine, shop, "cartnudge_bad_rows.csv")
    assert {k: v for k, v in done.items() if k != "dry_run"} == {
        k: v for k, v in planned.items() if k != "dry_run"
    }


def test_bad_rows_become_dead_letters_naming_their_line(engine: Engine, shop: ShopRecord) -> None:
    summary = import_file(engine, shop, "cartnudge_bad_rows.csv")

    assert (summary["created"], summary["dead_letters"]) == (1, 4)
    [cart] = carts(engine, shop.id)
    assert cart.email == "good@example.com"
    with reading(engine) as conn:
        reasons = [letter["reason"] for letter in dead_letters(conn, shop.id)]
    assert reasons == [
        "line 3: total: '12.345' has more decimals than USD allows",
        "line 4: occurred_at: not an RFC 3339 time with an offset: '2026-03-14 10:00'",
        "line 5: expected 7 columns, found 3",
        "line 6: order_id: required when status is bought",
    ]
    assert summary["bad_rows"] == reasons


def test_bad_stripe_rows_say_what_is_wrong(engine: Engine, shop: ShopRecord) -> None:
    data = (
        b"id,Created (UTC),Amount Total,Currency,Status\n"
        b"cs_test_ok,2026-03-14 10:00,58.00,eur,expired\n"
        b'cs_test_comma,2026-03-14 10:00,"58,00",eur,expired\n'
        b"ch_3Pq,2026-03-14 10:00,58.00,eur,expired\n"
        b"cs_test_when,yesterday,58.00,eur,expired\n"
        b"cs_test_what,2026-03-14 10:00,58.00,eur,refunded\n"
    )

    summary = import_csv(engine, shop, data, T0)

    assert (summary["created"], summary["dead_letters"]) == (1, 4)
    assert summary["bad_rows"] == [
        "line 3: Amount Total: not an amount: '58,00'",
        "line 4: id: 'ch_3Pq' is not a Checkout Session id",
        "line 5: Created (UTC): not a time: 'yesterday'",
        "line 6: Status: 'refunded' is not open, expired or complete",
    ]


def test_a_dead_row_replays_from_its_kept_body(engine: Engine, shop: ShopRecord) -> None:
    import_file(engine, shop, "cartnudge_bad_rows.csv")
    with reading(engine) as conn:
        first = dead_letters(conn, shop.id)[0]

    with writing(engine) as conn:
        outcome = replay(conn, first["id"], T0)

    # Nothing was fixed, so the replay parses the kept row exactly as the import did.
    assert (outcome.status, outcome.reason) == ("dead", first["reason"])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("unknown_header.csv", "unknown header"),
        ("not_a_csv.png", "not a CSV file"),
    ],
)
def test_a_file_of_neither_layout_is_refused_and_nothing_is_stored(
    engine: Engine, shop: ShopRecord, name: str, message: str
) -> None:
    before = stored_counts(engine)

    result = run_cli(engine, "import", "csv", str(DATA / name), "--shop", shop.slug)

    assert result.exit_code == 2
    assert message in result.stderr
    assert "nothing was imported" in result.stderr
    assert stored_counts(engine) == before


def test_a_forced_format_the_header_does_not_match_is_refused() -> None:
    with pytest.raises(ImportRefused, match="lacks id"):
        read_table((DATA / "cartnudge_carts.csv").read_bytes(), Format.STRIPE)


def test_carts_from_before_activation_are_recorded_but_never_reminded(
    engine: Engine, make_shop: ShopFactory, tmp_path: Path
) -> None:
    shop = make_shop(activated_at=T0)
    before, after = T0 - timedelta(days=3), T0 + timedelta(minutes=5)
    csv = tmp_path / "carts.csv"
    csv.write_text(
        f"{HEADER}\n"
        f"c-old,{before.isoformat()},old@example.com,USD,30.00,open,\n"
        f"c-new,{after.isoformat()},new@example.com,USD,30.00,open,\n"
    )

    summary = import_csv(engine, shop, csv.read_bytes(), T0)

    assert (summary["created"], summary["not_reminded_before_activation"]) == (2, 1)
    old, new = carts(engine, shop.id)
    assert (old.status, old.next_wake_at) == ("open", None)
    assert new.next_wake_at == after + timedelta(hours=4)


def test_an_imported_session_then_its_completed_webhook_end_bought_on_one_cart(
    client: TestClient, engine: Engine, shop: ShopRecord, clock: FrozenClock, tmp_path: Path
) -> None:
    csv = tmp_path / "sessions.csv"
    csv.write_text(
        "id,Created (UTC),Customer Email,Amount Total,Currency,Status,Payment Status\n"
        "cs_test_later,2026-03-13 16:00,shopper@example.com,58.00,eur,expired,unpaid\n"
    )
    import_csv(engine, shop, csv.read_bytes(), clock())
    response = post_stripe(client, shop, stripe_completed_event("cs_test_later"))

    assert response.status_code == 200, response.text
    [cart] = carts(engine, shop.id)
    assert cart.status == "bought"
    assert cart.order_ref == "cs_test_later"
    assert cart.next_wake_at is None


def test_our_columns_carry_the_parts_of_the_total(engine: Engine, shop: ShopRecord) -> None:
    items = json.dumps([{"title": "Mug", "variant": "Blue", "quantity": 2, "unit_price": "12.00"}])
    quoted = '"' + items.replace('"', '""') + '"'
    data = (
        "cart_id,occurred_at,email,total,subtotal,discount,shipping,tax,items\n"
        f"c-1,2026-03-14T10:00:00Z,a@example.com,26.40,24.00,2.40,4.80,,{quoted}\n"
        f"c-2,2026-03-14T10:00:00Z,b@example.com,20.00,24.00,-4.00,,,{quoted}\n"
    )

    summary = import_csv(engine, shop, data.encode(), T0)

    assert (summary["created"], summary["dead_letters"]) == (1, 1)
    assert summary["bad_rows"] == ["line 3: discount: must not be negative"]
    [cart] = carts(engine, shop.id)
    assert cart.items[0]["variant"] == "Blue"
    parts = (cart.subtotal_minor, cart.discount_minor, cart.shipping_minor, cart.tax_minor)
    assert parts == (2400, 240, 480, None)


@pytest.mark.parametrize("layout", ["stripe", "cartnudge"])
@pytest.mark.parametrize("webhook_first", [False, True])
def test_a_purchase_imported_and_delivered_by_webhook_is_one_order(
    client: TestClient,
    engine: Engine,
    shop: ShopRecord,
    clock: FrozenClock,
    layout: str,
    webhook_first: bool,
) -> None:
    # The platform's order id is the key both ways share: a Stripe session id, or the
    # storefront's order id in our own columns.
    if layout == "stripe":
        data = (
            "id,Created (UTC),Customer Email,Amount Total,Currency,Status,Payment Status\n"
            "cs_test_paid9,2026-03-13 16:00,shopper@example.com,58.00,eur,complete,paid\n"
        )
        webhook = signed_stripe(shop, stripe_completed_event("cs_test_paid9"), system_clock())
        order_id, source = "cs_test_paid9", "stripe"
    else:
        data = f"{HEADER}\nc-9,2026-03-14T12:00:00Z,dee@example.com,GBP,64.00,bought,order-9\n"
        event = storefront_event(
            cart_id="c-9", kind="order_placed", order_id="order-9", occurred_at=T0
        )
        webhook = signed_storefront(shop, event, system_clock())
        order_id, source = "order-9", "storefront"

    if webhook_first:
        assert post(client, webhook).status_code == 200
    assert import_csv(engine, shop, data.encode(), clock())["purchases"] == 1
    if not webhook_first:
        assert post(client, webhook).status_code == 200

    orders_t = Order
    with reading(engine) as conn:
        rows = conn.execute(select(orders_t).where(orders_t.c.shop_id == shop.id)).all()
    assert [(row.source, row.external_id) for row in rows] == [(source, order_id)]
    [cart] = carts(engine, shop.id)
    assert (cart.status, cart.order_ref) == ("bought", order_id)
    assert rows[0].cart_id == cart.id
