"""The ``cartnudge`` command: the process commands here, each stage's in its own
``commands.py``. Every command exits 2 with a one-line reason on bad input, changing
nothing."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cartnudge.carts.commands import carts_app
from cartnudge.cli_support import Runtime, close_runtimes, emit, runtime
from cartnudge.clock import system_clock
from cartnudge.intake.commands import events_app, import_app, reconcile_app
from cartnudge.shops.commands import shop_app
from cartnudge.timing.commands import rules_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Abandoned-cart recovery.")
app.add_typer(shop_app, name="shop")
app.add_typer(events_app, name="events")
app.add_typer(carts_app, name="carts")
app.add_typer(import_app, name="import")
app.add_typer(reconcile_app, name="reconcile")
app.add_typer(rules_app, name="rules")


@app.callback()
def _root(ctx: typer.Context) -> None:
    ctx.call_on_close(close_runtimes)


# -- serve --------------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(min=1, max=64, help="Web processes (on PostgreSQL each has its own writer)."),
    ] = 1,
) -> None:
    """Run the web app (webhook lanes) on the configured database."""
    import logging
    import os

    import uvicorn

    from cartnudge.app import create_app

    rt = runtime()
    if "CARTNUDGE_PUBLIC_URL" not in os.environ:
        rt.settings.public_url = f"http://{host}:{port}"
        os.environ["CARTNUDGE_PUBLIC_URL"] = rt.settings.public_url  # for worker processes
    logging.basicConfig(
        level=rt.settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _ensure_demo_shop(rt)
    writer = None
    if rt.settings.is_sqlite:
        # SQLite takes one writer at a time: one writer process commits for every web
        # process, on a core of its own (see cartnudge.intake.writer_process).
        from cartnudge.intake.writer_process import WriterProcess

        writer = WriterProcess()
        writer.start()
        rt.settings.ingest_socket = writer.socket_path
        os.environ["CARTNUDGE_INGEST_SOCKET"] = str(writer.socket_path)  # for web workers
    try:
        if workers > 1:
            # Each process builds its own app from the environment.
            rt.close()
            uvicorn.run(
                "cartnudge.app:app_from_environment",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level="warning",
            )
        else:
            uvicorn.run(
                create_app(rt.settings, engine=rt.engine),
                host=host,
                port=port,
                log_level="warning",
            )
    finally:
        # After uvicorn has answered its in-flight requests, which wait on the writer.
        if writer is not None:
            writer.stop()


def _ensure_demo_shop(rt: Runtime) -> None:
    """On an empty database, create a ``demo`` shop so a newcomer has somewhere to send."""
    import secrets

    from cartnudge.db.session import reading, writing
    from cartnudge.shops.repository import ShopRepository
    from cartnudge.shops.service import add_shop, describe

    with reading(rt.engine) as conn:
        existing = ShopRepository(conn).all()
    if existing:
        typer.echo(f"cartnudge: serving {len(existing)} shop(s) on {rt.settings.public_url}")
        return
    with writing(rt.engine) as conn:
        shop = add_shop(
            conn,
            slug="demo",
            name="Demo Shop",
            timezone="Europe/London",
            currency="GBP",
            now=system_clock(),
            shopify_domain="demo.myshopify.com",
            shopify_secret=secrets.token_hex(16),
            stripe_secret="whsec_" + secrets.token_hex(16),
        )
    typer.echo("cartnudge: created the demo shop. Point a store at these webhooks:")
    emit(describe(shop, rt.settings.public_url))
    typer.echo("Try it: .venv/bin/cartnudge events send-example --shop demo")


@app.command()
def tick(
    now: Annotated[
        str | None, typer.Option(help="Act as of this RFC 3339 instant (default: now).")
    ] = None,
) -> None:
    """One pass of the waiter over every cart due at NOW, then exit. Prints what it did."""
    from cartnudge.cli_support import instant
    from cartnudge.timing.waiter import wake_due

    at = instant(now, "--now") if now else system_clock()
    rt = runtime()
    report = wake_due(rt.engine, at)
    emit({"now": at.isoformat(), "waiter": report.as_dict()})


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (also done by every command on start)."""
    rt = runtime()
    _ = rt.engine
    typer.echo("database is up to date")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
