"""Use cases shared by every kind of versioned shop document (rules, voice): read the
current version of many shops at once, set a new version with an audit row, roll back,
list the history. The caller commits.

A kind says what is particular to it: its name, how its text is validated, its built-in
default (version 0, never stored), the error that names a bad document's problems, its size
limit, and what must follow a change (rules move the open carts' timers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy import Connection

from cartnudge.db.audit import write_audit
from cartnudge.shops.documents import DocumentRepository, DocumentVersion
from cartnudge.shops.repository import ShopRecord

T = TypeVar("T")


class DocumentVersionError(ValueError):
    """A version that the shop's document never had."""


@dataclass(frozen=True, slots=True)
class DocumentKind(Generic[T]):
    name: str  # the ``kind`` column, the CLI's noun and the audit action's prefix
    parse: Callable[[str], T]  # validates a whole document or raises ``error``
    load: Callable[[str], T]  # parses a stored (already validated) body, usually cached
    default_body: str
    error: type[ValueError]
    max_bytes: int
    # Runs in the same transaction after a new version is stored.
    after_set: Callable[[Connection, ShopRecord, T], object] | None = None
    plural: bool = False  # "the rules have", "the voice has"

    @property
    def default(self) -> DocumentVersion:
        return DocumentVersion(0, self.default_body, None, "default", "built-in default")

    def no_version(self, version: int) -> DocumentVersionError:
        verb = "have" if self.plural else "has"
        return DocumentVersionError(
            f"the {self.name} {verb} no version {version} (see `{self.name} history`)"
        )


@dataclass(frozen=True, slots=True)
class Current(Generic[T]):
    version: int  # 0: the built-in default
    value: T
    body: str


def current_documents(
    conn: Connection, kind: DocumentKind[T], shop_ids: Iterable[int]
) -> dict[int, Current[T]]:
    """Each shop's current document of ``kind`` (one query for any number of shops)."""
    ids = set(shop_ids)
    stored = DocumentRepository(conn).latest(ids, kind.name)
    out = {}
    for shop_id in ids:
        doc = stored.get(shop_id, kind.default)
        out[shop_id] = Current(doc.version, kind.load(doc.body), doc.body)
    return out


def document_history(
    conn: Connection, kind: DocumentKind[T], shop_id: int
) -> list[DocumentVersion]:
    """Every version, oldest first, starting with the built-in default."""
    return [kind.default, *DocumentRepository(conn).history(shop_id, kind.name)]


def document_version(
    conn: Connection, kind: DocumentKind[T], shop_id: int, version: int
) -> DocumentVersion:
    if version == 0:
        return kind.default
    doc = DocumentRepository(conn).version(shop_id, kind.name, version)
    if doc is None:
        raise kind.no_version(version)
    return doc


def set_document(
    conn: Connection,
    kind: DocumentKind[T],
    shop: ShopRecord,
    text: str,
    now: datetime,
    *,
    actor: str = "owner:cli",
    note: str | None = None,
) -> tuple[Current[T], bool]:
    """Validate and store ``text`` as the newest version; ``kind.error`` if it is not
    valid (nothing stored). Returns the current document and whether it changed."""
    value = kind.parse(text)
    current = current_documents(conn, kind, [shop.id])[shop.id]
    if text == current.body:
        return current, False
    stored = DocumentRepository(conn).add(
        shop.id, kind.name, current.version + 1, text, now=now, actor=actor, note=note
    )
    write_audit(
        conn,
        [
            {
                "shop_id": shop.id,
                "cart_id": None,
                "at": now,
                "actor": actor,
                "action": f"{kind.name}:set",
                "reason": note,
                "before": {f"{kind.name}_version": current.version},
                "after": {f"{kind.name}_version": stored.version},
            }
        ],
    )
    if kind.after_set is not None:
        kind.after_set(conn, shop, value)
    return Current(stored.version, value, text), True


def rollback_document(
    conn: Connection,
    kind: DocumentKind[T],
    shop: ShopRecord,
    version: int,
    now: datetime,
    *,
    actor: str = "owner:cli",
) -> tuple[Current[T], bool]:
    """Make an earlier version current again, as a new version (history only grows)."""
    doc = document_version(conn, kind, shop.id, version)
    return set_document(
        conn, kind, shop, doc.body, now, actor=actor, note=f"rollback to version {version}"
    )
