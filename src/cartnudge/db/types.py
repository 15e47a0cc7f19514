"""Column types that mean the same thing on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from cartnudge.keys import Keyring

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# JSONB on PostgreSQL (indexable, compact); JSON text on SQLite. Python's None is SQL NULL,
# not the JSON value null, so "IS NULL" means "nothing kept" on both engines.
Json = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant on both engines.

    SQLite has no timezone type, so values are stored as naive UTC text (which sorts
    correctly) and given back their UTC zone on the way out. Naive input is refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC instant")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # SQLite: straight to SQLAlchemy's text format in one C call, instead of the
        # generic decorator plus the dialect's own formatter (the ingest writer binds
        # several instants per row, thousands of rows a second).
        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetimes are not stored; pass an aware UTC instant")
            if value.utcoffset():
                value = value.astimezone(UTC)
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def process(value: str | None) -> datetime | None:
            if value is None:
                return None
            return datetime.fromisoformat(value).replace(tzinfo=UTC)

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        instant: datetime = (
            datetime.fromisoformat(value) if isinstance(value, str) else value
        )  # text only from a raw SQLite query
        if instant.tzinfo is None:
            return instant.replace(tzinfo=UTC)
        return instant.astimezone(UTC)


def _keyring() -> Keyring:
    # Imported on first use: the keys (and cryptography) load only in processes that read
    # or write a secret. Tests and `cartnudge keys rotate` reset it with
    # ``cartnudge.keys.reset_process_keyring``.
    from cartnudge.keys import process_keyring

    return process_keyring()


class Sealed(TypeDecorator[str]):
    """Text encrypted at rest with the data keys (``cartnudge.keys``): the column
    holds a Fernet token, the code sees the clear value. Tokens are randomised, so a sealed
    column cannot be searched or compared in SQL."""

    impl = Text()
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else _keyring().seal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else _keyring().open(value)


class SealedJson(TypeDecorator[Any]):
    """A JSON value encrypted at rest as one token, like ``Sealed``."""

    impl = Text()
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return _keyring().seal(json.dumps(value, separators=(",", ":"), ensure_ascii=False))

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else json.loads(_keyring().open(value))
