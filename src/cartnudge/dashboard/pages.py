"""The dashboard in the app: its pages, its static files, and what a page answers when
sign-in is needed or a request is refused."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from cartnudge.dashboard.account_pages import account_router
from cartnudge.dashboard.cart_pages import action_router, cart_router
from cartnudge.dashboard.connect_pages import connect_router
from cartnudge.dashboard.control_pages import control_router
from cartnudge.dashboard.document_pages import document_router
from cartnudge.dashboard.email_pages import email_router
from cartnudge.dashboard.lift_pages import lift_router
from cartnudge.dashboard.sheet_pages import sheet_router
from cartnudge.dashboard.today_pages import today_router
from cartnudge.dashboard.web import (
    HERE,
    SESSION_COOKIE,
    Dashboard,
    PageError,
    PasswordToChoose,
    SignInNeeded,
)


def install(app: FastAPI, dash: Dashboard, webhooks: ASGIApp) -> None:
    """Serve the dashboard from ``app``: its pages, its static files, its error pages."""
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(account_router(dash))
    app.include_router(cart_router(dash))
    app.include_router(action_router(dash))
    app.include_router(control_router(dash))
    app.include_router(connect_router(dash, webhooks))
    app.include_router(today_router(dash))
    app.include_router(document_router(dash))
    app.include_router(email_router(dash))
    app.include_router(lift_router(dash))
    app.include_router(sheet_router(dash))

    async def to_sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInNeeded)
        response = RedirectResponse(
            "/signin" + (f"?next={quote(exc.next_url, safe='/')}" if exc.next_url != "/" else ""),
            status_code=303,
        )
        if request.cookies.get(SESSION_COOKIE):
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def error_page(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return await run_in_threadpool(dash.error_page, request, exc)

    async def to_password(_request: Request, _exc: Exception) -> Response:
        return RedirectResponse("/account/password", status_code=303)

    app.add_exception_handler(SignInNeeded, to_sign_in)
    app.add_exception_handler(PasswordToChoose, to_password)
    app.add_exception_handler(PageError, error_page)
