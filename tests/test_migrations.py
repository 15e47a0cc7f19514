"""Migrations are portable: upgrade to head, then the models and the schema agree."""

from __future__ import annotations

from sqlalchemy import Engine, inspect

from cartnudge.db.migrate import check
from cartnudge.db.models import metadata


def test_head_matches_the_models(engine: Engine) -> None:
    check(engine)  # raises if `alembic check` would generate any operation


# The dashboard's people are not a shop's: an admin sees every shop, an owner may run several
# (``user_shops``, which does belong to a shop, says which), and a session is a person's.
# A loops process's heartbeat is the installation's, not a shop's.
ACROSS_SHOPS = {"shops", "users", "web_sessions", "heartbeats"}


def test_every_table_belongs_to_a_shop(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names()) - {"alembic_version"} - ACROSS_SHOPS
    assert tables == {t.name for t in metadata.sorted_tables} - ACROSS_SHOPS
    for name in tables:
        columns = {c["name"] for c in inspect(engine).get_columns(name)}
        assert "shop_id" in columns, name
