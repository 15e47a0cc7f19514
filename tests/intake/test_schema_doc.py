"""The published storefront JSON Schema is the one the lane enforces."""

from __future__ import annotations

import json

from cartnudge.intake.schemas import storefront_json_schema
from tests.conftest import REPO


def test_docs_schema_matches_the_model() -> None:
    published = json.loads((REPO / "docs" / "storefront-event.schema.json").read_text())
    assert published == storefront_json_schema(), (
        "regenerate with: cartnudge events schema > docs/storefront-event.schema.json"
    )


def test_schema_names_the_documented_fields() -> None:
    fields = set(storefront_json_schema()["properties"])  # type: ignore[call-overload]
    assert fields == {
        "event_id", "type", "cart_id", "occurred_at", "email", "first_name", "locale",
        "timezone", "currency", "total", "discount", "items", "return_url", "accepts_marketing",
        "order_id",
    }  # fmt: skip


def test_cli_prints_the_published_schema() -> None:
    from typer.testing import CliRunner

    from cartnudge.cli import app

    result = CliRunner().invoke(app, ["events", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == storefront_json_schema()
