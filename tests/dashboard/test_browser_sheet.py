"""The sheet in a real browser: export a CSV from the carts page, then open a row's link
and see the confirmation page of its action (screenshots under ``var/screenshots``)."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.dashboard.test_browser import (  # noqa: F401 (fixtures)
    admin_password,
    browser,
    page,
    served,
    shop_with_carts,
    shot,
    sign_in_admin,
)


def test_export_a_csv_from_the_carts_page_and_open_a_rows_link(
    served: tuple[dict[str, str], str],  # noqa: F811
    page: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    env, base = served
    admin_password(env)
    slug = shop_with_carts(env, base, ["anna@example.com"])
    sign_in_admin(page, base, f"/shops/{slug}/carts")
    cart_id = page.inner_text("tbody a").lstrip("#")

    today = datetime.now(ZoneInfo("Europe/London")).date().isoformat()
    page.fill("#export-since", today)
    page.select_option("#export-format", "csv")
    shot(page, "14-export-form")
    with page.expect_download() as started:
        page.click("form#export button")
    download = started.value
    assert download.suggested_filename == f"{slug}-carts-{today}.csv"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    header, row = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
    assert row[header.index("cart")] == cart_id
    assert row[header.index("email")] == "a•••@example.com"
    suppress = row[header.index("suppress")]
    assert "/sheet/" in suppress

    page.goto(base + suppress[suppress.index("/sheet/") :])
    shot(page, "15-sheet-link")
    assert "Send no reminder about these carts?" in page.inner_text("h1")
    assert f"#{cart_id}:" in page.inner_text("main")
    assert page.locator("form[action$='/carts/act'] button.danger").count() == 1
