"""Use cases of the cart list: apply one canonical event, in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cartnudge.carts.repository import CartRepository
from cartnudge.carts.state import CartState, fold, join, mark_bought, new_state
from cartnudge.db.models import CartStatus
from cartnudge.intake.events import CartEvent, email_key, order_version
from cartnudge.shops.repository import ShopRecord
from cartnudge.timing.policy import first_wake_at


@dataclass(frozen=True, slots=True)
class Applied:
    cart_id: int | None
    created: bool = False


def _summary(state: CartState) -> dict[str, Any]:
    return {"status": state.status.value, "reason": state.status_reason}


def _wake(state: CartState, shop: ShopRecord) -> datetime | None:
    if state.status is not CartStatus.OPEN:
        return None
    return first_wake_at(
        last_activity_at=state.last_activity_at,
        total_minor=state.total_minor,
        currency=state.currency,
        activated_at=shop.activated_at,
    )


def apply_event(repo: CartRepository, shop: ShopRecord, event: CartEvent, now: datetime) -> Applied:
    """Apply ``event`` to the cart list. The caller owns the transaction.

    Every identifier in the event leads to the same cart; if two carts turn out to be one
    (a Shopify cart and its checkout arrived separately), they are merged by ``join``.
    """
    actor = f"intake:{event.source}"
    order_pk = _record_order(repo, shop, event, now) if event.order else None
    if event.order and not event.keys:
        return _match_order_by_email(repo, shop, event, order_pk, now)

    cart_ids = repo.ids_for_keys(shop.id, event.keys)
    rows = repo.load(shop.id, cart_ids) if cart_ids else []
    before = CartState.from_row(rows[0]) if rows else None
    merged = before
    for row in rows[1:]:
        assert merged is not None
        merged = join(merged, CartState.from_row(row))
    state = fold(merged, event) if merged is not None else new_state(event)
    state, matched_orders = _keyless_orders(repo, shop, state)
    row_values = {**state.as_row(), "next_wake_at": _wake(state, shop)}

    if before is None:
        cart_id = repo.insert(shop.id, row_values, now)
        repo.audit(shop.id, cart_id, at=now, actor=actor, action="created", after=_summary(state))
    else:
        cart_id = rows[0].id
        if len(rows) > 1:
            repo.absorb(shop.id, cart_id, [row.id for row in rows[1:]])
            repo.audit(
                shop.id,
                cart_id,
                at=now,
                actor=actor,
                action="merged",
                reason=f"{event.topic} named carts {[row.id for row in rows]} as one",
                before=_summary(before),
            )
        repo.update(cart_id, row_values, now)
    if state.status is not (before.status if before else CartStatus.OPEN):
        _audit_status(repo, shop, cart_id, before, state, actor, now)
    repo.link_keys(shop.id, cart_id, event.keys)
    for pk in [order_pk, *matched_orders]:
        if pk is not None:
            repo.set_order_cart(pk, cart_id)
    return Applied(cart_id=cart_id, created=before is None)


def _audit_status(
    repo: CartRepository,
    shop: ShopRecord,
    cart_id: int,
    before: CartState | None,
    after: CartState,
    actor: str,
    now: datetime,
) -> None:
    repo.audit(
        shop.id,
        cart_id,
        at=now,
        actor=actor,
        action=f"status:{after.status.value}",
        reason=after.status_reason,
        before=_summary(before) if before else None,
        after=_summary(after),
    )


def _record_order(
    repo: CartRepository, shop: ShopRecord, event: CartEvent, now: datetime
) -> int | None:
    assert event.order is not None
    return repo.record_order(
        shop.id,
        {
            "source": event.source,
            "external_id": event.order.external_id,
            "placed_at": event.order.placed_at,
            "email_key": email_key(event.email),
            "currency": event.order.currency,
            "total_minor": event.order.total_minor,
            "has_cart_keys": bool(event.keys),
            "created_at": now,
        },
    )


def _match_order_by_email(
    repo: CartRepository,
    shop: ShopRecord,
    event: CartEvent,
    order_pk: int | None,
    now: datetime,
) -> Applied:
    """An order that names no cart: the same shopper's carts active near it are bought."""
    assert event.order is not None
    key = email_key(event.email)
    if key is None:
        return Applied(cart_id=None)
    ids = repo.unbought_by_email_near(
        shop.id, key, event.order.placed_at, shop.order_match_window_s
    )
    for row in repo.load(shop.id, ids) if ids else []:
        before = CartState.from_row(row)
        after = mark_bought(
            before,
            at=event.order.placed_at,
            order_ref=event.order.external_id,
            version=order_version(event.order.placed_at, event.source, event.order.external_id),
        )
        repo.update(row.id, {**after.as_row(), "next_wake_at": None}, now)
        _audit_status(repo, shop, row.id, before, after, f"intake:{event.source}", now)
        if order_pk is not None:
            repo.set_order_cart(order_pk, row.id)
    return Applied(cart_id=ids[0] if ids else None)


def _keyless_orders(
    repo: CartRepository, shop: ShopRecord, state: CartState
) -> tuple[CartState, list[int]]:
    """Orders that named no cart, arrived before this cart (or its email) did, and match
    it by email: the cart is bought. Returns the new state and those orders' ids."""
    key = state.email_key
    if key is None or state.status is CartStatus.BOUGHT:
        return state, []
    matched = []
    for order in repo.keyless_orders_for(
        shop.id, key, state.first_activity_at, state.last_activity_at, shop.order_match_window_s
    ):
        version = order_version(order.placed_at, order.source, order.external_id)
        state = mark_bought(state, at=order.placed_at, order_ref=order.external_id, version=version)
        matched.append(order.id)
    return state, matched
