"""``cartnudge report …``: what reminders added, measured against the holdout."""

from __future__ import annotations

from typing import Annotated

import typer

from cartnudge.cli_support import SinceOption, UntilOption, emit, fail, runtime

report_app = typer.Typer(no_args_is_help=True, help="What reminders added, honestly measured.")


@report_app.command("lift")
def report_lift(
    shop: Annotated[str, typer.Option(help="Shop slug.")],
    since: SinceOption,
    until: UntilOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
) -> None:
    """The carts whose first reminder came due in the span, reminded against held out:
    purchase rates within 7 days with their difference's 95% interval (Newcombe), revenue
    per cart with its difference's interval (BCa bootstrap), the incremental revenue
    beside the attributed one, and, when the groups are too small, why."""
    from cartnudge.clock import system_clock
    from cartnudge.db.session import reading
    from cartnudge.measurement.lift import lift
    from cartnudge.shops.days import SpanError, span_of

    rt = runtime()
    record = rt.shop(shop)
    try:
        span = span_of(record, since, until)
    except SpanError as exc:
        fail(str(exc))
    end = span.until or system_clock()
    with reading(rt.engine) as conn:
        found = lift(conn, record.id, record.currency, span.since, end)
    if as_json:
        emit(found.as_dict())
        return
    typer.echo(describe(found.as_dict(), record.slug, record.holdout_percent))


def describe(report: dict[str, object], slug: str, percent: int) -> str:
    """The report in the owner's words."""
    r, h = report["reminded"], report["held_out"]
    assert isinstance(r, dict) and isinstance(h, dict)
    currency = report["currency"]

    def rate(group: dict[str, object]) -> str:
        i = group["purchase_rate"]
        if not isinstance(i, dict):
            return "no carts"
        return (
            f"{group['bought']} of {group['carts']} bought ({i['estimate']:.1%}, 95% interval "
            f"{i['low']:.1%} to {i['high']:.1%}), {group['revenue_per_cart']} {currency} a cart"
        )

    lines = [
        f"{slug}: carts whose first reminder came due from {report['since']} to "
        f"{report['until']} (the shop holds out {percent}%)",
        f"  reminded: {rate(r)}",
        f"  held out: {rate(h)}",
    ]
    difference = report["purchase_rate_difference"]
    if report["too_small"]:
        lines.append(f"  {report['too_small']}")
    elif isinstance(difference, dict):
        revenue = report["revenue_per_cart_difference"]
        assert isinstance(revenue, dict)
        lines += [
            f"  reminders added {difference['estimate']:+.1%} to the purchase rate "
            f"(95% interval {difference['low']:+.1%} to {difference['high']:+.1%})",
            f"  and {revenue['estimate']:+.2f} {currency} a cart (95% interval "
            f"{revenue['low']:+.2f} to {revenue['high']:+.2f}): "
            f"{report['incremental_revenue']} {currency} in all",
        ]
    lines.append(
        f"  attributed on the click rule (what vendors report): "
        f"{report['attributed_revenue']} {currency}"
    )
    needed = report["carts_needed_per_group_for_2_points"]
    if needed:
        lines.append(f"  to see a 2-point lift, each group needs about {needed} carts")
    return "\n".join(lines)
