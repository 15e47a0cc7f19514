"""Voice as a shop document: read a shop's voice. Setting, rolling back and the history are
shared with every shop document (``cartnudge.shops.versioned`` with ``VOICE``)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection

from cartnudge.messages.voice import (
    DEFAULT_DOCUMENT,
    MAX_DOCUMENT_BYTES,
    Voice,
    VoiceError,
    cached_voice,
    parse_voice,
)
from cartnudge.shops.versioned import Current, DocumentKind, current_documents

VOICE = DocumentKind(
    name="voice",
    parse=parse_voice,
    load=cached_voice,
    default_body=DEFAULT_DOCUMENT,
    error=VoiceError,
    max_bytes=MAX_DOCUMENT_BYTES,
)


def voice_of(conn: Connection, shop_ids: Iterable[int]) -> dict[int, Current[Voice]]:
    """Each shop's current voice (one query for any number of shops); set, roll back and
    list it with ``cartnudge.shops.versioned`` and ``VOICE``."""
    return current_documents(conn, VOICE, shop_ids)
