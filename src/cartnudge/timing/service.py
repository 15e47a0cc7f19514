"""Rules as a shop document: read a shop's rules, and move the open carts' timers to what
new rules say. Setting, rolling back and the history are shared with every shop document
(``cartnudge.shops.versioned`` with ``RULES``). The caller commits."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, Engine

from cartnudge.db.session import writing
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.versioned import Current, DocumentKind, current_documents
from cartnudge.timing.policy import CartClock, next_due
from cartnudge.timing.repository import START, WaiterRepository
from cartnudge.timing.rules import (
    DEFAULT_DOCUMENT,
    MAX_DOCUMENT_BYTES,
    Rules,
    RulesError,
    cached_rules,
    parse_rules,
)

MOVE_BATCH = 5_000  # timers moved per transaction: a few tens of milliseconds of work


def reschedule_open_carts(conn: Connection, shop: ShopRecord, rules: Rules) -> int:
    """Move the timers of the shop's open carts to what ``rules`` say: the first
    ``MOVE_BATCH`` now, in the change's transaction (every cart of most shops), and the
    rest recorded for the loops (``move_timers``). Until a cart's timer has moved, the
    waiter still decides by the new rules when it wakes it; only a cart the new rules
    want sooner can be a batch or so late. How many moved now."""
    repo = WaiterRepository(conn)
    moved, last = _move_batch(repo, shop.id, rules, after=START)
    repo.timers_left(shop.id, last if moved == MOVE_BATCH else None)
    return moved


def move_timers(engine: Engine, *, batches: int = 20) -> int:
    """Move timers left by rules changes, a batch per transaction, up to ``batches`` in
    this pass (the loops' other work is not kept waiting). How many moved."""
    total = 0
    for _ in range(batches):
        with writing(engine, "timers") as conn:
            repo = WaiterRepository(conn)
            left = repo.next_timer_move()
            if left is None:
                return total
            rules = rules_of(conn, [left.shop_id])[left.shop_id].value
            after = (left.after_activity_at, left.after_cart_id)
            moved, last = _move_batch(repo, left.shop_id, rules, after=after)
            repo.timers_left(left.shop_id, last if moved == MOVE_BATCH else None)
        total += moved
    return total


def _move_batch(
    repo: WaiterRepository, shop_id: int, rules: Rules, *, after: tuple[datetime, int]
) -> tuple[int, tuple[datetime, int]]:
    rows = repo.open_with_timers(shop_id, after=after, limit=MOVE_BATCH)
    repo.set_wakes(
        [{"_cart_id": row.id, "_wake": next_due(CartClock.from_row(row), rules)} for row in rows]
    )
    return len(rows), (rows[-1].last_activity_at, rows[-1].id) if rows else after


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
