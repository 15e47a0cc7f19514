"""Every SQL statement of the consent ledger: append, what stops an address, its history."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, String, bindparam, func, insert, select, update

from cartnudge.db.models import STOP_KINDS, ConsentEntry, ConsentKind, Send
from cartnudge.db.portable import insert_many
from cartnudge.db.types import UtcDateTime

ledger = ConsentEntry
sends = Send

_STOP_VALUES = sorted(kind.value for kind in STOP_KINDS)
# The first stop entry per address: what stopped it, and when.
_STOPPED = (
    select(ledger.c.email_key, ledger.c.kind, func.min(ledger.c.id).label("first"))
    .where(
        ledger.c.shop_id == bindparam("shop_id"),
        ledger.c.email_key.in_(bindparam("email_keys", expanding=True)),
        ledger.c.kind.in_(_STOP_VALUES),
    )
    .group_by(ledger.c.email_key, ledger.c.kind)
)
_HISTORY = (
    select(ledger)
    .where(
        ledger.c.shop_id == bindparam("shop_id"),
        ledger.c.email_key.in_(bindparam("email_keys", expanding=True)),
    )
    .order_by(ledger.c.id)
)
# One bounce entry per refused send, the send row being its evidence (the server's reply).
_BOUNCES = select(
    sends.c.shop_id,
    sends.c.email_key,
    bindparam("kind", type_=String()),
    bindparam("source", type_=String()),
    sends.c.id,
    bindparam("at", type_=UtcDateTime()),
).where(sends.c.id.in_(bindparam("send_ids", expanding=True)), sends.c.email_key.is_not(None))
_INSERT_BOUNCES = insert(ledger).from_select(
    ["shop_id", "email_key", "kind", "source", "send_id", "at"], _BOUNCES
)


class LedgerRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def append(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            insert_many(self.conn, ledger, rows)

    def stops(self, shop_id: int, email_keys: Iterable[str]) -> dict[str, ConsentKind]:
        """For each of these keys with a stop entry, the kind of its first one."""
        wanted = sorted(set(email_keys))
        if not wanted:
            return {}
        first: dict[str, tuple[int, ConsentKind]] = {}
        for row in self.conn.execute(_STOPPED, {"shop_id": shop_id, "email_keys": wanted}):
            if row.email_key not in first or row.first < first[row.email_key][0]:
                first[row.email_key] = (row.first, ConsentKind(row.kind))
        return {key: kind for key, (_, kind) in first.items()}

    def history(self, shop_id: int, email_keys: Iterable[str]) -> list[Any]:
        params = {"shop_id": shop_id, "email_keys": sorted(set(email_keys))}
        return list(self.conn.execute(_HISTORY, params))

    def record_bounces(self, send_ids: list[int], now: datetime, source: str) -> None:
        if send_ids:
            self.conn.execute(
                _INSERT_BOUNCES,
                {
                    "send_ids": send_ids,
                    "kind": ConsentKind.BOUNCE.value,
                    "source": source,
                    "at": now,
                },
            )

    def rekey(self, shop_id: int, email_key: str, new_key: str) -> int:
        """Replace an address by its one-way key in every entry (erasure keeps the stop)."""
        stmt = (
            update(ledger)
            .where(ledger.c.shop_id == shop_id, ledger.c.email_key == email_key)
            .values(email_key=new_key, evidence=None)
        )
        return self.conn.execute(stmt).rowcount or 0
