"""Process settings, read from the environment (``CARTNUDGE_*``).

Per-shop rules live in the database as documents; this file holds only what a process
needs to start: where its data lives, which database, how it listens.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_BODY_BYTES = 1024 * 1024  # 1 MiB: larger webhook bodies are refused with 413


class Settings(BaseSettings):
    """Settings for one cartnudge process. Every field maps to ``CARTNUDGE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CARTNUDGE_", extra="ignore")

    home: Path = Field(
        default=Path("var"),
        description="Data folder: the SQLite database and the file outbox live here.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; unset means SQLite at $CARTNUDGE_HOME/cartnudge.db. "
        "Use postgresql+psycopg://user:pass@host/db for PostgreSQL.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Base URL the outside world reaches this service at (webhook URLs, links).",
    )
    ingest_batch_max: int = Field(
        default=256,
        ge=1,
        description="Most webhook events committed in one transaction by the ingest writer.",
    )
    ingest_socket: Path | None = Field(
        default=None,
        description="Unix socket of a separate ingest writer process (set by `serve`).",
    )
    db_pool_size: int = Field(default=5, ge=1, description="Connections per process (PostgreSQL).")
    log_level: str = Field(default="INFO", description="Python logging level name.")
    secret_key: str | None = Field(
        default=None,
        description="Signs the links in emails (click and unsubscribe). Unset means a random "
        "key kept in $CARTNUDGE_HOME/secret.key; set it, the same for every process, when web "
        "and worker processes run on different machines.",
    )
    outbox_dir: Path | None = Field(
        default=None,
        description="Where the file mail route writes one .eml per email "
        "(default $CARTNUDGE_HOME/outbox).",
    )
    data_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated Fernet keys that encrypt shop secrets at rest (webhook "
        "secrets, mail passwords): the first encrypts, every one decrypts. Unset means one key "
        "kept in $CARTNUDGE_HOME/data.key; set it, the same for every process, when processes "
        "do not share a data folder. `cartnudge keys new` makes a key; `cartnudge keys rotate` "
        "re-encrypts with the first.",
    )
    google_credentials_file: Path | None = Field(
        default=None,
        description="A Google service account's key file, for shops whose nightly sheet goes "
        "to a Google Sheet (`shop set --export-to sheets:ID`).",
    )
    google_sheets_endpoint: str | None = Field(
        default=None,
        description="Another address for the Google Sheets API (a test server); unset means "
        "Google's own.",
    )

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'cartnudge.db').resolve()}"

    @cached_property
    def signing_key(self) -> bytes:
        if self.secret_key:
            return self.secret_key.encode()
        path = self.home / "secret.key"
        try:
            return path.read_bytes().strip()
        except FileNotFoundError:
            pass
        self.home.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32).encode()
        try:
            # Created exclusively and readable by its owner only; if another process won
            # the race, its key is the one everybody uses.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as out:
            out.write(key)
        return key

    @property
    def resolved_outbox_dir(self) -> Path:
        return self.outbox_dir or self.home / "outbox"

    @property
    def exports_dir(self) -> Path:
        """Where answers to data requests are written, one folder per shop."""
        return self.home / "exports"
