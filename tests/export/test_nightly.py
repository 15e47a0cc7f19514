"""The nightly sheet: before the shop's hour nothing; after it, the previous local day's
file once; a second pass writes nothing; a failure is kept and tried again; several
workers on PostgreSQL write it once; a Google Sheet destination goes to its writer."""

from __future__ import annotations

import csv
import io
import threading
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cartnudge.db.session import reading, writing
from cartnudge.export.nightly import NightlyConfig, due_day, run_nightly
from cartnudge.export.repository import nightly_record
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.service import ShopError, set_shop
from cartnudge.testing.sheets_api import SheetsApi, new_private_key, write_key_file
from tests.conftest import KEY, T0, ShopFactory, wipe
from tests.delivery.helpers import H, post

CONFIG = NightlyConfig("http://testserver", KEY.encode())
S = timedelta(seconds=1)
ACCOUNT = "nightly@tea-house.iam.gserviceaccount.com"
SPREADSHEET = "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms"
DAY = date(2026, 3, 13)  # the day before T0, in New York


def nightly(
    engine: Engine, shop: ShopRecord, folder: Path, hour: int = 12, fmt: str = "csv"
) -> ShopRecord:
    with writing(engine) as conn:
        return set_shop(
            conn, shop.slug, T0, export_hour=hour, export_to=str(folder), export_format=fmt
        )


