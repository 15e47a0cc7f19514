"""Google's OAuth 2.0 token endpoint and the Sheets v4 calls the owner's sheet makes, on
127.0.0.1: their documented wire format, served from memory, for tests that drive Google's
own client against it.

The token endpoint takes a service account's JWT-bearer grant (RFC 7523) and checks it as
Google does: the RS256 signature against the account's public key, then its issuer, its
audience (Google's token endpoint), scope and lifetime. The Sheets calls want a token it
issued, keep each tab's cells and grid, and answer errors in Google's JSON shape.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeAlias, cast
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cartnudge.testing.started import Started

SCOPE = "https://www.googleapis.com/auth/spreadsheets"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# The audience a grant names: Google's token endpoint, which google-auth puts there whatever
# the key file's token_uri says (the token_uri only says where the grant is sent).
AUDIENCE = "https://oauth2.googleapis.com/token"
TOKEN_LIFETIME_S = 3600
MAX_ASSERTION_LIFETIME_S = 3600  # Google's: "a short-lived token (60 minutes)"
CLOCK_SKEW_S = 300
NEW_TAB_ROWS, NEW_TAB_COLUMNS = 1000, 26  # the grid of a tab added without one, as Sheets makes it
STOP_TIMEOUT_S = 5.0

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_CELL = re.compile(r"([A-Z]+)([1-9][0-9]*)")


@dataclass(frozen=True)
class Formula:
    """A cell Sheets took for a formula (what USER_ENTERED does to text starting with ``=``)."""

    text: str


Value: TypeAlias = str | int | float | bool | Formula


@dataclass
class _Tab:
    sheet_id: int
    title: str
    rows: int
    columns: int
    cells: dict[tuple[int, int], Value] = field(default_factory=dict)

    def properties(self, index: int) -> dict[str, Any]:
        return {
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": index,
            "sheetType": "GRID",
            "gridProperties": {"rowCount": self.rows, "columnCount": self.columns},
        }


@dataclass
class _Spreadsheet:
    spreadsheet_id: str
    title: str
    editors: frozenset[str]
    tabs: list[_Tab]


@dataclass(frozen=True)
class _Fault:
    status: int
    matching: str
    after: bool

    def refusal(self) -> _Refusal:
        return _google_error(self.status, f"The service answers {self.status} (a test fault).")


class _Refusal(Exception):
    """An answer other than 200, with its JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _google_error(status: int, message: str) -> _Refusal:
    return _Refusal(
        status,
        {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}},
    )


def _oauth_error(error: str, description: str) -> _Refusal:
    return _Refusal(400, {"error": error, "error_description": description})


