"""Log lines are JSON with fixed fields, and the safety net masks addresses and link tokens
wherever they would appear: the message, its arguments, extra fields, the traceback."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from cartnudge.db.engine import make_engine
from cartnudge.logs import JsonStderrHandler, configure_logging
from cartnudge.testing.postgres import PostgresServer

ADDRESS = "Zelda.Quinlan@Privacy.Example"
TOKEN = "AAAAAAAAAAEpWcYm2oO0j0h1ZEx9dX1-"


@pytest.fixture
def log() -> Iterator[logging.Logger]:
    """A logger of its own with the JSON handler, so the root logger is not touched."""
    logger = logging.getLogger("cartnudge.test_logs")
    handler = JsonStderrHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger
    logger.removeHandler(handler)


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    err = capsys.readouterr().err
    assert err.endswith("\n")
    return [json.loads(line) for line in err.splitlines()]


def test_a_record_is_one_json_line_with_time_level_logger_message_and_extras(
    log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    log.info("sent %d reminders", 3, extra={"shop_id": 7, "send_ids": [1, 2]})

    [line] = lines(capsys)
    assert list(line)[:4] == ["time", "level", "logger", "message"]
    assert line["level"] == "INFO"
    assert line["logger"] == "cartnudge.test_logs"
    assert line["message"] == "sent 3 reminders"
    assert (line["shop_id"], line["send_ids"]) == (7, [1, 2])
    assert "exception" not in line
    assert line["time"].endswith("Z")
    at = datetime.fromisoformat(line["time"])
    assert at.tzinfo is not None and abs(datetime.now(UTC) - at).total_seconds() < 60


def test_addresses_are_masked_in_the_message_its_arguments_and_extras(
    log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    log.warning(
        f"refused {ADDRESS.lower()} and %s (%r)",
        ADDRESS,
        {"to": ADDRESS},
        extra={
            "to": ADDRESS,
            "nested": {"cc": [ADDRESS.upper()]},
            "reply": "hello+r-x@tea.example",
        },
    )

    [line] = lines(capsys)
    assert line["message"] == "refused <email> and <email> ({'to': '<email>'})"
    assert line["to"] == "<email>"
    assert line["nested"] == {"cc": ["<email>"]}
    assert line["reply"] == "<email>"
    assert "@" not in json.dumps(line)


def test_the_exception_text_is_kept_and_masked(
    log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        raise ValueError(f"row ({ADDRESS!r}, 'Zelda') failed")
    except ValueError:
        log.exception("batch of %d failed", 2)

    [line] = lines(capsys)
    assert line["level"] == "ERROR"
    assert line["message"] == "batch of 2 failed"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: row ('<email>', 'Zelda') failed" in line["exception"]
    assert "Privacy" not in json.dumps(line)


def test_link_tokens_and_encoded_addresses_are_masked_in_access_lines(
    log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    # As uvicorn's access logger calls it.
    access = '%s - "%s %s HTTP/%s" %d'
    log.info(access, "127.0.0.1:50000", "GET", f"/c/{TOKEN}", "1.1", 302)
    log.info(access, "127.0.0.1:50000", "POST", f"/u/{TOKEN}?via=mail", "1.1", 200)
    log.info(
        access, "127.0.0.1:50000", "GET", "/unsubscribe?email=zelda%40privacy.example", "1.1", 404
    )
    log.info(access, "127.0.0.1:50000", "POST", "/webhooks/storefront/tea", "1.1", 200)

    messages = [line["message"] for line in lines(capsys)]
    assert messages == [
        '127.0.0.1:50000 - "GET /c/… HTTP/1.1" 302',
        '127.0.0.1:50000 - "POST /u/…?via=mail HTTP/1.1" 200',
        '127.0.0.1:50000 - "GET /unsubscribe?email=<email> HTTP/1.1" 404',
        '127.0.0.1:50000 - "POST /webhooks/storefront/tea HTTP/1.1" 200',
    ]


def test_a_message_whose_arguments_do_not_fit_still_comes_out(
    log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    log.info("%d carts for %s", "many")  # noqa: PLE1206 - on purpose

    [line] = lines(capsys)
    assert line["message"] == "%d carts for %s (arguments did not fit the message)"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "alembic"]
    saved = {
        name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers))
        for name in names
    }
    propagate = {name: logging.getLogger(name).propagate for name in names}
    yield
    for name, (level, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate[name]


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_sends_uvicorn_and_our_records_as_json_and_quiets_alembic(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info")

    logging.getLogger("uvicorn.error").info("Uvicorn running on %s", "http://127.0.0.1:8000")
    access = logging.getLogger("uvicorn.access")
    line = '%s - "%s %s HTTP/%s" %d'
    access.info(line, "127.0.0.1:1", "GET", f"/c/{TOKEN}", "1.1", 302)
    access.info(line, "127.0.0.1:1", "POST", "/webhooks/storefront/tea", "1.1", 200)  # skipped
    access.info(line, "127.0.0.1:1", "POST", "/webhooks/storefront/tea", "1.1", 401)
    logging.getLogger("alembic.runtime.migration").info("Running upgrade  -> 0001")
    logging.getLogger("cartnudge.worker").debug("not at INFO")
    logging.getLogger("cartnudge.worker").warning("database away; retrying")

    assert [(line["logger"], line["message"]) for line in lines(capsys)] == [
        ("uvicorn.error", "Uvicorn running on http://127.0.0.1:8000"),
        ("uvicorn.access", '- - "GET /c/… HTTP/1.1" 302'),
        ("uvicorn.access", '127.0.0.1:1 - "POST /webhooks/storefront/tea HTTP/1.1" 401'),
        ("cartnudge.worker", "database away; retrying"),
    ]


@pytest.mark.usefixtures("restore_logging")
def test_access_lines_name_no_client_but_a_refused_webhook_sender(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info")
    access = logging.getLogger("uvicorn.access")
    line = '%s - "%s %s HTTP/%s" %d'
    shopper = "203.0.113.77:52114"
    access.info(line, shopper, "GET", f"/c/{TOKEN}", "1.1", 302)
    access.info(line, shopper, "GET", f"/u/{TOKEN}", "1.1", 200)
    access.info(line, shopper, "POST", f"/u/{TOKEN}", "1.1", 200)
    access.info(line, shopper, "GET", "/healthz", "1.1", 200)
    access.info(line, "198.51.100.9:443", "POST", "/webhooks/shopify", "1.1", 401)

    assert [line["message"] for line in lines(capsys)] == [
        '- - "GET /c/… HTTP/1.1" 302',
        '- - "GET /u/… HTTP/1.1" 200',
        '- - "POST /u/… HTTP/1.1" 200',
        '- - "GET /healthz HTTP/1.1" 200',
        '198.51.100.9:443 - "POST /webhooks/shopify HTTP/1.1" 401',
    ]


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud")


def test_a_database_error_does_not_carry_the_row_it_failed_on(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'hidden.db'}")
    insert = text("INSERT INTO contact (email) VALUES (:email)")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE contact (email TEXT UNIQUE)"))
            conn.execute(insert, {"email": ADDRESS})
        with pytest.raises(IntegrityError) as failed, engine.begin() as conn:
            conn.execute(insert, {"email": ADDRESS})
    finally:
        engine.dispose()

    assert "parameters hidden" in str(failed.value)
    assert ADDRESS not in str(failed.value)


def test_a_postgresql_error_detail_does_not_carry_the_row_into_a_log_line(
    postgres_server: PostgresServer, log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL quotes the row in its DETAIL line, which SQLAlchemy's hide_parameters
    does not reach: a unique key's value, or the whole row that broke a NOT NULL."""
    engine = make_engine(postgres_server.url)
    errors: list[IntegrityError] = []
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS signups (name TEXT UNIQUE)"))
            conn.execute(text("ALTER TABLE signups ADD COLUMN IF NOT EXISTS city TEXT NOT NULL"))
            insert = text("INSERT INTO signups VALUES (:name, :city)")
            conn.execute(insert, {"name": "Quinlan", "city": "Ashbourne"})
            for row in (
                {"name": "Quinlan", "city": "Ashbourne"},
                {"name": "Larkspur", "city": None},
            ):
                with pytest.raises(IntegrityError) as failed, conn.begin_nested():
                    conn.execute(insert, row)
                errors.append(failed.value)
    finally:
        engine.dispose()
    assert all("DETAIL" in str(error) for error in errors)  # the server did say it

    for error in errors:
        log.warning("insert failed: %s", error)
        try:
            raise error
        except IntegrityError:
            log.exception("insert failed")

    written = capsys.readouterr().err
    for secret in ("Quinlan", "Ashbourne", "Larkspur"):
        assert secret not in written, written
    records = [json.loads(line) for line in written.splitlines()]
    assert "DETAIL:  Key (name)=(…) already exists." in records[0]["message"]
    assert "DETAIL:  …" in records[2]["message"]
    assert "UniqueViolation" in records[1]["exception"]
