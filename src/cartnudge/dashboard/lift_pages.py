"""The shop's lift page: what reminders added, measured against the held-out carts
(``measurement.lift``), over a span of the shop's days (the last 30 by default)."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cartnudge.dashboard.web import MAX_FORM_FIELD, Dashboard, PageError
from cartnudge.measurement.lift import HORIZON, LIFT_TO_SEE, lift
from cartnudge.shops.days import SpanError, span_of

DEFAULT_DAYS = 30


def lift_router(dash: Dashboard) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/shops/{slug}/lift")
    def lift_page(request: Request, slug: str) -> Response:
        viewer = dash.require(request)
        shop = dash.shop(viewer, slug)
        now = dash.clock()
        today = now.astimezone(ZoneInfo(shop.timezone)).date()
        since = request.query_params.get("since", "")[:MAX_FORM_FIELD].strip()
        until = request.query_params.get("until", "")[:MAX_FORM_FIELD].strip()
        since = since or (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
        try:
            span = span_of(shop, since, until or None)
        except SpanError as exc:
            raise PageError(400, str(exc)) from None
        end = span.until or now
        found = dash.read(lambda conn: lift(conn, shop.id, shop.currency, span.since, end))
        return dash.render(
            "lift.html",
            {
                "shop": shop,
                "report": found,
                "since": since,
                "until": until,
                "horizon_days": HORIZON.days,
                "lift_points": round(LIFT_TO_SEE * 100),
            },
            viewer=viewer,
            here=request.url.path,
        )

    return router
