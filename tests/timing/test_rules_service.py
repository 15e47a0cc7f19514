"""Rules per shop, versioned: set, refuse, roll back, and what the timers do about it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.db.models import AuditEntry, ShopDocument
from cartnudge.db.session import reading, writing
from cartnudge.intake.examples import storefront_event
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.versioned import document_history, rollback_document, set_document
from cartnudge.timing.rules import DEFAULT_DOCUMENT, RulesError
from cartnudge.timing.service import RULES, rules_of
from tests.conftest import T0
from tests.intake.helpers import carts, post_storefront
from tests.test_cli import cli  # noqa: F401 - the fixture

FAST = DEFAULT_DOCUMENT.replace("wait_override: null", "wait_override: [30m, 1d]")


def versions(engine: Engine, shop_id: int) -> list[int]:
    docs = ShopDocument
    with reading(engine) as conn:
        return list(conn.execute(select(docs.c.version).where(docs.c.shop_id == shop_id)).scalars())


def test_set_stores_a_new_version_and_unchanged_text_stores_nothing(
    engine: Engine, shop: ShopRecord
) -> None:
    with writing(engine) as conn:
        assert rules_of(conn, [shop.id])[shop.id].version == 0
        current, changed = set_document(conn, RULES, shop, FAST, T0, note="faster")
        assert (current.version, changed) == (1, True)
        again, changed = set_document(conn, RULES, shop, FAST, T0)
        assert (again.version, changed) == (1, False)

    assert versions(engine, shop.id) == [1]
    with reading(engine) as conn:
        audit = AuditEntry
        row = conn.execute(select(audit).where(audit.c.action == "rules:set")).one()
    assert (row.before, row.after, row.reason) == (
        {"rules_version": 0},
        {"rules_version": 1},
        "faster",
    )


def test_an_invalid_document_changes_nothing(engine: Engine, shop: ShopRecord) -> None:
    with writing(engine) as conn:
        set_document(conn, RULES, shop, FAST, T0)
    with pytest.raises(RulesError), writing(engine) as conn:
        set_document(conn, RULES, shop, FAST.replace("steps: 2", "steps: 9"), T0)

    assert versions(engine, shop.id) == [1]


def test_rollback_is_a_new_version_with_the_old_text(engine: Engine, shop: ShopRecord) -> None:
    with writing(engine) as conn:
        set_document(conn, RULES, shop, FAST, T0)
        current, changed = rollback_document(conn, RULES, shop, 0, T0)
        assert (current.version, changed, current.body) == (2, True, DEFAULT_DOCUMENT)
        history = document_history(conn, RULES, shop.id)

    assert [(v.version, v.note) for v in history] == [
        (0, "built-in default"),
        (1, None),
        (2, "rollback to version 0"),
    ]


def test_new_carts_are_timed_by_the_shops_rules_and_open_carts_follow_a_change(
    client: TestClient, engine: Engine, shop: ShopRecord, make_shop: Any
) -> None:
    other = make_shop()
    event = storefront_event(cart_id="c1", occurred_at=T0)  # a 64.00 cart: medium, 2h
    assert post_storefront(client, shop, event).status_code == 200
    [cart] = carts(engine, shop.id)
    assert cart.next_wake_at == T0 + timedelta(hours=2)

    with writing(engine) as conn:
        set_document(conn, RULES, shop, FAST, T0)
    [cart] = carts(engine, shop.id)
    assert cart.next_wake_at == T0 + timedelta(minutes=30)

    later = storefront_event(cart_id="c2", event_id="e2", occurred_at=T0 + timedelta(hours=1))
    assert post_storefront(client, shop, later).status_code == 200
    assert post_storefront(client, other, later).status_code == 200
    assert carts(engine, shop.id)[1].next_wake_at == T0 + timedelta(hours=1, minutes=30)
    assert carts(engine, other.id)[0].next_wake_at == T0 + timedelta(hours=3)  # untouched


def test_rules_cli_show_set_history_rollback(cli: Any, shop: ShopRecord, tmp_path: Path) -> None:  # noqa: F811
    shown = cli("rules", "show", "--shop", shop.slug)
    assert shown.exit_code == 0
    assert shown.output.startswith(f"# {shop.slug}: rules version 0 (built-in default)\n")
    document = tmp_path / "rules.yaml"
    document.write_text(shown.output.replace("steps: 2", "steps: 1"))

    assert (
        "rules version 1 is now current"
        in cli("rules", "set", str(document), "--shop", shop.slug).output
    )
    assert "unchanged" in cli("rules", "set", str(document), "--shop", shop.slug).output
    assert "steps: 1" in cli("rules", "show", "--shop", shop.slug).output
    assert "steps: 2" in cli("rules", "show", "--shop", shop.slug, "--version", "0").output
    rolled = cli("rules", "rollback", "0", "--shop", shop.slug)
    assert "rules version 2 (a copy of 0) is now current" in rolled.output
    history = cli("rules", "history", "--shop", shop.slug, "--json")
    assert [v["version"] for v in json.loads(history.output)] == [0, 1, 2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rules", "set", "{missing}", "--shop", "{shop}"], "No such file"),
        (["rules", "set", "{bad}", "--shop", "{shop}"], "steps: Input should be less than"),
        (["rules", "set", "{binary}", "--shop", "{shop}"], "not UTF-8 text"),
        (["rules", "set", "{good}", "--shop", "nope"], "no shop 'nope'"),
        (["rules", "show", "--shop", "{shop}", "--version", "7"], "the rules have no version 7"),
        (["rules", "rollback", "7", "--shop", "{shop}"], "the rules have no version 7"),
        (["rules", "rollback", "--shop", "{shop}", "--", "-1"], "a version is 0 or more"),
    ],
)
def test_rules_cli_bad_input_exits_2_and_changes_nothing(
    cli: Any,  # noqa: F811
    engine: Engine,
    shop: ShopRecord,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    files = {
        "missing": tmp_path / "missing.yaml",
        "bad": tmp_path / "bad.yaml",
        "binary": tmp_path / "binary.yaml",
        "good": tmp_path / "good.yaml",
    }
    files["bad"].write_text(DEFAULT_DOCUMENT.replace("steps: 2", "steps: 9"))
    files["binary"].write_bytes(b"\xff\xfe\x00steps")
    files["good"].write_text(FAST)
    argv = [a.format(shop=shop.slug, **{k: str(v) for k, v in files.items()}) for a in args]

    result = cli(*argv)

    assert result.exit_code == 2
    assert message in result.output
    assert versions(engine, shop.id) == []
