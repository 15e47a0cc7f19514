"""The owner's kill switch in the dashboard: pause or resume all sending for a shop."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from cartnudge.dashboard.web import Dashboard, PageError, field, safe_next
from cartnudge.db.session import writing
from cartnudge.shops.controls import ControlError, pause_sending, resume_sending


def control_router(dash: Dashboard) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.post("/shops/{slug}/sending")
    async def sending(request: Request, slug: str) -> Response:
        """The kill switch: pause or resume all sending for the shop, at once (no
        confirmation page: stopping must take one click), audited."""
        form, viewer, shop = await dash.posted(request, slug)
        switch = field(form, "switch")
        if switch not in ("pause", "resume"):
            raise PageError(400, "switch: pause or resume")
        reason = field(form, "reason")
        actor = f"user:{viewer.login}"[:64]

        def flip() -> None:
            with writing(dash.engine, "dashboard") as conn:
                if switch == "pause":
                    pause_sending(conn, shop, dash.clock(), actor=actor, reason=reason)
                else:
                    resume_sending(conn, shop, dash.clock(), actor=actor)

        try:
            await run_in_threadpool(flip)
        except ControlError as exc:
            raise PageError(400, str(exc)) from None
        back = safe_next(field(form, "back") or f"/shops/{shop.slug}/carts")
        separator = "&" if "?" in back else "?"
        code = "paused" if switch == "pause" else "resumed"
        return RedirectResponse(f"{back}{separator}done={code}", status_code=303)

    return router
