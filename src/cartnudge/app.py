"""The composition root of the web process: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import Engine, text
from starlette.datastructures import State
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from cartnudge import __version__
from cartnudge.clock import Clock, system_clock
from cartnudge.config import Settings
from cartnudge.dashboard.pages import install as install_dashboard
from cartnudge.dashboard.web import Dashboard
from cartnudge.db.engine import make_engine
from cartnudge.db.session import reading
from cartnudge.http import json_response
from cartnudge.intake.endpoints import (
    SHOPIFY_LANE,
    STOREFRONT_LANE,
    STRIPE_LANE,
    IntakeContext,
    Lane,
    Webhooks,
    openapi_paths,
)
from cartnudge.intake.remote import RemoteWriter
from cartnudge.intake.writer import IngestWriter
from cartnudge.measurement.exposition import latest
from cartnudge.measurement.heartbeat import STALE_AFTER, last_beat
from cartnudge.shops.cache import ShopCache
from cartnudge.tracking.endpoints import tracking_router

DOCS_ASSETS = "/docs/assets"  # Swagger UI's and ReDoc's scripts, styles and icon


def _publish_schemas(app: FastAPI, lanes: tuple[Lane, ...]) -> None:
    """Add the webhook lanes (plain routes that read raw bytes) and the models they
    validate themselves to the OpenAPI document."""
    from typing import Any

    from cartnudge.intake.schemas import StorefrontEvent

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            model = StorefrontEvent.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(model.pop("$defs", {}))
            components["StorefrontEvent"] = model
            schema.setdefault("paths", {}).update(openapi_paths(lanes))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class Front:
    """The process's ASGI app. Webhooks go straight to their lanes, past FastAPI's
    middleware, routing and parameter machinery (which cost more per request than
    verifying and storing a webhook); everything else goes to the FastAPI app."""

    WEBHOOKS = "/webhooks/"

    def __init__(self, api: FastAPI, webhooks: Webhooks) -> None:
        self.api = api
        self.webhooks = webhooks

    @property
    def state(self) -> State:
        return self.api.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.WEBHOOKS):
            await self.webhooks(scope, receive, send)
        else:
            await self.api(scope, receive, send)


def create_app(
    settings: Settings, *, engine: Engine | None = None, clock: Clock = system_clock
) -> Front:
    engine = engine or make_engine(settings.resolved_database_url, pool_size=settings.db_pool_size)
    writer: IngestWriter | RemoteWriter
    if settings.ingest_socket is not None:
        writer = RemoteWriter(settings.ingest_socket)
    else:
        writer = IngestWriter(engine, clock, batch_max=settings.ingest_batch_max)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        writer.start()
        try:
            yield
        finally:
            writer.stop()

    # /docs and /redoc load Swagger UI and ReDoc from the pinned fastapi-offline package,
    # served here: the pages work on a machine with no way out to a CDN.
    app = FastAPIOffline(
        title="cartnudge",
        version=__version__,
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
    )
    app.state.settings = settings
    app.state.engine = engine
    intake = IntakeContext(ShopCache(engine), writer, clock)
    app.state.intake = intake
    # The webhook lanes this app serves, in the order a cart's first event usually arrives.
    lanes = (SHOPIFY_LANE, STRIPE_LANE, STOREFRONT_LANE)
    _publish_schemas(app, lanes)

    app.include_router(tracking_router(engine, settings.signing_key, clock))
    webhooks = Webhooks(intake, lanes)
    install_dashboard(app, Dashboard(engine, settings, clock), webhooks)

    @app.get(
        "/healthz",
        tags=["operations"],
        summary="Liveness and database reachability",
        responses={
            503: {
                "description": "The database does not answer",
                "content": {"application/json": {}},
            }
        },
    )
    def healthz() -> Response:
        try:
            with reading(engine) as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return json_response({"status": "unavailable"}, status_code=503)
        return json_response({"status": "ok"})

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Ready: the database answers and the loops beat in the last minute",
        responses={
            503: {
                "description": "The database does not answer, or no loops process beat "
                "in the last minute; the body says which",
                "content": {"application/json": {}},
            }
        },
    )
    def readyz() -> Response:
        """503 when the database does not answer, or when no loops process (the waiter
        and the sender) has beaten within ``STALE_AFTER``: webhooks are still stored then,
        but no reminder goes. For alerting; a load balancer routes on /healthz."""
        now = clock()
        try:
            with reading(engine) as conn:
                last = last_beat(conn)
        except Exception:
            return json_response({"status": "unavailable", "database": "unreachable"}, 503)
        loops = "running" if last is not None and now - last <= STALE_AFTER else "stopped"
        body = {
            "status": "ok" if loops == "running" else "unavailable",
            "database": "ok",
            "loops": loops,
            "last_beat": last.isoformat() if last else None,
        }
        return json_response(body, status_code=200 if loops == "running" else 503)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus counters",
        response_class=PlainTextResponse,
    )
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(latest(), media_type=CONTENT_TYPE_LATEST)

    return Front(app, webhooks)


def app_from_environment() -> Front:
    """The app for one of several web processes (``cartnudge serve --workers N``)."""
    return create_app(Settings())
