"""Upgrading to an inbox key led by the external id keeps every delivery, up and down, and
the key still refuses a second row for the same (shop, source, external id)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine, inspect

from cartnudge.db.migrate import alembic_config, upgrade
from cartnudge.db.session import reading, writing
from tests.carts.test_upgrade_0011 import history

COLUMNS = ("shop_id", "source", "external_id", "topic", "status", "received_at", "cart_id")
inbox = sa.table("inbox_events", *(sa.column(n) for n in COLUMNS))


def stored(engine: Engine) -> list[tuple[object, ...]]:
    with reading(engine) as conn:
        rows = conn.execute(sa.select(inbox.c.source, inbox.c.external_id, inbox.c.cart_id))
        return sorted(tuple(r) for r in rows)


def unique_keys(engine: Engine) -> list[list[str]]:
    return [u["column_names"] for u in inspect(engine).get_unique_constraints("inbox_events")]


def test_deliveries_survive_the_new_unique_key_both_ways(fresh_engine: Engine) -> None:
    upgrade(fresh_engine, "0012")
    history(fresh_engine)  # a shop and carts 1 to 3
    with writing(fresh_engine) as conn:
        shop_id = conn.execute(sa.text("SELECT id FROM shops")).scalar_one()
        at = conn.execute(sa.text("SELECT min(created_at) FROM carts")).scalar_one()
        row = {"shop_id": shop_id, "topic": "t", "status": "applied", "received_at": at}
        conn.execute(
            sa.insert(inbox),
            [
                {**row, "source": "storefront", "external_id": "a", "cart_id": 1},
                {**row, "source": "shopify", "external_id": "a", "cart_id": 2},
                {**row, "source": "storefront", "external_id": "b", "cart_id": None},
            ],
        )
    before = stored(fresh_engine)

    upgrade(fresh_engine)
    assert unique_keys(fresh_engine) == [["external_id", "shop_id", "source"]]
    assert stored(fresh_engine) == before
    again = {"shop_id": shop_id, "topic": "t", "status": "applied", "received_at": at}
    with pytest.raises(sa.exc.IntegrityError), writing(fresh_engine) as conn:
        conn.execute(sa.insert(inbox), {**again, "source": "storefront", "external_id": "a"})

    command.downgrade(alembic_config(fresh_engine), "0012")
    assert unique_keys(fresh_engine) == [["shop_id", "source", "external_id"]]
    assert stored(fresh_engine) == before
