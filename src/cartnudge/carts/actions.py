"""What an owner can do to one cart: stop it (suppress) or give up on it (write off).

Each stops the cart's timer, cancels any reminder still queued, and leaves an audit row.
The status climbs like any other (``carts.state``): a later event never reopens a stopped
cart, and a purchase still records itself over it. The caller commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from cartnudge.carts.repository import CartRepository
from cartnudge.carts.state import STATUS_RANK
from cartnudge.db.audit import write_audit
from cartnudge.db.models import CartStatus
from cartnudge.delivery.service import cancel_cart_sends
from cartnudge.events import version_of

OWNER_STOPS = (CartStatus.SUPPRESSED, CartStatus.WRITTEN_OFF)


class ActionError(ValueError):
    """An action that cannot apply to this cart; the message says why."""


def stop_cart(
    conn: Connection,
    cart_id: int,
    status: CartStatus,
    now: datetime,
    *,
    reason: str | None,
    actor: str = "owner:cli",
    shop_id: int | None = None,
) -> dict[str, Any]:
    """Suppress or write off a cart (of ``shop_id``, when given). Returns what changed
    (status before and after, and the sends cancelled)."""
    assert status in OWNER_STOPS
    repo = CartRepository(conn)
    row = repo.get(shop_id, cart_id)
    if row is None:
        raise ActionError(f"no cart {cart_id}" + (" in this shop" if shop_id else ""))
    current = CartStatus(row.status)
    if current == status:
        raise ActionError(f"cart {cart_id} is already {status.value}")
    if STATUS_RANK[current] >= STATUS_RANK[status]:
        raise ActionError(f"cart {cart_id} is {current.value}; it cannot become {status.value}")
    versions = dict(row.versions or {})
    versions["status"] = version_of(now, "owner", actor)
    repo.update(
        cart_id,
        {
            "status": status.value,
            "status_reason": reason,
            "next_wake_at": None,
            "versions": versions,
        },
        now,
    )
    cancelled = cancel_cart_sends(conn, cart_id, now, f"cart {status.value} by the owner")
    change = {"before": {"status": current.value}, "after": {"status": status.value}}
    write_audit(
        repo.conn,
        [
            {
                "shop_id": row.shop_id,
                "cart_id": cart_id,
                "at": now,
                "actor": actor,
                "action": f"status:{status.value}",
                "reason": reason,
                **change,
            }
        ],
    )
    return {"cart_id": cart_id, **change, "cancelled_sends": cancelled}
