"""The privacy run: act on pending data requests, then enforce retention.

The loops run it every ``PRIVACY_INTERVAL_S`` (``cartnudge serve`` and ``worker``); the
owner can run it at once with ``cartnudge privacy run``. Several workers may run it at
the same time on PostgreSQL: requests are claimed with ``SKIP LOCKED`` and retention only
clears what is still there.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from cartnudge.config import Settings
from cartnudge.db.engine import forget_old_copies
from cartnudge.db.models import RequestState
from cartnudge.privacy.files import PrivacyFiles
from cartnudge.privacy.requests import CUSTOMER_REDACT, SHOP_REDACT, Handled, process_pending
from cartnudge.privacy.retention import enforce
from cartnudge.privacy.service import ERASING_TABLES, shop_tables

log = logging.getLogger(__name__)

PRIVACY_INTERVAL_S = 300.0  # data requests are answered and retention applied this often


def files_of(settings: Settings) -> PrivacyFiles:
    return PrivacyFiles(settings.resolved_outbox_dir, settings.exports_dir, settings.home)


def run_privacy(engine: Engine, now: datetime, files: PrivacyFiles) -> dict[str, Any]:
    handled = process_pending(engine, now, files)
    removed = enforce(engine, now, files)
    dropped = forget_old_copies(engine, _vacuumed(handled))
    if handled or any(removed.values()):
        log.info(
            "privacy run: %d requests, removed %s",
            len(handled),
            {name: count for name, count in removed.items() if count},
        )
    return {
        "requests": [{"id": h.request_id, "kind": h.kind, "state": h.state} for h in handled],
        "removed": removed,
        "old_copies_dropped": dropped,
    }


def _vacuumed(handled: list[Handled]) -> list[str]:
    """The tables to vacuum on PostgreSQL: those an erasure of this run touched. Retention
    leaves its tables to autovacuum: it clears rows every run on a busy store, where a
    VACUUM every few minutes would cost more than it hides (docs/privacy.md). SQLite
    checkpoints every run whatever it did, which also finishes one an erasure from the
    command line could not."""
    done = {h.kind for h in handled if h.state == RequestState.DONE.value}
    if SHOP_REDACT in done:
        return [str(t.name) for t in shop_tables()]
    return list(ERASING_TABLES) if CUSTOMER_REDACT in done else []
