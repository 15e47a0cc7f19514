"""The ``cartnudge`` command. Every sub-command prints JSON or plain text and exits 2 with
a one-line reason on bad input, changing nothing."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated, Any, NoReturn

import typer

from cartnudge.clock import parse_instant, system_clock
from cartnudge.config import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Abandoned-cart recovery.")
shop_app = typer.Typer(no_args_is_help=True, help="Add and list shops.")
events_app = typer.Typer(no_args_is_help=True, help="Webhook events: examples, dead letters.")
carts_app = typer.Typer(no_args_is_help=True, help="The cart list.")
import_app = typer.Typer(no_args_is_help=True, help="Backfill carts from files.")
reconcile_app = typer.Typer(no_args_is_help=True, help="Pull what webhooks may have missed.")
app.add_typer(shop_app, name="shop")
app.add_typer(events_app, name="events")
app.add_typer(carts_app, name="carts")
app.add_typer(import_app, name="import")
app.add_typer(reconcile_app, name="reconcile")


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def emit(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


class Runtime:
    """What a command needs: settings and a migrated engine, built on first use."""

    def __init__(self) -> None:
        self.settings = Settings()
        self._engine: Any = None

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from cartnudge.db.engine import make_engine
            from cartnudge.db.migrate import upgrade

            try:
                self._engine = make_engine(self.settings.resolved_database_url)
                upgrade(self._engine)
            except Exception as exc:
                fail(f"database {self.settings.resolved_database_url}: {exc}")
        return self._engine

    def shop(self, slug: str) -> Any:
        from cartnudge.db.session import reading
        from cartnudge.shops.repository import ShopRepository

        with reading(self.engine) as conn:
            shop = ShopRepository(conn).by_slug(slug)
        if shop is None:
            fail(f"no shop {slug!r} (see `cartnudge shop list`)")
        return shop

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


_RUNTIMES: list[Runtime] = []


def runtime() -> Runtime:
    """The command's runtime; its connections close when the command ends."""
    rt = Runtime()
    _RUNTIMES.append(rt)
    return rt


def _close_runtimes() -> None:
    while _RUNTIMES:
        _RUNTIMES.pop().close()


@app.callback()
def _root(ctx: typer.Context) -> None:
    ctx.call_on_close(_close_runtimes)


