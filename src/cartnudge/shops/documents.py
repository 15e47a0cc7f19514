"""Every SQL statement about a shop's versioned documents (its rules and its voice).

A document's versions only grow. Version 0 is the built-in default and is never stored:
a shop with no row of a kind uses the default.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, exists, insert, select

from cartnudge.db.models import ShopDocument

documents = ShopDocument
_newer = documents.alias("newer")
# Built once: each version row of the wanted shops for which no newer version exists.
_LATEST = select(documents).where(
    documents.c.shop_id.in_(bindparam("shop_ids", expanding=True)),
    documents.c.kind == bindparam("kind"),
    ~exists().where(
        _newer.c.shop_id == documents.c.shop_id,
        _newer.c.kind == documents.c.kind,
        _newer.c.version > documents.c.version,
    ),
)


@dataclass(frozen=True, slots=True)
class DocumentVersion:
    version: int
    body: str
    created_at: datetime | None  # None for the built-in default
    actor: str
    note: str | None

    @classmethod
    def from_row(cls, row: Any) -> DocumentVersion:
        return cls(row.version, row.body, row.created_at, row.actor, row.note)


class DocumentRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def latest(self, shop_ids: Iterable[int], kind: str) -> dict[int, DocumentVersion]:
        """The newest version of ``kind`` for each shop that has one (one indexed query:
        the ingest writer asks this once per batch)."""
        ids = sorted(set(shop_ids))
        if not ids:
            return {}
        rows = self.conn.execute(_LATEST, {"shop_ids": ids, "kind": kind})
        return {row.shop_id: DocumentVersion.from_row(row) for row in rows}

    def version(self, shop_id: int, kind: str, version: int) -> DocumentVersion | None:
        row = self.conn.execute(
            select(documents).where(
                documents.c.shop_id == shop_id,
                documents.c.kind == kind,
                documents.c.version == version,
            )
        ).first()
        return DocumentVersion.from_row(row) if row else None

    def history(self, shop_id: int, kind: str) -> list[DocumentVersion]:
        stmt = (
            select(documents)
            .where(documents.c.shop_id == shop_id, documents.c.kind == kind)
            .order_by(documents.c.version)
        )
        return [DocumentVersion.from_row(row) for row in self.conn.execute(stmt)]

    def add(
        self,
        shop_id: int,
        kind: str,
        version: int,
        body: str,
        *,
        now: datetime,
        actor: str,
        note: str | None,
    ) -> DocumentVersion:
        """Store ``version``; the unique (shop, kind, version) refuses a concurrent twin."""
        values = {
            "shop_id": shop_id,
            "kind": kind,
            "version": version,
            "body": body,
            "created_at": now,
            "actor": actor,
            "note": note,
        }
        self.conn.execute(insert(documents), values)
        return DocumentVersion(version, body, now, actor, note)
