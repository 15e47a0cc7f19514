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
from cartnudge.privacy.files import PrivacyFiles
from cartnudge.privacy.requests import process_pending
from cartnudge.privacy.retention import enforce

log = logging.getLogger(__name__)

PRIVACY_INTERVAL_S = 300.0  # data requests are answered and retention applied this often


def files_of(settings: Settings) -> PrivacyFiles:
    return PrivacyFiles(settings.resolved_outbox_dir, settings.exports_dir)


def run_privacy(engine: Engine, now: datetime, files: PrivacyFiles) -> dict[str, Any]:
    handled = process_pending(engine, now, files)
    removed = enforce(engine, now, files)
    if handled or any(removed.values()):
        log.info(
            "privacy run: %d requests, removed %s",
            len(handled),
            {name: count for name, count in removed.items() if count},
        )
    return {
        "requests": [{"id": h.request_id, "kind": h.kind, "state": h.state} for h in handled],
        "removed": removed,
    }
