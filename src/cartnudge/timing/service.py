"""Rules use cases: read a shop's rules, set a new version, roll back, and move the open
carts' timers to what the new rules say. The caller commits. The versioning itself is
shared with every shop document (``cartnudge.shops.versioned``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from cartnudge.shops.documents import DocumentVersion
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.versioned import (
    Current,
    DocumentKind,
    current_documents,
    document_history,
    rollback_document,
    set_document,
)
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


@dataclass(frozen=True, slots=True)
class ShopRules:
    version: int  # 0: the built-in default
    rules: Rules
    body: str

    @classmethod
    def of(cls, current: Current[Rules]) -> ShopRules:
        return cls(current.version, current.value, current.body)


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


def rules_of(conn: Connection, shop_ids: Iterable[int]) -> dict[int, ShopRules]:
    """Each shop's current rules (one query for any number of shops)."""
    return {
        shop_id: ShopRules.of(current)
        for shop_id, current in current_documents(conn, RULES, shop_ids).items()
    }


def rules_history(conn: Connection, shop_id: int) -> list[DocumentVersion]:
    return document_history(conn, RULES, shop_id)


def set_rules(
    conn: Connection,
    shop: ShopRecord,
    text: str,
    now: datetime,
    *,
    actor: str = "owner:cli",
    note: str | None = None,
) -> tuple[ShopRules, bool]:
    """Validate and store ``text`` as the newest version; ``RulesError`` if it is not
    valid (nothing stored). Open carts' timers move to what the new rules say. Returns the
    current rules and whether they changed."""
    current, changed = set_document(conn, RULES, shop, text, now, actor=actor, note=note)
    return ShopRules.of(current), changed


def rollback_rules(
    conn: Connection, shop: ShopRecord, version: int, now: datetime, *, actor: str = "owner:cli"
) -> tuple[ShopRules, bool]:
    """Make an earlier version current again, as a new version (history only grows)."""
    current, changed = rollback_document(conn, RULES, shop, version, now, actor=actor)
    return ShopRules.of(current), changed
