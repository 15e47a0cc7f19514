"""``cartnudge privacy …`` and ``cartnudge unsubscribe``: data requests answered by hand,
consent on record, and the privacy run.

Requests that arrive by email ("what do you hold about me?", "delete me") are answered with
``privacy export`` and ``privacy erase``; Shopify's compliance webhooks are answered by the
privacy run on their own, and ``privacy requests`` shows what became of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cartnudge.cli_support import address_key, emit, fail, runtime

if TYPE_CHECKING:
    from cartnudge.privacy.service import Shopper

privacy_app = typer.Typer(
    no_args_is_help=True,
    help="Data requests (export, erase), consent history, and the privacy run.",
)

ShopOption = Annotated[str, typer.Option(help="Shop slug.")]
EmailOption = Annotated[str, typer.Option(help="The shopper's email address.")]
OrderOption = Annotated[
    list[str] | None,
    typer.Option("--order", help="An order id the request names (repeatable)."),
]
STOP_KINDS = ("unsubscribe", "complaint", "bounce")


def _shopper(email: str, orders: list[str] | None) -> Shopper:
    from cartnudge.privacy.service import Shopper

    return Shopper(address_key(email), tuple(o.strip() for o in orders or () if o.strip()))


@privacy_app.command("export")
def export_command(
    shop: ShopOption,
    email: EmailOption,
    order: OrderOption = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Write the JSON here (readable by you only) instead of printing it."),
    ] = None,
) -> None:
    """Everything held about a shopper in the shop, as JSON: carts, events, reminders,
    decisions, clicks, orders and consent history."""
    from cartnudge.clock import system_clock
    from cartnudge.db.session import writing
    from cartnudge.privacy.files import write_private
    from cartnudge.privacy.service import export

    shopper = _shopper(email, order)
    if out is not None and out.is_dir():
        fail(f"--out {out} is a folder; name a file")
    if out is not None and not out.resolve().parent.is_dir():
        fail(f"--out: no folder {out.resolve().parent}")
    rt = runtime()
    record = rt.shop(shop)
    with writing(rt.engine) as conn:
        document = export(conn, record, shopper, system_clock(), actor="owner:cli")
        if out is not None:
            write_private(out, document)
    if out is None:
        emit(document)
    else:
        typer.echo(f"{record.slug}: wrote {out} ({len(document['carts'])} carts)")


@privacy_app.command("erase")
def erase_command(
    shop: ShopOption,
    email: EmailOption,
    order: OrderOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a shopper's personal data in the shop: contact details, raw events, rendered
    emails, and the address wherever it appears. Counts stay, so reports still add up; an
    unsubscribe is kept under a one-way key so they are never emailed again."""
    from cartnudge.clock import system_clock
    from cartnudge.db.engine import forget_old_copies
    from cartnudge.db.session import writing
    from cartnudge.privacy.service import ERASING_TABLES, erase
    from cartnudge.privacy.worker import files_of

    shopper = _shopper(email, order)
    rt = runtime()
    record = rt.shop(shop)
    if not yes:
        question = f"Erase everything {record.slug} holds about this shopper? It cannot be undone."
        try:
            confirmed = typer.confirm(question, default=False)
        except typer.Abort:  # no terminal to answer on (a script without --yes)
            confirmed = False
        if not confirmed:
            fail("not erased (answer y, or pass --yes)")
    with writing(rt.engine) as conn:
        counts = erase(
            conn, record, shopper, system_clock(), files_of(rt.settings), actor="owner:cli"
        )
    # After the commit: the database's old copies of the rows hold the shopper too.
    dropped = forget_old_copies(rt.engine, ERASING_TABLES)
    emit({"shop": record.slug, "erased": counts, "old_copies_dropped": dropped})


@privacy_app.command("consent")
def consent_command(shop: ShopOption, email: EmailOption) -> None:
    """An address's consent history in the shop, oldest first, and whether reminders to it
    are stopped."""
    from cartnudge.db.session import reading
    from cartnudge.privacy.consent import STOP_REASONS, history, stopped

    key = address_key(email)
    rt = runtime()
    record = rt.shop(shop)
    with reading(rt.engine) as conn:
        stop = stopped(conn, record.id, [key]).get(key)
        entries = history(conn, record.id, key)
    emit({"stopped": STOP_REASONS[stop] if stop else None, "history": entries})


@privacy_app.command("requests")
def requests_command(
    shop: ShopOption, limit: Annotated[int, typer.Option(min=1, max=10000)] = 50
) -> None:
    """The shop's compliance requests from Shopify, newest first: state, when, and the
    export's file for a data request."""
    from cartnudge.db.session import reading
    from cartnudge.privacy.repository import PrivacyRepository

    rt = runtime()
    record = rt.shop(shop)
    with reading(rt.engine) as conn:
        rows = PrivacyRepository(conn).requests_of(record.id, limit)
    emit(
        [
            {
                "id": r.id,
                "kind": r.kind,
                "state": r.state,
                "received_at": r.received_at.isoformat(),
                "done_at": r.done_at.isoformat() if r.done_at else None,
                "result": r.result,
                "error": r.error,
            }
            for r in rows
        ]
    )


@privacy_app.command("run")
def run_command(
    now: Annotated[
        str | None, typer.Option(help="Act as of this RFC 3339 instant (default: now).")
    ] = None,
) -> None:
    """Act on pending data requests and apply every shop's retention now (the loops do
    this every five minutes); print what was done and removed."""
    from cartnudge.cli_support import instant
    from cartnudge.clock import system_clock
    from cartnudge.privacy.worker import files_of, run_privacy

    at = instant(now, "--now") if now else system_clock()
    rt = runtime()
    emit({"now": at.isoformat(), **run_privacy(rt.engine, at, files_of(rt.settings))})


def unsubscribe_command(
    email: Annotated[str, typer.Argument(help="The address to stop emailing.")],
    shop: ShopOption,
    kind: Annotated[
        str, typer.Option(help="Why: unsubscribe (asked to), complaint (spam report), bounce.")
    ] = "unsubscribe",
    note: Annotated[
        str | None, typer.Option(help="Evidence to keep with it, e.g. where the request came.")
    ] = None,
) -> None:
    """Stop every reminder to an address in the shop (e.g. after a reply asking to be left
    alone): recorded in the consent ledger, queued reminders cancelled."""
    from cartnudge.clock import system_clock
    from cartnudge.db.models import ConsentKind
    from cartnudge.db.session import writing
    from cartnudge.privacy.consent import stop

    if kind not in STOP_KINDS:
        fail(f"--kind {kind!r}: choose one of {', '.join(STOP_KINDS)}")
    if note is not None and len(note) > 500:
        fail("--note: at most 500 characters")
    key = address_key(email)
    rt = runtime()
    record = rt.shop(shop)
    with writing(rt.engine) as conn:
        added = stop(
            conn,
            record.id,
            key,
            system_clock(),
            kind=ConsentKind(kind),
            source="owner",
            actor="owner:cli",
            evidence={"note": note} if note else None,
        )
    done = "unsubscribed" if kind == "unsubscribe" else f"{kind} recorded"
    typer.echo(f"{record.slug}: {done if added else 'already ' + done}")
