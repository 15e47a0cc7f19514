"""What every ``cartnudge`` sub-command shares: its runtime, its output, its errors.

Every command prints JSON or plain text and exits 2 with a one-line reason on bad input,
changing nothing.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NoReturn

import typer

from cartnudge.clock import parse_instant
from cartnudge.config import Settings


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def emit(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


class Runtime:
    """What a command needs: settings and a migrated engine, built on first use."""

    def __init__(self) -> None:
        self.settings = Settings()
        self._engine: Any = None

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from cartnudge.db.engine import make_engine
            from cartnudge.db.migrate import upgrade

            try:
                self._engine = make_engine(self.settings.resolved_database_url)
                upgrade(self._engine)
            except Exception as exc:
                fail(f"database {self.settings.resolved_database_url}: {exc}")
        return self._engine

    def shop(self, slug: str) -> Any:
        from cartnudge.db.session import reading
        from cartnudge.shops.repository import ShopRepository

        with reading(self.engine) as conn:
            shop = ShopRepository(conn).by_slug(slug)
        if shop is None:
            fail(f"no shop {slug!r} (see `cartnudge shop list`)")
        return shop

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


_RUNTIMES: list[Runtime] = []


def runtime() -> Runtime:
    """The command's runtime; its connections close when the command ends."""
    rt = Runtime()
    _RUNTIMES.append(rt)
    return rt


def close_runtimes() -> None:
    while _RUNTIMES:
        _RUNTIMES.pop().close()


def instant(text: str, option: str) -> datetime:
    try:
        return parse_instant(text)
    except ValueError:
        fail(f"{option}: {text!r} is not an RFC 3339 time with an offset")


def address_key(text: str) -> str:
    """The form an address is held under, or exit 2 if ``text`` is not an address."""
    from cartnudge.intake.events import email_key

    key = email_key(text)
    local, _, domain = (key or "").partition("@")
    if key is None or not local or not domain or "@" in domain or any(c.isspace() for c in key):
        fail(f"{text!r} is not an email address")
    return key
