"""Migrations are portable: upgrade to head, then the models and the schema agree."""

from __future__ import annotations

from sqlalchemy import Engine, inspect

from cartnudge.db.migrate import check
from cartnudge.db.models import metadata


def test_head_matches_the_models(engine: Engine) -> None:
    check(engine)  # raises if `alembic check` would generate any operation


def test_every_table_belongs_to_a_shop(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names()) - {"alembic_version", "shops"}
    assert tables == {t.name for t in metadata.sorted_tables} - {"shops"}
    for name in tables:
        columns = {c["name"] for c in inspect(engine).get_columns(name)}
        assert "shop_id" in columns, name
