"""Every SQL statement of data requests, erasure and retention (the ledger's own are in
``ledger_repository``).

Erasing personal data keeps the rows that reports count (carts, sends, orders, clicks) and
clears what identifies the shopper in them; only ``shop/redact`` deletes rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, func, or_, select, update

from cartnudge.db.models import (
    AuditEntry,
    Cart,
    CartStatus,
    Click,
    InboxEvent,
    Order,
    PrivacyLogEntry,
    PrivacyRequest,
    RequestState,
    Send,
    SendMessage,
    SendStatus,
    Shop,
)

carts = Cart
sends = Send
messages = SendMessage
inbox = InboxEvent
orders = Order
audit = AuditEntry
clicks = Click
requests = PrivacyRequest
privacy_log = PrivacyLogEntry
shops = Shop

CLOSED = sorted(s.value for s in CartStatus if s is not CartStatus.OPEN)
# The bodies of requests not yet acted on are what names their shopper: retention keeps them.
_PENDING_BODIES = select(requests.c.inbox_event_id).where(
    requests.c.state != RequestState.DONE.value
)


# What retention clears, by kind: the table, the age that counts, and "still kept".
_EXPIRING: dict[str, tuple[Table, Any, Any]] = {
    "payloads": (
        inbox,
        inbox.c.received_at,
        and_(inbox.c.payload.is_not(None), inbox.c.id.not_in(_PENDING_BODIES)),
    ),
    "decision_inputs": (
        audit,
        audit.c.at,
        or_(audit.c.before.is_not(None), audit.c.after.is_not(None)),
    ),
    # Carts no longer open, idle since the cutoff, still holding the shopper's details.
    "closed_carts": (
        carts,
        carts.c.last_activity_at,
        and_(
            carts.c.status.in_(CLOSED),
            or_(
                carts.c.email.is_not(None),
                carts.c.first_name.is_not(None),
                carts.c.return_url.is_not(None),
            ),
        ),
    ),
    "orders": (orders, orders.c.placed_at, orders.c.email_key.is_not(None)),
}


class PrivacyRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # --- one shopper -------------------------------------------------------------------

    def shopper_carts(
        self, shop_id: int, email_key: str | None, order_refs: Sequence[str]
    ) -> list[Any]:
        """The shopper's carts: those of the address, and those the named orders bought."""
        named: list[Any] = [carts.c.email_key == email_key] if email_key else []
        if order_refs:
            named.append(carts.c.order_ref.in_(order_refs))
            named.append(
                carts.c.id.in_(
                    select(orders.c.cart_id).where(
                        orders.c.shop_id == shop_id, orders.c.external_id.in_(order_refs)
                    )
                )
            )
        if not named:
            return []
        stmt = select(carts).where(carts.c.shop_id == shop_id, or_(*named)).order_by(carts.c.id)
        return list(self.conn.execute(stmt))

    def shopper_orders(
        self,
        shop_id: int,
        email_key: str | None,
        order_refs: Sequence[str],
        cart_ids: Sequence[int],
    ) -> list[Any]:
        named: list[Any] = [orders.c.cart_id.in_(cart_ids)] if cart_ids else []
        if email_key:
            named.append(orders.c.email_key == email_key)
        if order_refs:
            named.append(orders.c.external_id.in_(order_refs))
        if not named:
            return []
        stmt = select(orders).where(orders.c.shop_id == shop_id, or_(*named)).order_by(orders.c.id)
        return list(self.conn.execute(stmt))

    def clicks_of(self, send_ids: Sequence[int]) -> list[Any]:
        if not send_ids:
            return []
        stmt = select(clicks).where(clicks.c.send_id.in_(send_ids)).order_by(clicks.c.id)
        return list(self.conn.execute(stmt))

    def messages_of(self, send_ids: Sequence[int]) -> dict[int, bytes]:
        """The kept copies of these sends' emails (compressed), by send id."""
        if not send_ids:
            return {}
        stmt = select(messages.c.send_id, messages.c.body).where(messages.c.send_id.in_(send_ids))
        return {row.send_id: row.body for row in self.conn.execute(stmt)}

    def events_mentioning(self, shop_id: int, email_key: str) -> list[Any]:
        """Kept bodies and dead-letter reasons of the shop that contain the address, whatever
        cart they belong to (a dead letter has none; a compliance request names it)."""
        needle = email_key.lower()
        stmt = select(inbox.c.id, inbox.c.reason).where(
            inbox.c.shop_id == shop_id,
            or_(
                func.lower(inbox.c.payload).contains(needle, autoescape=True),
                func.lower(inbox.c.reason).contains(needle, autoescape=True),
            ),
        )
        return list(self.conn.execute(stmt))

    def clear_events(self, event_ids: Iterable[int], cart_ids: Sequence[int]) -> int:
        """Drop the kept bodies of these events and of every event of these carts."""
        named = []
        if ids := sorted(set(event_ids)):
            named.append(inbox.c.id.in_(ids))
        if cart_ids:
            named.append(inbox.c.cart_id.in_(cart_ids))
        if not named:
            return 0
        stmt = update(inbox).where(or_(*named), inbox.c.payload.is_not(None)).values(payload=None)
        return self.conn.execute(stmt).rowcount or 0

    def set_texts(self, table: Table, column: str, values: dict[int, str]) -> None:
        """Rewrite one text column of some rows (a scrubbed reason), by id."""
        for row_id, value in values.items():
            self.conn.execute(update(table).where(table.c.id == row_id).values({column: value}))

    def texts(self, table: Table, column: str, where: Any) -> list[tuple[int, Any]]:
        stmt = select(table.c.id, table.c[column]).where(where, table.c[column].is_not(None))
        return [(row[0], row[1]) for row in self.conn.execute(stmt)]

    def identities(self, cart_ids: Sequence[int]) -> list[Any]:
        """(email_key, first_name) of these carts: what free text about them may contain."""
        stmt = select(carts.c.email_key, carts.c.first_name).where(carts.c.id.in_(cart_ids))
        return list(self.conn.execute(stmt))

    def clear_carts(self, cart_ids: Sequence[int], now: datetime) -> int:
        stmt = (
            update(carts)
            .where(carts.c.id.in_(cart_ids))
            .values(email=None, email_key=None, first_name=None, return_url=None, updated_at=now)
        )
        return self.conn.execute(stmt).rowcount or 0

    def close_open(self, cart_ids: Sequence[int], reason: str, now: datetime) -> list[int]:
        """Close the open and expired ones among these carts: with no address they can never
        be reminded, and an expired cart would otherwise reopen when its checkout comes back."""
        stmt = (
            update(carts)
            .where(
                carts.c.id.in_(cart_ids),
                carts.c.status.in_((CartStatus.OPEN.value, CartStatus.EXPIRED.value)),
            )
            .values(
                status=CartStatus.CLOSED.value,
                status_reason=reason,
                next_wake_at=None,
                updated_at=now,
            )
            .returning(carts.c.id)
        )
        return sorted(self.conn.execute(stmt).scalars())

    def clear_sends(self, cart_ids: Sequence[int], reason: str, now: datetime) -> list[int]:
        """Forget where and what the carts' emails were; cancel those not sent. Returns the
        ids of all their sends (their kept and rendered copies go too)."""
        of_carts = sends.c.cart_id.in_(cart_ids)
        self.conn.execute(
            update(sends)
            .where(of_carts, sends.c.status == SendStatus.QUEUED.value)
            .values(status=SendStatus.CANCELLED.value, reason=reason, updated_at=now)
        )
        ids = self.conn.execute(
            update(sends).where(of_carts).values(email_key=None, subject=None).returning(sends.c.id)
        )
        return sorted(ids.scalars())

    def drop_messages(self, send_ids: Sequence[int]) -> int:
        """Delete the kept copies of these sends' emails (they hold the address and name)."""
        if not send_ids:
            return 0
        stmt = delete(messages).where(messages.c.send_id.in_(send_ids))
        return self.conn.execute(stmt).rowcount or 0

    def clear_orders(self, order_ids: Sequence[int]) -> int:
        if not order_ids:
            return 0
        stmt = update(orders).where(orders.c.id.in_(order_ids)).values(email_key=None)
        return self.conn.execute(stmt).rowcount or 0

    # --- retention ---------------------------------------------------------------------

    def expired(self, kind: str, shop_id: int, before: datetime, limit: int) -> list[int]:
        """Ids of rows whose ``kind`` of data (see ``_EXPIRING``) is still kept and older
        than ``before``."""
        table, age, kept = _EXPIRING[kind]
        stmt = select(table.c.id).where(table.c.shop_id == shop_id, age < before, kept)
        return list(self.conn.execute(stmt.limit(limit)).scalars())

    def clear_inputs(self, audit_ids: Sequence[int]) -> int:
        stmt = update(audit).where(audit.c.id.in_(audit_ids)).values(before=None, after=None)
        return self.conn.execute(stmt).rowcount or 0

    # --- requests and the log ----------------------------------------------------------

    def claim_request(self, after_id: int) -> Any | None:
        """The oldest request not done after ``after_id``, with its body, locked for this
        transaction (other workers skip it)."""
        stmt = (
            select(requests, inbox.c.payload)
            .join(inbox, inbox.c.id == requests.c.inbox_event_id)
            .where(requests.c.state != RequestState.DONE.value, requests.c.id > after_id)
            .order_by(requests.c.id)
            .limit(1)
            .with_for_update(of=requests, skip_locked=True)
        )
        return self.conn.execute(stmt).first()

    def finish_request(self, request_id: int, values: dict[str, Any]) -> None:
        self.conn.execute(update(requests).where(requests.c.id == request_id).values(**values))

    def requests_of(self, shop_id: int, limit: int) -> list[Any]:
        stmt = (
            select(requests)
            .where(requests.c.shop_id == shop_id)
            .order_by(requests.c.id.desc())
            .limit(limit)
        )
        return list(self.conn.execute(stmt))

    def log(
        self,
        shop_id: int | None,
        action: str,
        actor: str,
        at: datetime,
        counts: dict[str, int],
        request_id: int | None = None,
    ) -> None:
        """Record what a privacy action did, in counts (never whom it was about)."""
        values = {
            "shop_id": shop_id,
            "action": action,
            "actor": actor,
            "request_id": request_id,
            "at": at,
            "counts": counts,
        }
        self.conn.execute(privacy_log.insert().values(**values))

    # --- a whole shop ------------------------------------------------------------------

    def count_of_shop(self, table: Table, shop_id: int) -> int:
        stmt = select(func.count()).select_from(table).where(table.c.shop_id == shop_id)
        return int(self.conn.execute(stmt).scalar_one())

    def delete_shop(self, shop_id: int) -> None:
        """Every row of the shop goes with it (each table's foreign key cascades)."""
        self.conn.execute(delete(shops).where(shops.c.id == shop_id))
