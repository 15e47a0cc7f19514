"""A shop's voice, versioned like its rules: set, refuse, roll back, audit, and the
``voice`` commands, preview included."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from cartnudge.cli_support import close_runtimes
from cartnudge.db.models import AuditEntry, ShopDocument
from cartnudge.db.session import reading, writing
from cartnudge.messages.commands import voice_app
from cartnudge.messages.service import VOICE, voice_of
from cartnudge.messages.voice import DEFAULT_DOCUMENT, VoiceError
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.versioned import document_history, rollback_document, set_document
from cartnudge.timing.rules import DEFAULT_DOCUMENT as DEFAULT_RULES
from cartnudge.timing.service import RULES, rules_of
from tests.conftest import T0

WARMER = DEFAULT_DOCUMENT.replace(
    'subject: "You left something in your cart at {{ shop_name }}"',
    'subject: "{{ greeting }}, your cart at {{ shop_name }} misses you"',
)
TYPO = DEFAULT_DOCUMENT.replace(
    'subject: "Your cart at {{ shop_name }} is still waiting"',
    'subject: "{{ frist_name }}, your cart is still waiting"',
)


def versions(engine: Engine, shop_id: int, kind: str = "voice") -> list[int]:
    docs = ShopDocument
    stmt = select(docs.c.version).where(docs.c.shop_id == shop_id, docs.c.kind == kind)
    with reading(engine) as conn:
        return sorted(conn.execute(stmt).scalars())


def test_set_stores_a_new_version_audited_and_unchanged_text_stores_nothing(
    engine: Engine, shop: ShopRecord
) -> None:
    with writing(engine) as conn:
        assert voice_of(conn, [shop.id])[shop.id].version == 0
        current, changed = set_document(conn, VOICE, shop, WARMER, T0, note="warmer")
        assert (current.version, changed, current.body) == (1, True, WARMER)
        again, changed = set_document(conn, VOICE, shop, WARMER, T0)
        assert (again.version, changed) == (1, False)

    assert versions(engine, shop.id) == [1]
    audit = AuditEntry
    with reading(engine) as conn:
        row = conn.execute(select(audit).where(audit.c.action == "voice:set")).one()
    assert (row.shop_id, row.actor, row.reason, row.before, row.after) == (
        shop.id,
        "owner:cli",
        "warmer",
        {"voice_version": 0},
        {"voice_version": 1},
    )


def test_the_current_voice_is_what_composing_uses(engine: Engine, shop: ShopRecord) -> None:
    with writing(engine) as conn:
        set_document(conn, VOICE, shop, WARMER, T0)
        current = voice_of(conn, [shop.id])[shop.id]

    wording = current.value.render(
        "first", shop_name="Tea House", first_name="Ana", item_count=1, total="", step=1
    )
    assert wording.subject == "Hi Ana, your cart at Tea House misses you"


def test_an_invalid_document_is_refused_and_nothing_is_stored(
    engine: Engine, shop: ShopRecord
) -> None:
    with writing(engine) as conn:
        set_document(conn, VOICE, shop, WARMER, T0)
    problem = re.escape("last.subject: unknown variable 'frist_name'")
    with pytest.raises(VoiceError, match=problem), writing(engine) as conn:
        set_document(conn, VOICE, shop, TYPO, T0)

    assert versions(engine, shop.id) == [1]
    with reading(engine) as conn:
        assert voice_of(conn, [shop.id])[shop.id].body == WARMER


def test_rollback_is_a_new_version_with_the_old_text(engine: Engine, shop: ShopRecord) -> None:
    with writing(engine) as conn:
        set_document(conn, VOICE, shop, WARMER, T0)
        current, changed = rollback_document(conn, VOICE, shop, 0, T0)
        assert (current.version, changed, current.body) == (2, True, DEFAULT_DOCUMENT)
        history = document_history(conn, VOICE, shop.id)

    assert [(v.version, v.actor, v.note) for v in history] == [
        (0, "default", "built-in default"),
        (1, "owner:cli", None),
        (2, "owner:cli", "rollback to version 0"),
    ]


def test_each_shop_has_its_own_voice_and_the_voice_is_apart_from_the_rules(
    engine: Engine, shop: ShopRecord, make_shop: Any
) -> None:
    other = make_shop()
    with writing(engine) as conn:
        set_document(conn, VOICE, shop, WARMER, T0)
        set_document(conn, RULES, shop, DEFAULT_RULES.replace("steps: 2", "steps: 1"), T0)
        set_document(conn, VOICE, shop, DEFAULT_DOCUMENT, T0)
        voices = voice_of(conn, [shop.id, other.id])
        rules = rules_of(conn, [shop.id, other.id])

    assert {shop_id: v.version for shop_id, v in voices.items()} == {shop.id: 2, other.id: 0}
    assert rules[shop.id].version == 1
    assert rules[shop.id].value.steps == 1
    assert versions(engine, shop.id, "rules") == [1]


Cli = Callable[..., Any]


@pytest.fixture
def voice(engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    """``cartnudge voice …`` on the test database, mounted as the root command mounts it."""
    monkeypatch.setenv("CARTNUDGE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CARTNUDGE_HOME", str(tmp_path))
    monkeypatch.setenv("CARTNUDGE_PUBLIC_URL", "https://carts.example")
    root = typer.Typer()
    root.add_typer(voice_app, name="voice")

    @root.callback()
    def _root(ctx: typer.Context) -> None:
        ctx.call_on_close(close_runtimes)

    runner = CliRunner()

    def run(*args: str, stdin: str | None = None) -> Any:
        return runner.invoke(root, ["voice", *args], input=stdin, catch_exceptions=False)

    return run


def test_voice_cli_show_set_history_rollback(
    voice: Cli, engine: Engine, shop: ShopRecord, tmp_path: Path
) -> None:
    shown = voice("show", "--shop", shop.slug)
    assert shown.exit_code == 0
    assert shown.output == f"# {shop.slug}: voice version 0 (built-in default)\n{DEFAULT_DOCUMENT}"
    document = tmp_path / "voice.yaml"
    document.write_text(WARMER)

    assert voice("set", str(document), "--shop", shop.slug).output == (
        f"{shop.slug}: voice version 1 is now current\n"
    )
    assert "unchanged, voice version 1" in voice("set", str(document), "--shop", shop.slug).output
    assert "misses you" in voice("show", "--shop", shop.slug).output
    assert "misses you" not in voice("show", "--shop", shop.slug, "--version", "0").output
    rolled = voice("rollback", "0", "--shop", shop.slug)
    assert rolled.output == f"{shop.slug}: voice version 2 (a copy of 0) is now current\n"
    history = voice("history", "--shop", shop.slug, "--json")
    assert [v["version"] for v in json.loads(history.output)] == [0, 1, 2]
    table = voice("history", "--shop", shop.slug).output.splitlines()
    assert table[-1].startswith("*    2  ")
    assert versions(engine, shop.id) == [1, 2]


def test_voice_cli_reads_standard_input(voice: Cli, engine: Engine, shop: ShopRecord) -> None:
    result = voice("set", "-", "--shop", shop.slug, stdin=WARMER)

    assert result.exit_code == 0, result.output
    assert versions(engine, shop.id) == [1]


def test_voice_preview_shows_the_wording_in_place(
    voice: Cli, shop: ShopRecord, tmp_path: Path
) -> None:
    first = voice("preview", "--shop", shop.slug)
    last = voice("preview", "--shop", shop.slug, "--step", "2")
    saved = voice("preview", "--shop", shop.slug, "--saved")

    assert first.exit_code == 0, first.output
    assert first.output.startswith(
        f"# {shop.slug}: voice version 0 (built-in default), variant first, reminder 1 of 2,"
    )
    assert f"Subject: You left something in your cart at {shop.name}\n\nHi Ana,\n" in first.output
    assert "- Stoneware mug: 2 × $12.00 = $24.00" in first.output
    assert "Total: $48.00" in first.output
    assert "Unsubscribe: https://carts.example/u/preview" in first.output
    assert f"Subject: Your cart at {shop.name} is still waiting" in last.output
    assert "variant saved" in saved.output
    assert "Subject: Still saving these for later?" in saved.output

    document = tmp_path / "voice.yaml"
    document.write_text(WARMER)
    voice("set", str(document), "--shop", shop.slug)
    assert f"Subject: Hi Ana, your cart at {shop.name} misses you" in (
        voice("preview", "--shop", shop.slug).output
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set", "{missing}", "--shop", "{shop}"], "No such file"),
        (["set", "{yaml}", "--shop", "{shop}"], "not valid YAML: "),
        (["set", "{typo}", "--shop", "{shop}"], "last.subject: unknown variable 'frist_name'"),
        (["set", "{binary}", "--shop", "{shop}"], "not UTF-8 text"),
        (["set", "{big}", "--shop", "{shop}"], "a voice document is at most 64 KiB"),
        (["set", "{good}", "--shop", "nope"], "no shop 'nope'"),
        (["show", "--shop", "nope"], "no shop 'nope'"),
        (["show", "--shop", "{shop}", "--version", "7"], "the voice has no version 7"),
        (["rollback", "7", "--shop", "{shop}"], "the voice has no version 7"),
        (["rollback", "--shop", "{shop}", "--", "-1"], "a version is 0 or more"),
        (["preview", "--shop", "{shop}", "--step", "3"], "--step: the shop's rules send 2"),
        (["preview", "--shop", "{shop}", "--step", "0"], "choose 1 to 2"),
    ],
)
def test_voice_cli_bad_input_exits_2_with_one_line_and_changes_nothing(
    voice: Cli,
    engine: Engine,
    shop: ShopRecord,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    files = {
        "missing": tmp_path / "missing.yaml",
        "yaml": tmp_path / "bad.yaml",
        "typo": tmp_path / "typo.yaml",
        "binary": tmp_path / "binary.yaml",
        "big": tmp_path / "big.yaml",
        "good": tmp_path / "good.yaml",
    }
    files["yaml"].write_text("first:\n  subject: [unclosed\n  lead: x\n")
    files["typo"].write_text(TYPO)
    files["binary"].write_bytes(b"\xff\xfe\x00first")
    files["big"].write_text(WARMER + "#" * 70_000)
    files["good"].write_text(WARMER)
    argv = [a.format(shop=shop.slug, **{k: str(v) for k, v in files.items()}) for a in args]

    result = voice(*argv)

    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: ")
    assert versions(engine, shop.id) == []
