"""What every dashboard page shares: the templates, who is signed in, CSRF, the cookies.

Every page but the sign-in form needs a session; every form that changes anything carries
the session's CSRF token, compared in constant time. The sign-in form, which has no session
yet, carries a token that must match its own cookie (a double submit). Templates escape
everything they print: a product called ``<script>`` is shown as text.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import Connection, Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from cartnudge.addresses import masked
from cartnudge.clock import Clock
from cartnudge.config import Settings
from cartnudge.dashboard.accounts import Viewer, signed_in
from cartnudge.dashboard.policy import SESSION_LIFETIME
from cartnudge.db.session import reading
from cartnudge.money import format_minor
from cartnudge.shops.repository import ShopRecord, ShopRepository
from cartnudge.templating import environment

MAX_FORM_FIELD = 2000  # characters; a reason or a filter longer than this is refused
T = TypeVar("T")
SESSION_COOKIE = "cartnudge_session"
SIGNIN_COOKIE = "cartnudge_signin"  # the sign-in form's CSRF token, before any session
HERE = Path(__file__).parent
# Pages are one owner's view of their shoppers: never cached, never indexed, never framed.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


class SignInNeeded(Exception):
    """No session (or an expired one): to the sign-in page, then back to ``next``."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class PasswordToChoose(Exception):
    """Signed in with a one-time password: nothing opens until they choose their own."""


class PageError(Exception):
    """A page answered with an error (403, 404, 400), the message shown on it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found() -> PageError:
    return PageError(404, "There is nothing here, or it is not yours to see.")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only, never another host."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return "/"
    return target


def _environment() -> jinja2.Environment:
    env = environment(HERE / "templates")
    env.filters["money"] = lambda minor, currency, locale=None: (
        "" if minor is None or currency is None else format_minor(minor, currency, locale)
    )
    env.filters["masked"] = masked
    env.filters["fromiso"] = lambda text: datetime.fromisoformat(text) if text else None
    return env


@dataclass
class Dashboard:
    """The dashboard's parts, built once where the app is composed."""

    engine: Engine
    settings: Settings
    clock: Clock

    def __post_init__(self) -> None:
        self.env = _environment()
        # A Secure cookie is only sent over HTTPS: set it when the public address is.
        self.secure_cookies = self.settings.public_url.startswith("https://")

    def read(self, work: Callable[[Connection], T]) -> T:
        """``work(conn)`` in a read-only unit of work."""
        with reading(self.engine) as conn:
            return work(conn)

    # -- who is looking --------------------------------------------------------------

    def viewer(self, request: Request) -> Viewer | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token or len(token) > 128:
            return None
        return self.read(lambda conn: signed_in(conn, token, self.clock()))

    def require(self, request: Request, *, allow_password_change: bool = False) -> Viewer:
        viewer = self.viewer(request)
        if viewer is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInNeeded(target if request.method == "GET" else "/")
        if viewer.must_change_password and not allow_password_change:
            raise PasswordToChoose
        return viewer

    def check_csrf(self, viewer: Viewer, token: str | None) -> None:
        if not token or not secrets.compare_digest(token.encode(), viewer.csrf.encode()):
            raise PageError(
                403,
                "This form has expired or did not come from this site: "
                "go back, reload the page and try again.",
            )

    def require_actor(self, viewer: Viewer) -> None:
        if not viewer.can_act:
            raise PageError(403, "Your account can look but not change anything.")

    def shop(self, viewer: Viewer, slug: str) -> ShopRecord:
        shop = self.read(lambda conn: ShopRepository(conn).by_slug(slug))
        if shop is None or not viewer.sees(shop.id):
            raise not_found()
        return shop

    async def posted(self, request: Request, slug: str) -> tuple[FormData, Viewer, ShopRecord]:
        """What every form that changes a shop checks first: a signed-in user who may act,
        the form's CSRF token, and a shop that user sees. Returns the form, the user and
        the shop; refuses (sign-in, 403, 404) otherwise."""
        form = await request.form()
        viewer = await run_in_threadpool(self.require, request)
        self.check_csrf(viewer, field(form, "csrf"))
        self.require_actor(viewer)
        shop = await run_in_threadpool(self.shop, viewer, slug)
        return form, viewer, shop

    def shops_of(self, viewer: Viewer) -> list[ShopRecord]:
        shops = self.read(lambda conn: ShopRepository(conn).all())
        return [shop for shop in shops if viewer.sees(shop.id)]

    # -- answers ---------------------------------------------------------------------

    def render(
        self,
        name: str,
        context: dict[str, Any],
        *,
        viewer: Viewer | None = None,
        status: int = 200,
        here: str = "/",
    ) -> HTMLResponse:
        """``name`` with ``context``; a page about one shop (``shop`` in the context) gets
        its local times and, in the layout, the shop's pause switch or banner."""
        shop = context.get("shop")
        if isinstance(shop, ShopRecord):
            context.setdefault("local_time", lambda at: self.local_time(at, shop))
        html = self.env.get_template(name).render(
            viewer=viewer, csrf=viewer.csrf if viewer else "", here=here, **context
        )
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def error_page(self, request: Request, error: PageError) -> HTMLResponse:
        return self.render(
            "error.html",
            {"message": error.message, "status": error.status},
            viewer=self.viewer(request),
            status=error.status,
        )

    def signed_in_response(self, token: str, target: str) -> RedirectResponse:
        response = RedirectResponse(safe_next(target), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(SESSION_LIFETIME.total_seconds()),
            httponly=True,
            secure=self.secure_cookies,
            samesite="lax",
            path="/",
        )
        response.delete_cookie(SIGNIN_COOKIE, path="/signin")
        return response

    def local_time(self, instant: datetime | None, shop: ShopRecord) -> str:
        if instant is None:
            return ""
        return instant.astimezone(ZoneInfo(shop.timezone)).strftime("%Y-%m-%d %H:%M")


def field(form: FormData, name: str) -> str | None:
    """A form's text field, or None; a file or an overlong value is refused (400)."""
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PageError(400, f"{name}: expected text, not a file")
    if len(value) > MAX_FORM_FIELD:
        raise PageError(400, f"{name}: at most {MAX_FORM_FIELD} characters")
    return value
