"""Rules use cases: read a shop's rules, set a new version, roll back, and move the open
carts' timers to what the new rules say. The caller commits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, update

from cartnudge.carts.repository import CartRepository
from cartnudge.db.models import Cart, CartStatus, table_of
from cartnudge.shops.documents import DocumentRepository, DocumentVersion
from cartnudge.shops.repository import ShopRecord
from cartnudge.timing.policy import CartClock, next_due
from cartnudge.timing.rules import DEFAULT_DOCUMENT, Rules, cached_rules, parse_rules

RULES = "rules"
carts = table_of(Cart)
_SET_WAKE = (
    update(carts).where(carts.c.id == bindparam("_cart_id")).values(next_wake_at=bindparam("wake"))
)


class RulesVersionError(ValueError):
    """A version that the shop's rules never had."""


@dataclass(frozen=True, slots=True)
class ShopRules:
    version: int  # 0: the built-in default
    rules: Rules
    body: str


DEFAULT = DocumentVersion(0, DEFAULT_DOCUMENT, None, "default", "built-in default")


def rules_of(conn: Connection, shop_ids: Iterable[int]) -> dict[int, ShopRules]:
    """Each shop's current rules (one query for any number of shops)."""
    ids = set(shop_ids)
    stored = DocumentRepository(conn).latest(ids, RULES)
    out = {}
    for shop_id in ids:
        doc = stored.get(shop_id, DEFAULT)
        out[shop_id] = ShopRules(doc.version, cached_rules(doc.body), doc.body)
    return out


def rules_history(conn: Connection, shop_id: int) -> list[DocumentVersion]:
    return [DEFAULT, *DocumentRepository(conn).history(shop_id, RULES)]


def rules_version(conn: Connection, shop_id: int, version: int) -> DocumentVersion:
    if version == 0:
        return DEFAULT
    doc = DocumentRepository(conn).version(shop_id, RULES, version)
    if doc is None:
        raise RulesVersionError(f"the rules have no version {version} (see `rules history`)")
    return doc


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
    valid (nothing stored). Returns the current rules and whether they changed."""
    rules = parse_rules(text)
    current = rules_of(conn, [shop.id])[shop.id]
    if text == current.body:
        return current, False
    stored = DocumentRepository(conn).add(
        shop.id, RULES, current.version + 1, text, now=now, actor=actor, note=note
    )
    CartRepository(conn).audit_many(
        [
            {
                "shop_id": shop.id,
                "cart_id": None,
                "at": now,
                "actor": actor,
                "action": "rules:set",
                "reason": note,
                "before": {"rules_version": current.version},
                "after": {"rules_version": stored.version},
            }
        ]
    )
    reschedule_open_carts(conn, shop, rules)
    return ShopRules(stored.version, rules, text), True


def rollback_rules(
    conn: Connection, shop: ShopRecord, version: int, now: datetime, *, actor: str = "owner:cli"
) -> tuple[ShopRules, bool]:
    """Make an earlier version current again, as a new version (history only grows)."""
    doc = rules_version(conn, shop.id, version)
    return set_rules(conn, shop, doc.body, now, actor=actor, note=f"rollback to version {version}")


def reschedule_open_carts(conn: Connection, shop: ShopRecord, rules: Rules) -> int:
    """Move the timer of every open cart that has one to what ``rules`` say."""
    rows = conn.execute(
        select(
            carts.c.id,
            carts.c.status,
            carts.c.last_activity_at,
            carts.c.total_minor,
            carts.c.currency,
            carts.c.reminders_sent,
            carts.c.last_reminder_at,
        ).where(
            carts.c.shop_id == shop.id,
            carts.c.status == CartStatus.OPEN.value,
            carts.c.next_wake_at.is_not(None),
        )
    ).all()
    params = [
        {
            "_cart_id": row.id,
            "wake": next_due(CartClock.from_row(row), rules),
        }
        for row in rows
    ]
    if params:
        conn.execute(_SET_WAKE, params)
    return len(params)
