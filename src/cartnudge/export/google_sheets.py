"""The owner's sheet in a Google Sheet: each day its own tab, written as a service account.

The spreadsheet is the owner's; they share it with the service account's email as an
editor. A run writes the day's tab anew (a rerun of the day replaces it, never adds a
second), values exactly as given (RAW: nothing a shopper typed is ever taken for a formula),
a chunk of rows per request. Google's clients are imported here, on use: ``serve`` never
loads them.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeAlias

SCOPE = "https://www.googleapis.com/auth/spreadsheets"
TARGET_PREFIX = "sheets:"
CHUNK_ROWS = 10_000  # data rows per values.update: a big shop's day is many requests, not one
TIMEOUT_S = 30.0  # each request's, the token's too: an endpoint that never answers fails
RETRIES = 4  # the client's retries of 429, 5xx and lost connections, with random back-off
# A Sheets cell holds a double: a larger integer (an order number) would lose digits.
EXACT_INT = 2**53

_SPREADSHEET_ID = re.compile(r"[A-Za-z0-9_-]+")

Cell: TypeAlias = str | int | float | bool


class SheetError(ValueError):
    """The sheet could not be written; the message names what failed, never a secret."""


@dataclass
class _Tab:
    sheet_id: int
    rows: int  # the grid's size, which a write may not pass
    columns: int


@dataclass
class _Key:
    """What the key file says, beside the credentials made from it."""

    credentials: Any
    email: str
    token_uri: str


def write_sheet(
    target: str,
    title: str,
    header: list[str],
    rows: Iterable[list[object]],
    *,
    credentials_file: Path,
    endpoint: str | None = None,
) -> int:
    """Write ``header`` and ``rows`` to the tab ``title`` of the spreadsheet ``target``
    (``sheets:SPREADSHEET_ID``), replacing what a previous run wrote there; the number of
    rows written, the header not counted. ``endpoint`` replaces Google's (a test server)."""
    spreadsheet_id = _spreadsheet_of(target)
    if not title.strip():
        raise SheetError("the tab needs a title")
    if not header:
        raise SheetError("the sheet needs a header")
    key = _key(credentials_file)

    import google.auth.exceptions
    import google_auth_httplib2
    import httplib2
    from googleapiclient.discovery import build
    from googleapiclient.errors import HttpError

    # Given credentials, the client makes its own connection, with a fixed 60 s timeout.
    http = google_auth_httplib2.AuthorizedHttp(
        key.credentials, http=httplib2.Http(timeout=TIMEOUT_S)
    )
    run = _Run(spreadsheet_id, title)
    try:
        service = build(
            "sheets",
            "v4",
            http=http,
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": endpoint} if endpoint else None,
        )
        run.sheets = service.spreadsheets()
        return run.write(run.fresh_tab(), header, rows)
    except HttpError as exc:
        raise SheetError(run.refusal(exc.status_code, exc.reason, key.email)) from exc
    except google.auth.exceptions.RefreshError as exc:
        # google-auth's first argument is "error: description" from the token endpoint.
        raise SheetError(
            f"{key.token_uri} refused a token to {key.email}: {exc.args[0] if exc.args else exc}"
        ) from exc
    except (OSError, httplib2.HttpLib2Error, google.auth.exceptions.TransportError) as exc:
        # Until the token endpoint has answered the credentials hold no token.
        unreachable = key.token_uri if key.credentials.token is None else _api(endpoint)
        raise SheetError(
            f"spreadsheet {spreadsheet_id}: {run.doing} failed: could not reach {unreachable} "
            f"({exc or type(exc).__name__})"
        ) from exc
    finally:
        http.close()


def _spreadsheet_of(target: str) -> str:
    """The spreadsheet id in ``sheets:SPREADSHEET_ID``; ``SheetError`` for anything else."""
    spreadsheet_id = target.removeprefix(TARGET_PREFIX)
    if not target.startswith(TARGET_PREFIX) or not _SPREADSHEET_ID.fullmatch(spreadsheet_id):
        raise SheetError(
            f"a Google Sheet is named sheets:SPREADSHEET_ID (the id from the sheet's "
            f"address), not {target!r}"
        )
    return spreadsheet_id


