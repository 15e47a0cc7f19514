"""Retention on a clock moved forward: exactly what each shop's settings say goes, and
nothing else."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from cartnudge.db.session import reading, writing
from cartnudge.privacy.files import PrivacyFiles
from cartnudge.privacy.retention import enforce
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.service import set_shop
from tests.conftest import T0
from tests.delivery.helpers import H, Pass
from tests.privacy.helpers import aggregates, bob_history, files_of

D = 24 * H


def kept(engine: Engine, shop_id: int) -> dict[str, int]:
    """How much personal or input data the shop still holds, by kind."""
    queries = {
        "payloads": "SELECT count(*) FROM inbox_events WHERE shop_id = :s AND payload IS NOT NULL",
        "decision_inputs": "SELECT count(*) FROM audit_log WHERE shop_id = :s "
        "AND (before IS NOT NULL OR after IS NOT NULL)",
        "carts_with_pii": "SELECT count(*) FROM carts WHERE shop_id = :s AND email IS NOT NULL",
        "orders_with_email": "SELECT count(*) FROM orders WHERE shop_id = :s "
        "AND email_key IS NOT NULL",
        "sends_with_address": "SELECT count(*) FROM sends WHERE shop_id = :s "
        "AND email_key IS NOT NULL",
        "kept_emails": "SELECT count(*) FROM send_messages WHERE shop_id = :s",
    }
    with reading(engine) as conn:
        return {k: conn.execute(text(q), {"s": shop_id}).scalar_one() for k, q in queries.items()}


def test_each_setting_removes_exactly_what_it_names_when_its_time_comes(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass, tmp_path: Path
) -> None:
    with writing(engine) as conn:
        shop = set_shop(
            conn,
            sender_shop.slug,
            T0,
            keep={
                "keep_payloads_s": timedelta(days=2),
                "keep_decisions_s": timedelta(days=5),
                "keep_closed_pii_s": timedelta(days=10),
            },
        )
    bob_history(client, shop, run)  # events between T0 and T0+4h; Bob's first cart bought
    files = files_of(tmp_path)
    start = kept(engine, shop.id)
    totals = aggregates(engine, shop.id)
    assert all(start.values()), start

    # Just inside every window: nothing goes.
    assert not any(enforce(engine, T0 + 2 * D - H, files).values())
    assert kept(engine, shop.id) == start

    # Past two days: the raw bodies, and only them.
    removed = enforce(engine, T0 + 2 * D + 5 * H, files)
    assert removed["payloads"] == start["payloads"]
    assert kept(engine, shop.id) == {**start, "payloads": 0}

    # Past five days: the decisions' inputs too.
    removed = enforce(engine, T0 + 5 * D + 7 * H, files)
    assert removed["decision_inputs"] == start["decision_inputs"]
    assert removed["payloads"] == 0
    assert kept(engine, shop.id) == {**start, "payloads": 0, "decision_inputs": 0}

    # Past ten days after their last activity: the personal data of carts no longer open
    # (Bob's bought cart), its email, and orders' addresses; open carts keep theirs.
    removed = enforce(engine, T0 + 10 * D + 7 * H, files)
    after = kept(engine, shop.id)
    assert removed["closed_carts"] == 1 and removed["orders"] == 1
    assert removed["email_files"] == removed["email_copies"] == 1
    assert after["carts_with_pii"] == start["carts_with_pii"] - 1
    assert (after["orders_with_email"], after["sends_with_address"]) == (0, 1)
    # The kept copy of its email goes with the send's address, not a moment later.
    assert (start["kept_emails"], after["kept_emails"]) == (2, 1)
    with reading(engine) as conn:
        open_carts = conn.execute(
            text("SELECT count(*) FROM carts WHERE status = 'open' AND email IS NULL")
        ).scalar_one()
    assert open_carts == 0
    # The counts reports are made of do not move.
    assert aggregates(engine, shop.id) == totals
    # A second run finds nothing more to do, and says so.
    assert not any(enforce(engine, T0 + 10 * D + 8 * H, files).values())


def test_the_defaults_keep_bodies_a_week_inputs_a_month_closed_carts_half_a_year(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass, tmp_path: Path
) -> None:
    bob_history(client, sender_shop, run)
    files = files_of(tmp_path)
    assert enforce(engine, T0 + 7 * D - H, files)["payloads"] == 0
    assert enforce(engine, T0 + 7 * D + 5 * H, files)["payloads"] > 0
    assert enforce(engine, T0 + 30 * D - H, files)["decision_inputs"] == 0
    assert enforce(engine, T0 + 30 * D + 7 * H, files)["decision_inputs"] > 0
    assert enforce(engine, T0 + 180 * D - H, files)["closed_carts"] == 0
    assert enforce(engine, T0 + 180 * D + 7 * H, files)["closed_carts"] == 1


def test_a_pending_request_keeps_its_body_until_it_is_answered(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, tmp_path: Path
) -> None:
    from tests.intake.helpers import post_shopify
    from tests.privacy.helpers import BOB, data_request

    post_shopify(
        client, sender_shop, "customers/data_request", data_request(sender_shop, BOB, []), "w"
    )
    enforce(engine, T0 + 30 * D, files_of(tmp_path))
    assert kept(engine, sender_shop.id)["payloads"] == 1


def test_exports_are_deleted_after_thirty_days(engine: Engine, tmp_path: Path) -> None:
    files = PrivacyFiles(tmp_path / "outbox", tmp_path / "exports")
    old = files.write_export("shop", "old.json", {"a": 1})
    new = files.write_export("shop", "new.json", {"a": 2})
    for path, age in ((old, 31 * D), (new, 29 * D)):
        written = (T0 - age).timestamp()
        os.utime(path, (written, written))

    assert enforce(engine, T0, files)["exports"] == 1

    assert not old.exists() and new.exists()
