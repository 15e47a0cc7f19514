"""The owner's sheet written to a Google Sheet through Google's own client, against a local
server that speaks the token endpoint's and Sheets v4's wire format and checks the service
account's signed JWT."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cartnudge.export import google_sheets
from cartnudge.export.google_sheets import SheetError, write_sheet
from cartnudge.testing.postgres import free_port
from cartnudge.testing.sheets_api import Formula, SheetsApi, new_private_key, write_key_file

EMAIL = "cartnudge-sheet@tea-house.iam.gserviceaccount.com"
SPREADSHEET = "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms"
TARGET = f"sheets:{SPREADSHEET}"
DAY = "2026-12-07"
HEADER = ["cart", "email", "total", "status", "reminded"]
ROWS: list[list[object]] = [
    [1, "ann@example.com", 12.5, "abandoned", True],
    [2, "bob@example.com", 40, "recovered", False],
    [3, None, Decimal("7.25"), "abandoned", False],
]


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return new_private_key()


@pytest.fixture
def api(key: rsa.RSAPrivateKey) -> Iterator[SheetsApi]:
    with SheetsApi() as api:
        api.add_service_account(EMAIL, key.public_key())
        api.add_spreadsheet(SPREADSHEET, editors=[EMAIL])
        yield api


@pytest.fixture
def key_file(tmp_path: Path, api: SheetsApi, key: rsa.RSAPrivateKey) -> Path:
    return write_key_file(
        tmp_path / "sheet-writer.json", email=EMAIL, private_key=key, token_uri=api.token_uri
    )


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """One retry and a short timeout, so a failure shows within seconds."""
    monkeypatch.setattr(google_sheets, "RETRIES", 1)
    monkeypatch.setattr(google_sheets, "TIMEOUT_S", 0.5)


def write(
    api: SheetsApi,
    key_file: Path,
    rows: list[list[object]] = ROWS,
    *,
    title: str = DAY,
    target: str = TARGET,
    endpoint: str | None = None,
) -> int:
    return write_sheet(
        target, title, HEADER, rows, credentials_file=key_file, endpoint=endpoint or api.endpoint
    )


def test_the_rows_land_in_the_days_own_tab_header_first(api: SheetsApi, key_file: Path) -> None:
    assert write(api, key_file) == 3

    assert api.tabs(SPREADSHEET) == ["Sheet1", DAY]
    assert api.values(SPREADSHEET, DAY) == [
        HEADER,
        [1, "ann@example.com", 12.5, "abandoned", True],
        [2, "bob@example.com", 40, "recovered", False],
        [3, "", 7.25, "abandoned", False],
    ]
    assert api.values(SPREADSHEET, "Sheet1") == []
    assert api.tokens_issued == 1


def test_a_rerun_of_the_day_replaces_its_tab(api: SheetsApi, key_file: Path) -> None:
    write(api, key_file)
    assert write(api, key_file, [[9, "cy@example.com", 3, "abandoned", False]]) == 1

    assert api.tabs(SPREADSHEET) == ["Sheet1", DAY]
    assert api.values(SPREADSHEET, DAY) == [HEADER, [9, "cy@example.com", 3, "abandoned", False]]


def test_another_day_gets_a_tab_of_its_own(api: SheetsApi, key_file: Path) -> None:
    write(api, key_file)
    write(api, key_file, [[9, "cy@example.com", 3, "abandoned", False]], title="2026-12-08")

    assert api.tabs(SPREADSHEET) == ["Sheet1", DAY, "2026-12-08"]
    assert len(api.values(SPREADSHEET, DAY)) == 4  # the first day as it was
    assert api.values(SPREADSHEET, "2026-12-08")[1][0] == 9


def test_a_big_day_goes_in_chunks_every_row_in_order(
    api: SheetsApi, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(google_sheets, "CHUNK_ROWS", 400)
    wide = [f"c{i}" for i in range(30)]  # wider than a new tab's 26 columns
    rows = ([n, *range(29)] for n in range(2500))  # longer than its 1,000 rows; read lazily

    written = write_sheet(TARGET, DAY, wide, rows, credentials_file=key_file, endpoint=api.endpoint)

    assert written == 2500
    values = api.values(SPREADSHEET, DAY)
    assert values[0] == wide
    assert [row[0] for row in values[1:]] == list(range(2500))
    assert all(row[1:] == list(range(29)) for row in values[1:])
    puts = [call for call in api.calls if call.startswith("PUT ")]
    assert [call.rpartition("!")[2] for call in puts] == [
        "A1",
        *(f"A{2 + 400 * i}" for i in range(1, 7)),
    ]
    assert api.grid(SPREADSHEET, DAY) == (2501, 30)


def test_text_that_looks_like_a_formula_stays_text(api: SheetsApi, key_file: Path) -> None:
    typed: list[object] = ['=HYPERLINK("http://evil.example","win")', "+1", "0012", "TRUE", "a'b"]
    write(api, key_file, [typed], title="Carts of 7 Dec, '26")

    assert api.values(SPREADSHEET, "Carts of 7 Dec, '26")[1] == typed
    assert not any(
        isinstance(v, Formula) for v in api.values(SPREADSHEET, "Carts of 7 Dec, '26")[1]
    )


def test_values_sheets_cannot_hold_exactly_are_written_as_text(
    api: SheetsApi, key_file: Path
) -> None:
    order = 2**60 + 1  # a double would round it
    write(api, key_file, [[order, date(2026, 12, 7), Decimal("0.1") / 3, float("nan"), None]])

    assert api.values(SPREADSHEET, DAY)[1] == [
        str(order),
        "2026-12-07",
        str(Decimal("0.1") / 3),
        "nan",
    ]


def test_a_busy_api_is_asked_again(api: SheetsApi, key_file: Path, quick: None) -> None:
    api.fail_next(503)

    assert write(api, key_file) == 3
    assert api.calls[0] == api.calls[1]  # the same call, answered the second time
    assert len(api.values(SPREADSHEET, DAY)) == 4


def test_a_tab_added_but_not_acknowledged_is_not_added_twice(
    api: SheetsApi, key_file: Path, quick: None
) -> None:
    api.fail_next(503, matching=":batchUpdate", after=True)  # added, the answer lost

    assert write(api, key_file) == 3
    assert api.tabs(SPREADSHEET) == ["Sheet1", DAY]
    assert len(api.values(SPREADSHEET, DAY)) == 4


def test_an_api_that_stays_down_is_a_sheet_error(
    api: SheetsApi, key_file: Path, quick: None
) -> None:
    api.fail_next(429, times=2)

    with pytest.raises(SheetError, match=f"spreadsheet {SPREADSHEET}: reading its tabs failed"):
        write(api, key_file)
    assert api.tabs(SPREADSHEET) == ["Sheet1"]


def test_a_key_file_signed_with_another_key_gets_no_token(
    api: SheetsApi, key_file: Path, tmp_path: Path
) -> None:
    other = write_key_file(
        tmp_path / "forged.json",
        email=EMAIL,
        private_key=new_private_key(),
        token_uri=api.token_uri,
    )

    with pytest.raises(SheetError) as refused:
        write(api, other)

    message = str(refused.value)
    assert "refused a token" in message
    assert "Invalid JWT Signature" in message
    assert EMAIL in message
    assert "PRIVATE KEY" not in message
    assert api.tokens_issued == 0
    assert api.calls == []  # no Sheets call without a token
    assert api.tabs(SPREADSHEET) == ["Sheet1"]


def test_an_unknown_spreadsheet_is_named(api: SheetsApi, key_file: Path) -> None:
    with pytest.raises(SheetError) as missing:
        write(api, key_file, target="sheets:no-such-sheet")

    assert "spreadsheet no-such-sheet" in str(missing.value)
    assert "404" in str(missing.value)


def test_a_sheet_not_shared_with_the_account_says_with_whom_to_share_it(
    api: SheetsApi, key_file: Path
) -> None:
    api.add_spreadsheet("someone-elses", editors=["owner@tea-house.example"])

    with pytest.raises(SheetError, match=f"403.*shared with {EMAIL}"):
        write(api, key_file, target="sheets:someone-elses")
    assert api.tabs("someone-elses") == ["Sheet1"]


@pytest.mark.parametrize(
    "target",
    ["", SPREADSHEET, "sheets:", "sheet:abc", "file:carts.csv", "sheets:a/b", "sheets:a b"],
)
def test_a_target_that_is_not_a_sheet_is_refused(
    api: SheetsApi, key_file: Path, target: str
) -> None:
    with pytest.raises(SheetError, match="sheets:SPREADSHEET_ID"):
        write(api, key_file, target=target)
    assert api.tokens_issued == 0
    assert api.calls == []


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "could not be read: No such file or directory"),
        ("not json", "not JSON"),
        (json.dumps({"type": "service_account"}), "missing fields"),
        (
            json.dumps(
                {
                    "type": "service_account",
                    "client_email": EMAIL,
                    "token_uri": "http://127.0.0.1:1/token",
                    "private_key": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n"
                    "-----END PRIVATE KEY-----\n",
                }
            ),
            "is not a service account's JSON key file",
        ),
    ],
)
def test_a_bad_key_file_is_a_sheet_error_naming_it(
    api: SheetsApi, tmp_path: Path, content: str | None, says: str
) -> None:
    path = tmp_path / "key.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")

    with pytest.raises(SheetError, match=says) as bad:
        write(api, path)

    assert str(path) in str(bad.value)
    assert "c2VjcmV0" not in str(bad.value)
    assert api.calls == []


def test_an_endpoint_that_is_down_fails_quickly(
    api: SheetsApi, key_file: Path, quick: None
) -> None:
    down = f"http://127.0.0.1:{free_port()}/"
    started = time.monotonic()

    with pytest.raises(SheetError, match=f"could not reach {down}"):
        write(api, key_file, endpoint=down)
    assert time.monotonic() - started < 10


def test_a_token_endpoint_that_is_down_is_named(
    api: SheetsApi, key: rsa.RSAPrivateKey, tmp_path: Path, quick: None
) -> None:
    token_uri = f"http://127.0.0.1:{free_port()}/token"
    path = write_key_file(tmp_path / "k.json", email=EMAIL, private_key=key, token_uri=token_uri)

    with pytest.raises(SheetError, match=f"could not reach {token_uri}"):
        write(api, path)


def test_an_endpoint_that_never_answers_times_out(
    api: SheetsApi, key_file: Path, quick: None
) -> None:
    # A listener nobody serves: the connection opens, the request is taken, no answer comes.
    with socket.create_server(("127.0.0.1", 0), backlog=8) as silent:
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        started = time.monotonic()

        with pytest.raises(SheetError, match=f"could not reach {endpoint}"):
            write(api, key_file, endpoint=endpoint)
    assert time.monotonic() - started < 15
