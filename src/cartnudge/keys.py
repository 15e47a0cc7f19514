"""Data keys: the keyring that encrypts shop secrets at rest (webhook secrets, mail passwords).

Keys come from ``CARTNUDGE_DATA_KEYS``, comma-separated Fernet keys: the first encrypts,
every one decrypts. When it is unset, one key is kept in ``$CARTNUDGE_HOME/data.key``,
created on first use. To replace a key: put the new one first and keep the old one after
it, run ``cartnudge keys rotate``, then drop the old one (see ``key_commands``).

Errors never carry a key or a secret: they say where the keys came from and what is wrong.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import BigInteger, Connection, String, Text, column, select, table, update

from cartnudge.config import Settings

ENV_VAR = "CARTNUDGE_DATA_KEYS"
KEY_FILE = "data.key"
# The process that created the key file writes it right after; a reader waits this long
# for the key to appear rather than take an empty file for a key.
KEY_FILE_WAIT_S = 2.0
# Every shop column sealed with the data keys (``cartnudge.db.types.Sealed``/``SealedJson``).
SEALED_SHOP_COLUMNS = ("shopify_secret", "stripe_secret", "storefront_secrets", "mail_url")


class DataKeyError(ValueError):
    """A data key is malformed, missing or wrong. The message names where the keys came
    from, never a key or a secret."""


class WrongDataKey(DataKeyError):
    """A sealed value decrypts with none of the keys."""


class Keyring:
    """Fernet keys, newest first: ``seal`` with the first, ``open`` with any."""

    def __init__(self, keys: Sequence[str], source: str) -> None:
        if not keys:
            raise DataKeyError(f"{source}: no data key")
        fernets: list[Fernet] = []
        for n, key in enumerate(keys, 1):
            if not key:
                raise DataKeyError(
                    f"{source}: key {n} of {len(keys)} is empty "
                    "(separate keys with commas, the newest first)"
                )
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise DataKeyError(
                    f"{source}: key {n} of {len(keys)} is not a Fernet key (32 bytes in "
                    "url-safe base64; `cartnudge keys new` prints one)"
                ) from None
        self.source = source
        self.size = len(keys)
        self._fernet = MultiFernet(fernets)

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except (InvalidToken, ValueError, TypeError):
            raise WrongDataKey(self.wrong_key_message()) from None

    def reseal(self, token: str) -> str:
        """The same value sealed with the first key, whichever key sealed it."""
        try:
            return self._fernet.rotate(token).decode("ascii")
        except (InvalidToken, ValueError, TypeError):
            raise WrongDataKey(self.wrong_key_message()) from None

    def wrong_key_message(self) -> str:
        return (
            f"a sealed shop secret decrypts with no key in {self.source}: the data key is "
            f"wrong or missing (set {ENV_VAR} to the key(s) the database was sealed with)"
        )


def new_key() -> str:
    """A fresh random data key, as ``CARTNUDGE_DATA_KEYS`` takes it."""
    return Fernet.generate_key().decode("ascii")


def parse_keys(text: str, source: str) -> Keyring:
    return Keyring([part.strip() for part in text.strip().split(",")], source)


def load_keyring(settings: Settings | None = None) -> Keyring:
    """The keys in ``CARTNUDGE_DATA_KEYS``, else the one in ``$CARTNUDGE_HOME/data.key``
    (created, readable by its owner only, if there is none yet)."""
    settings = settings if settings is not None else Settings()
    if settings.data_keys is not None:
        text = settings.data_keys.get_secret_value()
        if not text.strip():
            raise DataKeyError(
                f"{ENV_VAR} is set but empty: give comma-separated keys, or unset it to use "
                f"$CARTNUDGE_HOME/{KEY_FILE}"
            )
        return parse_keys(text, ENV_VAR)
    path = settings.home / KEY_FILE
    return parse_keys(_read_or_create(path), str(path))


def _read_or_create(path: Path) -> str:
    try:
        return _read(path)
    except (FileNotFoundError, NotADirectoryError):
        pass  # created below, or said why not
    key = new_key()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created exclusively and readable by its owner only; if another process won the
        # race, its key is the one everybody uses.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    except OSError as exc:
        raise DataKeyError(
            f"{path}: cannot create the data key file ({exc.strerror}); set {ENV_VAR}"
        ) from None
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
        out.flush()
        os.fsync(out.fileno())  # secrets sealed with it must not outlive the key
    return key


def _read(path: Path) -> str:
    deadline = time.monotonic() + KEY_FILE_WAIT_S
    while True:
        try:
            text = path.read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            raise
        except OSError as exc:
            raise DataKeyError(
                f"{path}: cannot read the data key file ({exc.strerror}); set {ENV_VAR}"
            ) from None
        except UnicodeDecodeError:
            raise DataKeyError(f"{path}: not a data key file") from None
        if text or time.monotonic() >= deadline:
            return text
        time.sleep(0.01)


# -- the process's keyring ------------------------------------------------------------
@functools.cache
def process_keyring() -> Keyring:
    """The keyring the storage boundary uses, loaded from the environment on first use.
    (Two threads may both load it the first time; they load the same keys.)"""
    return load_keyring()


def reset_process_keyring() -> None:
    """Forget the loaded keyring: the next use reads the environment again."""
    process_keyring.cache_clear()


def data_key_problem(exc: BaseException) -> DataKeyError | None:
    """The data key error behind ``exc`` (SQLAlchemy wraps errors raised while binding)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DataKeyError):
            return current
        seen.add(id(current))
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
        )
    return None


# -- rotation -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Resealed:
    shops: int  # shops with at least one sealed value
    values: int  # sealed values re-sealed with the first key


def reseal_shop_secrets(conn: Connection, ring: Keyring) -> Resealed:
    """Re-seal every shop secret with the first key, decrypting with any. The caller owns
    the transaction: on a value no key opens, this raises and the caller rolls back."""
    # The stored tokens, as text: the values are never decrypted into this process.
    shops = table(
        "shops",
        column("id", BigInteger()),
        column("slug", String()),
        *(column(name, Text()) for name in SEALED_SHOP_COLUMNS),
    )
    # Locked until commit on PostgreSQL, so a secret changed meanwhile is not overwritten
    # (SQLite's writer holds the whole database already).
    rows = conn.execute(select(shops).order_by(shops.c.id).with_for_update()).all()
    shop_count = value_count = 0
    for row in rows:
        fresh: dict[str, str] = {}
        for name in SEALED_SHOP_COLUMNS:
            token = row._mapping[name]
            if token is None:
                continue
            try:
                fresh[name] = ring.reseal(token)
            except WrongDataKey:
                raise WrongDataKey(
                    f"shop {row.slug!r}, {name}: decrypts with no key in {ring.source}: "
                    "the data key is wrong or missing"
                ) from None
        if fresh:
            conn.execute(update(shops).where(shops.c.id == row.id).values(**fresh))
            shop_count += 1
            value_count += len(fresh)
    return Resealed(shops=shop_count, values=value_count)
