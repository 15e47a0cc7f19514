"""Dead letters: list them, and replay one through the lanes' own parser once the cause is
fixed. It sits above the lanes (which sit above the service), so nothing imports in a circle."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection

from cartnudge.db.models import InboxStatus
from cartnudge.events import CartEvent, Unapplicable
from cartnudge.intake.lanes import parse_payload
from cartnudge.intake.repository import InboxRepository
from cartnudge.intake.service import Outcome, Parsed, apply_recorded
from cartnudge.shops.repository import ShopRepository


def dead_letter_info(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "shop_id": row.shop_id,
        "source": row.source,
        "external_id": row.external_id,
        "topic": row.topic,
        "reason": row.reason,
        "received_at": row.received_at.isoformat(),
    }


class ReplayError(ValueError):
    """``events replay`` was asked for something it cannot do."""


def dead_letters(conn: Connection, shop_id: int | None = None) -> list[dict[str, Any]]:
    return [dead_letter_info(row) for row in InboxRepository(conn).dead(shop_id)]


def replay(conn: Connection, inbox_id: int, now: datetime) -> Outcome:
    """Parse a dead letter's kept body again and apply it. The caller commits."""
    repo = InboxRepository(conn)
    row = repo.lock(inbox_id)
    if row is None:
        raise ReplayError(f"no event {inbox_id}")
    if row.status != InboxStatus.DEAD:
        raise ReplayError(f"event {inbox_id} is {row.status}, not a dead letter")
    shop = ShopRepository(conn).by_id(row.shop_id)
    assert shop is not None
    try:
        payload = orjson.loads(row.payload or "")
    except orjson.JSONDecodeError:
        parsed: Parsed = Unapplicable("kept body is not JSON")
    else:
        parsed = parse_payload(
            row.source, row.topic, row.external_id, payload, shop, row.received_at
        )
    if isinstance(parsed, Unapplicable):
        repo.keep_reason(inbox_id, str(parsed))
        return Outcome("dead", inbox_id, reason=str(parsed))
    repo.mark_applied(inbox_id, parsed.occurred_at if isinstance(parsed, CartEvent) else None)
    return apply_recorded(conn, shop, inbox_id, parsed, now)
