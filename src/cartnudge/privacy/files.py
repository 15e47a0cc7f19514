"""The privacy stage's files: rendered emails in the file outbox, and data exports.

Both hold personal data, so erasure and retention reach them too. Exports are written
readable by their owner only, whole or not at all.
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
    def __init__(self, outbox: Path, exports: Path) -> None:
        self.outbox = outbox
        self.exports = exports

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

    def delete_exports_mentioning(self, shop_slug: str, email_key: str) -> int:
        """Remove earlier exports about this shopper (they hold what was just erased)."""
        needle = email_key.lower().encode()
        removed = 0
        for path in self._exports(shop_slug):
            with contextlib.suppress(FileNotFoundError):
                if needle in path.read_bytes().lower():
                    path.unlink()
                    removed += 1
        return removed

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
