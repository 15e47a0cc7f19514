"""Erased means the bytes are gone: after ``privacy erase`` and after retention, no file in
the data folder (the SQLite database with its WAL and shared-memory files, the file outbox,
exports) holds the shopper in any form the storage might keep them, while another shopper
of the same shop is still found by the same scan (which shows that the scan sees the data).

On PostgreSQL the bytes of a dead row version stay in the server's files until the space is
reused (docs/privacy.md); what erasure does there is vacuum the tables it touched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

import cartnudge.db.engine
from cartnudge.db.engine import make_engine
from cartnudge.db.migrate import upgrade
from cartnudge.db.session import reading, writing
from cartnudge.privacy.worker import run_privacy
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.service import set_shop
from tests.conftest import T0, wipe
from tests.delivery.helpers import H, Pass
from tests.intake.helpers import post_shopify
from tests.privacy.helpers import BOB, bob_history, checkout, files_of, iso, order
from tests.test_cli import cli  # noqa: F401 - the fixture

# Bob as the fixtures spell him (his address is also sent in capitals below).
BOB_TRACES = [BOB, "Bob Norman", "Norman", "Chestnut Street 92", "555-625-1199"]
# What retention removes of him once his bought cart's time is up.
RETAINED_TRACES = ["Bob Norman", "Chestnut Street 92", "555-625-1199"]
CARLA = "carla.vossberg@example.net"
CARLA_TRACES = [CARLA, "Carla", "Vossberg", "Quillfeather Lane 7", "555-010-4477"]


def carla_checkout(token: str, at: str) -> dict[str, Any]:
    """The same published checkout, left by another shopper."""
    body = json.dumps(checkout(token, f"cart-{token}", at))
    for bob, carla in [
        (BOB, CARLA),
        ("Bob", "Carla"),
        ("Norman", "Vossberg"),
        ("Chestnut Street 92", "Quillfeather Lane 7"),
        ("555-625-1199", "555-010-4477"),
    ]:
        body = body.replace(bob, carla)
    loaded: dict[str, Any] = json.loads(body)
    return loaded


def forms(trace: str) -> list[bytes]:
    """The ways a storage might hold ``trace``: UTF-8 (compared ignoring case), UTF-16 both
    ways round, percent-encoded as in a URL, and with JSON's escape for the at sign."""
    variants = {trace, quote(trace, safe=""), trace.replace("@", "\\u0040")}
    found = [v.lower().encode() for v in variants]
    found += [trace.lower().encode(codec) for codec in ("utf-16-le", "utf-16-be")]
    return found


def files_holding(folder: Path, trace: str) -> list[str]:
    """The files under ``folder`` whose raw bytes hold ``trace`` in any of its ``forms``."""
    needles = forms(trace)
    held = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes().lower()
        if any(needle in data for needle in needles):
            held.append(str(path.relative_to(folder)))
    return held


def traces_on_disk(folder: Path, traces: list[str]) -> dict[str, list[str]]:
    return {trace: where for trace in traces if (where := files_holding(folder, trace))}


def checkpoint_long_ago(engine: Engine) -> None:
    """What SQLite does by itself as the WAL grows: copy the rows into the database file,
    where erasing them later frees space inside its pages."""
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.rollback()


@pytest.fixture
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """SQLite: a database of its own, in the data folder the commands use (``cli``'s home).
    PostgreSQL (asked for by name): the suite's server, emptied."""
    if getattr(request, "param", "sqlite") == "postgresql":
        shared: Engine = request.getfixturevalue("postgresql_engine")
        wipe(shared)
        yield shared
        wipe(shared)
        return
    made = make_engine(f"sqlite:///{tmp_path / 'cartnudge.db'}")
    upgrade(made)
    yield made
    made.dispose()


def test_erase_leaves_no_byte_of_the_shopper_in_the_data_folder(
    cli: Any,  # noqa: F811
    engine: Engine,
    client: TestClient,
    sender_shop: ShopRecord,
    run: Pass,
    tmp_path: Path,
) -> None:
    carla = post_shopify(
        client, sender_shop, "checkouts/create", carla_checkout("tC", iso(0)), "w-c1"
    )
    assert carla.status_code == 200, carla.text
    # Bob in capitals too, as some stores send the address.
    shouted = checkout("tD", "cD", iso(0.5))
    shouted["email"] = BOB.upper()
    assert post_shopify(client, sender_shop, "checkouts/create", shouted, "w-d1").status_code == 200
    bob_history(client, sender_shop, run)  # reminders to both land in the file outbox
    # An export the owner wrote into the data folder, outside exports/.
    inside = tmp_path / "bob-request.json"
    exported = cli(
        "privacy", "export", "--shop", sender_shop.slug, "--email", BOB, "--out", str(inside)
    )
    assert exported.exit_code == 0, exported.output
    checkpoint_long_ago(engine)
    before = traces_on_disk(tmp_path, BOB_TRACES)
    assert set(before) == set(BOB_TRACES), before
    assert any(where.endswith(".eml") for where in before[BOB]), before
    assert "cartnudge.db" in before[BOB], before

    erased = cli("privacy", "erase", "--shop", sender_shop.slug, "--email", BOB, "--yes")
    assert erased.exit_code == 0, erased.output

    assert traces_on_disk(tmp_path, BOB_TRACES) == {}
    kept = traces_on_disk(tmp_path, CARLA_TRACES)
    assert set(kept) == set(CARLA_TRACES), kept
    assert any(where.endswith(".eml") for where in kept[CARLA]), kept
    assert not inside.exists()
    assert json.loads(erased.output)["old_copies_dropped"] is True


