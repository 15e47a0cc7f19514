"""Consent use cases: what the ledger says about an address, and stopping one.

The ledger is append-only. An address is *stopped* in a shop once it has any unsubscribe,
complaint or bounce entry; an opt-in recorded later does not lift that, because a
checkout's checkbox can be stale or pre-ticked and a reminder to someone who asked not to
get one is the worse mistake. Erasing a shopper keeps their stop entries under a one-way
key (``suppression_key``), so the stop outlives the address it was about.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from cartnudge.db.audit import write_audit
from cartnudge.db.models import ConsentKind
from cartnudge.delivery.repository import SenderRepository
from cartnudge.privacy.ledger_repository import LedgerRepository

SUPPRESSED_PREFIX = "sha256:"

# Why a send to a stopped address is skipped, by what stopped it.
STOP_REASONS = {
    ConsentKind.UNSUBSCRIBE: "address unsubscribed",
    ConsentKind.COMPLAINT: "address complained (marked a reminder as spam)",
    ConsentKind.BOUNCE: "address bounced (the server refused it for good)",
}


def suppression_key(shop_id: int, email_key: str) -> str:
    """The one-way form an erased address is kept under. Salted with the shop, so the same
    shopper cannot be linked across shops; unkeyed, so rotating a secret never forgets a
    stop (a lost stop would mean emailing someone who asked us not to)."""
    digest = hashlib.sha256(f"{shop_id}\x00{email_key}".encode()).hexdigest()
    return SUPPRESSED_PREFIX + digest


def stopped(conn: Connection, shop_id: int, email_keys: Iterable[str]) -> dict[str, ConsentKind]:
    """For each of these addresses that is stopped, what stopped it first."""
    keys = set(email_keys)
    hashed = {suppression_key(shop_id, key): key for key in keys}
    found = LedgerRepository(conn).stops(shop_id, keys | hashed.keys())
    return {hashed.get(key, key): kind for key, kind in found.items()}


def history(conn: Connection, shop_id: int, email_key: str) -> list[dict[str, Any]]:
    """Every entry about the address, oldest first, including any kept after an erasure."""
    keys = {email_key, suppression_key(shop_id, email_key)}
    return [
        {
            "at": row.at.isoformat(),
            "kind": row.kind,
            "source": row.source,
            "send_id": row.send_id,
            "evidence": row.evidence,
        }
        for row in LedgerRepository(conn).history(shop_id, keys)
    ]


def entry(
    shop_id: int,
    email_key: str,
    kind: ConsentKind,
    source: str,
    at: datetime,
    *,
    send_id: int | None = None,
    evidence: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ledger row. Evidence names events, carts and sends; never the address."""
    return {
        "shop_id": shop_id,
        "email_key": email_key,
        "kind": kind.value,
        "source": source[:64],
        "send_id": send_id,
        "at": at,
        "evidence": evidence,
    }


def stop(
    conn: Connection,
    shop_id: int,
    email_key: str,
    now: datetime,
    *,
    kind: ConsentKind,
    source: str,
    actor: str,
    send_id: int | None = None,
    evidence: dict[str, Any] | None = None,
) -> bool:
    """Stop every reminder to the address: a ledger entry, its queued sends cancelled, an
    audit row naming the send but not the address. Idempotent: ``False`` (and nothing
    written) when the address already has an entry of this kind."""
    repo = LedgerRepository(conn)
    keys = {email_key, suppression_key(shop_id, email_key)}
    if any(row.kind == kind.value for row in repo.history(shop_id, keys)):
        return False
    repo.append([entry(shop_id, email_key, kind, source, now, send_id=send_id, evidence=evidence)])
    cancelled = SenderRepository(conn).cancel_pending(
        now, STOP_REASONS[kind], shop_id=shop_id, email_key=email_key
    )
    write_audit(
        conn,
        [
            {
                "shop_id": shop_id,
                "cart_id": None,
                "at": now,
                "actor": actor,
                "action": f"consent:{kind.value}",
                "reason": source,
                "before": None,
                "after": {"send_id": send_id, "cancelled_sends": cancelled},
            }
        ],
    )
    return True
