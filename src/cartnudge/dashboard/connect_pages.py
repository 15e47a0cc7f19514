"""Connecting a store from the browser: add a shop, see each lane's address and its secret
(in full once, when the shop is made), send a signed test event through the real lane and
see it arrive, and what is still missing before the shop can send."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection, func, select
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp

from cartnudge.clock import system_clock
from cartnudge.dashboard.accounts import Viewer
from cartnudge.dashboard.repository import AccountRepository
from cartnudge.dashboard.web import Dashboard, PageError, field
from cartnudge.db.models import InboxEvent, Role
from cartnudge.db.session import writing
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.service import ShopError, add_shop, describe

# Which form field a shop setting's refusal is about, by how its message starts.
_FIELD_OF = (
    ("slug", "slug"),
    ("name", "name"),
    ("timezone", "timezone"),
    ("currency", "currency"),
    ("unknown currency", "currency"),
    ("shopify domain", "shopify_domain"),
    ("--shopify", "shopify_domain"),
    ("stripe secret", "stripe_secret"),
    ("--mail", "mail"),
    ("sender", "sender"),
    ("--sender", "sender"),
    ("postal address", "address"),
    ("--address", "address"),
)
FORM_FIELDS = (
    "slug",
    "name",
    "timezone",
    "currency",
    "shopify_domain",
    "shopify_secret",
    "stripe_secret",
    "sender",
    "address",
    "mail",
)


def _field_of(message: str) -> str:
    lowered = message.lower()
    for start, name in _FIELD_OF:
        if lowered.startswith(start):
            return name
    return "form"


def checklist(conn: Connection, shop: ShopRecord) -> list[dict[str, Any]]:
    """What the shop has and lacks before it can remind anyone, in the owner's words."""
    events = conn.scalar(
        select(func.count()).select_from(InboxEvent).where(InboxEvent.c.shop_id == shop.id)
    )
    file_route = shop.mail_url is None
    return [
        {
            "done": shop.sender is not None,
            "what": "a sender: who reminders come from",
            "how": f'cartnudge shop set {shop.slug} --sender "{shop.name} <hello@your-domain>"',
        },
        {
            "done": bool(shop.postal_address),
            "what": "a postal address, printed in every reminder",
            "how": f'cartnudge shop set {shop.slug} --address "1 High Street, Town, Country"',
        },
        {
            "done": not file_route,
            "what": (
                "a mail route: until one is set, reminders are written to a folder as .eml "
                "files, not sent"
            ),
            "how": f'cartnudge shop set {shop.slug} --mail "smtp+starttls://user:pass@host:587"',
        },
        {
            "done": bool(events),
            "what": "a first event received from the store (or a test event, below)",
            "how": None,
        },
    ]


def connect_router(dash: Dashboard, webhooks: ASGIApp) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def may_add(viewer: Viewer) -> None:
        dash.require_actor(viewer)

    def connect_page(
        request: Request,
        viewer: Viewer,
        shop: ShopRecord,
        *,
        fresh: bool = False,
        arrived: dict[str, Any] | None = None,
    ) -> Response:
        view = describe(shop, dash.settings.public_url, show_secrets=fresh)
        items = dash.read(lambda conn: checklist(conn, shop))
        return dash.render(
            "connect.html",
            {
                "shop": shop,
                "lanes": view["webhooks"],
                "fresh": fresh,
                "checklist": items,
                "arrived": arrived,
            },
            viewer=viewer,
            here=request.url.path,
        )

    @router.get("/shops/new")
    def new_shop_form(request: Request) -> Response:
        viewer = dash.require(request)
        may_add(viewer)
        return dash.render(
            "shop_new.html", {"given": {}, "errors": {}}, viewer=viewer, here="/shops/new"
        )

    @router.post("/shops/new")
    async def new_shop(request: Request) -> Response:
        form = await request.form()
        viewer = await run_in_threadpool(dash.require, request)
        dash.check_csrf(viewer, field(form, "csrf"))
        may_add(viewer)
        given = {name: (field(form, name) or "").strip() for name in FORM_FIELDS}

        def add() -> ShopRecord:
            with writing(dash.engine, "dashboard") as conn:
                shop = add_shop(
                    conn,
                    slug=given["slug"],
                    name=given["name"],
                    timezone=given["timezone"],
                    currency=given["currency"],
                    now=dash.clock(),
                    shopify_domain=given["shopify_domain"] or None,
                    shopify_secret=given["shopify_secret"] or None,
                    stripe_secret=given["stripe_secret"] or None,
                    sender=given["sender"] or None,
                    postal_address=given["address"] or None,
                    mail_url=given["mail"] or None,
                )
                if viewer.role != Role.ADMIN:  # an owner runs the shop they add
                    AccountRepository(conn).give_shops(viewer.user_id, [shop.id])
                return shop

        try:
            shop = await run_in_threadpool(add)
        except ShopError as exc:
            given["shopify_secret"] = given["stripe_secret"] = ""  # never echoed back
            return dash.render(
                "shop_new.html",
                {"given": given, "errors": {_field_of(str(exc)): str(exc)}},
                viewer=viewer,
                status=400,
                here="/shops/new",
            )
        # The page that shows the secrets in full is this answer, once; not a page to
        # come back to.
        return await run_in_threadpool(connect_page, request, viewer, shop, fresh=True)

    @router.get("/shops/{slug}/connect")
    def connect(request: Request, slug: str) -> Response:
        viewer = dash.require(request)
        return connect_page(request, viewer, dash.shop(viewer, slug))

    @router.post("/shops/{slug}/test-event")
    async def test_event(request: Request, slug: str) -> Response:
        """A signed storefront event, sent through the shop's real lane (signature check,
        parsing, the ingest writer), for a cart with no address: it shows the lane works
        and never becomes a reminder."""
        # Imported here: httpx's package loads its command line (rich, pygments) too, and
        # a web process that never sends a test event need not hold them.
        import httpx

        from cartnudge.intake.examples import signed_storefront, storefront_event

        _form, viewer, shop = await dash.posted(request, slug)
        now = dash.clock()
        event = storefront_event(
            cart_id=f"dashboard-test-{int(now.timestamp())}", occurred_at=now, email=None
        )
        # Signed as of the wall clock: the lane checks the signature's age against it.
        example = signed_storefront(shop, event, system_clock())
        transport = httpx.ASGITransport(app=webhooks)
        async with httpx.AsyncClient(transport=transport, base_url="http://cartnudge") as client:
            answer = await client.post(example.path, content=example.body, headers=example.headers)
        try:
            body = answer.json()
        except ValueError:
            body = {"answer": answer.text[:200]}
        if answer.status_code >= 500:
            raise PageError(503, "The test event could not be stored just now; try again.")
        arrived = {"code": answer.status_code, "body": body if isinstance(body, dict) else {}}
        return await run_in_threadpool(connect_page, request, viewer, shop, arrived=arrived)

    return router
