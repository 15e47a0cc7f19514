"""The links in a reminder: ``/c/{token}`` (a click, then on to the cart) and
``/u/{token}`` (unsubscribe: GET shows a page and changes nothing; POST, the one-click
request of RFC 8058 that a mail client sends without cookies or login, unsubscribes and
answers 200 without a redirect)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from cartnudge.addresses import masked
from cartnudge.clock import Clock
from cartnudge.db.session import reading, writing
from cartnudge.measurement.metrics import UNSUBSCRIBES
from cartnudge.templating import environment
from cartnudge.tracking.service import click, follow, is_unsubscribed, unsubscribe
from cartnudge.tracking.tokens import Purpose

ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"


_PAGES = environment(Path(__file__).parent / "templates")
# Nothing here is for a search engine or a shared cache: each page is one shopper's.
_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


def _page(page: str, title: str, status_code: int = 200, **context: str) -> HTMLResponse:
    html = _PAGES.get_template("link.html").render(page=page, title=title, **context)
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)


def _invalid() -> HTMLResponse:
    return _page("invalid", "Link not valid", 404)


def _unsubscribed(shop_name: str) -> HTMLResponse:
    return _page("unsubscribed", "You are unsubscribed", shop_name=shop_name)


INVALID_LINK: dict[str, Any] = {
    "description": "the link is not valid (altered, cut short, or for something else)",
    "content": {"text/html": {}},
}


def tracking_router(engine: Engine, key: bytes, clock: Clock) -> APIRouter:
    router = APIRouter(tags=["tracking"])

    @router.get(
        "/c/{token}",
        summary="Follow a reminder's link back to the cart",
        response_class=HTMLResponse,
        responses={
            302: {"description": "the click is recorded; on to the cart"},
            404: INVALID_LINK,
        },
    )
    def follow_click(token: str) -> Response:
        with writing(engine, "link-page") as conn:
            link = follow(conn, key, Purpose.CLICK, token)
            if link is None:
                return _invalid()
            target = click(conn, link, clock())
        if target is None:
            return _page("waiting", "Your cart is waiting", shop_name=link.shop_name)
        return RedirectResponse(target, status_code=302, headers={"Cache-Control": "no-store"})

    @router.get(
        "/u/{token}",
        summary="The unsubscribe page (changes nothing)",
        response_class=HTMLResponse,
        responses={404: INVALID_LINK},
    )
    def unsubscribe_page(token: str) -> Response:
        with reading(engine) as conn:
            link = follow(conn, key, Purpose.UNSUBSCRIBE, token)
            done = link is not None and is_unsubscribed(conn, link.shop_id, link.email_key)
        if link is None:
            return _invalid()
        if done:
            return _unsubscribed(link.shop_name)
        return _page(
            "unsubscribe",
            "Unsubscribe",
            shop_name=link.shop_name,
            address=masked(link.email_key),
            token=token,
        )

    @router.post(
        "/u/{token}",
        summary="Unsubscribe (RFC 8058 one-click)",
        response_class=HTMLResponse,
        responses={404: INVALID_LINK},
    )
    async def unsubscribe_now(token: str, request: Request) -> Response:
        body = await request.body()
        source = "one_click" if body.strip() == ONE_CLICK_BODY else "unsubscribe_page"
        return await run_in_threadpool(unsubscribe_by_token, token, source)

    def unsubscribe_by_token(token: str, source: str) -> Response:
        with writing(engine, "link-page") as conn:
            link = follow(conn, key, Purpose.UNSUBSCRIBE, token)
            if link is None:
                return _invalid()
            added = unsubscribe(
                conn,
                link.shop_id,
                link.email_key,
                clock(),
                source=source,
                send_id=link.send_id,
                actor="shopper",
            )
        if added:  # counted once committed, and once per address
            UNSUBSCRIBES.labels(source).inc()
        return _unsubscribed(link.shop_name)

    return router
