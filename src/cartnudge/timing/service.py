"""Rules as a shop document: read a shop's rules, and move the open carts' timers to what
new rules say. Setting, rolling back and the history are shared with every shop document
(``cartnudge.shops.versioned`` with ``RULES``). The caller commits."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection

from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.versioned import Current, DocumentKind, current_documents
from cartnudge.timing.policy import CartClock, next_due
from cartnudge.timing.repository import WaiterRepository
from cartnudge.timing.rules import (
    DEFAULT_DOCUMENT,
    MAX_DOCUMENT_BYTES,
    Rules,
    RulesError,
    cached_rules,
    parse_rules,
)


def reschedule_open_carts(conn: Connection, shop: ShopRecord, rules: Rules) -> int:
    """Move the timer of every open cart that has one to what ``rules`` say."""
    repo = WaiterRepository(conn)
    wakes = [
        {"_cart_id": row.id, "_wake": next_due(CartClock.from_row(row), rules)}
        for row in repo.open_with_timers(shop.id)
    ]
    repo.set_wakes(wakes)
    return len(wakes)


RULES = DocumentKind(
    name="rules",
    parse=parse_rules,
    load=cached_rules,
    default_body=DEFAULT_DOCUMENT,
    error=RulesError,
    max_bytes=MAX_DOCUMENT_BYTES,
    after_set=reschedule_open_carts,
    plural=True,
)


def rules_of(conn: Connection, shop_ids: Iterable[int]) -> dict[int, Current[Rules]]:
    """Each shop's current rules (one query for any number of shops); set, roll back and
    list them with ``cartnudge.shops.versioned`` and ``RULES``."""
    return current_documents(conn, RULES, shop_ids)