class SheetsApi(Started):
    """The token endpoint (``token_uri``) and Sheets v4 (``endpoint``) on 127.0.0.1 and a
    free port. Register service accounts (``add_service_account``) and spreadsheets with
    their editors (``add_spreadsheet``); read the tabs back with ``tabs`` and ``values``.
    ``fail_next`` answers the next Sheets calls with an error status instead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, rsa.RSAPublicKey] = {}
        self._tokens: dict[str, tuple[str, float]] = {}  # token: (account, expiry, epoch s)
        self._spreadsheets: dict[str, _Spreadsheet] = {}
        self._faults: list[_Fault] = []
        self._calls: list[str] = []
        self._sheet_ids = itertools.count(1_000_001)
        self.tokens_issued = 0
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self._thread: threading.Thread | None = None
        base = f"http://127.0.0.1:{self._server.server_port}"
        self.token_uri = f"{base}/token"
        self.endpoint = f"{base}/"

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> SheetsApi:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="sheets-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(STOP_TIMEOUT_S)
        self._thread = None

    # -- set up ---------------------------------------------------------------------------

    def add_service_account(self, email: str, public_key: rsa.RSAPublicKey) -> None:
        with self._lock:
            self._accounts[email] = public_key

    def add_spreadsheet(
        self, spreadsheet_id: str, *, editors: Iterable[str], title: str = "Carts"
    ) -> None:
        """A spreadsheet with one empty tab, ``Sheet1``, shared with ``editors``."""
        with self._lock:
            self._spreadsheets[spreadsheet_id] = _Spreadsheet(
                spreadsheet_id,
                title,
                frozenset(editors),
                [_Tab(0, "Sheet1", NEW_TAB_ROWS, NEW_TAB_COLUMNS)],
            )

    def fail_next(
        self, status: int, *, times: int = 1, matching: str = "", after: bool = False
    ) -> None:
        """Answer ``status`` (e.g. 503) to the next ``times`` Sheets calls whose ``METHOD
        path`` (as in ``calls``) contains ``matching``, changing nothing; or, ``after``,
        once the call is carried out (an answer lost on its way back)."""
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.extend(_Fault(status, matching, after) for _ in range(times))

    # -- what happened --------------------------------------------------------------------

    def tabs(self, spreadsheet_id: str) -> list[str]:
        with self._lock:
            return [tab.title for tab in self._spreadsheets[spreadsheet_id].tabs]

    def values(self, spreadsheet_id: str, title: str) -> list[list[Value]]:
        """The tab's cells as values.get gives them: rows to the last one used, each to
        its last used cell, an empty cell between as ``""``."""
        with self._lock:
            cells = dict(self._find_tab(self._spreadsheets[spreadsheet_id], title).cells)
        widths: dict[int, int] = {}
        for row, col in cells:
            widths[row] = max(widths.get(row, 0), col + 1)
        return [
            [cells.get((row, col), "") for col in range(widths.get(row, 0))]
            for row in range(max(widths, default=-1) + 1)
        ]

    def grid(self, spreadsheet_id: str, title: str) -> tuple[int, int]:
        """The tab's size, rows by columns."""
        with self._lock:
            tab = self._find_tab(self._spreadsheets[spreadsheet_id], title)
            return tab.rows, tab.columns

    @property
    def calls(self) -> list[str]:
        """The Sheets calls received, in order, as ``METHOD path`` (the path decoded)."""
        with self._lock:
            return list(self._calls)

    # -- the token endpoint ---------------------------------------------------------------

    def _grant(self, body: bytes) -> dict[str, Any]:
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        grant_type = form.get("grant_type", [""])[0]
        if grant_type != JWT_BEARER:
            raise _oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        account = self._verify(form.get("assertion", [""])[0])
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (account, time.time() + TOKEN_LIFETIME_S)
            self.tokens_issued += 1
        return {"access_token": token, "expires_in": TOKEN_LIFETIME_S, "token_type": "Bearer"}

    def _verify(self, assertion: str) -> str:
        """The account whose key signed ``assertion``, once its claims hold."""
        try:
            header_part, claims_part, signature_part = assertion.split(".")
            header = json.loads(_unbase64(header_part))
            claims = json.loads(_unbase64(claims_part))
            signature = _unbase64(signature_part)
        except (ValueError, binascii.Error) as exc:
            raise _oauth_error("invalid_request", "Invalid JWT: not a signed JWT") from exc
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            raise _oauth_error("invalid_grant", "Invalid JWT: the algorithm must be RS256")
        if not isinstance(claims, dict):
            raise _oauth_error("invalid_grant", "Invalid JWT: the claims are not an object")
        with self._lock:
            key = self._accounts.get(str(claims.get("iss")))
        if key is None:
            raise _oauth_error("invalid_grant", "Invalid grant: account not found")
        try:
            key.verify(
                signature,
                f"{header_part}.{claims_part}".encode("ascii"),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature as exc:
            raise _oauth_error("invalid_grant", "Invalid JWT Signature.") from exc
        if claims.get("aud") != AUDIENCE:
            raise _oauth_error("invalid_grant", "Invalid JWT: Failed audience check.")
        issued, expires, now = claims.get("iat"), claims.get("exp"), time.time()
        if not (
            isinstance(issued, int)
            and isinstance(expires, int)
            and issued - CLOCK_SKEW_S <= now < expires
            and expires - issued <= MAX_ASSERTION_LIFETIME_S
        ):
            raise _oauth_error(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim.",
            )
        if SCOPE not in str(claims.get("scope", "")).split():
            raise _oauth_error(
                "invalid_scope", "Invalid OAuth scope or ID token audience provided."
            )
        return str(claims["iss"])

    # -- Sheets v4 ------------------------------------------------------------------------

    def _sheets(self, method: str, url: SplitResult, authorization: str, body: bytes) -> Any:
        call = f"{method} {unquote(url.path)}"
        with self._lock:
            self._calls.append(call)
        account = self._account(authorization)
        with self._lock:
            fault = next((f for f in self._faults if f.matching in call), None)
            if fault is not None:
                self._faults.remove(fault)
                if not fault.after:
                    raise fault.refusal()
            answer = self._dispatch(method, url, account, body)
        if fault is not None:
            raise fault.refusal()
        return answer

    def _dispatch(self, method: str, url: SplitResult, account: str, body: bytes) -> Any:
        """The call's answer; run under the lock."""
        parts = url.path.removeprefix("/v4/spreadsheets/").split("/")
        query = parse_qs(url.query)
        if len(parts) == 1:
            spreadsheet_id, _, verb = unquote(parts[0]).partition(":")
            spreadsheet = self._open(spreadsheet_id, account)
            if method == "GET" and not verb:
                return self._get(spreadsheet)
            if method == "POST" and verb == "batchUpdate":
                return self._batch_update(spreadsheet, _json(body))
        elif len(parts) == 3 and parts[1] == "values":
            spreadsheet = self._open(unquote(parts[0]), account)
            # The range is percent-encoded, so a ":" left in the path is the verb's.
            where, _, verb = parts[2].partition(":")
            if method == "POST" and verb == "clear":
                return self._clear(spreadsheet, unquote(where))
            if method == "PUT" and not verb:
                return self._update(spreadsheet, unquote(where), query, _json(body))
        raise _google_error(404, f"Method not found: {method} {url.path}")

    def _account(self, authorization: str) -> str:
        scheme, _, token = authorization.partition(" ")
        with self._lock:
            account, expiry = self._tokens.get(token, ("", 0.0))
        if scheme != "Bearer" or not account or expiry <= time.time():
            raise _google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )
        return account

    def _open(self, spreadsheet_id: str, account: str) -> _Spreadsheet:
        spreadsheet = self._spreadsheets.get(spreadsheet_id)
        if spreadsheet is None:
            raise _google_error(404, "Requested entity was not found.")
        if account not in spreadsheet.editors:
            raise _google_error(403, "The caller does not have permission")
        return spreadsheet

    def _get(self, spreadsheet: _Spreadsheet) -> dict[str, Any]:
        return {
            "spreadsheetId": spreadsheet.spreadsheet_id,
            "properties": {"title": spreadsheet.title, "locale": "en_US", "timeZone": "Etc/UTC"},
            "sheets": [
                {"properties": tab.properties(index)} for index, tab in enumerate(spreadsheet.tabs)
            ],
            "spreadsheetUrl": f"{self.endpoint}spreadsheets/d/{spreadsheet.spreadsheet_id}/edit",
        }

    def _batch_update(self, spreadsheet: _Spreadsheet, body: Any) -> dict[str, Any]:
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise _google_error(400, "Must specify at least one request.")
        # Every request applies, or none: they are applied to a copy.
        tabs = copy.deepcopy(spreadsheet.tabs)
        replies: list[dict[str, Any]] = []
        for i, request in enumerate(requests):
            if not isinstance(request, dict) or len(request) != 1:
                raise _google_error(400, f"Invalid requests[{i}]: one kind of request each")
            kind, detail = next(iter(request.items()))
            if kind == "addSheet":
                replies.append({"addSheet": {"properties": self._add_tab(tabs, i, detail)}})
            elif kind == "appendDimension":
                self._append_dimension(tabs, i, detail)
                replies.append({})
            else:
                raise _google_error(400, f"Invalid requests[{i}]: {kind} is not served here")
        spreadsheet.tabs = tabs
        return {"spreadsheetId": spreadsheet.spreadsheet_id, "replies": replies}

    def _add_tab(self, tabs: list[_Tab], i: int, detail: Any) -> dict[str, Any]:
        properties = detail.get("properties", {}) if isinstance(detail, dict) else {}
        title = str(properties.get("title") or f"Sheet{len(tabs) + 1}")
        if any(tab.title.casefold() == title.casefold() for tab in tabs):
            raise _google_error(
                400,
                f'Invalid requests[{i}].addSheet: A sheet with the name "{title}" already '
                "exists. Please enter another name.",
            )
        grid = properties.get("gridProperties", {})
        tab = _Tab(
            int(properties.get("sheetId", next(self._sheet_ids))),
            title,
            int(grid.get("rowCount", NEW_TAB_ROWS)),
            int(grid.get("columnCount", NEW_TAB_COLUMNS)),
        )
        tabs.append(tab)
        return tab.properties(len(tabs) - 1)

    def _append_dimension(self, tabs: list[_Tab], i: int, detail: Any) -> None:
        detail = detail if isinstance(detail, dict) else {}
        tab = next((tab for tab in tabs if tab.sheet_id == detail.get("sheetId")), None)
        if tab is None:
            raise _google_error(
                400,
                f"Invalid requests[{i}].appendDimension: No grid with id: {detail.get('sheetId')}",
            )
        length = detail.get("length")
        if not isinstance(length, int) or length < 1:
            raise _google_error(
                400, f"Invalid requests[{i}].appendDimension: length must be at least 1"
            )
        if detail.get("dimension") == "ROWS":
            tab.rows += length
        elif detail.get("dimension") == "COLUMNS":
            tab.columns += length
        else:
            raise _google_error(
                400, f"Invalid requests[{i}].appendDimension: dimension must be ROWS or COLUMNS"
            )

    def _clear(self, spreadsheet: _Spreadsheet, where: str) -> dict[str, Any]:
        tab, start, end = self._range(spreadsheet, where)
        top, left = start or (0, 0)
        bottom, right = end or start or (tab.rows - 1, tab.columns - 1)
        for row, col in list(tab.cells):
            if top <= row <= bottom and left <= col <= right:
                del tab.cells[row, col]
        return {
            "spreadsheetId": spreadsheet.spreadsheet_id,
            "clearedRange": f"{_quoted(tab.title)}!{_a1(top, left)}:{_a1(bottom, right)}",
        }

    def _update(
        self, spreadsheet: _Spreadsheet, where: str, query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        option = query.get("valueInputOption", [""])[0]
        if option not in ("RAW", "USER_ENTERED"):
            raise _google_error(400, "'valueInputOption' is required but not specified")
        if not isinstance(body, dict) or not isinstance(body.get("values", []), list):
            raise _google_error(400, "Invalid JSON payload received: values must be a list")
        if body.get("range", where) != where:
            raise _google_error(
                400,
                f"Requested range [{where}] does not match the range in the body "
                f"[{body.get('range')}]",
            )
        if body.get("majorDimension", "ROWS") != "ROWS":
            raise _google_error(400, "Only majorDimension ROWS is served here")
        tab, start, end = self._range(spreadsheet, where)
        if end is not None:
            raise _google_error(400, f"Only a start cell is served here, not {where}")
        top, left = start or (0, 0)
        rows: list[Any] = body.get("values", [])
        width = max((len(row) for row in rows if isinstance(row, list)), default=0)
        if top + len(rows) > tab.rows or left + width > tab.columns:
            last = _a1(top + len(rows) - 1, left + width - 1)
            raise _google_error(
                400,
                f"Range ({_quoted(tab.title)}!{last}) exceeds grid limits. "
                f"Max rows: {tab.rows}, max columns: {tab.columns}",
            )
        cells = dict(tab.cells)
        for r, row in enumerate(rows):
            if not isinstance(row, list):
                raise _google_error(400, f"Invalid values[{r}]: not a list")
            for c, value in enumerate(row):
                if value is None:  # null leaves the cell as it is
                    continue
                if value == "":
                    cells.pop((top + r, left + c), None)
                    continue
                if not isinstance(value, str | int | float | bool):
                    raise _google_error(400, f"Invalid values[{r}][{c}]: {type(value).__name__}")
                cells[top + r, left + c] = _entered(value) if option == "USER_ENTERED" else value
        tab.cells = cells
        return {
            "spreadsheetId": spreadsheet.spreadsheet_id,
            "updatedRange": f"{_quoted(tab.title)}!{_a1(top, left)}:"
            f"{_a1(top + len(rows) - 1, left + width - 1)}",
            "updatedRows": len(rows),
            "updatedColumns": width,
            "updatedCells": sum(len(row) for row in rows),
        }

    def _range(
        self, spreadsheet: _Spreadsheet, where: str
    ) -> tuple[_Tab, tuple[int, int] | None, tuple[int, int] | None]:
        """A1 notation: a tab (its title quoted or not), then ``!A1`` or ``!A1:C3``."""
        if where.startswith("'"):
            closing = re.match(r"'((?:[^']|'')*)'", where)
            if closing is None:
                raise _google_error(400, f"Unable to parse range: {where}")
            title, rest = closing.group(1).replace("''", "'"), where[closing.end() :]
        else:
            title, bang, cells = where.partition("!")
            rest = bang + cells
        try:
            tab = self._find_tab(spreadsheet, title)
        except KeyError:
            raise _google_error(400, f"Unable to parse range: {where}") from None
        if not rest:
            return tab, None, None
        first, _, last = rest.removeprefix("!").partition(":")
        start, end = _cell(first), _cell(last) if last else None
        if not rest.startswith("!") or start is None or (last and end is None):
            raise _google_error(400, f"Unable to parse range: {where}")
        return tab, start, end

    @staticmethod
    def _find_tab(spreadsheet: _Spreadsheet, title: str) -> _Tab:
        for tab in spreadsheet.tabs:
            if tab.title == title:
                return tab
        raise KeyError(title)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: SheetsApi


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Google serves
    # The head and the body go out in two writes: without this, each answer on a kept-alive
    # connection waits for the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        api = cast(_Server, self.server).api
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        status = 200
        try:
            if method == "POST" and url.path == "/token":
                answer = api._grant(body)
            elif url.path.startswith("/v4/spreadsheets/"):
                answer = api._sheets(method, url, self.headers.get("Authorization", ""), body)
            else:
                raise _google_error(404, f"Not found: {url.path}")
        except _Refusal as refusal:
            status, answer = refusal.status, refusal.body
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"{}")
    except ValueError:
        raise _google_error(400, "Invalid JSON payload received.") from None


