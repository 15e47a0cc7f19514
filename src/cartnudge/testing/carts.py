"""Open carts written straight into the cart list, for tests and benchmarks of the waiter
(thousands of due carts without sending thousands of webhooks)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from cartnudge.db.models import Cart, table_of
from cartnudge.db.session import writing

CHUNK = 5000  # rows per transaction


def insert_open_carts(
    engine: Engine, shop_id: int, count: int, *, active_at: datetime, wake_at: datetime
) -> None:
    """``count`` open one-item 64.00 EUR carts, last active at ``active_at``, due at ``wake_at``."""
    row = {
        "shop_id": shop_id,
        "status": "open",
        "source": "storefront",
        "items": [{"title": "Mug", "quantity": 1, "unit_price_minor": 6400}],
        "currency": "EUR",
        "total_minor": 6400,
        "saved_link": False,
        "first_activity_at": active_at,
        "last_activity_at": active_at,
        "next_wake_at": wake_at,
        "versions": {},
        "created_at": active_at,
        "updated_at": active_at,
        "reminders_sent": 0,
    }
    carts = table_of(Cart)
    for start in range(0, count, CHUNK):
        with writing(engine) as conn:
            conn.execute(carts.insert(), [row] * min(CHUNK, count - start))
