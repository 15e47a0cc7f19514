"""Upgrading to cart keys led by their value keeps every key and the cart it names, up and
down, and the key still refuses a second cart for the same (shop, kind, value)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine, inspect

from cartnudge.db.migrate import alembic_config, upgrade
from cartnudge.db.session import reading, writing
from tests.carts.test_upgrade_0011 import history

keys = sa.table("cart_keys", *(sa.column(n) for n in ("shop_id", "kind", "value", "cart_id")))


def stored_keys(engine: Engine) -> list[tuple[object, ...]]:
    with reading(engine) as conn:
        return [tuple(r) for r in conn.execute(sa.select(keys).order_by("cart_id", "value"))]


def test_keys_survive_the_new_primary_key_both_ways(fresh_engine: Engine) -> None:
    upgrade(fresh_engine, "0011")
    history(fresh_engine)  # a shop and carts 1 to 3
    with writing(fresh_engine) as conn:
        shop_id = conn.execute(sa.text("SELECT id FROM shops")).scalar_one()
        conn.execute(
            sa.insert(keys),
            [
                {"shop_id": shop_id, "kind": "storefront_cart", "value": "a", "cart_id": 1},
                {"shop_id": shop_id, "kind": "checkout_token", "value": "a", "cart_id": 1},
                {"shop_id": shop_id, "kind": "storefront_cart", "value": "b", "cart_id": 2},
            ],
        )
    before = stored_keys(fresh_engine)

    upgrade(fresh_engine)
    assert inspect(fresh_engine).get_pk_constraint("cart_keys")["constrained_columns"] == [
        "value",
        "kind",
        "shop_id",
    ]
    assert stored_keys(fresh_engine) == before
    with pytest.raises(sa.exc.IntegrityError), writing(fresh_engine) as conn:
        conn.execute(
            sa.insert(keys),
            {"shop_id": shop_id, "kind": "storefront_cart", "value": "a", "cart_id": 3},
        )

    command.downgrade(alembic_config(fresh_engine), "0011")
    assert inspect(fresh_engine).get_pk_constraint("cart_keys")["constrained_columns"] == [
        "shop_id",
        "kind",
        "value",
    ]
    assert stored_keys(fresh_engine) == before
