"""Every SQL statement of the sender: claim due sends, look up what the gates need,
record what happened, and cancel or release pending sends."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    LargeBinary,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from cartnudge.db.models import Cart, CartStatus, Send, SendMessage, SendStatus, Shop
from cartnudge.db.types import UtcDateTime

sends = Send
carts = Cart
shops = Shop
messages = SendMessage

# Statuses of a send that may have reached the shopper: do-not-disturb counts them all.
REACHED = (SendStatus.SENDING.value, SendStatus.SENT.value, SendStatus.AMBIGUOUS.value)
# Sends that have not left: queued, or claimed by a worker that has not handed them over.
_PENDING = or_(
    sends.c.status == SendStatus.QUEUED.value,
    and_(sends.c.status == SendStatus.SENDING.value, sends.c.handed_at.is_(None)),
)
# Why a send waits: its shop cannot send yet. Setting the identity releases these.
HELD = (
    "held: the shop has no sender identity or postal address yet "
    "(cartnudge shop set SHOP --sender 'Name <address>' --address '…')"
)

# Why a send waits: the owner paused the shop's sending. Resuming releases these.
PAUSED = "held: sending is paused for this shop (resume it in the dashboard or with shop resume)"

# The queued sends whose time has come, with what the gates and the email need of their
# cart. On PostgreSQL the send rows stay locked by this transaction and other workers
# skip them; on SQLite the writing transaction holds the only write lock.
_DUE = (
    select(
        sends.c.id,
        sends.c.shop_id,
        sends.c.cart_id,
        sends.c.step,
        sends.c.attempts,
        sends.c.due_at,
        sends.c.rules_version,
        carts.c.status.label("cart_status"),
        carts.c.email,
        carts.c.email_key,
        carts.c.first_name,
        carts.c.locale,
        carts.c.timezone,
        carts.c.accepts_marketing,
        carts.c.consent_source,
        carts.c.return_url,
        carts.c.saved_link,
        carts.c["items"],  # ``.items`` is the collection's own method
        carts.c.currency,
        carts.c.total_minor,
        carts.c.subtotal_minor,
        carts.c.discount_minor,
        carts.c.shipping_minor,
        carts.c.tax_minor,
    )
    .join(carts, carts.c.id == sends.c.cart_id)
    .where(
        sends.c.status == SendStatus.QUEUED.value,
        sends.c.due_at <= bindparam("now", type_=UtcDateTime()),
    )
    .order_by(sends.c.due_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True, of=sends)
)
# Claimed sends whose worker's lease has run out: it stopped before recording them.
_STRANDED = (
    select(sends.c.id, sends.c.provider, sends.c.handed_at)
    .where(
        sends.c.status == SendStatus.SENDING.value,
        sends.c.claimed_until <= bindparam("now", type_=UtcDateTime()),
    )
    .with_for_update(skip_locked=True)
)
# The latest reminder that may have reached each address, per cart (do-not-disturb).
_REMINDED = (
    select(sends.c.email_key, sends.c.cart_id, func.max(sends.c.sent_at).label("at"))
    .where(
        sends.c.shop_id == bindparam("shop_id"),
        sends.c.email_key.in_(bindparam("email_keys", expanding=True)),
        sends.c.sent_at.is_not(None),
        sends.c.status.in_(REACHED),
    )
    .group_by(sends.c.email_key, sends.c.cart_id)
)
_UPDATE = update(sends).where(sends.c.id == bindparam("_send_id"))
# The hand-off: only a send still claimed and never handed over, of a cart still open. On
# SQLite the write lock, on PostgreSQL the row locks order it with a purchase's transaction:
# a purchase stored first stops the email; one stored after finds it gone.
_HAND_OFF = (
    update(sends)
    .where(
        sends.c.id == bindparam("send_id"),
        sends.c.status == SendStatus.SENDING.value,
        sends.c.handed_at.is_(None),
        select(carts.c.id)
        .where(carts.c.id == sends.c.cart_id, carts.c.status == CartStatus.OPEN.value)
        .exists(),
        # The owner's kill switch holds from the next hand-off on, even for a send claimed
        # before it was thrown.
        ~select(shops.c.id)
        .where(shops.c.id == sends.c.shop_id, shops.c.paused_at.is_not(None))
        .exists(),
    )
    .values(handed_at=bindparam("now", type_=UtcDateTime()))
)
# The email's copy, written with the hand-off: a retry's hand-off replaces the copy of an
# attempt that never left (a copy is only ever replaced before its email is handed over).
_KEEP_COLUMNS = ["send_id", "shop_id", "stored_at", "body"]
_KEPT = ("stored_at", "body")

# PostgreSQL: the mark and the copy in one statement (a data-modifying CTE), so keeping the
# email costs no round trip; the hand-off autocommits it, and the email never goes without
# its copy.
_handed = _HAND_OFF.returning(sends.c.id, sends.c.shop_id).cte("handed")
_pg_keep = postgresql.insert(messages).from_select(
    _KEEP_COLUMNS,
    select(
        _handed.c.id,
        _handed.c.shop_id,
        bindparam("now", type_=UtcDateTime()),
        bindparam("body", type_=LargeBinary()),
    ),
)
_HAND_OFF_KEEPING = _pg_keep.on_conflict_do_update(
    index_elements=[messages.c.send_id],
    set_={name: _pg_keep.excluded[name] for name in _KEPT},
).returning(messages.c.send_id)
# SQLite: the mark, then the copy, in the hand-off's one transaction (no round trips there).
_sqlite_keep = sqlite.insert(messages).values(
    send_id=bindparam("send_id"),
    shop_id=select(sends.c.shop_id).where(sends.c.id == bindparam("send_id")).scalar_subquery(),
    stored_at=bindparam("now", type_=UtcDateTime()),
    body=bindparam("body", type_=LargeBinary()),
)
_KEEP = _sqlite_keep.on_conflict_do_update(
    index_elements=[messages.c.send_id],
    set_={name: _sqlite_keep.excluded[name] for name in _KEPT},
)
_PAUSED = (
    select(shops.c.paused_at)
    .join(sends, sends.c.shop_id == shops.c.id)
    .where(sends.c.id == bindparam("send_id"))
)
_CART_STATUS = (
    select(carts.c.status)
    .join(sends, sends.c.cart_id == carts.c.id)
    .where(sends.c.id == bindparam("send_id"))
)
# The sends of carts about to be merged, locked: a worker about to hand one over waits
# for the merge, and then finds a cancelled one withdrawn.
_OF_CARTS = (
    select(sends.c.id, sends.c.cart_id, sends.c.step, sends.c.status, sends.c.handed_at)
    .where(
        sends.c.shop_id == bindparam("shop_id"),
        sends.c.cart_id.in_(bindparam("cart_ids", expanding=True)),
    )
    .order_by(sends.c.id)
    .with_for_update()
)
_CANCEL_COPY = (
    update(sends)
    .where(sends.c.id == bindparam("_send_id"), _PENDING)
    .values(
        status=SendStatus.CANCELLED.value,
        reason=bindparam("_reason"),
        updated_at=bindparam("_at", type_=UtcDateTime()),
    )
)
_LEASE = (
    update(sends)
    .where(
        sends.c.id.in_(bindparam("ids", expanding=True)),
        sends.c.status == SendStatus.SENDING.value,
    )
    .values(claimed_until=bindparam("until", type_=UtcDateTime()))
)


def address_lock_key(shop_id: int, email_key: str) -> int:
    """A signed 64-bit key for PostgreSQL's advisory locks, one per (shop, address)."""
    digest = hashlib.blake2b(f"{shop_id}\x00{email_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class SenderRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def claim_due(self, now: datetime, limit: int) -> list[Any]:
        return list(self.conn.execute(_DUE, {"now": now, "limit": limit}))

    def stranded(self, now: datetime) -> list[Any]:
        return list(self.conn.execute(_STRANDED, {"now": now}))

    def lock_addresses(self, pairs: Iterable[tuple[int, str]]) -> None:
        """Serialise the do-not-disturb check per address across workers (PostgreSQL):
        a second worker about another cart of the same address waits until the first
        has committed its send, then sees it. Taken in key order, so never a deadlock.
        SQLite's single writer serialises already."""
        if self.conn.dialect.name != "postgresql":
            return
        keys = sorted({address_lock_key(shop, email) for shop, email in pairs})
        if keys:
            self.conn.execute(
                text(
                    "SELECT pg_advisory_xact_lock(k) FROM "
                    "(SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) AS wanted"
                ),
                {"keys": keys},
            )

    def reminded(self, shop_id: int, email_keys: Iterable[str]) -> list[Any]:
        """(email_key, cart_id, at) of the latest reminder per address and cart."""
        wanted = sorted(set(email_keys))
        if not wanted:
            return []
        return list(self.conn.execute(_REMINDED, {"shop_id": shop_id, "email_keys": wanted}))

    def update(self, rows: list[dict[str, Any]]) -> None:
        """Rows of ``_send_id`` and the columns to set; rows with the same columns go
        together in one executemany."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(sorted(row)), []).append(row)
        for group in groups.values():
            values: dict[str, Any] = {k: bindparam(k) for k in group[0] if k != "_send_id"}
            self.conn.execute(_UPDATE.values(values), group)

    def hand_off(self, send_id: int, now: datetime, message: bytes) -> str | None:
        """Mark the send handed over, now, and keep ``message`` (the email as it will go,
        compressed) as its copy; or, when it may not go any more, withdraw it (skipped,
        with why) and return why. ``None``: hand it to the provider. Each statement may
        commit on its own: the mark and the copy are one statement on PostgreSQL and one
        transaction on SQLite, and the withdrawal touches only a send still claimed and
        never handed over."""
        if self._mark_handed(send_id, now, message):
            return None
        if self.conn.execute(_PAUSED, {"send_id": send_id}).scalar() is not None:
            # Back in the queue, held: it goes once the owner resumes sending.
            self._withdraw(send_id, now, SendStatus.QUEUED, PAUSED, due_at=now)
            return PAUSED
        status = self.conn.execute(_CART_STATUS, {"send_id": send_id}).scalar()
        reason = (
            f"not sent: the cart became {status} after the reminder was claimed"
            if status is not None and status != CartStatus.OPEN.value
            else "not sent: it was cancelled after it was claimed"
        )
        self._withdraw(send_id, now, SendStatus.SKIPPED, reason)
        return reason

    def _mark_handed(self, send_id: int, now: datetime, message: bytes) -> bool:
        values = {"send_id": send_id, "now": now, "body": message}
        if self.conn.dialect.name == "postgresql":
            return self.conn.execute(_HAND_OFF_KEEPING, values).first() is not None
        if not self.conn.execute(_HAND_OFF, values).rowcount:
            return False
        self.conn.execute(_KEEP, values)
        return True

    def _withdraw(
        self, send_id: int, now: datetime, status: SendStatus, reason: str, **values: Any
    ) -> None:
        """Take back a send still claimed and never handed over."""
        self.conn.execute(
            update(sends)
            .where(
                sends.c.id == send_id,
                sends.c.status == SendStatus.SENDING.value,
                sends.c.handed_at.is_(None),
            )
            .values(
                status=status.value,
                reason=reason,
                claimed_until=None,
                sent_at=None,
                updated_at=now,
                **values,
            )
        )

    def with_message(self, shop_id: int, send_id: int) -> Any | None:
        """The send, of this shop, with its email's kept copy (``body``, compressed; None
        when none was kept); None when the shop has no such send. One read, by keys."""
        stmt = (
            select(
                sends.c.id,
                sends.c.cart_id,
                sends.c.step,
                sends.c.status,
                sends.c.reason,
                sends.c.email_key,
                sends.c.subject,
                sends.c.sent_at,
                sends.c.handed_at,
                sends.c.due_at,
                sends.c.rules_version,
                sends.c.voice_version,
                sends.c.provider,
                messages.c.stored_at,
                messages.c.body,
            )
            .outerjoin(messages, messages.c.send_id == sends.c.id)
            .where(sends.c.id == send_id, sends.c.shop_id == shop_id)
        )
        return self.conn.execute(stmt).first()

    def extend_lease(self, send_ids: list[int], until: datetime) -> None:
        if send_ids:
            self.conn.execute(_LEASE, {"ids": send_ids, "until": until})

    def cancel_pending(
        self,
        now: datetime,
        reason: str,
        *,
        cart_ids: Iterable[int] | None = None,
        shop_id: int | None = None,
        email_key: str | None = None,
    ) -> list[int]:
        """Cancel the sends of these carts, or of every cart of this address in this shop,
        that have not left: queued, or claimed and not yet handed over (the worker then
        finds it cancelled and does not send it). Returns the cancelled send ids. A send
        already handed to a provider is not touched: it has left."""
        stmt = update(sends).where(_PENDING)
        if cart_ids is not None:
            stmt = stmt.where(sends.c.cart_id.in_(sorted(set(cart_ids))))
        else:
            assert shop_id is not None and email_key is not None
            of_address = select(carts.c.id).where(
                carts.c.shop_id == shop_id, carts.c.email_key == email_key
            )
            stmt = stmt.where(sends.c.shop_id == shop_id, sends.c.cart_id.in_(of_address))
        stmt = stmt.values(
            status=SendStatus.CANCELLED.value, reason=reason, updated_at=now
        ).returning(sends.c.id)
        return sorted(self.conn.execute(stmt).scalars())

    def take_over(
        self, shop_id: int, keep_id: int, gone_ids: Sequence[int], now: datetime
    ) -> list[int]:
        """Carts ``gone_ids`` are ``keep_id``: their sends become its own, marked with the
        cart they were decided for, so every record of a send stays. Where the carts had
        the same step twice, the copy that has not left is cancelled (one that may have
        reached the shopper stands, else the kept cart's own): the shopper gets each step
        once. Returns the cancelled send ids."""
        rows = self.conn.execute(_OF_CARTS, {"shop_id": shop_id, "cart_ids": [keep_id, *gone_ids]})
        copies = second_copies(list(rows), keep_id)
        if copies:
            self.conn.execute(
                _CANCEL_COPY,
                [
                    {
                        "_send_id": copy,
                        "_reason": f"not sent: merged carts had step {step} twice; "
                        f"send {stands} is that step",
                        "_at": now,
                    }
                    for copy, step, stands in copies
                ],
            )
        self.conn.execute(
            update(sends)
            .where(sends.c.shop_id == shop_id, sends.c.cart_id.in_(gone_ids))
            .values(
                cart_id=keep_id,
                merged_from=case(
                    (sends.c.merged_from.is_(None), sends.c.cart_id), else_=sends.c.merged_from
                ),
            )
        )
        return [copy for copy, _, _ in copies]

    def release_held(self, shop_id: int, now: datetime, reason: str = HELD) -> int:
        """Make a shop's sends held for ``reason`` due now (its sender identity has just
        been set, or its sending resumed)."""
        stmt = (
            update(sends)
            .where(
                and_(
                    sends.c.shop_id == shop_id,
                    sends.c.status == SendStatus.QUEUED.value,
                    sends.c.reason == reason,
                )
            )
            .values(due_at=now, reason=None, updated_at=now)
        )
        return int(self.conn.execute(stmt).rowcount or 0)


def second_copies(rows: Sequence[Any], keep_id: int) -> list[tuple[int, int, int]]:
    """Of the sends of carts that are one, those to cancel as (send id, step, the send
    that stands for that step): per step, the first that may have reached the shopper
    stands, else the kept cart's own (then the earliest); every other one that has not
    left goes. Sends already skipped, failed or cancelled neither stand nor go."""
    by_step: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        by_step[row.step].append(row)
    copies = []
    for step, group in sorted(by_step.items()):
        left = [r for r in group if _has_left(r)]
        waiting = [r for r in group if _waits(r)]
        ranked = left + sorted(waiting, key=lambda r: (r.cart_id != keep_id, r.id))
        if not ranked:
            continue
        stands = ranked[0]
        copies += [(r.id, step, stands.id) for r in waiting if r is not stands]
    return copies


def _has_left(row: Any) -> bool:
    """Handed to a provider, or possibly: it may have reached the shopper."""
    return row.status in REACHED and (row.status != SendStatus.SENDING.value or bool(row.handed_at))


def _waits(row: Any) -> bool:
    """Queued, or claimed and not yet handed over (``_PENDING``)."""
    return row.status == SendStatus.QUEUED.value or (
        row.status == SendStatus.SENDING.value and row.handed_at is None
    )
