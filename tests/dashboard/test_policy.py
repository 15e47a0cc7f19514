"""The dashboard's rules without I/O: the lockout's growth, who may act, passwords."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cartnudge.dashboard.policy import PasswordRefused, can_act, check_password, lock_for
from cartnudge.dashboard.web import safe_next
from cartnudge.db.models import Role


def test_the_lock_starts_at_the_fifth_failure_and_doubles_up_to_an_hour() -> None:
    assert [lock_for(n) for n in range(5)] == [None] * 5
    assert [lock_for(n) for n in (5, 6, 7)] == [timedelta(seconds=s) for s in (30, 60, 120)]
    assert lock_for(12) == timedelta(hours=1)
    assert lock_for(10**9) == timedelta(hours=1)  # no huge number built on the way


def test_only_viewers_cannot_act() -> None:
    assert [can_act(r) for r in (Role.ADMIN, Role.OWNER, Role.VIEWER)] == [True, True, False]


@pytest.mark.parametrize(
    ("password", "words"),
    [
        ("short", "at least 12"),
        ("x" * 1025, "at most 1024"),
        ("Owner@Shop.example", "the account's login"),
        ("twelve chars\x00!", "control characters"),
    ],
)
def test_passwords_refused(password: str, words: str) -> None:
    with pytest.raises(PasswordRefused, match=words):
        check_password(password, "owner@shop.example")


@pytest.mark.parametrize(
    ("target", "kept"),
    [
        ("/shops/a/carts?status=open", "/shops/a/carts?status=open"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_after_sign_in_only_a_path_of_this_site(target: str | None, kept: str) -> None:
    assert safe_next(target) == kept
