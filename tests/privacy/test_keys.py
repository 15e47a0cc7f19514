"""Shop secrets are sealed at rest with the data keys: the database never holds them in
clear, the app still verifies webhooks with them, and `cartnudge keys rotate` moves every
secret to a new key. Bad keys give one clear line, never a traceback or a secret."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from cryptography.fernet import Fernet, InvalidToken
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from cartnudge.cli import app
from cartnudge.clock import system_clock
from cartnudge.config import Settings
from cartnudge.db.migrate import alembic_config, upgrade
from cartnudge.db.session import reading, writing
from cartnudge.db.types import Json, UtcDateTime
from cartnudge.intake.examples import example_request
from cartnudge.keys import (
    DataKeyError,
    WrongDataKey,
    load_keyring,
    process_keyring,
    reset_process_keyring,
)
from cartnudge.shops.repository import ShopRecord, ShopRepository
from cartnudge.shops.service import rotate_storefront_secret
from tests.conftest import DATA_KEY, SHOPIFY_SECRET, STRIPE_SECRET, T0, ShopFactory
from tests.intake.helpers import post

CARTNUDGE = str(Path(sys.executable).parent / "cartnudge")
MAIL_PASSWORD = "hunter2-mail-password"
MAIL_URL = f"smtp+starttls://mugs%40shop:{MAIL_PASSWORD}@smtp.example.com:587"
RAW_SECRETS = text("SELECT shopify_secret, stripe_secret, storefront_secrets, mail_url FROM shops")
OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


@pytest.fixture
def use_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str | None], None]]:
    """Switch this process to other data keys (``None``: unset, so the key file); the
    session's key is back for the next test."""

    def switch(keys: str | None) -> None:
        if keys is None:
            monkeypatch.delenv("CARTNUDGE_DATA_KEYS", raising=False)
        else:
            monkeypatch.setenv("CARTNUDGE_DATA_KEYS", keys)
        reset_process_keyring()

    yield switch
    monkeypatch.setenv("CARTNUDGE_DATA_KEYS", DATA_KEY)
    reset_process_keyring()


@pytest.fixture
def cli(engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setenv("CARTNUDGE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CARTNUDGE_HOME", str(tmp_path))
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), catch_exceptions=False)

    return run


def not_chained(exc: BaseException) -> bool:
    """A traceback of ``exc`` would show nothing raised inside cryptography."""
    return exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


def raw_values(engine: Engine) -> list[str]:
    with reading(engine) as conn:
        return [value for row in conn.execute(RAW_SECRETS) for value in row if value is not None]


def shops(engine: Engine) -> list[ShopRecord]:
    with reading(engine) as conn:
        return ShopRepository(conn).all()


# -- at rest ----------------------------------------------------------------------------
def test_the_database_never_holds_a_secret_in_clear_yet_webhooks_verify(
    engine: Engine, client: TestClient, make_shop: ShopFactory
) -> None:
    shop = make_shop(mail_url=MAIL_URL)
    with writing(engine) as conn:  # a second storefront secret, as during a rotation
        shop = rotate_storefront_secret(conn, shop.slug, finish=False)
    clear = [SHOPIFY_SECRET, STRIPE_SECRET, *shop.storefront_secrets, MAIL_PASSWORD]

    stored = raw_values(engine)

    assert len(stored) == 4
    for value in stored:
        assert all(secret not in value for secret in clear)
        Fernet(DATA_KEY).decrypt(value)  # a token under the session's key
    # The code sees the clear values.
    [read] = shops(engine)
    assert (read.shopify_secret, read.stripe_secret, read.mail_url) == (
        SHOPIFY_SECRET,
        STRIPE_SECRET,
        MAIL_URL,
    )
    assert read.storefront_secrets == shop.storefront_secrets
    assert len(read.storefront_secrets) == 2
    # The app verifies each lane with the sealed secret, and still refuses a wrong one.
    for lane in ("shopify", "stripe", "storefront"):
        response = post(client, example_request(shop, lane, system_clock()))
        assert response.status_code == 200, (lane, response.text)
    wrong = replace(
        shop,
        shopify_secret="wrong",
        stripe_secret="whsec_wrong",
        storefront_secrets=("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB",),
    )
    for lane in ("shopify", "stripe", "storefront"):
        assert post(client, example_request(wrong, lane, system_clock())).status_code == 401


