"""``cartnudge sends …``: what the sender did with every reminder, and why."""

from __future__ import annotations

from typing import Annotated

import typer

from cartnudge.cli_support import emit, fail, program, runtime

sends_app = typer.Typer(no_args_is_help=True, help="The reminders decided and what became of them.")


@sends_app.command("list")
def sends_list(
    shop: Annotated[str, typer.Option(help="Shop slug.")],
    status: Annotated[
        str | None,
        typer.Option(help="queued, sending, sent, skipped, failed, cancelled, ambiguous"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
) -> None:
    """The shop's sends as JSON, most recently changed first, with the reason for each
    skip, deferral, failure or ambiguity."""
    from cartnudge.carts.queries import list_sends, unreminded
    from cartnudge.db.models import SendStatus
    from cartnudge.db.session import reading

    if status is not None and status not in {s.value for s in SendStatus}:
        fail(f"unknown status {status!r}; choose one of {', '.join(s.value for s in SendStatus)}")
    rt = runtime()
    record = rt.shop(shop)
    with reading(rt.engine) as conn:
        emit(list_sends(conn, record.id, status=status, limit=limit))
        never = unreminded(conn, record.id, record.activated_at)
    if never:
        # Carts with no send at all are not in the list above: say why they have none.
        shown = ", ".join(str(cart_id) for cart_id in never[:5])
        more = f" and {len(never) - 5} more" if len(never) > 5 else ""
        typer.echo(
            f"note: {len(never)} open cart(s) will not be reminded ({shown}{more}): last active "
            f"before the shop was switched on at {record.activated_at:%Y-%m-%d %H:%M} UTC "
            f"(see `{program()} carts show {never[0]}`)",
            err=True,
        )