class _Run:
    """One write of a day's tab, and the step it is at (which names a failure)."""

    def __init__(self, spreadsheet_id: str, title: str) -> None:
        self.spreadsheet_id = spreadsheet_id
        self.title = title
        self.doing = "starting"
        self.sheets: Any = None  # the client's spreadsheets resource

    def call(self, doing: str, request: Any) -> Any:
        self.doing = doing
        return request.execute(num_retries=RETRIES)

    def tabs(self) -> Any:
        return self.sheets.get(
            spreadsheetId=self.spreadsheet_id,
            fields="sheets.properties(sheetId,title,gridProperties(rowCount,columnCount))",
        )

    def fresh_tab(self) -> _Tab:
        """The day's tab, added, or emptied if an earlier run wrote it."""
        found = self.call("reading its tabs", self.tabs())
        tab = _tab(found, self.title)
        if tab is None:
            from googleapiclient.errors import HttpError

            try:
                added = self.call(
                    f"adding the tab {self.title!r}",
                    self.sheets.batchUpdate(
                        spreadsheetId=self.spreadsheet_id,
                        body={"requests": [{"addSheet": {"properties": {"title": self.title}}}]},
                    ),
                )
                return _tab_of(added["replies"][0]["addSheet"]["properties"])
            except HttpError as exc:
                # A retry of an addSheet whose answer was lost finds the tab there already.
                if exc.status_code != 400:
                    raise
                tab = _tab(self.call("reading its tabs again", self.tabs()), self.title)
                if tab is None:
                    raise
        self.call(
            f"clearing the tab {self.title!r}",
            self.sheets.values().clear(
                spreadsheetId=self.spreadsheet_id, range=_a1(self.title), body={}
            ),
        )
        return tab

    def write(self, tab: _Tab, header: list[str], rows: Iterable[list[object]]) -> int:
        values = self.sheets.values()
        written, first_row = 0, 1
        for chunk in _chunks(header, rows):
            last_row = first_row + len(chunk) - 1
            doing = f"writing rows {first_row} to {last_row} of the tab {self.title!r}"
            grow = _growth(tab, last_row, max(len(row) for row in chunk))
            if grow:
                self.call(
                    doing,
                    self.sheets.batchUpdate(
                        spreadsheetId=self.spreadsheet_id, body={"requests": grow}
                    ),
                )
            where = _a1(self.title, f"A{first_row}")
            self.call(
                doing,
                values.update(
                    spreadsheetId=self.spreadsheet_id,
                    range=where,
                    valueInputOption="RAW",
                    body={"range": where, "majorDimension": "ROWS", "values": chunk},
                ),
            )
            written += len(chunk) - (1 if first_row == 1 else 0)
            first_row = last_row + 1
        return written

    def refusal(self, status: int | None, reason: str | None, email: str) -> str:
        message = (
            f"spreadsheet {self.spreadsheet_id}: {self.doing} failed: "
            f"Google Sheets answered {status}"
        )
        if reason:  # Google's error message; a proxy's page in full would be too much
            message += f" ({reason[:200].rstrip('.')})"
        if status == 404:
            message += "; is the spreadsheet id right?"
        elif status == 403:
            message += f"; is the spreadsheet shared with {email} as an editor?"
        return message


def _key(path: Path) -> _Key:
    from google.oauth2 import service_account

    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SheetError(
            f"the service account's key file {path} could not be read: {exc.strerror}"
        ) from exc
    except ValueError as exc:  # the position only: the file holds a private key
        where = (
            f" ({exc.msg} at line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        )
        raise SheetError(
            f"{path} is not a service account's JSON key file: not JSON{where}"
        ) from exc
    try:
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[SCOPE]
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # google-auth names a missing field, or says the key is no key; never its content.
        reason = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
        raise SheetError(f"{path} is not a service account's JSON key file: {reason}") from exc
    return _Key(credentials, str(info["client_email"]), str(info["token_uri"]))


def _tab(spreadsheet: dict[str, Any], title: str) -> _Tab | None:
    for sheet in spreadsheet.get("sheets", []):
        if sheet["properties"]["title"] == title:
            return _tab_of(sheet["properties"])
    return None


def _tab_of(properties: dict[str, Any]) -> _Tab:
    grid = properties.get("gridProperties", {})
    return _Tab(
        int(properties["sheetId"]), int(grid.get("rowCount", 0)), int(grid.get("columnCount", 0))
    )


def _growth(tab: _Tab, rows: int, columns: int) -> list[dict[str, Any]]:
    """The requests that make the tab's grid hold ``rows`` by ``columns`` (Sheets refuses
    a write past the grid), and the tab's size updated to match."""
    grow = []
    for dimension, have, need in (("ROWS", tab.rows, rows), ("COLUMNS", tab.columns, columns)):
        if need > have:
            grow.append(
                {
                    "appendDimension": {
                        "sheetId": tab.sheet_id,
                        "dimension": dimension,
                        "length": need - have,
                    }
                }
            )
    tab.rows, tab.columns = max(tab.rows, rows), max(tab.columns, columns)
    return grow


def _chunks(header: list[str], rows: Iterable[list[object]]) -> Iterator[list[list[Cell]]]:
    """The header and the rows as cells, ``CHUNK_ROWS`` rows at a time, the header with
    the first; rows are read as they are sent, never all at once."""
    cells = (list(map(_cell, row)) for row in rows)
    first = [list(map(_cell, header)), *itertools.islice(cells, CHUNK_ROWS)]
    yield first
    while chunk := list(itertools.islice(cells, CHUNK_ROWS)):
        yield chunk


def _cell(value: object) -> Cell:
    """A value as Sheets stores it: numbers that it holds exactly as numbers, the rest as
    text (an empty cell for None)."""
    if value is None:
        return ""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int) and abs(value) <= EXACT_INT:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, Decimal) and value.is_finite() and Decimal(str(float(value))) == value:
        return float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def _a1(title: str, cell: str = "") -> str:
    """A range in A1 notation: the tab's title quoted, as any title may be."""
    quoted = "'" + title.replace("'", "''") + "'"
    return f"{quoted}!{cell}" if cell else quoted


def _api(endpoint: str | None) -> str:
    return endpoint or "https://sheets.googleapis.com/"
