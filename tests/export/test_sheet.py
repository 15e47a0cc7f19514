"""The sheet's rows and files: one row per cart of the span, newest first, read a page at a
time; what a spreadsheet user needs in each cell, the address masked; CSV that Excel opens
as UTF-8 and never runs as a formula; XLSX with clickable links; whole files or none."""

from __future__ import annotations

import csv
import gc
import io
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cartnudge.export.files import SheetFileError, write_file
from cartnudge.export.links import read_link_token
from cartnudge.export.sheet import HEADER, LINK_COLUMNS, LinkMaker, items_text, sheet_rows
from cartnudge.shops.days import SpanError, span_of
from cartnudge.shops.repository import ShopRecord
from tests.conftest import KEY, T0
from tests.dashboard.helpers import csrf_of, sign_in, user
from tests.delivery.helpers import H, Pass, post

LINKS = LinkMaker.at("http://testserver", KEY.encode(), T0)


def rows_of(
    engine: Engine, shop: ShopRecord, since: str, until: str | None = None, **kw: Any
) -> list[dict[str, Any]]:
    span = span_of(shop, since, until)
    return [
        dict(zip(HEADER, row, strict=True)) for row in sheet_rows(engine, shop, span, LINKS, **kw)
    ]


def test_a_row_says_what_the_owner_needs_and_masks_the_address(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    post(client, sender_shop, cart_id="won", occurred_at=T0 - H)
    post(client, sender_shop, cart_id="left", email="other@example.com")
    assert run(T0 + 2 * H)["sent"] == 2
    post(
        client,
        sender_shop,
        cart_id="won",
        kind="order_placed",
        order_id="o1",
        occurred_at=T0 + 3 * H,
    )

    won, left = sorted(
        rows_of(engine, sender_shop, "2026-03-14"), key=lambda r: r["email"], reverse=True
    )
    # The shop is in New York: T0 (15:09 UTC) is 11:09 there, and 10:09 an hour before.
    assert won["first seen"] == "2026-03-14 10:09"
    assert won["last active"] == "2026-03-14 14:09"  # the order is its last activity
    assert won["status"] == "bought"
    assert won["items"] == "2 × Blue enamel mug; 1 × Earl Grey, 250 g"
    assert won["total"] == Decimal("64.00") and won["currency"] == "GBP"
    assert won["reminders sent"] == 1
    assert won["recovered"] == "yes" and won["order total"] == Decimal("64.00")
    assert won["email"] == "s•••@example.com"
    assert left["recovered"] == "no" and left["order total"] is None
    assert left["email"] == "o•••@example.com"
    assert left["size"] == "medium"  # the default rules' tier for 64.00
    for column in LINK_COLUMNS:
        assert won[column].startswith("http://testserver/sheet/")
    token = won["write off"].rsplit("/", 1)[1]
    link = read_link_token(KEY.encode(), token, T0)
    assert (link.shop_id, link.action, link.expires_at) == (
        sender_shop.id,
        "write_off",
        T0 + timedelta(days=30),
    )


def test_the_reason_is_the_cart_lists(client: TestClient, engine: Engine, make_shop: Any) -> None:
    late = make_shop(activated_at=T0 + H)  # switched on after the cart: never reminded
    post(client, late, cart_id="before")
    (row,) = rows_of(engine, late, "2026-03-14")
    assert row["reason"].startswith("not reminded: last active before the shop was switched on")


def test_a_stopped_carts_reason_is_the_one_it_was_stopped_with(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    post(client, shop, cart_id="c1")
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    csrf = csrf_of(client, f"/shops/{shop.slug}/carts")
    (row,) = rows_of(engine, shop, "2026-03-14")
    answer = client.post(
        f"/shops/{shop.slug}/carts/act",
        data={
            "action": "write_off",
            "cart": str(row["cart"]),
            "confirmed": "yes",
            "csrf": csrf,
            "reason": "ordered by phone",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    (row,) = rows_of(engine, shop, "2026-03-14")
    assert row["status"] == "written_off" and row["reason"] == "ordered by phone"


def test_pages_cover_every_cart_of_the_span_once_and_no_other(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    for n in range(7):
        post(client, shop, cart_id=f"c{n}", occurred_at=T0 + n * timedelta(minutes=1))
    post(client, shop, cart_id="day-before", occurred_at=T0 - 24 * H)
    post(client, shop, cart_id="day-after", occurred_at=T0 + 24 * H)
    rows = rows_of(engine, shop, "2026-03-14", "2026-03-15", page_size=3)
    assert len(rows) == 7 and len({r["cart"] for r in rows}) == 7
    assert [r["last active"] for r in rows] == sorted(
        (r["last active"] for r in rows), reverse=True
    )
    assert len(rows_of(engine, shop, "2026-03-13", page_size=2)) == 9  # up to now
    assert rows_of(engine, shop, "2026-03-16") == []


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("2026-3-1x", None, "since: '2026-3-1x' is not a date (YYYY-MM-DD)"),
        ("2026-03-01", "yesterday", "until: 'yesterday' is not a date"),
        ("2026-03-02", "2026-03-01", "until (2026-03-01) must be after since (2026-03-02)"),
        ("2026-03-02", "2026-03-02", "must be after since"),
    ],
)
def test_dates_that_make_no_span_are_refused(
    shop: ShopRecord, since: str, until: str | None, message: str
) -> None:
    with pytest.raises(SpanError, match=message.replace("(", r"\(").replace(")", r"\)")):
        span_of(shop, since, until)


def test_items_read_as_one_cell() -> None:
    items = [
        {"title": "Green tea", "quantity": 2},
        {"title": "Mug", "variant": "blue", "quantity": 1},
        {"quantity": 3},
    ]
    assert items_text(items) == "2 × Green tea; 1 × Mug (blue); 3 × item"


HOSTILE = ['=HYPERLINK("http://evil.example")', "+1", "-2", "@SUM(A1)", "\tx", "\rx", "plain"]


def test_csv_opens_as_utf8_in_excel_and_never_as_a_formula(tmp_path: Path) -> None:
    path = tmp_path / "sheet.csv"
    rows = [[1, value, Decimal("12.50"), None] for value in HOSTILE] + [[2, "Thé vert ×2", 0, "ok"]]
    assert write_file(path, "csv", ["n", "text", "total", "other"], rows) == len(rows)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    read = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert read[0] == ["n", "text", "total", "other"]
    texts = [r[1] for r in read[1:]]
    assert texts[:6] == ["'" + v for v in HOSTILE[:6]]
    assert texts[6:] == ["plain", "Thé vert ×2"]
    assert read[1][2:] == ["12.50", ""]


def test_xlsx_keeps_text_as_text_and_links_clickable(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    path = tmp_path / "sheet.xlsx"
    rows = [[value, "http://testserver/sheet/abc", Decimal("12.50")] for value in HOSTILE]
    rows.append(["bell\x07 in a title", "not a link", None])
    write_file(
        path,
        "xlsx",
        ["text", "suppress", "total"],
        rows,
        title="shop1",
        links=frozenset({"suppress"}),
    )
    sheet = load_workbook(path)["shop1"]
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == ("text", "suppress", "total")
    # (XML reads a carriage return as a line feed.)
    assert [v[0] for v in values[1:8]] == [v.replace("\r", "\n") for v in HOSTILE]
    assert values[8][0] == "bell in a title"
    cells = sheet[2]
    assert cells[0].data_type == "s"  # "=HYPERLINK(…)" is text, not a formula
    assert cells[1].hyperlink.target == "http://testserver/sheet/abc"
    assert cells[2].value == 12.5
    last = sheet[9]
    assert last[1].hyperlink is None


def test_a_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "sheet.csv"
    path.write_text("yesterday's sheet")

    def rows() -> Any:
        yield [1, "a"]
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        write_file(path, "csv", ["n", "t"], rows())
    assert path.read_text() == "yesterday's sheet"
    with pytest.raises(RuntimeError):
        write_file(tmp_path / "sheet.xlsx", "xlsx", ["n", "t"], rows())
    gc.collect()  # an unfinished xlsx writer would complain here (warnings are errors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.csv"]
    with pytest.raises(SheetFileError, match="is a folder"):
        write_file(tmp_path, "csv", ["n"], [])
    with pytest.raises(SheetFileError, match="cannot write in"):
        write_file(tmp_path / "missing" / "x.csv", "csv", ["n"], [])
    with pytest.raises(SheetFileError, match="choose csv or xlsx"):
        write_file(tmp_path / "x.ods", "ods", ["n"], [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.csv"]


def test_an_xlsx_refuses_more_rows_than_a_sheet_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cartnudge.export.files.XLSX_MAX_ROWS", 3)
    path = tmp_path / "big.xlsx"
    with pytest.raises(SheetFileError, match="more than an xlsx sheet holds"):
        write_file(path, "xlsx", ["n"], ([n] for n in range(4)))
    assert list(tmp_path.iterdir()) == []
    assert write_file(path, "xlsx", ["n"], ([n] for n in range(3))) == 3
