"""``cartnudge carts …``: the cart list for owners."""

from __future__ import annotations

from typing import Annotated, Any

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
    from cartnudge.carts.queries import list_carts, not_reminded
    from cartnudge.db.models import CartStatus
    from cartnudge.db.session import reading

    if status is not None and status not in {s.value for s in CartStatus}:
        fail(f"unknown status {status!r}; choose one of {', '.join(s.value for s in CartStatus)}")
    rt = runtime()
    record = rt.shop(shop)
    with reading(rt.engine) as conn:
        rows = list_carts(conn, record.id, status=status, limit=limit)
    for row in rows:
        # Minor units and the currency stay for programs; people read the formatted total.
        row["total"] = _money(row, record.locale)
        row["not_reminded"] = not_reminded(row, record.activated_at)
    if as_json:
        emit(rows)
        return
    for row in rows:
        typer.echo(_cart_line(row))


def _money(row: dict[str, Any], locale: str | None) -> str | None:
    from cartnudge.money import format_minor

    if row["total_minor"] is None or row["currency"] is None:
        return None
    return format_minor(row["total_minor"], row["currency"], locale)


def _cart_line(row: dict[str, Any]) -> str:
    """One cart as a line a person reads: id, status, last activity, total, items, and
    why it will not be reminded when it will not."""
    from datetime import datetime

    when = f"{datetime.fromisoformat(row['last_activity_at']):%Y-%m-%d %H:%M} UTC"
    items = len(row["items"])
    line = (
        f"{row['id']:>8}  {row['status']:<11} {when}  {row['total'] or '-':>12}  "
        f"{items} item{'' if items == 1 else 's'}"
    )
    if not row["not_reminded"]:
        return line
    # The short form; `carts show ID` and --json give the times.
    return f"{line}  ({row['not_reminded'].split(' (')[0]})"


@carts_app.command("show")
def carts_show(
    cart_id: Annotated[int, typer.Argument(help="Cart id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the default).")] = True,
) -> None:
    """One cart with its keys, event timeline and audit trail."""
    from cartnudge.carts.queries import not_reminded, show_cart
    from cartnudge.db.session import reading
    from cartnudge.shops.repository import ShopRepository

    rt = runtime()
    with reading(rt.engine) as conn:
        view = show_cart(conn, cart_id)
        shop = ShopRepository(conn).by_id(view["shop_id"]) if view is not None else None
    if view is None or shop is None:
        fail(f"no cart {cart_id}")
    view["total"] = _money(view, shop.locale)
    view["not_reminded"] = not_reminded(view, shop.activated_at)
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
