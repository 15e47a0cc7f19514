"""Retention: nothing personal is kept longer than the shop's settings say.

Per shop: raw webhook bodies (default 7 days), the facts decisions read — the before and
after of audit entries — (30 days), and the personal data of carts no longer open, counted
from their last activity, with their orders' addresses (180 days). Consent entries are
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

from cartnudge.db.session import writing
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
    with writing(engine) as conn:
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

    def payloads(repo: PrivacyRepository) -> int:
        ids = repo.expired("payloads", shop.id, cut.payloads, CHUNK)
        return repo.clear_events(ids, []) if ids else 0

    def inputs(repo: PrivacyRepository) -> int:
        ids = repo.expired("decision_inputs", shop.id, cut.decisions, CHUNK)
        return repo.clear_inputs(ids) if ids else 0

    def orders(repo: PrivacyRepository) -> int:
        ids = repo.expired("orders", shop.id, cut.closed_pii, CHUNK)
        return repo.clear_orders(ids)

    def closed_carts(repo: PrivacyRepository) -> int:
        ids = repo.expired("closed_carts", shop.id, cut.closed_pii, CART_CHUNK)
        if not ids:
            return 0
        scrubbed = scrub_carts(repo, shop, ids, [], now, files)
        counts["events"] += scrubbed["events"]
        counts["email_files"] += scrubbed["email_files"]
        return scrubbed["carts"]

    counts["payloads"] = _until_done(engine, payloads)
    counts["decision_inputs"] = _until_done(engine, inputs)
    counts["closed_carts"] = _until_done(engine, closed_carts)
    counts["orders"] = _until_done(engine, orders)
    return dict(counts)


def _until_done(engine: Engine, step: Callable[[PrivacyRepository], int]) -> int:
    """Run ``step`` one transaction at a time until it finds nothing more to do."""
    done = 0
    while True:
        with writing(engine) as conn:
            changed = step(PrivacyRepository(conn))
        done += changed
        if changed == 0:
            return done
