"""Orders that name no cart, each matched to the one cart of the shopper's it bought.

Pure rules over plain data. An order with no cart or checkout token buys one cart of the
same address: of the carts the shopper was active on within the shop's window before it,
and that no purchase of their own closed, one whose total is the order's (same currency)
first, then the one she was active on last. Other carts of that shopper stay open and
keep their reminders.

Which cart that is can change as deliveries arrive (a cart she was active on later may
arrive after the order), so the match is worked out again from everything stored each
time a delivery touches the address, and kept on the cart as an overlay over the cart's
own state (``matched``): the cart's own events are folded under it, and a better match
lifts it off again. That is what keeps the result independent of arrival order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cartnudge.carts.state import CartState
from cartnudge.db.models import CartStatus
from cartnudge.events import order_version

# Keys of ``CartState.versions`` that hold a match: the matched order's version, and the
# cart's own status and reason under it (restored when the match moves away).
MATCHED = "matched"
OWN_STATUS = "own_status"
OWN_REASON = "own_reason"


@dataclass(frozen=True, slots=True)
class KeylessOrder:
    """An order that named no cart, as matching needs it."""

    row_id: int
    source: str
    external_id: str
    placed_at: datetime
    currency: str | None
    total_minor: int | None


def why_not_closing(
    *, cancelled: bool, financial_status: str | None, test: bool, test_orders_close: bool
) -> str | None:
    """Why an order closes no cart, or ``None`` when it is a real purchase. A cancelled or
    voided order never counts; a test order counts only where the shop lets it."""
    if cancelled:
        return "the order was cancelled"
    if (financial_status or "").lower() == "voided":
        return "the order's payment was voided"
    if test and not test_orders_close:
        return "a test order; this shop's test orders close no cart"
    return None


def own(state: CartState) -> CartState:
    """The cart as its own events left it, without a purchase matched by address."""
    if MATCHED not in state.versions:
        return state
    versions = dict(state.versions)
    del versions[MATCHED]
    status = CartStatus(versions.pop(OWN_STATUS, CartStatus.OPEN.value))
    reason = versions.pop(OWN_REASON, "") or None
    return replace(
        state,
        status=status,
        status_reason=reason,
        bought_at=None,
        order_ref=None,
        versions=versions,
    )


def with_match(state: CartState, order: KeylessOrder | None) -> CartState:
    """``state`` (its own, see ``own``) bought by ``order``, or as it is for ``None``."""
    if order is None:
        return state
    versions = {
        **state.versions,
        MATCHED: order_version(order.placed_at, order.source, order.external_id),
        OWN_STATUS: state.status.value,
        OWN_REASON: state.status_reason or "",
    }
    return replace(
        state,
        status=CartStatus.BOUGHT,
        status_reason=f"order {order.external_id} (same email)",
        bought_at=order.placed_at,
        order_ref=order.external_id,
        versions=versions,
    )


def keep_match(before: CartState, state: CartState) -> CartState:
    """``state`` (a cart's own, after new events) under the match ``before`` carried, if
    any, unless the cart's own purchase now closes it."""
    if MATCHED not in before.versions or state.status is CartStatus.BOUGHT:
        return state
    versions = {
        **state.versions,
        MATCHED: before.versions[MATCHED],
        OWN_STATUS: state.status.value,
        OWN_REASON: state.status_reason or "",
    }
    return replace(
        state,
        status=CartStatus.BOUGHT,
        status_reason=before.status_reason,
        bought_at=before.bought_at,
        order_ref=before.order_ref,
        versions=versions,
    )


def assign(
    carts: dict[int, CartState], orders: Iterable[KeylessOrder], window: timedelta
) -> dict[int, int]:
    """Which cart (by id) each order (by row id) bought; an order that bought none of
    these carts is absent. ``carts`` are one address's carts, each in its own state.

    Orders are matched earliest first, each to a cart no earlier order took."""
    taken: set[int] = set()
    found: dict[int, int] = {}
    for order in sorted(orders, key=lambda o: (o.placed_at, o.source, o.external_id)):
        fits = [
            (cart_id, cart)
            for cart_id, cart in carts.items()
            if cart_id not in taken
            and cart.status is not CartStatus.BOUGHT
            and cart.first_activity_at <= order.placed_at <= cart.last_activity_at + window
        ]
        if not fits:
            continue
        cart_id, _ = max(
            fits,
            key=lambda fit: (
                _same_total(fit[1], order),
                fit[1].last_activity_at,
                fit[1].first_activity_at,
                -fit[0],
            ),
        )
        taken.add(cart_id)
        found[order.row_id] = cart_id
    return found


def _same_total(cart: CartState, order: KeylessOrder) -> bool:
    return order.total_minor is not None and (cart.currency, cart.total_minor) == (
        order.currency,
        order.total_minor,
    )
