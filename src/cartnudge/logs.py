"""Logs: one JSON object per line on stderr, with nothing in them that identifies a shopper.

Every record (ours, uvicorn's server and access logs, alembic's warnings) goes through one
handler. ``PrivacyFilter`` masks anything shaped like an email address, the signed token
in a link path (``/c/…``, ``/u/…``: a token is a bearer credential), and the values in a
PostgreSQL error's ``DETAIL`` line (``Key (email_key)=(…)``, ``Failing row contains (…)``:
the server quotes the row there, past SQLAlchemy's ``hide_parameters``). uvicorn's access
lines name no client address, except for webhooks (``HideClientAddress``); ``JsonLineFormatter``
writes ``time`` (UTC, RFC 3339), ``level``, ``logger``, ``message``, any ``extra=`` fields and
``exception``. The filter is a safety net, not the rule: a log call names carts, sends and shops
by id and never by address; names, postal addresses and phone numbers have no shape a
filter could catch, so they never go into a log call at all.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, date, datetime
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

EMAIL_MASK = "<email>"
LINK_MASK = "…"

# An address, also percent-encoded (``%40``) as it would be in a query string.
_EMAIL = re.compile(r"[\w.%+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")
# The token of a click (/c/) or unsubscribe (/u/) link, up to the next /, ?, # or space.
_LINK_TOKEN = re.compile(r"/([cu])/[^/?#\s\"']+")
# PostgreSQL's DETAIL line, as psycopg puts it in an error's text: up to the end of the line.
_PG_DETAIL = re.compile(r"(DETAIL:\s+)([^\n]*)")
# Its most common shape, whose column names are worth keeping: Key (cols)=(values) ….
_PG_KEY = re.compile(r"Key \(([^)]*)\)=\(.*\)((?: already exists| is not present| is still).*)?")
CLIENT_MASK = "-"
# What every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# uvicorn's coloured duplicate of its message, for its own console formatter.
_DROPPED_EXTRAS = ("color_message",)


def redact(text: str) -> str:
    """``text`` with email addresses and link tokens masked."""
    if "@" in text or "%40" in text:
        text = _EMAIL.sub(EMAIL_MASK, text)
    if "/c/" in text or "/u/" in text:
        text = _LINK_TOKEN.sub(rf"/\1/{LINK_MASK}", text)
    if "DETAIL:" in text:
        text = _PG_DETAIL.sub(_masked_detail, text)
    return text


def _masked_detail(found: re.Match[str]) -> str:
    key = _PG_KEY.fullmatch(found[2])
    if key is not None:
        return f"{found[1]}Key ({key[1]})=({LINK_MASK}){key[2] or ''}"
    return f"{found[1]}{LINK_MASK}"


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float | datetime | date):
        return value
    if isinstance(value, dict):
        return {str(k): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    return redact(str(value))  # what the JSON encoder would have written, masked


class PrivacyFilter(logging.Filter):
    """Masks addresses and link tokens in a record's message (after formatting its args),
    its ``extra=`` values, and its exception and stack text. Changes the record itself, so
    whatever handles it next sees only the masked text."""

    _traceback = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict):
            record.msg = _redact_value(record.msg)
        else:
            try:
                message = record.getMessage()
            except Exception:  # a wrong format string: keep what we can, masked
                message = f"{record.msg} (arguments did not fit the message)"
            record.msg, record.args = redact(message), ()
        for key in vars(record).keys() - _RECORD_FIELDS:
            setattr(record, key, _redact_value(getattr(record, key)))
        if record.exc_info:
            record.exc_text = self._traceback.formatException(record.exc_info)
            record.exc_info = None  # the formatter reads exc_text, masked below
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class SkipAcceptedWebhooks(logging.Filter):
    """Drops uvicorn's access line for a webhook delivery answered 2xx. Each accepted
    delivery is already on record in the inbox (``cartnudge carts show``), and a line costs
    the web process 20-30 us, about a tenth of what it spends on a delivery (bench/README.md);
    refused deliveries and every other request keep their line."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args  # uvicorn's: client, method, path and query, HTTP version, status
        if isinstance(args, tuple) and len(args) == 5:
            _client, method, path, _version, status = args
            return not (
                method == "POST"
                and isinstance(path, str)
                and path.startswith("/webhooks/")
                and isinstance(status, int)
                and 200 <= status < 300
            )
        return True


class HideClientAddress(logging.Filter):
    """Replaces the client's address in uvicorn's access line with ``-``. On the link
    pages (click, unsubscribe) and every other page it is the shopper's (or, behind a
    proxy, whatever ``X-Forwarded-For`` said). Webhook lines keep it: their client is the
    platform or the store's server, never a shopper, and only refused deliveries have a
    line (``SkipAcceptedWebhooks``), where the source tells a store with a wrong secret
    from someone forging deliveries."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args  # uvicorn's: client, method, path and query, HTTP version, status
        if isinstance(args, tuple) and len(args) == 5:
            path = args[2]
            if not (isinstance(path, str) and path.startswith("/webhooks/")):
                record.args = (CLIENT_MASK, *args[1:])
        return True


class JsonLineFormatter(JsonFormatter):
    """``{"time", "level", "logger", "message", …extra, "exception"}`` on one line."""

    def __init__(self) -> None:
        super().__init__(
            reserved_attrs=[*_RECORD_FIELDS, *_DROPPED_EXTRAS],
            rename_fields={"exc_info": "exception", "stack_info": "stack"},
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = (
            datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        super().add_fields(log_data, record, message_dict)


class JsonStderrHandler(logging.StreamHandler[TextIO]):
    """JSON lines, privacy-filtered, to whatever ``sys.stderr`` is when a record comes
    (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonLineFormatter())
        self.addFilter(PrivacyFilter())

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # always the current sys.stderr


def logging_config(level: str | int) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` for a cartnudge process at ``level``; also handed
    to uvicorn, which applies it in each of its worker processes."""
    level_no = _level(level)
    # uvicorn's loggers keep no handlers of their own: they reach the root's JSON handler.
    inherit: dict[str, Any] = {"level": logging.NOTSET, "handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "accepted_webhooks": {"()": SkipAcceptedWebhooks},
            "client_address": {"()": HideClientAddress},
        },
        "handlers": {"json": {"()": JsonStderrHandler}},
        "root": {"level": level_no, "handlers": ["json"]},
        "loggers": {
            "uvicorn": dict(inherit),
            "uvicorn.error": dict(inherit),
            "uvicorn.access": {**inherit, "filters": ["accepted_webhooks", "client_address"]},
            "alembic": {"level": max(level_no, logging.WARNING)},
            # One INFO line per request from `events send-example` and `reconcile` would
            # only repeat what the command prints.
            "httpx": {"level": max(level_no, logging.WARNING)},
        },
    }


def configure_logging(level: str | int) -> None:
    """Send every record of this process, at ``level`` and above, to stderr as JSON lines.
    Raises ``ValueError`` for a level name logging does not know. A child forked from a
    process that did this already has it: configuring again would walk every logger and
    copy the pages it shares with its parent (about 3 MiB, bench/README.md *Memory*)."""
    import logging.config

    root = logging.getLogger()
    configured = [type(handler) for handler in root.handlers] == [JsonStderrHandler]
    if configured and root.level == _level(level):
        return  # this process, or the one it was forked from, set exactly this
    logging.config.dictConfig(logging_config(level))


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.strip().upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    return number
