"""Voice use cases: read a shop's voice, set a new version, roll back, list the history.
The caller commits. The versioning is shared with every shop document
(``cartnudge.shops.versioned``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from cartnudge.messages.voice import (
    DEFAULT_DOCUMENT,
    MAX_DOCUMENT_BYTES,
    Voice,
    VoiceError,
    cached_voice,
    parse_voice,
)
from cartnudge.shops.documents import DocumentVersion
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.versioned import (
    Current,
    DocumentKind,
    current_documents,
    document_history,
    rollback_document,
    set_document,
)

VOICE = DocumentKind(
    name="voice",
    parse=parse_voice,
    load=cached_voice,
    default_body=DEFAULT_DOCUMENT,
    error=VoiceError,
    max_bytes=MAX_DOCUMENT_BYTES,
)


@dataclass(frozen=True, slots=True)
class ShopVoice:
    version: int  # 0: the built-in default
    voice: Voice
    body: str

    @classmethod
    def of(cls, current: Current[Voice]) -> ShopVoice:
        return cls(current.version, current.value, current.body)


def voice_of(conn: Connection, shop_ids: Iterable[int]) -> dict[int, ShopVoice]:
    """Each shop's current voice (one query for any number of shops)."""
    return {
        shop_id: ShopVoice.of(current)
        for shop_id, current in current_documents(conn, VOICE, shop_ids).items()
    }


def voice_history(conn: Connection, shop_id: int) -> list[DocumentVersion]:
    return document_history(conn, VOICE, shop_id)


def set_voice(
    conn: Connection,
    shop: ShopRecord,
    text: str,
    now: datetime,
    *,
    actor: str = "owner:cli",
    note: str | None = None,
) -> tuple[ShopVoice, bool]:
    """Validate and store ``text`` as the newest version; ``VoiceError`` if it is not
    valid (nothing stored). Returns the current voice and whether it changed."""
    current, changed = set_document(conn, VOICE, shop, text, now, actor=actor, note=note)
    return ShopVoice.of(current), changed


def rollback_voice(
    conn: Connection, shop: ShopRecord, version: int, now: datetime, *, actor: str = "owner:cli"
) -> tuple[ShopVoice, bool]:
    """Make an earlier version current again, as a new version (history only grows)."""
    current, changed = rollback_document(conn, VOICE, shop, version, now, actor=actor)
    return ShopVoice.of(current), changed
