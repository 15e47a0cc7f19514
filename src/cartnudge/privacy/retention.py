"""Retention: nothing personal is kept longer than the shop's settings say.

Per shop: raw webhook bodies (default 7 days), the facts decisions read — the before and
after of audit entries — (30 days), and the personal data of carts no longer open, counted
from their last activity, with their orders' addresses and their sends' addresses and kept
emails (180 days). Consent entries are
kept: they are the record that a shopper asked to be left alone. Exports are deleted after
``EXPORTS_KEPT``. Work is done in small transactions, so SQLite's one writer is never held
for long.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from cartnudge.db.session import reading, writing
from cartnudge.privacy.files import PrivacyFiles
from cartnudge.privacy.repository import PrivacyRepository
from cartnudge.privacy.service import scrub_carts
from cartnudge.shops.repository import ShopRecord, ShopRepository

CHUNK = 2000  # rows per transaction
CART_CHUNK = 200  # carts per transaction (each touches its sends, events and files)
ACTOR = "retention"


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Anything older than these instants goes."""

    payloads: datetime
    decisions: datetime
    closed_pii: datetime

    @classmethod
    def of(cls, shop: ShopRecord, now: datetime) -> Cutoffs:
        return cls(
            payloads=now - timedelta(seconds=shop.keep_payloads_s),
            decisions=now - timedelta(seconds=shop.keep_decisions_s),
            closed_pii=now - timedelta(seconds=shop.keep_closed_pii_s),
        )


def enforce(engine: Engine, now: datetime, files: PrivacyFiles) -> dict[str, int]:
    """Apply every shop's retention as of ``now``; what was removed, in counts."""
    with reading(engine) as conn:
        shops = ShopRepository(conn).all()
    total: Counter[str] = Counter()
    for shop in shops:
        counts = enforce_shop(engine, shop, now, files)
        if any(counts.values()):
            with writing(engine) as conn:
                PrivacyRepository(conn).log(shop.id, "retention", ACTOR, now, counts)
        total.update(counts)
    total["exports"] += files.delete_expired_exports(now)
    return {name: total[name] for name in sorted(total)}


def enforce_shop(
    engine: Engine, shop: ShopRecord, now: datetime, files: PrivacyFiles
) -> dict[str, int]:
    cut = Cutoffs.of(shop, now)
    counts: Counter[str] = Counter()

    def expired(kind: str, before: datetime, limit: int = CHUNK) -> Find:
        return lambda repo: repo.expired(kind, shop.id, before, limit)

    def closed_carts(repo: PrivacyRepository, ids: list[int]) -> int:
        scrubbed = scrub_carts(repo, shop, ids, [], now, files)
        counts["events"] += scrubbed["events"]
        counts["email_copies"] += scrubbed["email_copies"]
        counts["email_files"] += scrubbed["email_files"]
        return scrubbed["carts"]

    counts["payloads"] = _until_done(
        engine, expired("payloads", cut.payloads), lambda r, ids: r.clear_events(ids, [])
    )
    counts["decision_inputs"] = _until_done(
        engine, expired("decision_inputs", cut.decisions), PrivacyRepository.clear_inputs
    )
    counts["closed_carts"] = _until_done(
        engine, expired("closed_carts", cut.closed_pii, CART_CHUNK), closed_carts
    )
    counts["orders"] = _until_done(
        engine, expired("orders", cut.closed_pii), PrivacyRepository.clear_orders
    )
    return dict(counts)


Find = Callable[[PrivacyRepository], list[int]]


def _until_done(
    engine: Engine, find: Find, clear: Callable[[PrivacyRepository, list[int]], int]
) -> int:
    """Find expired rows in a read, and clear them in a short write, until none are left.
    A shop with nothing expired never takes the write lock (SQLite has only one)."""
    done = 0
    while True:
        with reading(engine) as conn:
            ids = find(PrivacyRepository(conn))
        if not ids:
            return done
        with writing(engine) as conn:
            changed = clear(PrivacyRepository(conn), ids)
        if changed == 0:  # another worker cleared them first
            return done
        done += changed