def test_secret_longer_than_the_old_column_limit_is_kept_whole(
    engine: Engine, make_shop: ShopFactory
) -> None:
    long_secret = "s" * 255  # its token is longer than 255: the column is text now
    make_shop(shopify_secret=long_secret)

    assert shops(engine)[0].shopify_secret == long_secret


# -- rotation ---------------------------------------------------------------------------
def test_rotate_reseals_every_value_with_the_first_key(
    engine: Engine, make_shop: ShopFactory, cli: Any, use_keys: Callable[[str | None], None]
) -> None:
    use_keys(OLD_KEY)
    make_shop(mail_url=MAIL_URL)  # 4 sealed values
    make_shop(shopify_domain=None, shopify_secret=None)  # stripe + storefront: 2
    before = shops(engine)

    use_keys(f"{NEW_KEY},{OLD_KEY}")
    result = cli("keys", "rotate")

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["values"], report["shops"]) == (6, 2)
    assert report["sealed_with"] == "key 1 of 2 in CARTNUDGE_DATA_KEYS"
    assert NEW_KEY not in result.output and OLD_KEY not in result.output
    for value in raw_values(engine):
        Fernet(NEW_KEY).decrypt(value)
        with pytest.raises(InvalidToken):
            Fernet(OLD_KEY).decrypt(value)
    use_keys(NEW_KEY)  # the old key dropped
    assert shops(engine) == before
    use_keys(OLD_KEY)
    with pytest.raises(WrongDataKey):
        shops(engine)


def test_rotate_with_a_wrong_key_changes_nothing(
    engine: Engine, make_shop: ShopFactory, cli: Any, use_keys: Callable[[str | None], None]
) -> None:
    make_shop()
    stored = raw_values(engine)
    use_keys(f"{NEW_KEY},{OLD_KEY}")  # neither is the key the shop was sealed with

    result = cli("keys", "rotate")

    assert result.exit_code == 2
    assert "shop 'shop1'" in result.output
    assert "CARTNUDGE_DATA_KEYS" in result.output
    assert "wrong or missing" in result.output
    assert "nothing was re-sealed" in result.output
    assert raw_values(engine) == stored


def test_rotate_with_an_empty_database_and_one_key(engine: Engine, cli: Any) -> None:
    result = cli("keys", "rotate")

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["values"], report["shops"]) == (0, 0)
    assert report["next"] == "nothing to drop: there is only one key"


# -- wrong and malformed keys -----------------------------------------------------------
def test_a_wrong_key_gives_a_clear_error_without_the_value(
    engine: Engine, make_shop: ShopFactory, use_keys: Callable[[str | None], None]
) -> None:
    make_shop(mail_url=MAIL_URL)
    [token, *_] = raw_values(engine)
    use_keys(NEW_KEY)

    with pytest.raises(WrongDataKey) as caught:
        shops(engine)

    message = str(caught.value)
    assert "CARTNUDGE_DATA_KEYS" in message
    assert "the data key is wrong or missing" in message
    assert token not in message and SHOPIFY_SECRET not in message
    assert not_chained(caught.value)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("not-a-key", "CARTNUDGE_DATA_KEYS: key 1 of 1 is not a Fernet key"),
        (f"{DATA_KEY},short", "CARTNUDGE_DATA_KEYS: key 2 of 2 is not a Fernet key"),
        (f"{DATA_KEY},", "CARTNUDGE_DATA_KEYS: key 2 of 2 is empty"),
        ("é" * 44, "CARTNUDGE_DATA_KEYS: key 1 of 1 is not a Fernet key"),
        ("  ", "CARTNUDGE_DATA_KEYS is set but empty"),
    ],
)
def test_a_malformed_key_gives_a_clear_error_naming_the_variable(
    keys: str, message: str, use_keys: Callable[[str | None], None]
) -> None:
    use_keys(keys)

    with pytest.raises(DataKeyError) as caught:
        process_keyring()

    assert str(caught.value).startswith(message)
    assert "short" not in str(caught.value) and "not-a-key" not in str(caught.value)
    assert not_chained(caught.value)


