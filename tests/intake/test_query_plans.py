"""Ingest stays fast as the tables grow: on SQLite, every query and update a delivery runs
finds its rows through an index, never by reading a whole table; on PostgreSQL, finding a
batch's carts by their keys, and its replays by their ids, reads only those rows, before
any ANALYZE and after psycopg has prepared the statement."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, event, text

from cartnudge.carts.repository import CartRepository
from cartnudge.db.models import metadata
from cartnudge.db.session import writing
from cartnudge.intake.repository import InboxRepository
from cartnudge.shops.repository import ShopRecord
from tests.intake.test_shuffled_delivery import deliver_all, deliveries


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_every_statement_of_intake_uses_an_index(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    seen: dict[str, Any] = {}

    def record(
        _conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool
    ) -> None:
        if not many and statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            seen.setdefault(statement, params)

    event.listen(engine, "before_cursor_execute", record)
    try:
        deliver_all(client, deliveries(shop) * 2)
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert any("cart_keys" in statement for statement in seen)  # the lookups did run
    full_scans = []
    with engine.connect() as conn:
        for statement, params in seen.items():
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
            for row in plan:
                detail = str(row[-1])
                # "SCAN <table>" reads a whole table; a scan of a subquery's few rows is fine.
                if detail.startswith("SCAN ") and detail.split()[1] in metadata.tables:
                    full_scans.append(f"{detail}  <-  {' '.join(statement.split())[:160]}")
    assert full_scans == []


KEYS = 20_000  # past where the planner, with no statistics, prefers the index to a scan
LOOKUPS = 8  # past psycopg's prepare threshold (5), when a generic plan may take over


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_batch_finds_its_carts_by_reading_only_its_keys(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    deliver_all(client, deliveries(shop)[:1])
    with writing(engine) as conn:
        cart_id = conn.execute(text("SELECT min(id) FROM carts")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO cart_keys (shop_id, kind, value, cart_id)"
                " SELECT :shop, 'storefront_cart', 'c-' || g, :cart"
                " FROM generate_series(1, CAST(:n AS integer)) AS g"
            ),
            {"shop": shop.id, "cart": cart_id, "n": KEYS},
        )
    wanted = [(shop.id, "storefront_cart", f"c-{i}") for i in range(5_000, 5_032)]
    assert_reads_only_these(engine, "cart_keys", wanted, lambda c: CartRepository(c).carts_for_keys)


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_batch_finds_its_replays_by_reading_only_its_deliveries(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    with writing(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO inbox_events (shop_id, source, external_id, topic, status,"
                " received_at) SELECT :shop, 'storefront', 'm-' || g, 't', 'applied', now()"
                " FROM generate_series(1, CAST(:n AS integer)) AS g"
            ),
            {"shop": shop.id, "n": KEYS},
        )
    wanted = [(shop.id, "storefront", f"m-{i}") for i in range(5_000, 5_032)]
    assert_reads_only_these(engine, "inbox_events", wanted, lambda c: InboxRepository(c).recorded)


def stale_statistics(engine: Engine, table: str, insert_sample: str, shop_id: int) -> None:
    """Statistics taken from a small sample in which the looked-up column repeats (as early
    on), then the table emptied: the state in which PostgreSQL chose a scan per value."""
    with writing(engine) as conn:
        conn.execute(text(insert_sample), {"shop": shop_id})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"ANALYZE {table}"))
    with writing(engine) as conn:
        conn.execute(text(f"DELETE FROM {table}"))


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_stale_statistics_do_not_turn_the_inbox_lookup_into_scans(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    stale_statistics(
        engine,
        "inbox_events",
        "INSERT INTO inbox_events (shop_id, source, external_id, topic, status, received_at)"
        " SELECT :shop, 's' || g, 'dup-' || (g % 3), 't', 'applied', now()"
        " FROM generate_series(1, 300) AS g",
        shop.id,
    )
    test_a_batch_finds_its_replays_by_reading_only_its_deliveries(client, engine, shop)


def assert_reads_only_these(
    engine: Engine,
    table: str,
    wanted: list[tuple[int, str, str]],
    lookup: Callable[[Connection], Callable[[list[tuple[int, str, str]]], Mapping[Any, Any]]],
) -> None:
    """``LOOKUPS`` lookups of ``wanted`` among ``KEYS`` rows of one shop find them all and
    read no more than they asked for (every row of the shop would be 160,000)."""
    with writing(engine) as conn:
        # Counted from here: a backend holds its counts until it reports them (at most once
        # a second), so what this transaction shows may include an earlier one's reads.
        before = rows_read(conn, table)
        for _ in range(LOOKUPS):
            assert set(lookup(conn)(wanted)) == set(wanted)
        read = rows_read(conn, table) - before
    assert read <= LOOKUPS * len(wanted), read


def rows_read(conn: Connection, table: str) -> int:
    """Rows this transaction has read from ``table``, by scans and through indexes."""
    return int(
        conn.execute(
            text(
                "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables"
                " WHERE relname = :table"
            ),
            {"table": table},
        ).scalar_one()
    )
