"""The sheet's rows: one per cart of a shop last active in [since, until), newest first,
as a spreadsheet user reads them.

A cart belongs to the day of its *last* activity, as in the cart list's "active from / to"
filter: the rows are the cart list's own keyset pages (``carts.queries.page_of_carts``, on
the index led by the shop), so a shop with a million carts is read a page at a time and
never held whole. A cart active again later moves to that later day's sheet.

The shopper's address is masked: the full address never leaves in a sheet.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from cartnudge.addresses import masked
from cartnudge.carts.queries import CartFilter, not_reminded, page_of_carts
from cartnudge.db.session import reading
from cartnudge.export.links import LINK_LIFETIME, SHEET_ACTIONS, SheetLink, sheet_url
from cartnudge.export.repository import Bought, orders_of
from cartnudge.shops.days import Span
from cartnudge.shops.repository import ShopRecord
from cartnudge.timing.policy import major_units
from cartnudge.timing.rules import Rules
from cartnudge.timing.service import rules_of

PAGE_SIZE = 500  # carts read at a time
HEADER = [
    "cart",
    "first seen",
    "last active",
    "status",
    "size",
    "items",
    "total",
    "currency",
    "reminders sent",
    "recovered",
    "order total",
    "reason",
    "email",
    "suppress",
    "unsubscribe",
    "write off",
]
LINK_COLUMNS = frozenset({"suppress", "unsubscribe", "write off"})


@dataclass(frozen=True, slots=True)
class LinkMaker:
    """What signs the rows' links: the public address, the key, and when they expire."""

    public_url: str
    key: bytes
    expires_at: datetime

    @classmethod
    def at(cls, public_url: str, key: bytes, now: datetime) -> LinkMaker:
        return cls(public_url, key, now + LINK_LIFETIME)

    def url(self, shop_id: int, cart_id: int, action: str) -> str:
        return sheet_url(
            self.public_url, self.key, SheetLink(shop_id, cart_id, action, self.expires_at)
        )


def sheet_rows(
    engine: Engine, shop: ShopRecord, span: Span, links: LinkMaker, *, page_size: int = PAGE_SIZE
) -> Iterator[list[Any]]:
    """The rows, a page of carts at a time, each page in its own short read (no connection
    is held while the caller writes)."""
    with reading(engine) as conn:
        rules = rules_of(conn, [shop.id])[shop.id].value
    where = CartFilter(active_since=span.since, active_before=span.until)
    after = None
    while True:
        with reading(engine) as conn:
            page = page_of_carts(conn, shop.id, where, after=after, limit=page_size)
            bought = orders_of(conn, shop.id, [row.id for row in page.rows])
        for row in page.rows:
            yield _row(row, shop, rules, bought.get(row.id), links)
        if page.next_after is None:
            return
        after = page.next_after


def items_text(items: list[Any]) -> str:
    """The items as one cell: ``2 × Green tea; 1 × Mug (blue)``."""  # noqa: RUF002
    parts = []
    for item in items:
        if not isinstance(item, dict):
            continue
        title = str(item.get("title") or "item")
        if item.get("variant"):
            title += f" ({item['variant']})"
        parts.append(f"{item.get('quantity', 1)} × {title}")
    return "; ".join(parts)


def _row(
    row: Any, shop: ShopRecord, rules: Rules, bought: Bought | None, links: LinkMaker
) -> list[Any]:
    zone = ZoneInfo(shop.timezone)
    total = major_units(row.total_minor, row.currency)
    view = {
        "status": row.status,
        "next_wake_at": row.next_wake_at,
        "last_activity_at": row.last_activity_at.isoformat(),
    }
    reason = not_reminded(view, shop.activated_at) or row.status_reason or ""
    return [
        row.id,
        f"{row.first_activity_at.astimezone(zone):%Y-%m-%d %H:%M}",
        f"{row.last_activity_at.astimezone(zone):%Y-%m-%d %H:%M}",
        row.status,
        rules.tier_for(total).name,
        items_text(row.items or []),
        total,
        row.currency or "",
        row.reminders_sent,
        "yes" if bought is not None and bought.recovered else "no",
        _order_total(bought, row.currency),
        reason,
        masked(row.email),
        *(links.url(shop.id, row.id, action) for action in SHEET_ACTIONS),
    ]


def _order_total(bought: Bought | None, currency: str | None) -> Decimal | str | None:
    """The live orders' total net of refunds: a number in the cart's currency, or each
    currency's amount spelled out when the orders were paid in another."""
    if bought is None or not bought.totals:
        return None
    if currency is not None and list(bought.totals) == [currency]:
        return major_units(bought.totals[currency], currency)
    return "; ".join(f"{major_units(minor, code)} {code}" for code, minor in bought.totals.items())
