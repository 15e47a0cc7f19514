"""The dashboard's rules, with no I/O: who may do what, how long a session lasts, when a
run of failed sign-ins locks an account, and what a password must be."""

from __future__ import annotations

from datetime import timedelta

from cartnudge.db.models import Role

SESSION_LIFETIME = timedelta(hours=12)  # then sign in again, whatever the activity
LOCK_AFTER = 5  # failed sign-ins in a row before the account locks
FIRST_LOCK = timedelta(seconds=30)  # doubled at each further failure ...
LONGEST_LOCK = timedelta(hours=1)  # ... up to this
MIN_PASSWORD = 12  # characters
MAX_PASSWORD = 1024  # argon2 hashes any length; a megabyte of "password" is an attack


class PasswordRefused(ValueError):
    """Not a password we accept; the message says why."""


def lock_for(failures: int) -> timedelta | None:
    """How long the account locks after ``failures`` failed sign-ins in a row, or None."""
    if failures < LOCK_AFTER:
        return None
    # The shift is capped before it is taken: a million failures must not build a huge int.
    return min(FIRST_LOCK * (1 << min(failures - LOCK_AFTER, 20)), LONGEST_LOCK)


def can_act(role: Role) -> bool:
    """Whether a role may change anything (actions, rules, shops); viewers only read."""
    return role in (Role.ADMIN, Role.OWNER)


def sees_every_shop(role: Role) -> bool:
    return role == Role.ADMIN


def check_password(password: str, login: str) -> None:
    """Refuse what is too short, too long, or the account's own login."""
    if len(password) < MIN_PASSWORD:
        raise PasswordRefused(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise PasswordRefused(f"a password has at most {MAX_PASSWORD} characters")
    if password.strip().lower() == login.strip().lower():
        raise PasswordRefused("a password cannot be the account's login")
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        raise PasswordRefused("a password cannot hold control characters")
