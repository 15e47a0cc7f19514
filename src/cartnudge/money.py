"""Money is exact: integer minor units plus an ISO 4217 currency code."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import cache

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency, get_currency_precision, list_currencies

_KNOWN_CURRENCIES = frozenset(list_currencies())


MAX_DIGITS = 14  # below 10^15 major units: even in thousandths that fits a BIGINT


class MoneyError(ValueError):
    """A price or currency that cannot be represented exactly."""


def normalize_currency(code: str) -> str:
    upper = code.strip().upper()
    if upper not in _KNOWN_CURRENCIES:
        raise MoneyError(f"unknown currency {code!r}")
    return upper


@cache
def minor_digits(currency: str) -> int:
    return int(get_currency_precision(currency))


def to_minor(amount: str | int | float | Decimal, currency: str) -> int:
    """Turn a decimal amount (``"19.99"``) into minor units (``1999``) for ``currency``.

    Floats are accepted only because some JSON sources send them; they go through their
    shortest text form, so ``19.99`` stays 19.99. Amounts with more precision than the
    currency has (``"1.005"`` in USD) are refused rather than silently rounded.
    """
    if isinstance(amount, bool):
        raise MoneyError(f"not an amount: {amount!r}")
    try:
        value = Decimal(repr(amount)) if isinstance(amount, float) else Decimal(str(amount).strip())
    except InvalidOperation as exc:
        raise MoneyError(f"not an amount: {amount!r}") from exc
    if not value.is_finite():
        raise MoneyError(f"not an amount: {amount!r}")
    # Before scaling: "1e999999" would overflow the context, or take minutes to turn into an
    # int, and anything this large fits no column anyway.
    if value.adjusted() > MAX_DIGITS:
        raise MoneyError(f"{amount!r} is too large an amount")
    scaled = value.scaleb(minor_digits(currency))
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{amount!r} has more decimals than {currency} allows")
    return int(scaled)


def format_minor(minor: int, currency: str, locale: str | None = None) -> str:
    """``1999`` USD as a person reads it in ``locale`` (``$19.99``); English when the
    locale is unknown."""
    try:
        where = Locale.parse((locale or "en").strip().replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError):
        where = Locale.parse("en")
    amount = Decimal(minor).scaleb(-minor_digits(currency))
    return str(format_currency(amount, currency, locale=where))