def test_retention_leaves_no_byte_of_what_it_removed(
    engine: Engine, client: TestClient, sender_shop: ShopRecord, tmp_path: Path
) -> None:
    with writing(engine) as conn:
        shop = set_shop(
            conn,
            sender_shop.slug,
            T0,
            keep={"keep_payloads_s": timedelta(days=2), "keep_closed_pii_s": timedelta(days=10)},
        )
    # Bob checks out and buys; Carla comes back later and her cart is still open.
    bob = checkout("tA", "cA", iso(0))
    assert post_shopify(client, shop, "checkouts/create", bob, "w-a1").status_code == 200
    assert (
        post_shopify(client, shop, "orders/create", order("cA", iso(1)), "w-a2").status_code == 200
    )
    later = T0 + timedelta(days=11)
    carla = carla_checkout("tC", later.isoformat())
    assert post_shopify(client, shop, "checkouts/create", carla, "w-c2").status_code == 200
    checkpoint_long_ago(engine)
    assert set(traces_on_disk(tmp_path, BOB_TRACES)) == set(BOB_TRACES)

    report = run_privacy(engine, later + H, files_of(tmp_path))
    removed = report["removed"]
    assert removed["closed_carts"] == 1 and removed["payloads"] >= 2, removed

    # His address stays in the consent ledger (the record of what he chose), and only there.
    assert traces_on_disk(tmp_path, RETAINED_TRACES) == {}
    with reading(engine) as conn:
        rows = conn.execute(text("SELECT email_key FROM consent_ledger")).scalars()
        assert BOB in set(rows)
    # Her open cart keeps her address and name (the bodies of all three went, by age).
    kept = traces_on_disk(tmp_path, CARLA_TRACES)
    assert set(kept) >= {CARLA, "Carla"}, kept
    assert report["old_copies_dropped"] is True


def test_an_erasure_while_a_reader_holds_an_old_snapshot_is_finished_by_the_privacy_run(
    cli: Any,  # noqa: F811
    engine: Engine,
    client: TestClient,
    sender_shop: ShopRecord,
    run: Pass,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bob_history(client, sender_shop, run)
    monkeypatch.setattr(cartnudge.db.engine, "CHECKPOINT_PATIENCE_S", 0.0)  # one try
    # Another process's read, begun before the erasure and still going.
    with engine.connect() as reader:
        assert reader.exec_driver_sql("SELECT count(*) FROM carts").scalar_one() == 3

        erased = cli("privacy", "erase", "--shop", sender_shop.slug, "--email", BOB, "--yes")
        assert erased.exit_code == 0, erased.output

        # Said, not hidden: the rows are erased, their old copies are still in the WAL.
        assert json.loads(erased.stdout)["old_copies_dropped"] is False
        assert "cartnudge.db-wal" in traces_on_disk(tmp_path, [BOB]).get(BOB, [])
        reader.rollback()

    report = run_privacy(engine, T0 + H, files_of(tmp_path))

    assert report["old_copies_dropped"] is True
    assert traces_on_disk(tmp_path, BOB_TRACES) == {}


def _vacuums(engine: Engine) -> dict[str, int]:
    with reading(engine) as conn:
        rows = conn.execute(text("SELECT relname, vacuum_count FROM pg_stat_user_tables"))
        return {str(name): int(count) for name, count in rows}


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_erase_on_postgresql_vacuums_the_tables_it_touched(
    cli: Any,  # noqa: F811
    engine: Engine,
    client: TestClient,
    sender_shop: ShopRecord,
    run: Pass,
) -> None:
    bob_history(client, sender_shop, run)
    before = _vacuums(engine)

    erased = cli("privacy", "erase", "--shop", sender_shop.slug, "--email", BOB, "--yes")
    assert erased.exit_code == 0, erased.output

    after = _vacuums(engine)
    vacuumed = {name for name in after if after[name] > before.get(name, 0)}
    assert vacuumed >= {"carts", "sends", "inbox_events", "orders", "audit_log"}, vacuumed
