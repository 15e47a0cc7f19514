"""One reminder as the shopper saw it: its facts, its headers, its text part, and its HTML
part in a sandboxed frame with every link disarmed (an owner reading it must neither count
as the shopper's click nor unsubscribe them)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cartnudge.dashboard.accounts import Viewer
from cartnudge.dashboard.emails import read_email
from cartnudge.dashboard.web import PAGE_HEADERS, Dashboard, not_found
from cartnudge.delivery.service import SentEmail, sent_email
from cartnudge.shops.repository import ShopRecord

# The frame's own answer: the email's HTML may style itself and show inline images, and
# nothing else: no script, no request anywhere, no form, no navigation of the page around
# it (``sandbox`` without any ``allow-*``). Only the dashboard's own pages may frame it.
FRAME_HEADERS = {
    **PAGE_HEADERS,
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        "frame-ancestors 'self'"
    ),
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "no-referrer",
}


def _send_id(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise not_found()
    return int(text)


def email_router(dash: Dashboard) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def find(request: Request, slug: str, send_id: str) -> tuple[Viewer, ShopRecord, SentEmail]:
        """Who asks, the shop, and its send (sign-in first; 404 for a send not the shop's)."""
        viewer = dash.require(request)
        shop = dash.shop(viewer, slug)
        number = _send_id(send_id)
        found = dash.read(lambda conn: sent_email(conn, shop.id, number))
        if found is None:
            raise not_found()
        return viewer, shop, found

    @router.get("/shops/{slug}/emails/{send_id}")
    def email_page(request: Request, slug: str, send_id: str) -> Response:
        viewer, shop, found = find(request, slug, send_id)
        view = read_email(found.raw) if found.raw is not None else None
        # Handed to the mail route at some point (a send from before copies were kept
        # may lack ``handed_at``, but not its status).
        left = found.handed_at is not None or found.status in ("sent", "ambiguous")
        return dash.render(
            "email.html",
            {
                "shop": shop,
                "send": found,
                "email": view,
                "not_sent": view is None and not left,
                # Erasure and retention clear the address and drop the copy together.
                "erased": view is None and left and found.email_key is None,
            },
            viewer=viewer,
            here=request.url.path,
        )

    @router.get("/shops/{slug}/emails/{send_id}/html")
    def email_html(request: Request, slug: str, send_id: str) -> Response:
        _, _, found = find(request, slug, send_id)
        view = read_email(found.raw) if found.raw is not None else None
        if view is None or view.html is None:
            raise not_found()
        return Response(view.html, media_type="text/html; charset=utf-8", headers=FRAME_HEADERS)

    return router
