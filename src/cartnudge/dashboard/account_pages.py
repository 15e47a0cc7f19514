"""Signing in and out, and choosing one's own password."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from cartnudge.dashboard.accounts import AccountError, change_own_password, sign_in, sign_out
from cartnudge.dashboard.web import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    Dashboard,
    field,
    safe_next,
)
from cartnudge.db.session import writing


def account_router(dash: Dashboard) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    # -- signing in and out ----------------------------------------------------------

    def signin_page(target: str, error: str | None, status: int = 200) -> HTMLResponse:
        token = secrets.token_urlsafe(32)
        response = dash.render(
            "signin.html",
            {"next": safe_next(target), "form_token": token, "error": error},
            status=status,
        )
        response.set_cookie(
            SIGNIN_COOKIE,
            token,
            max_age=3600,
            httponly=True,
            secure=dash.secure_cookies,
            samesite="strict",
            path="/signin",
        )
        return response

    @router.get("/signin")
    def signin_form(request: Request) -> Response:
        return signin_page(request.query_params.get("next", "/"), None)

    @router.post("/signin")
    async def signin(request: Request) -> Response:
        form = await request.form()
        target = field(form, "next") or "/"
        token = field(form, "form_token")
        cookie = request.cookies.get(SIGNIN_COOKIE)
        if not token or not cookie or not secrets.compare_digest(token.encode(), cookie.encode()):
            return signin_page(target, "This form expired: please sign in again.", 403)
        login, password = field(form, "login") or "", field(form, "password") or ""

        def attempt() -> Any:
            with writing(dash.engine, "dashboard") as conn:
                return sign_in(conn, login, password, dash.clock())

        result = await run_in_threadpool(attempt)
        if result.token is None:
            return signin_page(target, result.refused, 401)
        return dash.signed_in_response(result.token, target)

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        form = await request.form()
        viewer = await run_in_threadpool(dash.require, request, allow_password_change=True)
        dash.check_csrf(viewer, field(form, "csrf"))
        token = request.cookies.get(SESSION_COOKIE, "")

        def end() -> None:
            with writing(dash.engine, "dashboard") as conn:
                sign_out(conn, token)

        await run_in_threadpool(end)
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @router.get("/account/password")
    def password_form(request: Request) -> Response:
        viewer = dash.require(request, allow_password_change=True)
        return dash.render("password.html", {"error": None}, viewer=viewer)

    @router.post("/account/password")
    async def password_change(request: Request) -> Response:
        form = await request.form()
        viewer = await run_in_threadpool(dash.require, request, allow_password_change=True)
        dash.check_csrf(viewer, field(form, "csrf"))
        current, new = field(form, "current") or "", field(form, "new") or ""
        if new != (field(form, "repeat") or ""):
            return dash.render(
                "password.html",
                {"error": "the two new passwords differ"},
                viewer=viewer,
                status=400,
            )

        def change() -> None:
            with writing(dash.engine, "dashboard") as conn:
                change_own_password(conn, viewer, current, new, dash.clock())

        try:
            await run_in_threadpool(change)
        except AccountError as exc:
            return dash.render("password.html", {"error": str(exc)}, viewer=viewer, status=400)
        return RedirectResponse("/", status_code=303)

    return router
