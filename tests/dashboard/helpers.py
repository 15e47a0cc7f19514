"""Signing in as a browser would, for the dashboard's tests."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cartnudge.dashboard.accounts import add_user
from cartnudge.db.models import Role
from cartnudge.db.session import writing
from tests.conftest import T0

PASSWORD = "correct horse battery"


def user(
    engine: Engine, login: str, role: Role = Role.OWNER, shops: list[str] | None = None
) -> None:
    with writing(engine) as conn:
        add_user(conn, login=login, role=role, now=T0, shops=shops, password=PASSWORD)


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name}"
    return found.group(1)


def sign_in(client: TestClient, login: str, password: str = PASSWORD) -> httpx.Response:
    form = client.get("/signin")
    return client.post(
        "/signin",
        data={
            "login": login,
            "password": password,
            "form_token": hidden(form.text, "form_token"),
            "next": "/",
        },
        follow_redirects=False,
    )


def csrf_of(client: TestClient, page: str) -> str:
    return hidden(client.get(page).text, "csrf")
