"""The shop's *Today* page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cartnudge.dashboard.today import DAYS, bars, today
from cartnudge.dashboard.web import Dashboard

# One colour per outcome in the chart, the legend says which.
COLOURS = {
    "sent": "#1a7f37",
    "queued": "#8c959f",
    "sending": "#57606a",
    "skipped": "#bf8700",
    "failed": "#b42318",
    "cancelled": "#d0d7de",
    "ambiguous": "#8250df",
}


def today_router(dash: Dashboard) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/shops/{slug}/today")
    def today_page(request: Request, slug: str) -> Response:
        viewer = dash.require(request)
        shop = dash.shop(viewer, slug)
        figures = dash.read(lambda conn: today(conn, shop.id, shop.timezone, dash.clock()))
        return dash.render(
            "today.html",
            {
                "shop": shop,
                "today": figures,
                "chart": bars(figures.by_day),
                "colours": COLOURS,
                "days": DAYS,
                "tallied_at": dash.local_time(figures.tallied_at, shop),
            },
            viewer=viewer,
            here=request.url.path,
        )

    return router
