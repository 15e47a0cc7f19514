"""The sheet from the dashboard: the carts page's *Export* (a file to download), and the
links in a sheet's rows (``/sheet/{token}``), which open the confirmation page of one
action on one cart.

Exporting changes nothing, so it is a GET; it needs a signed-in user who sees the shop. A
sheet link needs the same: whoever holds the file still has to sign in, and the action is
then asked and done by the cart list's own form (CSRF token, role, audit). A link that was
altered answers 400, one past its time 410; neither changes anything.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from cartnudge.carts.queries import carts_of
from cartnudge.dashboard.actions import ACTIONS
from cartnudge.dashboard.web import MAX_FORM_FIELD, Dashboard, PageError, not_found
from cartnudge.export.files import FORMATS, MEDIA_TYPES, SheetFileError, write_file
from cartnudge.export.links import LinkRefused, read_link_token
from cartnudge.export.sheet import HEADER, LINK_COLUMNS, LinkMaker, sheet_rows
from cartnudge.shops.days import SpanError, span_of
from cartnudge.shops.repository import ShopRepository

EXPIRED = 410  # a link past its time: gone, and the page says to export again
ALTERED = 400  # not a link we made


def sheet_router(dash: Dashboard) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/shops/{slug}/export")
    async def export(request: Request, slug: str) -> Response:
        """The shop's carts last active from ``since`` up to (not including) ``until``, as a
        CSV or XLSX file with each row's signed links."""
        viewer = await run_in_threadpool(dash.require, request)
        shop = await run_in_threadpool(dash.shop, viewer, slug)
        given = {
            name: request.query_params.get(name, "")[:MAX_FORM_FIELD].strip()
            for name in ("since", "until", "format")
        }
        fmt = given["format"] or "csv"
        if fmt not in FORMATS:
            raise PageError(400, f"format: {fmt!r} is not csv or xlsx")
        if not given["since"]:
            raise PageError(400, "since: give the first day (YYYY-MM-DD)")
        try:
            span = span_of(shop, given["since"], given["until"] or None)
        except SpanError as exc:
            raise PageError(400, str(exc)) from None
        links = LinkMaker.at(dash.settings.public_url, dash.settings.signing_key, dash.clock())
        folder = tempfile.mkdtemp(prefix="cartnudge-export-")
        path = Path(folder) / f"sheet.{fmt}"

        def write() -> None:
            rows = sheet_rows(dash.engine, shop, span, links)
            write_file(path, fmt, HEADER, rows, title=shop.slug, links=LINK_COLUMNS)

        try:
            await run_in_threadpool(write)
        except SheetFileError as exc:  # more carts than an xlsx holds
            _remove(path)
            raise PageError(400, str(exc)) from None
        except BaseException:
            _remove(path)
            raise
        name = (
            f"{shop.slug}-carts-{given['since']}{'-to-' + given['until'] if given['until'] else ''}"
        )
        return FileResponse(
            path,
            media_type=MEDIA_TYPES[fmt],
            filename=f"{name}.{fmt}",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
            background=BackgroundTask(_remove, path),
        )

    @router.get("/sheet/{token}")
    def sheet_link(request: Request, token: str) -> Response:
        """One row's link: the confirmation page of its action on its cart."""
        viewer = dash.require(request)
        try:
            link = read_link_token(dash.settings.signing_key, token, dash.clock())
        except LinkRefused as exc:
            raise PageError(
                EXPIRED if exc.expired else ALTERED, f"{str(exc).capitalize()}."
            ) from None
        if not viewer.sees(link.shop_id):
            raise not_found()
        shop, carts = dash.read(
            lambda conn: (
                ShopRepository(conn).by_id(link.shop_id),
                carts_of(conn, link.shop_id, [link.cart_id]),
            )
        )
        if shop is None or not carts:
            raise not_found()
        (cart,) = carts
        return dash.render(
            "confirm.html",
            {
                "shop": shop,
                "action": ACTIONS[link.action],
                "action_name": link.action,
                "carts": [cart],
                "reason": None,
                "back": f"/shops/{shop.slug}/carts/{cart['id']}",
                "error": None,
            },
            viewer=viewer,
            here=f"/shops/{shop.slug}/carts",
        )

    return router


def _remove(path: Path) -> None:
    """The file and the folder made for it."""
    shutil.rmtree(path.parent, ignore_errors=True)
