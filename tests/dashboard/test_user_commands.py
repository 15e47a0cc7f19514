"""``cartnudge user …``: add, passwd, grant, list, remove. Bad input exits 2 with a
one-line reason and changes nothing; a password is never an argument."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, func, select

from cartnudge.db.models import User, UserShop
from cartnudge.db.session import reading
from cartnudge.shops.repository import ShopRecord
from tests.test_cli import cli  # noqa: F401 - the fixture


def users(engine: Engine) -> int:
    with reading(engine) as conn:
        return int(conn.scalar(select(func.count()).select_from(User)) or 0)


def test_add_prints_a_one_time_password_once_and_list_shows_the_user(
    cli: Any,  # noqa: F811
    shop: ShopRecord,
) -> None:
    added = cli("user", "add", "Owner@Shop.example", "--role", "owner", "--shop", shop.slug)
    assert added.exit_code == 0, added.output
    shown = json.loads(added.output)
    assert shown["login"] == "owner@shop.example" and len(shown["password"]) >= 20
    listed = json.loads(cli("user", "list").output)
    assert listed == [
        {
            "login": "owner@shop.example",
            "role": "owner",
            "shops": [shop.slug],
            "must_change_password": True,
            "locked_until": None,
            "last_sign_in_at": None,
        }
    ]
    assert shown["password"] not in cli("user", "list").output


def test_a_password_comes_only_from_standard_input(
    cli: Any,  # noqa: F811
    shop: ShopRecord,
) -> None:
    from typer.testing import CliRunner

    from cartnudge.cli import app

    runner = CliRunner()
    result = runner.invoke(
        app,
        ["user", "add", "viewer", "--role", "viewer", "--shop", shop.slug, "--password-stdin"],
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    assert "password" not in json.loads(result.output)
    short = runner.invoke(app, ["user", "passwd", "viewer", "--password-stdin"], input="short\n")
    assert short.exit_code == 2 and "at least 12 characters" in short.output
    empty = runner.invoke(app, ["user", "passwd", "viewer", "--password-stdin"], input="")
    assert empty.exit_code == 2 and "held no password" in empty.output


def test_bad_input_exits_2_and_changes_nothing(
    cli: Any,  # noqa: F811
    engine: Engine,
    shop: ShopRecord,
) -> None:
    cases = [
        (("user", "add", "x", "--role", "boss", "--shop", shop.slug), "no role 'boss'"),
        (("user", "add", "x", "--role", "owner"), "needs at least one shop"),
        (("user", "add", "x", "--role", "owner", "--shop", "nope"), "no shop 'nope'"),
        (("user", "add", "x", "--role", "admin", "--shop", shop.slug), "sees every shop"),
        (("user", "add", "two words", "--shop", shop.slug), "spaces"),
        (("user", "add", "   ", "--shop", shop.slug), "cannot be empty"),
        (("user", "passwd", "nobody"), "no user nobody"),
        (("user", "remove", "nobody", "--yes"), "no user nobody"),
        (("user", "remove", "nobody"), "add --yes"),
        (("user", "grant", "nobody", "--shop", shop.slug), "no user nobody"),
    ]
    for args, words in cases:
        result = cli(*args)
        assert result.exit_code == 2, args
        assert words in result.output, (args, result.output)
    assert users(engine) == 0


def test_the_last_admin_cannot_be_removed_and_removing_a_user_removes_their_shops(
    cli: Any,  # noqa: F811
    engine: Engine,
    shop: ShopRecord,
) -> None:
    assert cli("user", "add", "root", "--role", "admin").exit_code == 0
    refused = cli("user", "remove", "root", "--yes")
    assert refused.exit_code == 2 and "last admin" in refused.output
    assert cli("user", "add", "owner", "--shop", shop.slug).exit_code == 0
    assert cli("user", "remove", "owner", "--yes").exit_code == 0
    with reading(engine) as conn:
        assert conn.scalar(select(func.count()).select_from(UserShop)) == 0
    assert users(engine) == 1