# -- serve --------------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Web processes (each with its own writer).")
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
    if workers > 1:
        # Each process builds its own app (engine, writer) from the environment.
        rt.close()
        uvicorn.run(
            "cartnudge.app:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
        )
        return
    uvicorn.run(
        create_app(rt.settings, engine=rt.engine), host=host, port=port, log_level="warning"
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
        )
    typer.echo("cartnudge: created the demo shop. Point a store at these webhooks:")
    emit(describe(shop, rt.settings.public_url))
    typer.echo("Try it: .venv/bin/cartnudge events send-example --shop demo")


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (also done by every command on start)."""
    rt = runtime()
    _ = rt.engine
    typer.echo("database is up to date")


# -- shops --------------------------------------------------------------------------------
@shop_app.command("add")
def shop_add(
    slug: Annotated[
        str, typer.Argument(help="Short name used in URLs: lower-case, digits, dashes.")
    ],
    name: Annotated[str, typer.Option(help="The shop's name, as shoppers know it.")],
    timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. Europe/Paris.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code, e.g. EUR.")],
    shopify_domain: Annotated[str | None, typer.Option(help="name.myshopify.com")] = None,
    shopify_secret: Annotated[str | None, typer.Option(help="The app's client secret.")] = None,
    stripe_secret: Annotated[
        str | None, typer.Option(help="Endpoint signing secret, whsec_…")
    ] = None,
    activated_at: Annotated[
        str | None, typer.Option(help="RFC 3339 time; carts older than this are never reminded.")
    ] = None,
) -> None:
    """Add a shop and print it as JSON, with its webhook URLs and secrets."""
    from cartnudge.db.session import writing
    from cartnudge.shops.service import ShopError, add_shop, describe

    rt = runtime()
    activated = _instant(activated_at, "--activated-at") if activated_at else None
    try:
        with writing(rt.engine) as conn:
            shop = add_shop(
                conn,
                slug=slug,
                name=name,
                timezone=timezone,
                currency=currency,
                now=system_clock(),
                shopify_domain=shopify_domain,
                shopify_secret=shopify_secret,
                stripe_secret=stripe_secret,
                activated_at=activated,
            )
    except ShopError as exc:
        fail(str(exc))
    emit(describe(shop, rt.settings.public_url))


@shop_app.command("list")
def shop_list(
    show_secrets: Annotated[bool, typer.Option(help="Print secrets in full.")] = False,
) -> None:
    """List shops as JSON (secrets shortened unless --show-secrets)."""
    from cartnudge.db.session import reading
    from cartnudge.shops.repository import ShopRepository
    from cartnudge.shops.service import describe

    rt = runtime()
    with reading(rt.engine) as conn:
        shops = ShopRepository(conn).all()
    emit([describe(s, rt.settings.public_url, show_secrets=show_secrets) for s in shops])


# -- events -------------------------------------------------------------------------------
@events_app.command("send-example")
def events_send_example(
    shop: Annotated[str, typer.Option(help="Shop slug.")],
    lane: Annotated[str, typer.Option(help="storefront, shopify or stripe.")] = "storefront",
    url: Annotated[str | None, typer.Option(help="Server base URL (default: public URL).")] = None,
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
    base = (url or rt.settings.public_url).rstrip("/")
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
    from cartnudge.intake.service import dead_letters

    rt = runtime()
    shop_id = rt.shop(shop).id if shop else None
    with reading(rt.engine) as conn:
        emit(dead_letters(conn, shop_id))


@events_app.command("replay")
def events_replay(event_id: Annotated[int, typer.Argument(help="Dead letter id.")]) -> None:
    """Parse a dead letter again (after a fix) and apply it."""
    from cartnudge.db.session import writing
    from cartnudge.intake.service import ReplayError, replay

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


# -- carts --------------------------------------------------------------------------------
@carts_app.command("list")
def carts_list(
    shop: Annotated[str, typer.Option(help="Shop slug.")],
    status: Annotated[
        str | None, typer.Option(help="open, bought, closed, suppressed, written_off")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The shop's carts, most recently active first."""
    from cartnudge.carts.queries import list_carts
    from cartnudge.db.models import CartStatus
    from cartnudge.db.session import reading

    if status is not None and status not in {s.value for s in CartStatus}:
        fail(f"unknown status {status!r}; choose one of {', '.join(s.value for s in CartStatus)}")
    rt = runtime()
    record = rt.shop(shop)
    with reading(rt.engine) as conn:
        rows = list_carts(conn, record.id, status=status, limit=limit)
    if as_json:
        emit(rows)
        return
    for row in rows:
        total = (
            "-" if row["total_minor"] is None else f"{row['total_minor']} {row['currency']} (minor)"
        )
        when, items = row["last_activity_at"], len(row["items"])
        typer.echo(f"{row['id']:>8}  {row['status']:<11} {when}  {total}  {items} item(s)")


@carts_app.command("show")
def carts_show(
    cart_id: Annotated[int, typer.Argument(help="Cart id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the default).")] = True,
) -> None:
    """One cart with its keys, event timeline and audit trail."""
    from cartnudge.carts.queries import show_cart
    from cartnudge.db.session import reading

    rt = runtime()
    with reading(rt.engine) as conn:
        view = show_cart(conn, cart_id)
    if view is None:
        fail(f"no cart {cart_id}")
    emit(view)


# -- backfills ---------------------------------------------------------------------------
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
    start = _instant(since, "--since")
    rt = runtime()
    record = rt.shop(shop)
    try:
        summary = run_reconcile(rt.engine, record, key, start, system_clock(), api_base=api_base)
    except ReconcileError as exc:
        fail(f"{exc}; nothing was stored")
    emit(summary)


def _instant(text: str, option: str) -> datetime:
    try:
        return parse_instant(text)
    except ValueError:
        fail(f"{option}: {text!r} is not an RFC 3339 time with an offset")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
