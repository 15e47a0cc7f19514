"""The ``cartnudge`` command: the process commands here, each stage's in its own
``commands.py``. Every command exits 2 with a one-line reason on bad input, changing
nothing."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cartnudge.carts.commands import carts_app
from cartnudge.cli_support import (
    Runtime,
    close_runtimes,
    emit,
    fail,
    forget_server,
    program,
    record_server,
    runtime,
)
from cartnudge.clock import system_clock
from cartnudge.config import Settings
from cartnudge.dashboard.commands import user_app
from cartnudge.delivery.commands import sends_app
from cartnudge.export.commands import export_command
from cartnudge.intake.commands import events_app, import_app, reconcile_app
from cartnudge.measurement.commands import report_app
from cartnudge.messages.commands import voice_app
from cartnudge.privacy.commands import privacy_app, unsubscribe_command
from cartnudge.privacy.key_commands import keys_app
from cartnudge.shops.commands import shop_app
from cartnudge.timing.commands import rules_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Abandoned-cart recovery.")
app.add_typer(shop_app, name="shop")
app.add_typer(events_app, name="events")
app.add_typer(carts_app, name="carts")
app.add_typer(import_app, name="import")
app.add_typer(reconcile_app, name="reconcile")
app.add_typer(rules_app, name="rules")
app.add_typer(voice_app, name="voice")
app.add_typer(sends_app, name="sends")
app.add_typer(keys_app, name="keys")
app.add_typer(privacy_app, name="privacy")
app.add_typer(user_app, name="user")
app.add_typer(report_app, name="report")
app.command("unsubscribe")(unsubscribe_command)
app.command("export")(export_command)


@app.callback()
def _root(ctx: typer.Context) -> None:
    ctx.call_on_close(close_runtimes)
    # Every command logs JSON lines to stderr (see cartnudge.logs); stdout is the operator's.
    from cartnudge.logs import configure_logging

    level = Settings().log_level
    try:
        configure_logging(level)
    except ValueError as exc:
        fail(f"CARTNUDGE_LOG_LEVEL: {exc}")


# -- serve, web, worker, tick ---------------------------------------------------------
HostOption = Annotated[str, typer.Option(help="Interface to listen on.")]
PortOption = Annotated[int, typer.Option(help="TCP port.")]
WorkersOption = Annotated[
    int,
    typer.Option(min=1, max=64, help="Web processes (they share one ingest writer process)."),
]


@app.command()
def serve(
    host: HostOption = "127.0.0.1", port: PortOption = 8000, workers: WorkersOption = 1
) -> None:
    """Run everything in one place: the web app (webhooks, links) and the waiter and
    sender loops. The embedded default `make run` uses."""
    _run_web(host, port, workers, with_loops=True)


@app.command()
def web(
    host: HostOption = "127.0.0.1", port: PortOption = 8000, workers: WorkersOption = 1
) -> None:
    """Run only the web app; run `cartnudge worker` processes for the loops (PostgreSQL)."""
    _run_web(host, port, workers, with_loops=False)


@app.command()
def worker() -> None:
    """Run only the waiter and sender loops, until Ctrl-C or SIGTERM. On PostgreSQL run as
    many as the load needs: they share the work without doing any of it twice."""
    import signal

    from cartnudge.worker import Loops

    rt = runtime()
    loops = Loops(rt.engine, rt.settings)
    signal.signal(signal.SIGTERM, lambda *_: loops.stop(timeout_s=0))
    typer.echo("cartnudge: worker running (Ctrl-C to stop)")
    try:
        loops.run()
    except KeyboardInterrupt:
        loops.stop(timeout_s=0)


@app.command()
def tick(
    now: Annotated[
        str | None, typer.Option(help="Act as of this RFC 3339 instant (default: now).")
    ] = None,
) -> None:
    """One pass of the waiter and then the sender as of NOW, then exit. Prints what each
    did."""
    from cartnudge.cli_support import instant
    from cartnudge.clock import FrozenClock
    from cartnudge.worker import Loops

    at = instant(now, "--now") if now else system_clock()
    rt = runtime()
    loops = Loops(rt.engine, rt.settings, FrozenClock(at))
    try:
        emit({"now": at.isoformat(), **loops.run_once()})
    finally:
        loops.providers.close()


class _Terminated(Exception):
    """SIGTERM reached serve: unwind, stopping the children and removing their folders."""


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _run_web(host: str, port: int, workers: int, *, with_loops: bool) -> None:
    import os
    import signal

    from cartnudge.measurement.exposition import shared_between_processes

    # uvicorn answers SIGTERM by shutting down gracefully and then sending itself the signal
    # again, under the handler it found: this one, so serve's own clean-up runs too.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        # Before anything loads prometheus_client: /metrics adds up every process of serve.
        with shared_between_processes():
            _run_web_processes(host, port, workers, with_loops=with_loops)
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # end as a process ended by SIGTERM does


def _run_web_processes(host: str, port: int, workers: int, *, with_loops: bool) -> None:
    import os

    import uvicorn

    from cartnudge.app import create_app
    from cartnudge.children import Child, hand_down, preload
    from cartnudge.intake.writer_process import WriterProcess
    from cartnudge.logs import logging_config

    rt = runtime(migrate_apart=True)
    if "CARTNUDGE_PUBLIC_URL" not in os.environ:
        rt.settings.public_url = f"http://{host}:{port}"
        os.environ["CARTNUDGE_PUBLIC_URL"] = rt.settings.public_url  # for worker processes
    _ensure_demo_shop(rt)
    _ensure_first_admin(rt)
    record_server(rt.settings.home, _local_url(host, port), rt.settings.public_url)
    # The children are forked from this process: what they run is imported here, once,
    # and its pages shared (see cartnudge.children); no database connection crosses a fork.
    preload("cartnudge.worker", "cartnudge.intake.remote", "cartnudge.intake.writer")
    rt.engine.dispose()
    hand_down(settings=rt.settings, engine=rt.engine)
    # One writer process commits for every web process, on a core of its own (see
    # cartnudge.intake.writer_process): the web processes verify and parse.
    writer = WriterProcess()
    writer.start(watch=False)
    rt.settings.ingest_socket = writer.socket_path
    os.environ["CARTNUDGE_INGEST_SOCKET"] = str(writer.socket_path)  # for web workers
    # The loops in a process of their own (see cartnudge.children), after the writer.
    loops = Child("loops", "cartnudge.worker", []) if with_loops else None
    # uvicorn applies it in each web process it starts: its server and access lines
    # (one per request) come out as JSON lines too.
    log_config = logging_config(rt.settings.log_level)
    try:
        if loops is not None:
            loops.start()  # forked last, so its watcher thread may start with it
        writer.watch()
        if workers > 1:
            # Each process builds its own app from the environment.
            uvicorn.run(
                "cartnudge.app:app_from_environment",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_config=log_config,
                ws="none",  # no websockets here: their library is not loaded at all
            )
        else:
            uvicorn.run(
                create_app(rt.settings, engine=rt.engine),
                host=host,
                port=port,
                # This process has that configuration already (the command's start):
                # applying it again would walk every logger and copy the pages it shares
                # with the children it forked.
                log_config=None,
                ws="none",
            )
    finally:
        forget_server(rt.settings.home)
        if loops is not None:
            loops.stop()
        # After uvicorn has answered its in-flight requests, which wait on the writer.
        writer.stop()


def _local_url(host: str, port: int) -> str:
    """How a command on this machine reaches a server listening on ``host``."""
    if host in {"", "0.0.0.0", "::"}:  # noqa: S104 - naming the wildcard, not binding it
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _ensure_first_admin(rt: Runtime) -> None:
    """With no user at all, add the admin and print their one-time password, this once."""
    from cartnudge.dashboard.accounts import FIRST_ADMIN, first_admin
    from cartnudge.db.session import writing

    with writing(rt.engine) as conn:
        password = first_admin(conn, system_clock())
    if password is not None:
        typer.echo(
            f"cartnudge: sign in to the dashboard at {rt.settings.public_url}/ as {FIRST_ADMIN!r} "
            f"with the one-time password {password} (shown this once: you choose your own at "
            f"the first sign-in; `{program()} user passwd {FIRST_ADMIN}` gives a new one)"
        )


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
            # Example values so the demo can send; a real shop sets its own.
            sender="Demo Shop <hello@demo.example>",
            postal_address="1 Example Street\nLondon EC1A 1AA\nUnited Kingdom",
        )
    typer.echo("cartnudge: created the demo shop. Point a store at these webhooks:")
    emit(describe(shop, rt.settings.public_url))
    typer.echo(f"Try it: {program()} events send-example --shop demo")


@app.command()
def demo(
    carts: Annotated[int, typer.Option(min=1, max=5000, help="Synthetic carts.")] = 120,
    seed: Annotated[int, typer.Option(help="Same seed, same story.")] = 7,
) -> None:
    """The whole loop on a synthetic store in accelerated time: carts arrive, reminders
    go out (never at night, never after a purchase), and the emails are left in
    $CARTNUDGE_HOME/demo/outbox. Uses a database of its own; yours is not touched."""
    import os
    import time

    from cartnudge.config import Settings
    from cartnudge.sim.demo import describe, open_command, run_demo

    home = Settings().home / "demo"
    started = time.perf_counter()
    story = run_demo(home, carts=carts, seed=seed)
    for line in describe(story, home / "outbox", time.perf_counter() - started):
        typer.echo(line)
    typer.echo(f"look closer: {open_command(home, program(), os.environ)}")
    typer.echo("  (then `carts show ID`, `sends list --shop tea-house` the same way)")


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
    except Exception as exc:
        # A malformed, wrong or missing data key: one line saying so, not a traceback.
        from cartnudge.keys import data_key_problem

        problem = data_key_problem(exc)
        if problem is None:
            raise
        typer.echo(f"error: {problem}", err=True)
        sys.exit(2)
