"""The figures a reminder shows under its lines, chosen so that what it shows adds up.

Sources give the parts of a total unevenly: a Shopify checkout has its subtotal, discount,
shipping and tax; a cart has only its lines; a Stripe session its totals but often no
lines; a storefront whatever it sends. A figure is shown only when every figure shown
adds up to the total shown (the lines to the subtotal, the subtotal less the discount plus
shipping and tax to the total). When the source's numbers do not add up, the email falls
back to the total alone rather than show a sum that does not match. Pure: no formatting,
no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SUBTOTAL, DISCOUNT, SHIPPING, TAX = "Subtotal", "Discount", "Shipping", "Tax"


@dataclass(frozen=True, slots=True)
class Figure:
    label: str
    minor: int  # signed as it counts towards the total: a discount is negative


@dataclass(frozen=True, slots=True)
class Summary:
    """``sum(f.minor for f in figures) == total_minor`` whenever ``figures`` is not empty."""

    figures: tuple[Figure, ...] = ()  # the subtotal and what changes it, shown above the total
    total_minor: int | None = None
    included_tax_minor: int | None = None  # tax already in the prices: said, not added
    at_checkout: tuple[str, ...] = ()  # parts the total leaves out: "shipping", "taxes"
    # The total alone, and the lines' amounts shown above it do not make it: say so, so the
    # difference reads as what it is (charges or savings the source did not itemise).
    unlisted: bool = False


def line_total(quantity: int, unit_price_minor: int | None) -> int | None:
    return None if unit_price_minor is None else quantity * unit_price_minor


def summarise(
    line_totals: Sequence[int | None],
    *,
    total: int | None,
    subtotal: int | None = None,
    discount: int | None = None,
    shipping: int | None = None,
    tax: int | None = None,
) -> Summary:
    """What to show under lines whose totals are ``line_totals`` (``None``: price unknown)."""
    if total is None:
        return Summary()
    lines_sum = sum(t for t in line_totals if t is not None)
    shown = any(t is not None for t in line_totals)
    just_the_total = Summary(total_minor=total, unlisted=shown and lines_sum != total)
    lines_add_up = bool(line_totals) and None not in line_totals
    if subtotal is None:
        subtotal = lines_sum if lines_add_up else None
    elif lines_add_up and lines_sum != subtotal:
        return just_the_total  # the lines shown would not add up to the subtotal shown
    parts = (discount, shipping, tax)
    if subtotal is None or any(part is not None and part < 0 for part in parts):
        return just_the_total
    off, shipped, taxed = (part or 0 for part in parts)
    included = None
    if subtotal - off + shipped + taxed != total:
        if not taxed or subtotal - off + shipped != total:
            return just_the_total
        # The total holds without the tax: the prices include it (EU shops, Shopify's
        # ``taxes_included``, Stripe's inclusive tax).
        included, taxed = taxed, 0
    changes = [
        Figure(label, amount)
        for label, amount in ((DISCOUNT, -off), (SHIPPING, shipped), (TAX, taxed))
        if amount
    ]
    figures = (Figure(SUBTOTAL, subtotal), *changes) if changes else ()
    at_checkout = tuple(
        name for name, part in (("shipping", shipping), ("taxes", tax)) if part is None
    )
    return Summary(figures, total, included, at_checkout)