def test_rotate_with_a_malformed_key_fails_before_touching_the_database(
    engine: Engine, make_shop: ShopFactory, cli: Any, use_keys: Callable[[str | None], None]
) -> None:
    make_shop()
    stored = raw_values(engine)
    use_keys(f"not-a-key,{DATA_KEY}")

    result = cli("keys", "rotate")

    assert result.exit_code == 2
    assert result.output.startswith("error: CARTNUDGE_DATA_KEYS: key 1 of 2 is not a Fernet key")
    assert "Traceback" not in result.output
    use_keys(DATA_KEY)
    assert raw_values(engine) == stored


def test_commands_meeting_bad_keys_print_one_line(tmp_path: Path) -> None:
    """Any command, not only `keys`: the error and exit 2, never a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTNUDGE_")}
    env["CARTNUDGE_HOME"] = str(tmp_path)

    def run(keys: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CARTNUDGE, *args],
            env={**env, "CARTNUDGE_DATA_KEYS": keys},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    add = ["shop", "add", "--timezone", "UTC", "--currency", "EUR", "--stripe-secret", "whsec_abc"]
    added = run(OLD_KEY, *add, "tea", "--name", "Tea")
    assert added.returncode == 0, added.stderr
    malformed = run("not-a-key", *add, "mug", "--name", "Mug")
    wrong = run(NEW_KEY, "shop", "list")

    def error(result: subprocess.CompletedProcess[str]) -> str:
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and "whsec_abc" not in result.stderr
        [line] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        return line

    assert error(malformed).startswith("error: CARTNUDGE_DATA_KEYS: key 1 of 1 is not a Fernet")
    assert error(wrong).startswith(
        "error: a sealed shop secret decrypts with no key in CARTNUDGE_DATA_KEYS"
    )
    assert json.loads(run(OLD_KEY, "shop", "list").stdout)[0]["slug"] == "tea"


# -- the key file -----------------------------------------------------------------------
def test_without_the_variable_a_key_file_is_created_once_readable_by_its_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_keys: Callable[[str | None], None]
) -> None:
    use_keys(None)
    monkeypatch.setenv("CARTNUDGE_HOME", str(tmp_path / "home"))
    path = tmp_path / "home" / "data.key"

    token = process_keyring().seal("whsec_secret")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    Fernet(path.read_text().strip()).decrypt(token)
    reset_process_keyring()  # another process, later: the same key
    assert process_keyring().open(token) == "whsec_secret"
    assert process_keyring().source == str(path)


def test_processes_racing_for_the_key_file_all_get_the_one_written(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", data_keys=None)
    start = threading.Barrier(8)
    tokens: list[str] = []

    def first_use() -> None:
        start.wait()
        tokens.append(load_keyring(settings).seal("x"))

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    key = Fernet((tmp_path / "home" / "data.key").read_text().strip())
    assert len(tokens) == 8
    assert all(key.decrypt(token) == b"x" for token in tokens)


def test_a_key_file_that_cannot_be_created_says_so(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    settings = Settings(home=tmp_path / "file" / "home", data_keys=None)

    with pytest.raises(
        DataKeyError, match=r"cannot create the data key file .*CARTNUDGE_DATA_KEYS"
    ):
        load_keyring(settings)


def test_a_key_file_holding_no_key_says_so(tmp_path: Path) -> None:
    (tmp_path / "data.key").write_text("garbage\n")

    with pytest.raises(DataKeyError, match=r"data.key: key 1 of 1 is not a Fernet key"):
        load_keyring(Settings(home=tmp_path, data_keys=None))


# -- the commands' input ----------------------------------------------------------------
def test_keys_new_prints_a_fresh_key() -> None:
    runner = CliRunner()
    first, second = (runner.invoke(app, ["keys", "new"]) for _ in range(2))

    assert first.exit_code == second.exit_code == 0
    assert first.output != second.output
    Fernet(first.output.strip())  # usable as it is


@pytest.mark.parametrize(
    "args", [["keys", "new", "extra"], ["keys", "rotate", "--all"], ["keys", "turn"]]
)
def test_keys_commands_refuse_unknown_input(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 2


def test_rotate_help_gives_the_procedure() -> None:
    result = CliRunner().invoke(app, ["keys", "rotate", "--help"])

    assert result.exit_code == 0
    assert "CARTNUDGE_DATA_KEYS=NEW,OLD" in result.output
    assert "CARTNUDGE_DATA_KEYS=NEW," in result.output


# -- the migration ----------------------------------------------------------------------
def test_migration_seals_the_secrets_stored_in_clear_and_the_downgrade_opens_them(
    fresh_engine: Engine,
) -> None:
    upgrade(fresh_engine, "0004")
    old_shops = sa.table(
        "shops",
        *(sa.column(n, sa.String()) for n in ("slug", "name", "timezone", "currency")),
        *(sa.column(n, sa.String()) for n in ("shopify_secret", "stripe_secret", "mail_url")),
        sa.column("storefront_secrets", Json),
        sa.column("order_match_window_s", sa.BigInteger()),
        sa.column("activated_at", UtcDateTime()),
        sa.column("created_at", UtcDateTime()),
    )
    common = {"timezone": "UTC", "currency": "EUR", "order_match_window_s": 604800}
    common |= {"activated_at": T0, "created_at": T0}
    with writing(fresh_engine) as conn:
        conn.execute(
            sa.insert(old_shops),
            [
                {
                    "slug": "tea",
                    "name": "Tea",
                    "shopify_secret": SHOPIFY_SECRET,
                    "stripe_secret": STRIPE_SECRET,
                    "mail_url": MAIL_URL,
                    "storefront_secrets": ["whsec_new", "whsec_old"],
                    **common,
                },
                {
                    "slug": "mug",
                    "name": "Mug",
                    "shopify_secret": None,
                    "stripe_secret": None,
                    "mail_url": None,
                    "storefront_secrets": ["whsec_mug"],
                    **common,
                },
            ],
        )

    upgrade(fresh_engine)

    stored = raw_values(fresh_engine)
    assert len(stored) == 5
    for value in stored:
        assert "whsec" not in value and MAIL_PASSWORD not in value
        Fernet(DATA_KEY).decrypt(value)
    tea, mug = sorted(shops(fresh_engine), key=lambda s: s.slug != "tea")
    assert (tea.shopify_secret, tea.stripe_secret, tea.mail_url) == (
        SHOPIFY_SECRET,
        STRIPE_SECRET,
        MAIL_URL,
    )
    assert tea.storefront_secrets == ("whsec_new", "whsec_old")
    assert (mug.shopify_secret, mug.storefront_secrets) == (None, ("whsec_mug",))

    command.downgrade(alembic_config(fresh_engine), "0004")

    with reading(fresh_engine) as conn:
        rows = conn.execute(
            sa.select(
                old_shops.c.slug,
                old_shops.c.shopify_secret,
                old_shops.c.mail_url,
                old_shops.c.storefront_secrets,
            ).order_by(old_shops.c.slug)
        ).all()
    assert [tuple(row) for row in rows] == [
        ("mug", None, None, ["whsec_mug"]),
        ("tea", SHOPIFY_SECRET, MAIL_URL, ["whsec_new", "whsec_old"]),
    ]