def _unbase64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _entered(value: str | int | float | bool) -> Value:
    """What Sheets makes of a value typed into a cell (USER_ENTERED)."""
    if not isinstance(value, str):
        return value
    if value.startswith("="):
        return Formula(value)
    if value.upper() in ("TRUE", "FALSE"):
        return value.upper() == "TRUE"
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() else number


def _cell(text: str) -> tuple[int, int] | None:
    found = _CELL.fullmatch(text)
    if found is None:
        return None
    column = 0
    for letter in found.group(1):
        column = column * 26 + ord(letter) - ord("A") + 1
    return int(found.group(2)) - 1, column - 1


def _a1(row: int, column: int) -> str:
    letters = ""
    column += 1
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"{letters}{row + 1}"


def _quoted(title: str) -> str:
    return "'" + title.replace("'", "''") + "'"


def new_private_key() -> rsa.RSAPrivateKey:
    """An RSA key such as Google makes for a service account's key file."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_key_file(
    path: Path, *, email: str, private_key: rsa.RSAPrivateKey, token_uri: str
) -> Path:
    """A service account's JSON key file, as the Cloud console downloads it, for ``email``
    signing with ``private_key`` and asking ``token_uri`` for its tokens."""
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    project = email.partition("@")[2].partition(".")[0]
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": project,
                "private_key_id": secrets.token_hex(20),
                "private_key": pem,
                "client_email": email,
                "client_id": str(secrets.randbelow(10**21)),
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": token_uri,
                "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                "universe_domain": "googleapis.com",
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return path
