"""The privacy stage's files: rendered emails in the file outbox, and data exports.

Both hold personal data, so erasure and retention reach them too: the data request answers
in ``exports/<shop>/``, an export the owner wrote anywhere in the data folder
(``privacy export --out``), and a half-written copy of any of them that a crash left behind.
Exports are written readable by their owner only, whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

EXPORTS_KEPT = timedelta(days=30)  # an export is for answering one request, not an archive


class PrivacyFiles:
    def __init__(self, outbox: Path, exports: Path, home: Path | None = None) -> None:
        self.outbox = outbox
        self.exports = exports
        self.home = home if home is not None else exports.parent  # the data folder

    def delete_emails(self, shop_slug: str, send_ids: Iterable[int]) -> int:
        """Remove the rendered copies of these sends (the file route's ``<id>.eml``)."""
        folder = self.outbox / shop_slug
        removed = 0
        for send_id in send_ids:
            with contextlib.suppress(FileNotFoundError):
                (folder / f"{int(send_id)}.eml").unlink()
                removed += 1
        return removed

    def write_export(self, shop_slug: str, name: str, document: dict[str, Any]) -> Path:
        folder = self.exports / shop_slug
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return write_private(folder / name, document)

    def delete_emails_mentioning(self, shop_slug: str, email_key: str) -> int:
        """Remove any rendered email of the shop to this address that no send names any
        more, and half-written ones (``.<id>.*.tmp``)."""
        folder = self.outbox / shop_slug
        if not folder.is_dir():
            return 0
        found = [*folder.glob("*.eml"), *folder.glob(".*.tmp")]
        return _delete_mentioning(found, email_key)

    def delete_exports_mentioning(self, shop_slug: str, email_key: str) -> int:
        """Remove earlier exports about this shopper (they hold what was just erased):
        those in the shop's exports folder, the shop's exports anywhere else in the data
        folder, and half-written copies."""
        return _delete_mentioning(self._exports_anywhere(shop_slug), email_key)

    def delete_expired_exports(self, now: datetime) -> int:
        cutoff = (now - EXPORTS_KEPT).timestamp()
        removed = 0
        for path in self._exports(None):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def delete_shop(self, shop_slug: str) -> None:
        for root in (self.outbox, self.exports):
            shutil.rmtree(root / shop_slug, ignore_errors=True)

    def _exports(self, shop_slug: str | None) -> list[Path]:
        pattern = f"{shop_slug}/*.json" if shop_slug else "*/*.json"
        return sorted(self.exports.glob(pattern)) if self.exports.is_dir() else []

    def _exports_anywhere(self, shop_slug: str) -> list[Path]:
        found = set(self._exports(shop_slug))
        if self.home.is_dir():
            found |= {p for p in self.home.rglob("*.json") if _is_export_of(p, shop_slug)}
            # Ours by their name (``write_private``, ``FileProvider``): read only if they
            # name the shopper, so another shop's leftovers stay.
            found |= set(self.home.rglob(".*.tmp"))
        return sorted(p for p in found if p.is_file())


def _is_export_of(path: Path, shop_slug: str) -> bool:
    """Whether ``path`` is a data export (``service.export``) of this shop."""
    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False
    shop = document.get("shop") if isinstance(document, dict) else None
    return (
        isinstance(shop, dict)
        and shop.get("slug") == shop_slug
        and {"shopper", "carts", "what_this_is"} <= document.keys()
    )


def _delete_mentioning(paths: Iterable[Path], email_key: str) -> int:
    """Delete those of ``paths`` that hold the address (ignoring case); how many went."""
    needle = email_key.lower().encode()
    removed = 0
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            if needle in path.read_bytes().lower():
                path.unlink()
                removed += 1
    return removed


def write_private(target: Path, document: dict[str, Any]) -> Path:
    """Write ``document`` as JSON to ``target``, readable by its owner only (mkstemp makes
    it 0600), whole or not at all."""
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2))
            out.flush()
            os.fsync(out.fileno())
        Path(temporary).replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise
    return target
