"""Open carts written straight into the cart list, for tests and benchmarks of the waiter
(thousands of due carts without sending thousands of webhooks)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from cartnudge.db.models import Cart
from cartnudge.db.session import writing

CHUNK = 5000  # rows per transaction


def insert_open_carts(
    engine: Engine,
    shop_id: int,
    count: int,
    *,
    active_at: datetime,
    wake_at: datetime,
    shoppers: bool = False,
) -> None:
    """``count`` open one-item 64.00 EUR carts, last active at ``active_at``, due at ``wake_at``;
    with ``shoppers``, each with its own opted-in address and a return URL (so the sender
    can send them all)."""
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
    carts = Cart
    for start in range(0, count, CHUNK):
        rows = [row] * min(CHUNK, count - start)
        if shoppers:
            rows = [
                {
                    **row,
                    "email": f"shopper{n}@bench.example",
                    "email_key": f"shopper{n}@bench.example",
                    "first_name": "Alex",
                    "accepts_marketing": True,
                    "consent_source": "checkout",
                    "return_url": f"https://shop.example/cart/{n}",
                }
                for n in range(start, start + len(rows))
            ]
        with writing(engine) as conn:
            conn.execute(carts.insert(), rows)
