"""``cartnudge export``: the shop's carts as a file or on standard output; bad input exits
2 with a clear reason and leaves no file."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from cartnudge.cli import app
from cartnudge.shops.repository import ShopRecord
from tests.delivery.helpers import post


@pytest.fixture
def cli(engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setenv("CARTNUDGE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CARTNUDGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CARTNUDGE_PUBLIC_URL", "https://carts.example")
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), catch_exceptions=False)

    return run


def test_export_writes_the_file_and_says_where(
    cli: Any, client: TestClient, shop: ShopRecord, tmp_path: Path
) -> None:
    post(client, shop, cart_id="c1")
    out = tmp_path / "carts.csv"
    done = cli("export", "--shop", shop.slug, "--since", "2026-03-14", "--out", str(out))
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"shop": shop.slug, "file": str(out.resolve()), "rows": 1}
    header, row = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert header[:3] == ["cart", "first seen", "last active"]
    assert row[header.index("email")] == "s•••@example.com"
    assert row[header.index("suppress")].startswith("https://carts.example/sheet/")
    xlsx = tmp_path / "carts.xlsx"
    done = cli(
        "export",
        "--shop",
        shop.slug,
        "--since",
        "2026-03-14",
        "--format",
        "xlsx",
        "--out",
        str(xlsx),
    )
    assert done.exit_code == 0, done.output
    assert xlsx.read_bytes()[:2] == b"PK"  # a zip, as every xlsx is


def test_export_to_standard_output(cli: Any, client: TestClient, shop: ShopRecord) -> None:
    post(client, shop, cart_id="c1")
    post(client, shop, cart_id="c2", email="other@example.com")
    done = cli("export", "--shop", shop.slug, "--since", "2026-03-14", "--until", "2026-03-15")
    assert done.exit_code == 0, done.output
    lines = list(csv.reader(io.StringIO(done.stdout.removeprefix("\ufeff"))))
    assert len(lines) == 3 and lines[0][0] == "cart"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shop", "nope", "--since", "2026-03-14"], "no shop 'nope'"),
        (["--since", "14/03/2026"], "since: '14/03/2026' is not a date (YYYY-MM-DD)"),
        (["--since", "2026-03-15", "--until", "2026-03-14"], "must be after since"),
        (["--since", "2026-03-14", "--format", "ods"], "--format: 'ods' is not csv or xlsx"),
        (["--since", "2026-03-14", "--out", "{missing}/x.csv"], "cannot write in"),
        (["--since", "2026-03-14", "--out", "{folder}"], "is a folder"),
    ],
)
def test_bad_input_is_refused_and_leaves_no_file(
    cli: Any, client: TestClient, shop: ShopRecord, tmp_path: Path, args: list[str], message: str
) -> None:
    post(client, shop, cart_id="c1")
    folder = tmp_path / "out"
    folder.mkdir()
    given = [a.format(missing=tmp_path / "missing", folder=folder) for a in args]
    if "--shop" not in given:
        given = ["--shop", shop.slug, *given]
    done = cli("export", *given)
    assert done.exit_code == 2
    assert message in done.stderr
    assert list(folder.iterdir()) == [] and not (tmp_path / "missing").exists()


def test_shop_set_chooses_the_nightly_sheet_and_refuses_a_bad_one(
    cli: Any, shop: ShopRecord, tmp_path: Path
) -> None:
    done = cli("shop", "set", shop.slug, "--export-hour", "6", "--export-to", str(tmp_path))
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["nightly_sheet"] == {
        "hour": 6,
        "to": str(tmp_path),
        "format": "csv",
    }
    for args, message in (
        (["--export-hour", "25"], "--export-hour: 25 is not an hour of the day"),
        (["--export-to", "sheets/x"], "neither an absolute folder nor sheets:<spreadsheet id>"),
        (["--export-format", "pdf"], "--export-format: 'pdf' is not csv or xlsx"),
    ):
        refused = cli("shop", "set", shop.slug, *args)
        assert refused.exit_code == 2 and message in refused.stderr
    stopped = cli("shop", "set", shop.slug, "--export-to", "")
    assert json.loads(stopped.stdout)["nightly_sheet"] is None
