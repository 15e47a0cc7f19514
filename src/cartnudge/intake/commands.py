"""``cartnudge events …``, ``import …`` and ``reconcile …``: the intake stage's commands."""

from __future__ import annotations

from typing import Annotated

import typer

from cartnudge.cli_support import emit, fail, instant, runtime
from cartnudge.clock import system_clock

events_app = typer.Typer(no_args_is_help=True, help="Webhook events: examples, dead letters.")
import_app = typer.Typer(no_args_is_help=True, help="Backfill carts from files.")
reconcile_app = typer.Typer(no_args_is_help=True, help="Pull what webhooks may have missed.")


@events_app.command("send-example")
def events_send_example(
    shop: Annotated[str, typer.Option(help="Shop slug.")],
    lane: Annotated[str, typer.Option(help="storefront, shopify or stripe.")] = "storefront",
    url: Annotated[
        str | None,
        typer.Option(
            help="Server base URL (default: $CARTNUDGE_PUBLIC_URL, else the server running "
            "on this data folder, else http://127.0.0.1:8000)."
        ),
    ] = None,
) -> None:
    """Post a correctly signed example event to the running server."""
    import httpx

    from cartnudge.intake.examples import LANES, example_request

    if lane not in LANES:
        fail(f"unknown lane {lane!r}; choose one of {', '.join(LANES)}")
    rt = runtime()
    record = rt.shop(shop)
    try:
        request = example_request(record, lane, system_clock())
    except ValueError as exc:
        fail(str(exc))
    base = (url or rt.server_url).rstrip("/")
    try:
        response = httpx.post(
            base + request.path, content=request.body, headers=request.headers, timeout=10
        )
    except httpx.HTTPError as exc:
        fail(f"could not reach {base}: {exc} (is `make run` running?)")
    typer.echo(f"POST {request.path} -> {response.status_code} {response.text}")
    if response.status_code >= 300:
        raise typer.Exit(1)


@events_app.command("schema")
def events_schema() -> None:
    """Print the storefront event's JSON Schema (docs/storefront-event.schema.json)."""
    from cartnudge.intake.schemas import storefront_json_schema

    emit(storefront_json_schema())


@events_app.command("dead-letters")
def events_dead_letters(
    shop: Annotated[str | None, typer.Option(help="Only this shop.")] = None,
) -> None:
    """List deliveries that were kept but could not be applied, with their reasons."""
    from cartnudge.db.session import reading
    from cartnudge.intake.replay import dead_letters

    rt = runtime()
    shop_id = rt.shop(shop).id if shop else None
    with reading(rt.engine) as conn:
        emit(dead_letters(conn, shop_id))


@events_app.command("replay")
def events_replay(event_id: Annotated[int, typer.Argument(help="Dead letter id.")]) -> None:
    """Parse a dead letter again (after a fix) and apply it."""
    from cartnudge.db.session import writing
    from cartnudge.intake.replay import ReplayError, replay

    rt = runtime()
    try:
        with writing(rt.engine) as conn:
            outcome = replay(conn, event_id, system_clock())
    except ReplayError as exc:
        fail(str(exc))
    emit(
        {
            "id": event_id,
            "status": outcome.status,
            "cart_id": outcome.cart_id,
            "reason": outcome.reason,
        }
    )
    if outcome.status == "dead":
        raise typer.Exit(1)


@import_app.command("csv")
def import_csv(
    file: Annotated[str, typer.Argument(help="CSV file: a Stripe export or our columns.")],
    shop: Annotated[str, typer.Option(help="Shop slug.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Parse and count; write nothing.")
    ] = False,
    file_format: Annotated[
        str, typer.Option("--format", help="auto, stripe or cartnudge.")
    ] = "auto",
) -> None:
    """Backfill carts and purchases from a CSV file; re-running it creates nothing new."""
    from pathlib import Path

    from cartnudge.intake.csv_import import Format, ImportRefused
    from cartnudge.intake.csv_import import import_csv as run_import

    if file_format not in {f.value for f in Format}:
        fail(f"--format: {file_format!r} is not one of {', '.join(f.value for f in Format)}")
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    rt = runtime()
    record = rt.shop(shop)
    try:
        summary = run_import(
            rt.engine, record, data, system_clock(), fmt=Format(file_format), dry_run=dry_run
        )
    except ImportRefused as exc:
        fail(f"{file}: {exc}; nothing was imported")
    emit(summary)


@reconcile_app.command("stripe")
def reconcile_stripe(
    shop: Annotated[str, typer.Option(help="Shop slug.")],
    since: Annotated[str, typer.Option(help="RFC 3339 time: sessions created from then.")],
    api_key: Annotated[
        str | None,
        typer.Option(help="Stripe secret or restricted key (default: $CARTNUDGE_STRIPE_API_KEY)."),
    ] = None,
    api_base: Annotated[
        str | None, typer.Option(help="Stripe API base URL (default: https://api.stripe.com).")
    ] = None,
) -> None:
    """List expired and completed Checkout Sessions and apply any a webhook missed."""
    import os

    from cartnudge.intake.reconcile import API_KEY_ENV, ReconcileError
    from cartnudge.intake.reconcile import reconcile_stripe as run_reconcile

    key = api_key or os.environ.get(API_KEY_ENV, "")
    if not key.strip():
        fail(f"no Stripe API key: pass --api-key or set {API_KEY_ENV}")
    start = instant(since, "--since")
    rt = runtime()
    record = rt.shop(shop)
    try:
        summary = run_reconcile(rt.engine, record, key, start, system_clock(), api_base=api_base)
    except ReconcileError as exc:
        fail(f"{exc}; nothing was stored")
    emit(summary)
