"""Every SQL statement of intake: the inbox of deliveries, and the requests it queues."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, insert, select, update

from cartnudge.db.models import (
    Cart,
    CartStatus,
    InboxEvent,
    InboxStatus,
    PrivacyRequest,
    RequestState,
)
from cartnudge.db.portable import insert_many_returning, select_in

inbox = InboxEvent
privacy = PrivacyRequest
carts_t = Cart

IDS_PER_QUERY = 500  # ids per ``IN (...)``: well under every engine's limit on parameters

_INSERT_PRIVACY = insert(privacy)


class Recorded(NamedTuple):
    """What the inbox holds of a delivery seen before."""

    id: int
    status: str
    reason: str | None
    cart_id: int | None


class InboxRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def insert_new(self, rows: list[dict[str, Any]]) -> dict[tuple[int, str, str], int]:
        """Insert the inbox rows; the ids of those that were new, by identity."""
        returned = insert_many_returning(
            self.conn,
            inbox,
            rows,
            conflict=("shop_id", "source", "external_id"),
            returning=("id", "shop_id", "source", "external_id"),
        )
        return {(r.shop_id, r.source, r.external_id): r.id for r in returned}

    def recorded(
        self, identities: Sequence[tuple[int, str, str]]
    ) -> dict[tuple[int, str, str], Recorded]:
        """The deliveries among these (shop id, source, external id) already in the inbox."""
        wanted = set(identities)
        # One query for the whole batch, by the external id alone (the inbox's unique key
        # leads with it): another shop's or source's delivery with the same id is read
        # and left out here.
        rows = select_in(
            self.conn,
            inbox,
            ("shop_id", "source", "external_id", "id", "status", "reason", "cart_id"),
            where={},
            column="external_id",
            values=sorted({external_id for _, _, external_id in wanted}),
        )
        found: dict[tuple[int, str, str], Recorded] = {}
        for shop_id, source, external_id, *row in rows:
            if (shop_id, source, external_id) in wanted:
                found[(shop_id, source, external_id)] = Recorded(*row)
        return found

    def queue_compliance(self, shop_id: int, kind: str, inbox_id: int, now: datetime) -> None:
        """A compliance request for the privacy stage to carry out."""
        self.conn.execute(
            _INSERT_PRIVACY,
            {
                "shop_id": shop_id,
                "kind": kind,
                "inbox_event_id": inbox_id,
                "state": RequestState.PENDING.value,
                "received_at": now,
            },
        )

    def link_cart(self, inbox_id: int, cart_id: int) -> None:
        """Note the cart a replayed delivery moved (a fresh one is inserted naming it)."""
        self.conn.execute(update(inbox).where(inbox.c.id == inbox_id).values(cart_id=cart_id))

    def dead(self, shop_id: int | None = None) -> list[Any]:
        stmt = select(inbox).where(inbox.c.status == InboxStatus.DEAD)
        if shop_id is not None:
            stmt = stmt.where(inbox.c.shop_id == shop_id)
        return list(self.conn.execute(stmt.order_by(inbox.c.id)))

    def lock(self, inbox_id: int) -> Any | None:
        return self.conn.execute(
            select(inbox).where(inbox.c.id == inbox_id).with_for_update()
        ).first()

    def keep_reason(self, inbox_id: int, reason: str) -> None:
        self.conn.execute(update(inbox).where(inbox.c.id == inbox_id).values(reason=reason))

    def mark_applied(self, inbox_id: int, occurred_at: datetime | None) -> None:
        self.conn.execute(
            update(inbox)
            .where(inbox.c.id == inbox_id)
            .values(status=InboxStatus.APPLIED, reason=None, occurred_at=occurred_at)
        )

    def count_never_reminded(self, shop_id: int, activated_at: datetime, cart_ids: set[int]) -> int:
        """Of these carts, the open ones that will never be reminded: older than activation."""
        ids, found = sorted(cart_ids), 0
        for start in range(0, len(ids), IDS_PER_QUERY):
            stmt = select(carts_t.c.id).where(
                carts_t.c.shop_id == shop_id,
                carts_t.c.id.in_(ids[start : start + IDS_PER_QUERY]),
                carts_t.c.status == CartStatus.OPEN,
                carts_t.c.next_wake_at.is_(None),
                carts_t.c.last_activity_at < activated_at,
            )
            found += len(self.conn.execute(stmt).all())
        return found
