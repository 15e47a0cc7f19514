"""Small, strict readers for untrusted JSON payloads. Each failure names the field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cartnudge.clock import parse_instant, plausible
from cartnudge.events import Item, TotalParts, Unapplicable
from cartnudge.money import MoneyError, normalize_currency, to_minor

MAX_TEXT = 2000  # longer strings are cut: they end up in email text, not in storage dumps


def obj(payload: Any, key: str) -> dict[str, Any]:
    value = payload.get(key) if isinstance(payload, dict) else None
    return value if isinstance(value, dict) else {}


def text(payload: dict[str, Any], *keys: str) -> str | None:
    """The first non-empty string (or number, as text) among ``keys``."""
    for key in keys:
        value = payload.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            value = str(value)
        if isinstance(value, str) and value.strip():
            return value.strip()[:MAX_TEXT]
    return None


def flag(payload: dict[str, Any], key: str) -> bool | None:
    value = payload.get(key)
    return value if isinstance(value, bool) else None


def instant(payload: dict[str, Any], *keys: str) -> datetime | None:
    for key in keys:
        value = payload.get(key)
        if value in (None, ""):
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return plausible(datetime.fromtimestamp(value, UTC))
            except (OverflowError, OSError, ValueError) as exc:
                raise Unapplicable(f"{key}: not a time in range: {value!r}") from exc
        if isinstance(value, str):
            try:
                return plausible(parse_instant(value))
            except ValueError as exc:
                raise Unapplicable(
                    f"{key}: not an RFC 3339 time with an offset, 1970 to 2999: {value!r}"
                ) from exc
        raise Unapplicable(f"{key}: not a time: {value!r}")
    return None


def required_instant(payload: dict[str, Any], *keys: str) -> datetime:
    value = instant(payload, *keys)
    if value is None:
        raise Unapplicable(f"missing field: {' or '.join(keys)}")
    return value


def currency(value: str | None, fallback: str | None = None) -> str | None:
    code = value or fallback
    if code is None:
        return None
    try:
        return normalize_currency(code)
    except MoneyError as exc:
        raise Unapplicable(str(exc)) from exc


def minor(value: Any, code: str | None, field: str) -> int | None:
    if value in (None, ""):
        return None
    if code is None:
        raise Unapplicable(f"{field}: an amount needs a currency")
    try:
        return to_minor(value, code)
    except MoneyError as exc:
        raise Unapplicable(f"{field}: {exc}") from exc


def quantity(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise Unapplicable(f"{field}: quantity must be a whole number, got {value!r}")
    if value < 0:
        raise Unapplicable(f"{field}: quantity must not be negative")
    return int(value)


def line_items(
    lines: Any, code: str | None, *, price_key: str, title_keys: tuple[str, ...] = ("title",)
) -> tuple[Item, ...]:
    """Turn a platform's list of line items into ``Item``s, in decimal major units."""
    if lines is None:
        return ()
    if not isinstance(lines, list):
        raise Unapplicable("line items: expected a list")
    items = []
    for index, line in enumerate(lines):
        if not isinstance(line, dict):
            raise Unapplicable(f"line item {index}: expected an object")
        items.append(
            Item(
                title=text(line, *title_keys) or "Item",
                quantity=quantity(line.get("quantity", 1), f"line item {index}"),
                unit_price_minor=minor(line.get(price_key), code, f"line item {index} price"),
                sku=text(line, "sku"),
                variant=text(line, "variant_title"),
                image_url=text(line, "image_url", "image"),
                url=text(line, "url"),
            )
        )
    return tuple(items)


def basket_total(items: tuple[Item, ...]) -> int | None:
    if not items or any(item.unit_price_minor is None for item in items):
        return None
    return sum((item.unit_price_minor or 0) * item.quantity for item in items)


TOTAL_PARTS = ("subtotal", "discount", "shipping", "tax")


def total_parts(amounts: dict[str, Any], code: str | None) -> TotalParts:
    """Our own layouts' ``subtotal``, ``discount``, ``shipping`` and ``tax`` (decimal major
    units, each optional; a discount is the amount taken off), as in the storefront event
    and the CSV import."""
    parsed = {name: minor(amounts.get(name), code, name) for name in TOTAL_PARTS}
    for name, amount in parsed.items():
        if amount is not None and amount < 0:
            raise Unapplicable(f"{name}: must not be negative")
    return TotalParts(
        subtotal_minor=parsed["subtotal"],
        discount_minor=parsed["discount"],
        shipping_minor=parsed["shipping"],
        tax_minor=parsed["tax"],
    )


def first_word(name: str | None) -> str | None:
    """The name's first word. Split at spaces and tabs only: a line break or other
    control character stays in the word, for ``checks.vet`` to refuse."""
    if not name:
        return None
    parts = name.replace("\t", " ").split(" ")
    return next((part for part in parts if part), None)


def time_zone(value: str | None) -> str | None:
    """An IANA time zone name, checked against the zone database."""
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Unapplicable(f"timezone: unknown IANA zone {value!r}") from exc
    return value
