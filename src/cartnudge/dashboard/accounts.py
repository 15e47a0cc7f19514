"""The dashboard's users: added, given shops, signed in and out, removed. The caller owns
the transaction and commits it, also after a refused sign-in (the failure counts).

Passwords are hashed with argon2id (argon2-cffi's defaults: RFC 9106's second
recommendation). A session is a random token in an HttpOnly cookie; the database keeps only
its SHA-256, so a copy of the database signs nobody in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from cartnudge.dashboard.policy import (
    SESSION_LIFETIME,
    PasswordRefused,
    can_act,
    check_password,
    lock_for,
    sees_every_shop,
)
from cartnudge.dashboard.repository import AccountRepository
from cartnudge.db.models import Role
from cartnudge.shops.repository import ShopRepository

if TYPE_CHECKING:
    from argon2 import PasswordHasher


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message says why."""


@cache
def _hasher() -> PasswordHasher:
    # Imported on first use: only a process that signs someone in pays for it.
    from argon2 import PasswordHasher

    return PasswordHasher()


@cache
def _decoy_hash() -> str:
    """A hash to verify against when no such user exists, so an unknown address takes as
    long to refuse as a wrong password."""
    return _hasher().hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def _verify(password_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def one_time_password() -> str:
    """A password to give someone once; they choose their own at the first sign-in."""
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


MAX_LOGIN = 320  # the column's width
FIRST_ADMIN = "admin"


def login_of(text: str) -> str:
    """A login as it is kept: an email address or a short name, in lower case, with no
    space or control character in it."""
    login = text.strip().lower()
    if not login:
        raise AccountError("a login cannot be empty")
    if len(login) > MAX_LOGIN:
        raise AccountError(f"a login has at most {MAX_LOGIN} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in login):
        raise AccountError("a login cannot hold spaces or control characters")
    return login


def role_of(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise AccountError(f"no role {text!r}: one of {', '.join(r.value for r in Role)}") from None


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking at a page: a signed-in user and the shops they may see."""

    user_id: int
    login: str
    role: Role
    shop_ids: frozenset[int] | None  # None: every shop (an admin)
    csrf: str
    must_change_password: bool
    token_hash: str

    def sees(self, shop_id: int) -> bool:
        return self.shop_ids is None or shop_id in self.shop_ids

    @property
    def can_act(self) -> bool:
        return can_act(self.role)


@dataclass(frozen=True, slots=True)
class SignIn:
    """A sign-in's outcome: a session token, or why not (the same words for an unknown
    address and a wrong password)."""

    token: str | None
    refused: str | None = None


def _password_to_set(password: str | None, login: str) -> tuple[str, bool]:
    """The password chosen, checked; or a one-time one. And whether it was given (one-time)."""
    if password is None:
        return one_time_password(), True
    try:
        check_password(password, login)
    except PasswordRefused as exc:
        raise AccountError(str(exc)) from exc
    return password, False


def _shop_ids(conn: Connection, slugs: list[str]) -> list[int]:
    shops = ShopRepository(conn)
    ids = []
    for slug in slugs:
        shop = shops.by_slug(slug)
        if shop is None:
            raise AccountError(f"no shop {slug!r} (see `cartnudge shop list`)")
        ids.append(shop.id)
    return ids


def add_user(
    conn: Connection,
    *,
    login: str,
    role: Role,
    now: datetime,
    shops: list[str] | None = None,
    password: str | None = None,
) -> str | None:
    """Add a user. Without ``password`` they get a one-time password, returned (to be
    shown once), which they replace at their first sign-in."""
    address = login_of(login)
    repo = AccountRepository(conn)
    if repo.user_by_login(address) is not None:
        raise AccountError(f"there is already a user {address}")
    shop_ids = _shop_ids(conn, shops or [])
    if role != Role.ADMIN and not shop_ids:
        raise AccountError(f"an {role.value} needs at least one shop (--shop SLUG)")
    if role == Role.ADMIN and shop_ids:
        raise AccountError("an admin sees every shop; give no --shop")
    password, given = _password_to_set(password, address)
    user_id = repo.add_user(
        {
            "login": address,
            "role": role.value,
            "password_hash": hash_password(password),
            "must_change_password": given,
            "failed_sign_ins": 0,
            "created_at": now,
            "updated_at": now,
        }
    )
    repo.give_shops(user_id, shop_ids)
    return password if given else None


def give_shops(conn: Connection, login: str, shops: list[str]) -> None:
    repo = AccountRepository(conn)
    user = repo.user_by_login(login_of(login))
    if user is None:
        raise AccountError(f"no user {login_of(login)}")
    if user.role == Role.ADMIN:
        raise AccountError("an admin sees every shop already")
    repo.give_shops(user.id, _shop_ids(conn, shops))


def set_password(
    conn: Connection, login: str, now: datetime, password: str | None = None
) -> str | None:
    """Give a user a new password (a one-time one, returned, when ``password`` is None),
    unlock them and sign them out everywhere."""
    repo = AccountRepository(conn)
    address = login_of(login)
    user = repo.user_by_login(address)
    if user is None:
        raise AccountError(f"no user {address}")
    password, given = _password_to_set(password, address)
    repo.update_user(
        user.id,
        {
            "password_hash": hash_password(password),
            "must_change_password": given,
            "failed_sign_ins": 0,
            "locked_until": None,
            "updated_at": now,
        },
    )
    repo.end_sessions_of(user.id)
    return password if given else None


def change_own_password(
    conn: Connection, viewer: Viewer, current: str, new: str, now: datetime
) -> None:
    """A signed-in user replaces their password; their other sessions end."""
    repo = AccountRepository(conn)
    user = repo.user_by_id(viewer.user_id)
    if user is None or not _verify(user.password_hash, current):
        raise AccountError("the current password is not right")
    if new == current:
        raise AccountError("the new password must differ from the current one")
    try:
        check_password(new, user.login)
    except PasswordRefused as exc:
        raise AccountError(str(exc)) from exc
    repo.update_user(
        user.id,
        {"password_hash": hash_password(new), "must_change_password": False, "updated_at": now},
    )
    repo.end_sessions_of(user.id, keep=viewer.token_hash)


def remove_user(conn: Connection, login: str) -> None:
    repo = AccountRepository(conn)
    address = login_of(login)
    user = repo.user_by_login(address)
    if user is None:
        raise AccountError(f"no user {address}")
    admins = [u for u in repo.all_users() if u.role == Role.ADMIN]
    if user.role == Role.ADMIN and len(admins) == 1:
        raise AccountError("that is the last admin; add another before removing this one")
    repo.remove_user(user.id)


def list_users(conn: Connection) -> list[dict[str, Any]]:
    repo = AccountRepository(conn)
    return [
        {
            "login": u.login,
            "role": u.role,
            "shops": [] if u.role == Role.ADMIN else repo.shop_slugs_of(u.id),
            "must_change_password": u.must_change_password,
            "locked_until": u.locked_until.isoformat() if u.locked_until else None,
            "last_sign_in_at": u.last_sign_in_at.isoformat() if u.last_sign_in_at else None,
        }
        for u in repo.all_users()
    ]


def first_admin(conn: Connection, now: datetime) -> str | None:
    """On a database with no user at all, add the admin ``admin`` and return their
    one-time password; else None."""
    if AccountRepository(conn).count_users():
        return None
    return add_user(conn, login=FIRST_ADMIN, role=Role.ADMIN, now=now)


def sign_in(conn: Connection, login: str, password: str, now: datetime) -> SignIn:
    """Check a password. A locked account is refused whatever the password; a failure
    counts, and from ``LOCK_AFTER`` in a row each locks the account for longer."""
    wrong = SignIn(None, "wrong login or password")
    try:
        address = login_of(login)
    except AccountError:
        _verify(_decoy_hash(), password)
        return wrong
    repo = AccountRepository(conn)
    user = repo.user_by_login(address)
    if user is None:
        _verify(_decoy_hash(), password)
        return wrong
    if user.locked_until is not None and user.locked_until > now:
        wait = int((user.locked_until - now).total_seconds()) + 1
        return SignIn(None, f"too many failed sign-ins: try again in {wait} s")
    if not _verify(user.password_hash, password):
        failures = user.failed_sign_ins + 1
        lock = lock_for(failures)
        repo.update_user(
            user.id,
            {"failed_sign_ins": failures, "locked_until": now + lock if lock else None},
        )
        return wrong
    token = secrets.token_urlsafe(32)
    repo.update_user(user.id, {"failed_sign_ins": 0, "locked_until": None, "last_sign_in_at": now})
    repo.end_expired_sessions(now)  # anyone's, so expired rows never pile up
    repo.start_session(
        {
            "token_hash": token_hash(token),
            "user_id": user.id,
            "csrf": secrets.token_urlsafe(32),
            "created_at": now,
            "expires_at": now + SESSION_LIFETIME,
        }
    )
    return SignIn(token)


def signed_in(conn: Connection, token: str, now: datetime) -> Viewer | None:
    """The viewer a session cookie belongs to, or None (unknown or expired)."""
    repo = AccountRepository(conn)
    row = repo.session(token_hash(token))
    if row is None or row.expires_at <= now:
        return None
    role = Role(row.role)
    return Viewer(
        user_id=row.user_id,
        login=row.login,
        role=role,
        shop_ids=None if sees_every_shop(role) else frozenset(repo.shop_ids_of(row.user_id)),
        csrf=row.csrf,
        must_change_password=row.must_change_password,
        token_hash=row.token_hash,
    )


def sign_out(conn: Connection, token: str) -> None:
    AccountRepository(conn).end_session(token_hash(token))
