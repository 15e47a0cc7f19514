"""What an owner can do to carts from the dashboard, one or many at a time: suppress, write
off, unsubscribe the cart's address. Each cart is checked to belong to the shop, changed
through its stage's own service, and audited under the user's name. The caller commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from cartnudge.carts.actions import ActionError, stop_cart
from cartnudge.carts.repository import CartRepository
from cartnudge.carts.state import STATUS_RANK
from cartnudge.db.audit import write_audit
from cartnudge.db.models import CartStatus, ConsentKind
from cartnudge.privacy.consent import stop


@dataclass(frozen=True)
class Action:
    label: str  # the button
    question: str  # the confirmation page's heading
    done: str  # the notice afterwards
    needs_reason: bool


ACTIONS = {
    "suppress": Action(
        "Suppress", "Send no reminder about these carts?", "Suppressed", needs_reason=False
    ),
    "write_off": Action(
        "Write off",
        "Write off these carts (no reminder, not counted as lost)?",
        "Written off",
        needs_reason=True,
    ),
    "unsubscribe": Action(
        "Unsubscribe the address",
        "Stop every reminder to these carts' addresses, in this shop, for good?",
        "Unsubscribed",
        needs_reason=False,
    ),
}


def applies(action: str, status: str, has_address: bool) -> bool:
    """Whether ``action`` can change a cart in ``status`` (the buttons a cart's page
    offers): an owner's stop over a cart not yet stopped or bought, an unsubscribe for a
    cart with an address."""
    if action == "unsubscribe":
        return has_address
    return STATUS_RANK[CartStatus(status)] < STATUS_RANK[CartStatus.SUPPRESSED]


@dataclass(frozen=True)
class ActionRequest:
    action: str  # a key of ACTIONS
    cart_ids: list[int]
    reason: str | None
    actor: str  # "user:<login>", at most 64 characters


def act_on_carts(
    conn: Connection, shop_id: int, asked: ActionRequest, now: datetime
) -> dict[str, Any]:
    """Apply the action to each cart of the shop; carts it cannot apply to (another shop's,
    already stopped) are left as they are and said why."""
    if asked.action not in ACTIONS:
        raise ValueError(f"no action {asked.action!r}")
    if ACTIONS[asked.action].needs_reason and not asked.reason:
        raise ValueError("a reason is needed")
    repo = CartRepository(conn)
    done, skipped = 0, []
    for cart_id in asked.cart_ids:
        try:
            if asked.action == "unsubscribe":
                row = repo.get(shop_id, cart_id)
                if row is None:
                    raise ActionError(f"no cart {cart_id} in this shop")
                _unsubscribe(conn, row, asked, now)
            else:
                status = (
                    CartStatus.SUPPRESSED if asked.action == "suppress" else CartStatus.WRITTEN_OFF
                )
                stop_cart(
                    conn,
                    cart_id,
                    status,
                    now,
                    reason=asked.reason,
                    actor=asked.actor,
                    shop_id=shop_id,
                )
        except ActionError as exc:
            skipped.append(str(exc))
            continue
        done += 1
    return {"done": done, "skipped": skipped}


def _unsubscribe(conn: Connection, cart: Any, asked: ActionRequest, now: datetime) -> None:
    if not cart.email_key:
        raise ActionError(f"cart {cart.id} has no usable address")
    added = stop(
        conn,
        cart.shop_id,
        cart.email_key,
        now,
        kind=ConsentKind.UNSUBSCRIBE,
        source="owner:dashboard",
        actor=asked.actor,
        evidence={"cart_id": cart.id, **({"note": asked.reason} if asked.reason else {})},
    )
    if not added:
        raise ActionError(f"cart {cart.id}'s address is already unsubscribed")
    # The ledger's own audit row names no cart; this one puts it on the cart's timeline.
    write_audit(
        conn,
        [
            {
                "shop_id": cart.shop_id,
                "cart_id": cart.id,
                "at": now,
                "actor": asked.actor,
                "action": "consent:unsubscribe",
                "reason": asked.reason,
                "before": None,
                "after": {"address": "unsubscribed"},
            }
        ],
    )
