"""``cartnudge shop …``: add, change and list shops."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cartnudge.cli_support import emit, fail, instant, program, runtime
from cartnudge.clock import system_clock

# How a shop's reminders are sent: the same options for `shop add` and `shop set`.
SenderOption = Annotated[
    str | None, typer.Option(help="Who reminders come from: 'Name <address>'. Needed to send.")
]
AddressOption = Annotated[
    str | None,
    typer.Option(help="The shop's postal address, printed in every email. Needed to send."),
]
MailOption = Annotated[
    str | None,
    typer.Option(
        help="How email leaves: 'file' (one .eml per email in the outbox folder), "
        "smtp://host:25, smtp+starttls://user:pass@host:587 or smtps://user:pass@host:465."
    ),
]
LocaleOption = Annotated[
    str | None, typer.Option(help="For money and dates when the shopper's is unknown.")
]

shop_app = typer.Typer(no_args_is_help=True, help="Add, change and list shops.")

if TYPE_CHECKING:
    from cartnudge.shops.repository import ShopRecord


def with_next_step(view: dict[str, Any], shop: ShopRecord) -> dict[str, Any]:
    """A shop that cannot send yet says what it lacks and the command that adds it, so
    ``"ready": false`` is never the last word."""
    wanted = {
        "--sender": (shop.sender, f"{shop.name} <hello@your-domain.example>"),
        "--address": (shop.postal_address, "1 High Street, Town, Postcode, Country"),
    }
    missing = [option for option, (value, _) in wanted.items() if not value]
    if missing:
        view["sending"]["missing"] = missing
        options = " ".join(f"{option} {shlex.quote(wanted[option][1])}" for option in missing)
        view["next"] = [f"{program()} shop set {shop.slug} {options}"]
    return view


HoldoutOption = Annotated[
    int | None,
    typer.Option(
        "--holdout",
        help="The percentage of carts (0-50) that get no reminder, so that what reminders "
        "add is measured against them; decided once per cart. 0: remind every cart.",
    ),
]


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
    order_match_window: Annotated[
        str,
        typer.Option(
            help="An order naming no cart buys the same email's carts active this long before it."
        ),
    ] = "7d",
    sender: SenderOption = None,
    address: AddressOption = None,
    mail: MailOption = None,
    locale: LocaleOption = None,
    holdout: HoldoutOption = None,
) -> None:
    """Add a shop and print it as JSON, with its webhook URLs and secrets."""
    from cartnudge.db.session import writing
    from cartnudge.durations import DurationError, parse_duration
    from cartnudge.shops.service import ShopError, add_shop, describe

    activated = instant(activated_at, "--activated-at") if activated_at else None
    try:
        window = parse_duration(order_match_window)
    except DurationError as exc:
        fail(f"--order-match-window: {exc}")
    rt = runtime()
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
                order_match_window=window,
                sender=sender,
                postal_address=address,
                mail_url=mail,
                locale=locale or "en",
                # Unsaid: the service's default for a new shop.
                **({} if holdout is None else {"holdout_percent": holdout}),
            )
    except ShopError as exc:
        fail(str(exc))
    emit(with_next_step(describe(shop, rt.settings.public_url), shop))


@shop_app.command("set")
def shop_set(
    slug: Annotated[str, typer.Argument(help="Shop slug.")],
    sender: SenderOption = None,
    address: AddressOption = None,
    mail: MailOption = None,
    locale: LocaleOption = None,
    keep_payloads: Annotated[
        str | None, typer.Option(help="Keep raw webhook bodies this long (default 7d).")
    ] = None,
    keep_decisions: Annotated[
        str | None,
        typer.Option(help="Keep the facts each decision read this long (default 30d)."),
    ] = None,
    domains: Annotated[
        str | None,
        typer.Option(
            help="The shop's domains, comma-separated (each with its subdomains): carts' "
            "return links must point there. An empty value accepts any host again."
        ),
    ] = None,
    cart_url: Annotated[
        str | None,
        typer.Option(
            help="The shop's cart page: the link an email gets when a cart's own return link "
            "is refused. An empty value clears it."
        ),
    ] = None,
    keep_closed_pii: Annotated[
        str | None,
        typer.Option(
            help="Keep shoppers' personal data on carts no longer open this long after their "
            "last activity (default 180d)."
        ),
    ] = None,
    test_orders_close_carts: Annotated[
        str | None,
        typer.Option(
            help="yes or no: whether a test order (Shopify test: true) closes a cart and "
            "stops its reminders as a real one would (default no)."
        ),
    ] = None,
    export_hour: Annotated[
        int | None,
        typer.Option(help="The nightly sheet's hour, in the shop's time zone (0-23)."),
    ] = None,
    export_to: Annotated[
        str | None,
        typer.Option(
            help="Where the nightly sheet goes: an absolute folder, or sheets:SPREADSHEET_ID. "
            "An empty value stops it."
        ),
    ] = None,
    export_format: Annotated[
        str | None, typer.Option(help="The nightly sheet's format in a folder: csv or xlsx.")
    ] = None,
    holdout: HoldoutOption = None,
) -> None:
    """Change how the shop's reminders are sent, how long its data is kept and where its
    nightly sheet goes; print the shop. Sends held for want of a sender identity go out on
    the next pass once it is complete."""
    from cartnudge.db.session import writing
    from cartnudge.durations import DurationError, parse_duration
    from cartnudge.shops.service import KEEP_OPTIONS, ShopError, describe, set_shop

    given = {
        "keep_payloads_s": keep_payloads,
        "keep_decisions_s": keep_decisions,
        "keep_closed_pii_s": keep_closed_pii,
    }
    keep = {}
    for column, value in given.items():
        if value is not None:
            try:
                keep[column] = parse_duration(value)
            except DurationError as exc:
                fail(f"{KEEP_OPTIONS[column]}: {exc}")
    test_orders = None
    if test_orders_close_carts is not None:
        test_orders = {"yes": True, "no": False}.get(test_orders_close_carts.strip().lower())
        if test_orders is None:
            fail(f"--test-orders-close-carts: {test_orders_close_carts!r} is not yes or no")
    rt = runtime()
    try:
        with writing(rt.engine) as conn:
            shop = set_shop(
                conn,
                slug,
                system_clock(),
                sender=sender,
                postal_address=address,
                mail_url=mail,
                locale=locale,
                keep=keep,
                test_orders_close_carts=test_orders,
                domains=domains,
                cart_url=cart_url,
                export_hour=export_hour,
                export_to=export_to,
                export_format=export_format,
                holdout_percent=holdout,
            )
    except ShopError as exc:
        fail(str(exc))
    emit(with_next_step(describe(shop, rt.settings.public_url, show_secrets=False), shop))


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


@shop_app.command("rotate-secret")
def shop_rotate_secret(
    slug: Annotated[str, typer.Argument(help="Shop slug.")],
    finish: Annotated[
        bool, typer.Option("--finish", help="Stop accepting the previous secret.")
    ] = False,
) -> None:
    """Rotate the storefront signing secret: a new one is issued and the old one is still
    accepted until `--finish`, so a store can switch without losing a delivery."""
    from cartnudge.db.session import writing
    from cartnudge.shops.service import ShopError, describe, rotate_storefront_secret

    rt = runtime()
    try:
        with writing(rt.engine) as conn:
            shop = rotate_storefront_secret(conn, slug, finish=finish)
    except ShopError as exc:
        fail(str(exc))
    emit(describe(shop, rt.settings.public_url))


@shop_app.command("pause")
def shop_pause(
    slug: Annotated[str, typer.Argument(help="Shop slug.")],
    reason: Annotated[str | None, typer.Option(help="Why, for the audit trail.")] = None,
) -> None:
    """Stop every reminder of the shop from leaving, from the next one on; each waits, held,
    until `shop resume`."""
    _control(slug, pause=True, reason=reason)


@shop_app.command("resume")
def shop_resume(slug: Annotated[str, typer.Argument(help="Shop slug.")]) -> None:
    """Let the shop's reminders go again; those the pause held are due at once."""
    _control(slug, pause=False, reason=None)


def _control(slug: str, *, pause: bool, reason: str | None) -> None:
    from cartnudge.db.session import writing
    from cartnudge.shops.controls import ControlError, pause_sending, resume_sending

    rt = runtime()
    shop = rt.shop(slug)
    try:
        with writing(rt.engine) as conn:
            if pause:
                pause_sending(conn, shop, system_clock(), actor="owner:cli", reason=reason)
                emit({"shop": slug, "paused": True})
            else:
                released = resume_sending(conn, shop, system_clock(), actor="owner:cli")
                emit({"shop": slug, "paused": False, "released": released})
    except ControlError as exc:
        fail(str(exc))
