"""Backfills (CSV import, Stripe reconcile): many deliveries through the webhooks' own path.

Deliveries go through ``intake.service.ingest_batch``, the webhooks' own path, so the inbox's unique
(shop, source, external id) makes a re-run a no-op and dead rows are kept with their reason.
Rows are committed ``BATCH_ROWS`` per transaction; a dry run applies everything in one
transaction and rolls it back, so its counts are exactly what a real run would do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from cartnudge.db.session import reading, writing
from cartnudge.db.turnstile import turnstile
from cartnudge.events import CartEvent
from cartnudge.intake.repository import InboxRepository
from cartnudge.intake.service import Delivery, ingest_batch
from cartnudge.shops.repository import ShopRecord

BATCH_ROWS = 500  # deliveries applied per transaction
MAX_LISTED_BAD_ROWS = 100  # the summary lists this many reasons; every bad row is kept


@dataclass
class Tally:
    """What a backfill did (or, in a dry run, would do).

    Every delivery counts once in ``created``, ``updated``, ``duplicates`` or
    ``dead_letters``; ``purchases`` counts the applied ones that were purchases.
    """

    rows: int = 0
    created: int = 0
    updated: int = 0
    purchases: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    not_reminded_before_activation: int = 0
    bad_rows: list[str] = field(default_factory=list)
    cart_ids: set[int] = field(default_factory=set)

    def summary(self, *, dry_run: bool, unit: str = "rows") -> dict[str, Any]:
        return {
            unit: self.rows,
            "created": self.created,
            "updated": self.updated,
            "purchases": self.purchases,
            "duplicates": self.duplicates,
            "dead_letters": self.dead_letters,
            "not_reminded_before_activation": self.not_reminded_before_activation,
            "dry_run": dry_run,
            "bad_rows": self.bad_rows[:MAX_LISTED_BAD_ROWS],
        }


def apply_all(
    engine: Engine,
    shop: ShopRecord,
    batch: Sequence[Delivery],
    now: datetime,
    *,
    dry_run: bool = False,
) -> Tally:
    """Ingest every delivery, ``BATCH_ROWS`` per transaction; a dry run rolls all back."""
    tally = Tally(rows=len(batch))
    if dry_run:
        with _rolled_back(engine) as conn:
            for start in range(0, len(batch), BATCH_ROWS):
                _ingest(conn, batch[start : start + BATCH_ROWS], now, tally)
            tally.not_reminded_before_activation = _before_activation(conn, shop, tally.cart_ids)
        return tally
    for start in range(0, len(batch), BATCH_ROWS):
        with writing(engine, "backfill") as conn:
            _ingest(conn, batch[start : start + BATCH_ROWS], now, tally)
    with reading(engine) as conn:
        tally.not_reminded_before_activation = _before_activation(conn, shop, tally.cart_ids)
    return tally


def _ingest(conn: Connection, deliveries: Sequence[Delivery], now: datetime, tally: Tally) -> None:
    for delivery, outcome in zip(deliveries, ingest_batch(conn, deliveries, now), strict=True):
        event = delivery.parsed
        if outcome.status == "duplicate":
            tally.duplicates += 1
        elif outcome.status == "dead":
            tally.dead_letters += 1
            tally.bad_rows.append(outcome.reason or "")
        elif isinstance(event, CartEvent):
            tally.purchases += event.is_purchase
            if outcome.cart_id is not None:
                tally.cart_ids.add(outcome.cart_id)
            tally.updated += not outcome.created
            tally.created += outcome.created


def _before_activation(conn: Connection, shop: ShopRecord, cart_ids: set[int]) -> int:
    """Open carts this run touched that will never be reminded: older than activation."""
    return InboxRepository(conn).count_never_reminded(shop.id, shop.activated_at, cart_ids)


@contextmanager
def _rolled_back(engine: Engine) -> Iterator[Connection]:
    """A writing transaction that is always rolled back: the dry run's unit of work."""
    with turnstile(engine, "backfill"), engine.connect() as conn:
        conn.execution_options(immediate=True)
        tx = conn.begin()
        try:
            yield conn
        finally:
            tx.rollback()
