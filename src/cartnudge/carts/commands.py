"""``cartnudge carts …``: the cart list for owners."""

from __future__ import annotations

from typing import Annotated

import typer

from cartnudge.cli_support import emit, fail, runtime

carts_app = typer.Typer(no_args_is_help=True, help="The cart list.")


@carts_app.command("list")
def carts_list(
    shop: Annotated[str, typer.Option(help="Shop slug.")],
    status: Annotated[
        str | None, typer.Option(help="open, expired, closed, suppressed, written_off, bought")
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


@carts_app.command("suppress")
def carts_suppress(
    cart_id: Annotated[int, typer.Argument(help="Cart id.")],
    reason: Annotated[str | None, typer.Option(help="Why, for the audit trail.")] = None,
) -> None:
    """Stop a cart: no reminder about it will be sent; any queued one is cancelled."""
    _stop(cart_id, "suppressed", reason)


@carts_app.command("write-off")
def carts_write_off(
    cart_id: Annotated[int, typer.Argument(help="Cart id.")],
    reason: Annotated[str, typer.Option(help="Why (required), for the audit trail.")],
) -> None:
    """Give up on a cart (e.g. the shopper ordered by phone); any queued reminder is
    cancelled."""
    if not reason.strip():
        fail("--reason must not be empty")
    _stop(cart_id, "written_off", reason.strip())


def _stop(cart_id: int, status: str, reason: str | None) -> None:
    # Imported here: the CLI starts without the database layer.
    from cartnudge.carts.actions import ActionError, stop_cart
    from cartnudge.clock import system_clock
    from cartnudge.db.models import CartStatus
    from cartnudge.db.session import writing

    rt = runtime()
    try:
        with writing(rt.engine) as conn:
            result = stop_cart(conn, cart_id, CartStatus(status), system_clock(), reason=reason)
    except ActionError as exc:
        fail(str(exc))
    emit(result)
