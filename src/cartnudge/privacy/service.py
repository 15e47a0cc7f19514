"""Data requests: export everything held about a shopper, erase it, or erase a whole shop.

A shopper is named by their address and, from Shopify, by order ids as well. Erasure
clears what identifies them (contact fields, raw bodies, kept and rendered emails, the
address in every reason and in the ledger) and keeps the rows that reports count, so the shop's
totals of carts, reminders and recovered revenue do not move. Each action leaves a
``privacy_log`` entry with counts only.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table

from cartnudge.carts.queries import show_cart
from cartnudge.db.audit import write_audit
from cartnudge.db.models import PrivacyLogEntry, metadata
from cartnudge.privacy.consent import history, suppression_key
from cartnudge.privacy.files import PrivacyFiles
from cartnudge.privacy.ledger_repository import LedgerRepository, ledger
from cartnudge.privacy.repository import (
    PrivacyRepository,
    audit,
    carts,
    inbox,
    messages,
    orders,
    sends,
)
from cartnudge.shops.repository import ShopRecord

ERASED = "[erased]"
ERASED_REASON = "the shopper's data was erased"
# The tables an erasure or retention rewrites: their old row versions hold what went
# (``cartnudge.db.engine.forget_old_copies``).
ERASING_TABLES = tuple(str(t.name) for t in (carts, sends, messages, inbox, orders, audit, ledger))


@dataclass(frozen=True, slots=True)
class Shopper:
    """Who a request is about, in one shop."""

    email_key: str | None
    order_refs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.email_key and not self.order_refs:
            raise ValueError("a data request must name an email address or orders")


def export(
    conn: Connection,
    shop: ShopRecord,
    shopper: Shopper,
    now: datetime,
    *,
    actor: str,
    request_id: int | None = None,
) -> dict[str, Any]:
    """Everything held about the shopper in this shop, as one JSON-ready document. The
    privacy log records that it was made, and how much it held."""
    repo = PrivacyRepository(conn)
    found = repo.shopper_carts(shop.id, shopper.email_key, shopper.order_refs)
    cart_ids = [row.id for row in found]
    views = [show_cart(conn, cart_id, payloads=True) for cart_id in cart_ids]
    send_ids = [s["id"] for view in views if view for s in view["sends"]]
    clicked: dict[int, list[str]] = {}
    for click in repo.clicks_of(send_ids):
        clicked.setdefault(click.send_id, []).append(click.at.isoformat())
    kept = repo.messages_of(send_ids)
    for view in views:
        for send in view["sends"] if view else ():
            send["clicks"] = clicked.get(send["id"], [])
            # The email as it was sent (RFC 5322), when a copy was kept.
            body = kept.get(send["id"])
            send["email"] = zlib.decompress(body).decode("utf-8", "replace") if body else None
    bought = repo.shopper_orders(shop.id, shopper.email_key, shopper.order_refs, cart_ids)
    consent = history(conn, shop.id, shopper.email_key) if shopper.email_key else []
    counts = {"carts": len(views), "orders": len(bought), "consent_entries": len(consent)}
    repo.log(shop.id, "export", actor, now, counts, request_id)
    return {
        "shop": {"slug": shop.slug, "name": shop.name},
        "shopper": {"email": shopper.email_key, "orders_named": list(shopper.order_refs)},
        "generated_at": now.isoformat(),
        "what_this_is": (
            f"Everything {shop.name} holds about this shopper in its cart reminder service: "
            "carts with their events (raw bodies while they are kept), the reminders (each "
            "email as it was sent, where a copy is kept) and the decisions about them, "
            "clicks, orders, and the consent history."
        ),
        "carts": views,
        "orders": [
            {
                "source": o.source,
                "order_id": o.external_id,
                "placed_at": o.placed_at.isoformat(),
                "currency": o.currency,
                "total_minor": o.total_minor,
                "cart_id": o.cart_id,
            }
            for o in bought
        ],
        "consent": consent,
    }


def erase(
    conn: Connection,
    shop: ShopRecord,
    shopper: Shopper,
    now: datetime,
    files: PrivacyFiles,
    *,
    actor: str,
    request_id: int | None = None,
) -> dict[str, int]:
    """Erase the shopper's personal data in this shop; the counts of what was touched.
    Files go first: if the transaction then fails, a second run finds the rows again."""
    repo = PrivacyRepository(conn)
    found = repo.shopper_carts(shop.id, shopper.email_key, shopper.order_refs)
    cart_ids = [row.id for row in found]
    # Orders may name carts of an address the request did not give: that address goes too.
    addresses = sorted({k for k in (shopper.email_key, *(r.email_key for r in found)) if k})
    needles = _needles(addresses, [row.first_name for row in found])
    closed = repo.close_open(cart_ids, ERASED_REASON, now) if cart_ids else []
    if closed:
        write_audit(conn, [_closed_audit(shop.id, cart_id, now, actor) for cart_id in closed])
    bought = repo.shopper_orders(shop.id, shopper.email_key, shopper.order_refs, cart_ids)
    counts = scrub_carts(repo, shop, cart_ids, needles, now, files)
    counts |= {"carts_closed": len(closed), "consent_entries": 0, "exports": 0}
    counts["orders"] = repo.clear_orders([o.id for o in bought])
    ledger = LedgerRepository(conn)
    for address in addresses:
        mentioning = repo.events_mentioning(shop.id, address)
        counts["events"] += repo.clear_events([row.id for row in mentioning], [])
        _scrub_texts(repo, inbox, "reason", [(r.id, r.reason) for r in mentioning], needles)
        counts["consent_entries"] += ledger.rekey(
            shop.id, address, suppression_key(shop.id, address)
        )
        counts["exports"] += files.delete_exports_mentioning(shop.slug, address)
        counts["email_files"] += files.delete_emails_mentioning(shop.slug, address)
    repo.log(shop.id, "erase", actor, now, counts, request_id)
    return counts


def scrub_carts(
    repo: PrivacyRepository,
    shop: ShopRecord,
    cart_ids: list[int],
    needles: list[str],
    now: datetime,
    files: PrivacyFiles,
) -> dict[str, int]:
    """Clear the personal data of these carts: contact fields, their events' bodies, their
    emails' address and subject, kept copies (``send_messages``) and rendered files, and
    the shopper (their address and name, and any of ``needles``) in any reason."""
    if not cart_ids:
        return {"carts": 0, "events": 0, "sends": 0, "email_copies": 0, "email_files": 0}
    own = repo.identities(cart_ids)
    needles = _needles(
        [*needles, *(r.email_key for r in own if r.email_key)], [r.first_name for r in own]
    )
    send_ids = repo.clear_sends(cart_ids, ERASED_REASON, now)
    copies = repo.drop_messages(send_ids)
    emails = files.delete_emails(shop.slug, send_ids)
    _scrub_texts(
        repo, sends, "reason", repo.texts(sends, "reason", sends.c.id.in_(send_ids)), needles
    )
    _scrub_texts(
        repo, audit, "reason", repo.texts(audit, "reason", audit.c.cart_id.in_(cart_ids)), needles
    )
    return {
        "carts": repo.clear_carts(cart_ids, now),
        "events": repo.clear_events([], cart_ids),
        "sends": len(send_ids),
        "email_copies": copies,
        "email_files": emails,
    }


def erase_shop(
    conn: Connection,
    shop: ShopRecord,
    now: datetime,
    files: PrivacyFiles,
    *,
    actor: str,
) -> dict[str, int]:
    """Delete every row and file of the shop. The log entry that records it names no shop
    row (there is none left), only the counts."""
    repo = PrivacyRepository(conn)
    counts = {str(table.name): repo.count_of_shop(table, shop.id) for table in shop_tables()}
    files.delete_shop(shop.slug)
    repo.delete_shop(shop.id)
    repo.log(None, "shop_erase", actor, now, counts)
    return counts


def shop_tables() -> list[Table]:
    """Every table whose rows belong to a shop (the privacy log outlives its shop)."""
    return [
        table
        for table in metadata.sorted_tables
        if "shop_id" in table.c and table.name != PrivacyLogEntry.name
    ]


def _needles(addresses: Iterable[str], names: Iterable[str | None]) -> list[str]:
    """What identifies the shopper in free text: the addresses, and names of two letters
    or more (shorter ones would match inside ordinary words)."""
    found = set(addresses)
    found |= {name.strip() for name in names if name and len(name.strip()) >= 2}
    return sorted(found, key=len, reverse=True)


def _scrub_texts(
    repo: PrivacyRepository,
    table: Table,
    column: str,
    rows: list[tuple[int, Any]],
    needles: list[str],
) -> None:
    if not needles:
        return
    pattern = re.compile("|".join(re.escape(n) for n in needles), re.IGNORECASE)
    changed = {}
    for row_id, text in rows:
        if text is not None and pattern.search(text):
            changed[row_id] = pattern.sub(ERASED, text)
    repo.set_texts(table, column, changed)


def _closed_audit(shop_id: int, cart_id: int, now: datetime, actor: str) -> dict[str, Any]:
    return {
        "shop_id": shop_id,
        "cart_id": cart_id,
        "at": now,
        "actor": actor,
        "action": "status:closed",
        "reason": ERASED_REASON,
        "before": {"status": "open"},
        "after": {"status": "closed"},
    }
