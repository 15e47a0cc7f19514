"""A short-lived in-process cache of shops, so a webhook does not query for its shop.

Entries live ``TTL_S`` seconds: a secret changed from the CLI reaches every web process
within that time. Misses always go to the database, so a new shop works at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Engine

from cartnudge.shops.repository import ShopRecord, ShopRepository

TTL_S = 5.0


class ShopCache:
    def __init__(self, engine: Engine, *, ttl_s: float = TTL_S) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._entries: dict[tuple[str, str], tuple[float, ShopRecord]] = {}

    def by_slug(self, slug: str) -> ShopRecord | None:
        return self._get(("slug", slug), lambda repo: repo.by_slug(slug))

    def by_shopify_domain(self, domain: str) -> ShopRecord | None:
        key = domain.strip().lower()
        return self._get(("shopify", key), lambda repo: repo.by_shopify_domain(key))

    def cached(self, kind: str, key: str) -> ShopRecord | None:
        """A fresh cache entry, without touching the database (safe on the event loop)."""
        entry = self._entries.get((kind, key))
        if entry and entry[0] > time.monotonic():
            return entry[1]
        return None

    def clear(self) -> None:
        """Forget every entry (after a change this process made itself, and in tests)."""
        self._entries.clear()

    def _get(
        self, key: tuple[str, str], load: Callable[[ShopRepository], ShopRecord | None]
    ) -> ShopRecord | None:
        hit = self.cached(*key)
        if hit is not None:
            return hit
        with self.engine.connect() as conn:
            record = load(ShopRepository(conn))
        if record is not None:
            self._entries[key] = (time.monotonic() + self.ttl_s, record)
        return record
