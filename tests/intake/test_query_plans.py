"""Ingest stays fast as the tables grow: on SQLite, every query and update a delivery runs
finds its rows through an index, never by reading a whole table."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from cartnudge.db.models import Base
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
                if detail.startswith("SCAN ") and detail.split()[1] in Base.metadata.tables:
                    full_scans.append(f"{detail}  <-  {' '.join(statement.split())[:160]}")
    assert full_scans == []
