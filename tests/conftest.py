"""Shared fixtures: a real, migrated database on both engines, a frozen clock, shops,
and the app behind a test client. PostgreSQL is a private server started from the
machine's binaries for this test session."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from cartnudge.app import create_app
from cartnudge.clock import FrozenClock
from cartnudge.config import Settings
from cartnudge.db.engine import make_engine
from cartnudge.db.migrate import upgrade
from cartnudge.db.models import metadata
from cartnudge.db.session import writing
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.service import add_shop
from cartnudge.testing.postgres import PostgresServer
from tests import tally

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CARTNUDGE_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"
T0 = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
SHOPIFY_SECRET = "test-shopify-secret"
STRIPE_SECRET = "whsec_test_stripe_secret"
KEY = "test-signing-key"
SENDER = "Tea House <hello@tea.example>"
POSTAL_ADDRESS = "1 Leaf Lane\nBristol BS1 1AA\nUnited Kingdom"
# One data key for the whole session, so the test process and every process it starts seal
# and open shop secrets alike (tests that change the keys reset the keyring afterwards).
DATA_KEY = base64.urlsafe_b64encode(b"cartnudge-test-data-key-32-bytes").decode()
os.environ["CARTNUDGE_DATA_KEYS"] = DATA_KEY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault and fuzz suites' counts, so a green run still says what it tried."""
    lines = tally.report()
    if lines:
        terminalreporter.write_sep("=", "fault and fuzz counts" + (" (full)" if tally.FULL else ""))
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A command run in-process configures logging for the whole process; put back what
    the test runner had, so one test's JSON handler does not write into the next tests'."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def load_fixture(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text())


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgresql_engine(postgres_server: PostgresServer) -> Iterator[Engine]:
    engine = make_engine(postgres_server.url, pool_size=10)
    upgrade(engine)
    yield engine
    engine.dispose()


def wipe(engine: Engine) -> None:
    """Empty every table; the schema (migrated once per session) stays."""
    tables = [t.name for t in reversed(metadata.sorted_tables)]
    with writing(engine) as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty, unmigrated database of its own on each engine, for migrating step by
    step."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
        yield engine
        engine.dispose()
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.database("fresh") as url:
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A migrated, empty database; every test using it runs on both engines."""
    engine: Engine = request.getfixturevalue(f"{request.param}_engine")
    wipe(engine)
    yield engine
    wipe(engine)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


ShopFactory = Callable[..., ShopRecord]


@pytest.fixture
def make_shop(engine: Engine, clock: FrozenClock) -> ShopFactory:
    counter = iter(range(1, 10_000))

    def factory(**overrides: Any) -> ShopRecord:
        n = next(counter)
        values: dict[str, Any] = {
            "slug": f"shop{n}",
            "name": f"Shop {n}",
            "timezone": "America/New_York",
            "currency": "USD",
            "shopify_domain": f"shop{n}.myshopify.com",
            "shopify_secret": SHOPIFY_SECRET,
            "stripe_secret": STRIPE_SECRET,
            # Switched on long ago, so fixture carts (some from 2012) are remindable.
            "activated_at": datetime(2000, 1, 1, tzinfo=UTC),
            # Every cart reminded: the holdout's own tests set a share.
            "holdout_percent": 0,
        }
        values.update(overrides)
        with writing(engine) as conn:
            return add_shop(conn, now=clock(), **values)

    return factory


@pytest.fixture
def shop(make_shop: ShopFactory) -> ShopRecord:
    return make_shop()


@pytest.fixture
def client(engine: Engine, clock: FrozenClock) -> Iterator[TestClient]:
    settings = Settings(home=Path("/nonexistent"), public_url="http://testserver", secret_key=KEY)
    app = create_app(settings, engine=engine, clock=clock)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def sender_shop(make_shop: ShopFactory) -> ShopRecord:
    """A shop that can send: its sender identity and postal address are set."""
    return make_shop(sender=SENDER, postal_address=POSTAL_ADDRESS)


@pytest.fixture
def run(engine: Engine, tmp_path: Path) -> Iterator[Any]:
    """One waiter and sender pass at a chosen instant (``tests.delivery.helpers.Pass``)."""
    from tests.delivery.helpers import Pass

    passes = Pass(engine, tmp_path / "outbox")
    yield passes
    passes.providers.close()  # SMTP connections kept open between passes
