"""The owner's kill switch: pause all sending for a shop, and resume it.

A pause holds every reminder of the shop from its next hand-off on, including one already
claimed (``delivery.repository``'s hand-off checks the shop in the same statement);
nothing is cancelled, and resuming makes what the pause held due at once. Both leave an
audit row saying who, when and why. The caller commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from cartnudge.db.audit import write_audit
from cartnudge.delivery.service import release_paused_sends
from cartnudge.shops.repository import ShopRecord, ShopRepository

MAX_REASON = 500  # characters


class ControlError(ValueError):
    """The shop is already in the state asked for; the message says so."""


def pause_sending(
    conn: Connection, shop: ShopRecord, now: datetime, *, actor: str, reason: str | None
) -> None:
    if shop.paused_at is not None:
        raise ControlError(
            f"{shop.slug}: sending is already paused (since {shop.paused_at:%Y-%m-%d %H:%M} UTC)"
        )
    reason = (reason or "").strip()[:MAX_REASON] or None
    ShopRepository(conn).update(
        shop.id, {"paused_at": now, "paused_by": actor[:64], "paused_reason": reason}
    )
    _audit(conn, shop, now, actor, "shop:paused", reason, before=False, after=True)


def resume_sending(conn: Connection, shop: ShopRecord, now: datetime, *, actor: str) -> int:
    """Resume; how many held reminders are now due."""
    if shop.paused_at is None:
        raise ControlError(f"{shop.slug}: sending is not paused")
    ShopRepository(conn).update(
        shop.id, {"paused_at": None, "paused_by": None, "paused_reason": None}
    )
    released = release_paused_sends(conn, shop.id, now)
    _audit(conn, shop, now, actor, "shop:resumed", None, before=True, after=False)
    return released


def _audit(
    conn: Connection,
    shop: ShopRecord,
    now: datetime,
    actor: str,
    action: str,
    reason: str | None,
    *,
    before: bool,
    after: bool,
) -> None:
    write_audit(
        conn,
        [
            {
                "shop_id": shop.id,
                "cart_id": None,
                "at": now,
                "actor": actor[:64],
                "action": action,
                "reason": reason,
                "before": {"paused": before},
                "after": {"paused": after},
            }
        ],
    )