def sheet(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def test_the_previous_day_is_written_once_at_the_shops_hour(
    client: TestClient, engine: Engine, shop: ShopRecord, tmp_path: Path
) -> None:
    post(client, shop, cart_id="yesterday", occurred_at=T0 - 24 * H)
    post(client, shop, cart_id="today")
    folder = tmp_path / "sheets"
    shop = nightly(engine, shop, folder, hour=12)  # T0 is 11:09 in New York
    assert run_nightly(engine, T0, CONFIG) == []
    assert not folder.exists()

    (done,) = run_nightly(engine, T0 + H, CONFIG)
    path = folder / f"{shop.slug}-carts-2026-03-13.csv"
    assert done == {"shop": shop.slug, "day": "2026-03-13", "rows": 1, "to": str(path)}
    header, row = sheet(path)
    assert row[header.index("last active")] == "2026-03-13 11:09"
    assert row[header.index("suppress")].startswith("http://testserver/sheet/")
    written = path.stat().st_mtime_ns

    assert run_nightly(engine, T0 + 2 * H, CONFIG) == []
    assert run_nightly(engine, T0 + 12 * H, CONFIG) == []  # 23:09, still the same day due
    assert path.stat().st_mtime_ns == written
    with reading(engine) as conn:
        record = nightly_record(conn, shop.id, DAY)
    assert (record.attempts, record.rows, record.error) == (1, 1, None)


def test_a_failure_is_logged_kept_and_tried_again(
    client: TestClient,
    engine: Engine,
    shop: ShopRecord,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    post(client, shop, cart_id="yesterday", occurred_at=T0 - 24 * H)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the folder should be")
    shop = nightly(engine, shop, blocked / "sheets")
    (failed,) = run_nightly(engine, T0 + H, CONFIG)
    assert "FileExistsError" in failed["error"] or "NotADirectoryError" in failed["error"]
    assert "nightly sheet of" in caplog.text and "tried again in 0:01:00" in caplog.text
    with reading(engine) as conn:
        first = nightly_record(conn, shop.id, DAY)
    assert first.done_at is None
    assert run_nightly(engine, T0 + H + 30 * S, CONFIG) == []  # not before its wait is over
    (again,) = run_nightly(engine, T0 + H + 60 * S, CONFIG)
    assert "error" in again
    assert run_nightly(engine, T0 + H + 170 * S, CONFIG) == []  # the second wait: 2 minutes

    blocked.unlink()
    (done,) = run_nightly(engine, T0 + 2 * H, CONFIG)
    assert done["rows"] == 1
    assert (blocked / "sheets" / f"{shop.slug}-carts-2026-03-13.csv").exists()
    with reading(engine) as conn:
        record = nightly_record(conn, shop.id, DAY)
    assert (record.attempts, record.error) == (3, None)


def test_the_hour_is_the_shops_own(make_shop: ShopFactory, engine: Engine, tmp_path: Path) -> None:
    tokyo = nightly(engine, make_shop(timezone="Asia/Tokyo"), tmp_path, hour=0)
    # T0 is 00:09 on the 15th in Tokyo: the 14th is due there already.
    assert due_day(tokyo, T0) == date(2026, 3, 14)
    with writing(engine) as conn:
        off = set_shop(conn, tokyo.slug, T0, export_to="")
    assert due_day(off, T0) is None


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"export_hour": 24}, "--export-hour: 24 is not an hour of the day"),
        ({"export_to": "relative/folder"}, "neither an absolute folder nor sheets:"),
        ({"export_to": "sheets:"}, "names no spreadsheet"),
        ({"export_to": "sheets:a b"}, "names no spreadsheet"),
        ({"export_format": "ods"}, "--export-format: 'ods' is not csv or xlsx"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(
    engine: Engine, shop: ShopRecord, given: dict[str, Any], message: str
) -> None:
    with pytest.raises(ShopError, match=message), writing(engine) as conn:
        set_shop(conn, shop.slug, T0, **given)
    with reading(engine) as conn:
        from cartnudge.shops.repository import ShopRepository

        unchanged = ShopRepository(conn).by_id(shop.id)
    assert unchanged is not None
    assert (unchanged.export_hour, unchanged.export_to, unchanged.export_format) == (
        None,
        None,
        "csv",
    )


def test_a_google_sheet_destination_is_written_through_the_sheets_api(
    client: TestClient, engine: Engine, shop: ShopRecord, tmp_path: Path
) -> None:
    post(client, shop, cart_id="yesterday", occurred_at=T0 - 24 * H)
    with writing(engine) as conn:
        shop = set_shop(conn, shop.slug, T0, export_hour=6, export_to=f"sheets:{SPREADSHEET}")
    # Without credentials the run fails, says why, and tries again later.
    (failed,) = run_nightly(engine, T0, CONFIG)
    assert "CARTNUDGE_GOOGLE_CREDENTIALS_FILE is not set" in failed["error"]

    key = new_private_key()
    with SheetsApi() as api:
        api.add_service_account(ACCOUNT, key.public_key())
        api.add_spreadsheet(SPREADSHEET, editors=[ACCOUNT])
        key_file = write_key_file(
            tmp_path / "key.json", email=ACCOUNT, private_key=key, token_uri=api.token_uri
        )
        config = NightlyConfig("http://testserver", KEY.encode(), key_file, api.endpoint)
        (done,) = run_nightly(engine, T0 + H, config)
        assert done == {
            "shop": shop.slug,
            "day": "2026-03-13",
            "rows": 1,
            "to": f"sheets:{SPREADSHEET}",
        }
        assert api.tabs(SPREADSHEET) == ["Sheet1", "2026-03-13"]
        header, row = api.values(SPREADSHEET, "2026-03-13")
        assert header[0] == "cart" and "yesterday" not in str(row)  # the cart number, not its key
        assert any(str(cell).startswith("http://testserver/sheet/") for cell in row)
        assert run_nightly(engine, T0 + 2 * H, config) == []  # the day is written once


def test_workers_racing_on_postgresql_write_the_sheet_once(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from cartnudge.shops.service import add_shop

    engine: Engine = request.getfixturevalue("postgresql_engine")
    wipe(engine)
    try:
        with writing(engine) as conn:
            shop = add_shop(conn, slug="race", name="Race", timezone="UTC", currency="USD", now=T0)
            set_shop(conn, "race", T0, export_hour=0, export_to=str(tmp_path))
        start = threading.Barrier(8)
        results: list[list[dict[str, Any]]] = []

        def worker() -> None:
            start.wait()
            results.append(run_nightly(engine, T0, CONFIG))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        written = [r for found in results for r in found]
        assert len(results) == 8 and len(written) == 1 and written[0]["rows"] == 0
        assert [p.name for p in tmp_path.iterdir()] == ["race-carts-2026-03-13.csv"]
        with reading(engine) as conn:
            assert nightly_record(conn, shop.id, date(2026, 3, 13)).attempts == 1
    finally:
        wipe(engine)


def test_the_worker_loops_write_it_when_due(
    client: TestClient, engine: Engine, shop: ShopRecord, tmp_path: Path
) -> None:
    from cartnudge.config import Settings
    from cartnudge.worker import Loops

    post(client, shop, cart_id="yesterday", occurred_at=T0 - 24 * H)
    shop = nightly(engine, shop, tmp_path / "sheets", hour=12)
    now = [T0]
    tick = [1000.0]
    settings = Settings(home=tmp_path / "home", public_url="http://testserver", secret_key=KEY)
    loops = Loops(engine, settings, clock=lambda: now[0], monotonic=lambda: tick[0])
    try:
        loops.run_nightly_if_due()  # 11:09 in New York: not yet
        assert not (tmp_path / "sheets").exists()
        now[0] = T0 + H
        tick[0] += 30
        loops.run_nightly_if_due()  # looked at most once a minute
        assert not (tmp_path / "sheets").exists()
        tick[0] += 30
        loops.run_nightly_if_due()
        assert [p.name for p in (tmp_path / "sheets").iterdir()] == [
            f"{shop.slug}-carts-2026-03-13.csv"
        ]
    finally:
        loops.providers.close()
