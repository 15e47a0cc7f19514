"""What every ``cartnudge`` sub-command shares: its runtime, its output, its errors.

Every command prints JSON or plain text and exits 2 with a one-line reason on bad input,
changing nothing.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from cartnudge.clock import parse_instant
from cartnudge.config import Settings

# A span of the shop's own days, as ``shops.days.span_of`` reads it (export, reports).
SinceOption = Annotated[str, typer.Option(help="First day, YYYY-MM-DD (the shop's time zone).")]
UntilOption = Annotated[
    str | None,
    typer.Option(help="The day after the last one, YYYY-MM-DD (not included); default: now."),
]


def program() -> str:
    """This command as it was started (``.venv/bin/cartnudge``), for the commands we print
    to be pasted as they are; ``cartnudge`` when started some other way."""
    started = sys.argv[0] if sys.argv else ""
    return shlex.quote(started) if Path(started).name == "cartnudge" else "cartnudge"


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def emit(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


# -- the running server's address ----------------------------------------------------
# `serve` and `web` write where they listen into the data folder, so a command run in a
# second terminal (`events send-example`, the URLs `shop add` prints, the links `tick`
# puts in emails) reaches the server that is running, on whatever port it was given.
SERVER_FILE = "server.json"
PUBLIC_URL_ENV = "CARTNUDGE_PUBLIC_URL"


def record_server(home: Path, listen_url: str, public_url: str) -> Path:
    """Note that this process serves ``listen_url`` (and is known outside as
    ``public_url``); replaces whatever an earlier server left."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / SERVER_FILE
    record = {"pid": os.getpid(), "listen_url": listen_url, "public_url": public_url}
    scratch = path.with_suffix(f".{os.getpid()}.tmp")
    scratch.write_text(json.dumps(record) + "\n")
    scratch.replace(path)  # readers see the old record or the new one, never half of one
    return path


def forget_server(home: Path) -> None:
    """Remove this process's record (not one a later server wrote over it)."""
    path = home / SERVER_FILE
    record = _read_record(path)
    if record is not None and record.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def running_server(home: Path) -> dict[str, Any] | None:
    """The record of the server running on this data folder, or ``None``: none was
    written, or the process that wrote it is gone (killed before it could remove it)."""
    record = _read_record(home / SERVER_FILE)
    if record is None or not _alive(record.get("pid")):
        return None
    if not isinstance(record.get("listen_url"), str):
        return None
    return record


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


class Runtime:
    """What a command needs: settings and a migrated engine, built on first use."""

    def __init__(self, *, migrate_apart: bool = False) -> None:
        self.settings = Settings()
        self._engine: Any = None
        self.migrate_apart = migrate_apart  # migrate in a child process (see db.migrate)
        # An explicit CARTNUDGE_PUBLIC_URL wins; else the running server's address.
        self.server = None if PUBLIC_URL_ENV in os.environ else running_server(self.settings.home)
        if self.server is not None and isinstance(self.server.get("public_url"), str):
            self.settings.public_url = self.server["public_url"]

    @property
    def server_url(self) -> str:
        """Where to reach the running server from this machine: ``CARTNUDGE_PUBLIC_URL``
        when set, else the address the server recorded, else the default."""
        if self.server is not None:
            return str(self.server["listen_url"])
        return self.settings.public_url

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from cartnudge.db.engine import make_engine
            from cartnudge.db.migrate import upgrade, upgrade_apart

            try:
                self._engine = make_engine(self.settings.resolved_database_url)
                (upgrade_apart if self.migrate_apart else upgrade)(self._engine)
            except Exception as exc:
                fail(f"database {_shown(self.settings.resolved_database_url)}: {exc}")
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


def runtime(*, migrate_apart: bool = False) -> Runtime:
    """The command's runtime; its connections close when the command ends. With
    ``migrate_apart`` (``serve``) the migration runs in a short-lived child process."""
    rt = Runtime(migrate_apart=migrate_apart)
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
    from cartnudge.events import email_key

    key = email_key(text)
    local, _, domain = (key or "").partition("@")
    if key is None or not local or not domain or "@" in domain or any(c.isspace() for c in key):
        fail(f"{text!r} is not an email address")
    return key


def _shown(url: str) -> str:
    """A database URL as it may be printed: its password masked."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: nothing in it can be told from a password
        return "(the configured URL)"
