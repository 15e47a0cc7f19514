"""``cartnudge user …``: the people who sign in to the dashboard.

A password is never an argument (it would show in ``ps`` and the shell's history): without
``--password-stdin`` the user gets a one-time password, printed once, which they replace
at their first sign-in.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from cartnudge.cli_support import emit, fail, runtime

if TYPE_CHECKING:
    from sqlalchemy import Connection

T = TypeVar("T")

user_app = typer.Typer(no_args_is_help=True, help="The people who sign in to the dashboard.")

LoginArgument = Annotated[str, typer.Argument(help="An email address or a short name.")]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of standard input."
    ),
]


def _stdin_password() -> str:
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        fail("--password-stdin: standard input held no password")
    return password


def _run(action: str, work: Callable[[Connection, datetime], T]) -> T:
    """Run ``work(conn, now)`` in one transaction; an AccountError exits 2, changing nothing."""
    from cartnudge.clock import system_clock
    from cartnudge.dashboard.accounts import AccountError
    from cartnudge.db.session import writing

    rt = runtime()
    try:
        with writing(rt.engine) as conn:
            return work(conn, system_clock())
    except AccountError as exc:
        fail(f"{action}: {exc}")


@user_app.command("add")
def user_add(
    login: LoginArgument,
    role: Annotated[str, typer.Option(help="admin (every shop), owner or viewer.")] = "owner",
    shop: Annotated[
        list[str] | None, typer.Option(help="A shop they may see (repeat for more).")
    ] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a user; prints their one-time password once, unless one is given on stdin."""
    from cartnudge.dashboard.accounts import add_user, login_of, role_of

    password = _stdin_password() if password_stdin else None

    def work(conn: Connection, now: datetime) -> dict[str, Any]:
        given = add_user(
            conn, login=login, role=role_of(role), now=now, shops=shop or [], password=password
        )
        return {"login": login_of(login), "role": role, "shops": shop or [], "password": given}

    added = _run("user add", work)
    if added["password"] is None:
        del added["password"]
    else:
        added["note"] = "a one-time password, shown this once: it is replaced at first sign-in"
    emit(added)


@user_app.command("passwd")
def user_passwd(login: LoginArgument, password_stdin: PasswordStdin = False) -> None:
    """Give a user a new password (one-time unless given on stdin), unlock them and sign
    them out everywhere."""
    from cartnudge.dashboard.accounts import login_of, set_password

    password = _stdin_password() if password_stdin else None
    given = _run("user passwd", lambda conn, now: set_password(conn, login, now, password))
    out: dict[str, Any] = {"login": login_of(login), "signed_out": True}
    if given is not None:
        out["password"] = given
        out["note"] = "a one-time password, shown this once: it is replaced at first sign-in"
    emit(out)


@user_app.command("grant")
def user_grant(
    login: LoginArgument,
    shop: Annotated[list[str], typer.Option(help="A shop they may see (repeat for more).")],
) -> None:
    """Let an owner or a viewer see more shops."""
    from cartnudge.dashboard.accounts import give_shops

    _run("user grant", lambda conn, now: give_shops(conn, login, shop))
    _list()


@user_app.command("list")
def user_list() -> None:
    """Every user, their role and shops, and whether they are locked out."""
    _list()


def _list() -> None:
    from cartnudge.dashboard.accounts import list_users
    from cartnudge.db.session import reading

    with reading(runtime().engine) as conn:
        emit(list_users(conn))


@user_app.command("remove")
def user_remove(
    login: LoginArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Really remove them.")] = False,
) -> None:
    """Remove a user and end their sessions (not the last admin)."""
    from cartnudge.dashboard.accounts import login_of, remove_user

    if not yes:
        fail("user remove: add --yes to remove the user")
    _run("user remove", lambda conn, now: remove_user(conn, login))
    emit({"removed": login_of(login)})
