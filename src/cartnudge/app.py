"""The composition root of the web process: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text
from starlette.responses import Response

from cartnudge import __version__
from cartnudge.clock import Clock, system_clock
from cartnudge.config import Settings
from cartnudge.db.engine import make_engine
from cartnudge.db.session import reading
from cartnudge.http import json_response
from cartnudge.intake.endpoints import IntakeContext
from cartnudge.intake.endpoints import router as intake_router
from cartnudge.intake.writer import IngestWriter
from cartnudge.shops.cache import ShopCache


def create_app(
    settings: Settings, *, engine: Engine | None = None, clock: Clock = system_clock
) -> FastAPI:
    engine = engine or make_engine(settings.resolved_database_url, pool_size=settings.db_pool_size)
    writer = IngestWriter(engine, clock, batch_max=settings.ingest_batch_max)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        writer.start()
        try:
            yield
        finally:
            writer.stop()

    app = FastAPI(
        title="cartnudge",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.intake = IntakeContext(ShopCache(engine), writer, clock)
    app.include_router(intake_router)

    @app.get("/healthz", tags=["operations"], summary="Liveness and database reachability")
    def healthz() -> Response:
        try:
            with reading(engine) as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return json_response({"status": "unavailable"}, status_code=503)
        return json_response({"status": "ok"})

    @app.get("/metrics", tags=["operations"], summary="Prometheus counters")
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
