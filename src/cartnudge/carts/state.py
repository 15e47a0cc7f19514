"""A cart's state as plain data, and the pure rules that change it.

The state is a join: applying events in any order, any number of times, gives the same
result. Each group of fields carries the version of the event that last set it and only
a newer event may change it; status only climbs (open < closed < owner-stopped < bought),
so a purchase is terminal; activity times widen. ``join`` merges two carts that turn out
to be one (a Shopify cart and its later checkout) by the same rules.

Expired is not on that ladder: it is an open cart the waiter gave up on (``give_up``),
and it lasts only while no activity is newer than the give-up. So the shopper's return
reopens it, while an event from before the give-up, however late it arrives, does not;
the give-up time only grows, like the activity times, which keeps every order the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cartnudge.db.models import CartStatus
from cartnudge.events import CartEvent, EventKind, email_key

STATUS_RANK = {
    CartStatus.OPEN: 0,
    CartStatus.EXPIRED: 0,  # open or expired: the give-up time decides (``give_up``)
    CartStatus.CLOSED: 1,
    CartStatus.SUPPRESSED: 2,
    CartStatus.WRITTEN_OFF: 2,
    CartStatus.BOUGHT: 3,
}

# Fields that change together, each group under one version.
GROUPS: dict[str, tuple[str, ...]] = {
    "basket": (
        "items",
        "currency",
        "total_minor",
        "subtotal_minor",
        "discount_minor",
        "shipping_minor",
        "tax_minor",
    ),
    "email": ("email", "address_problem"),
    "first_name": ("first_name",),
    "locale": ("locale",),
    "timezone": ("timezone",),
    "return_url": ("return_url",),
    "consent": ("accepts_marketing", "consent_source"),
}


@dataclass(frozen=True, slots=True)
class CartState:
    status: CartStatus
    source: str
    first_activity_at: datetime
    last_activity_at: datetime
    items: list[dict[str, Any]] = field(default_factory=list)
    currency: str | None = None
    total_minor: int | None = None
    subtotal_minor: int | None = None
    discount_minor: int | None = None
    shipping_minor: int | None = None
    tax_minor: int | None = None
    email: str | None = None
    address_problem: str | None = None  # why the source's address is not kept, if it is not
    first_name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    accepts_marketing: bool | None = None
    consent_source: str | None = None
    return_url: str | None = None
    saved_link: bool = False
    status_reason: str | None = None
    bought_at: datetime | None = None
    order_ref: str | None = None
    given_up_at: datetime | None = None  # the waiter's latest give-up
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def email_key(self) -> str | None:
        return email_key(self.email)

    def as_row(self) -> dict[str, Any]:
        """Column values for the ``carts`` table."""
        return {
            "status": self.status.value,
            "status_reason": self.status_reason,
            "source": self.source,
            "items": self.items,
            "currency": self.currency,
            "total_minor": self.total_minor,
            "subtotal_minor": self.subtotal_minor,
            "discount_minor": self.discount_minor,
            "shipping_minor": self.shipping_minor,
            "tax_minor": self.tax_minor,
            "email": self.email,
            "email_key": self.email_key,
            "address_problem": self.address_problem,
            "first_name": self.first_name,
            "locale": self.locale,
            "timezone": self.timezone,
            "accepts_marketing": self.accepts_marketing,
            "consent_source": self.consent_source,
            "return_url": self.return_url,
            "saved_link": self.saved_link,
            "first_activity_at": self.first_activity_at,
            "last_activity_at": self.last_activity_at,
            "bought_at": self.bought_at,
            "order_ref": self.order_ref,
            "given_up_at": self.given_up_at,
            "versions": self.versions,
        }

    @classmethod
    def from_row(cls, row: Any) -> CartState:
        return cls(
            status=CartStatus(row.status),
            status_reason=row.status_reason,
            source=row.source,
            items=list(row.items or []),
            currency=row.currency,
            total_minor=row.total_minor,
            subtotal_minor=row.subtotal_minor,
            discount_minor=row.discount_minor,
            shipping_minor=row.shipping_minor,
            tax_minor=row.tax_minor,
            email=row.email,
            address_problem=row.address_problem,
            first_name=row.first_name,
            locale=row.locale,
            timezone=row.timezone,
            accepts_marketing=row.accepts_marketing,
            consent_source=row.consent_source,
            return_url=row.return_url,
            saved_link=bool(row.saved_link),
            first_activity_at=row.first_activity_at,
            last_activity_at=row.last_activity_at,
            bought_at=row.bought_at,
            order_ref=row.order_ref,
            given_up_at=row.given_up_at,
            versions=dict(row.versions or {}),
        )


def _event_values(event: CartEvent) -> dict[str, dict[str, Any]]:
    """The groups this event speaks for, with their new values."""
    groups: dict[str, dict[str, Any]] = {}
    if event.items is not None or event.total_minor is not None:
        groups["basket"] = {
            "items": [item.as_dict() for item in event.items] if event.items is not None else [],
            "currency": event.currency,
            "total_minor": event.total_minor,
            # The parts belong to this basket: a newer basket without them clears them.
            "subtotal_minor": event.subtotal_minor,
            "discount_minor": event.discount_minor,
            "shipping_minor": event.shipping_minor,
            "tax_minor": event.tax_minor,
        }
    if event.email is not None or event.address_problem is not None:
        groups["email"] = {"email": event.email, "address_problem": event.address_problem}
    for name in ("first_name", "locale", "timezone", "return_url"):
        value = getattr(event, name)
        if value is not None:
            groups[name] = {name: value}
    if event.accepts_marketing is not None:
        groups["consent"] = {
            "accepts_marketing": event.accepts_marketing,
            "consent_source": event.consent_source,
        }
    return groups


def _event_status(event: CartEvent) -> tuple[CartStatus, str | None]:
    if event.is_purchase:
        if event.order is not None:
            return CartStatus.BOUGHT, f"order {event.order.external_id} ({event.source})"
        return CartStatus.BOUGHT, f"checkout completed ({event.source})"
    if event.kind is EventKind.CART_DELETED:
        return CartStatus.CLOSED, f"deleted at the source ({event.topic})"
    return CartStatus.OPEN, None


def new_state(event: CartEvent) -> CartState:
    acted = event.shopper_acted_at
    base = CartState(
        status=CartStatus.OPEN, source=event.source, first_activity_at=acted, last_activity_at=acted
    )
    return fold(base, event)


def fold(state: CartState, event: CartEvent) -> CartState:
    """Apply one event. Pure; idempotent; commutative with any other event's fold."""
    changes: dict[str, Any] = {}
    versions = dict(state.versions)
    for group, values in _event_values(event).items():
        if event.version > versions.get(group, ""):
            versions[group] = event.version
            changes.update(values)
    status, reason = _event_status(event)
    changes.update(_climb(state, status, reason, event.version, versions))
    if status is CartStatus.BOUGHT:
        purchased_at = event.order.placed_at if event.order else event.occurred_at
        ref = event.order.external_id if event.order else None
        changes.update(_purchase(state, purchased_at, ref, event.version, versions))
    acted = event.shopper_acted_at
    if (acted, event.source) < (state.first_activity_at, state.source):
        changes["source"] = event.source
    changes["first_activity_at"] = min(state.first_activity_at, acted)
    changes["last_activity_at"] = max(state.last_activity_at, acted)
    changes["saved_link"] = state.saved_link or event.kind is EventKind.CART_SAVED
    changes["versions"] = versions
    return _settle(replace(state, **changes))


def give_up(state: CartState, *, at: datetime, reason: str) -> CartState:
    """The waiter gave up on the cart at ``at``: expired until the shopper is active after
    that. The latest give-up counts (at one instant, the first reason in text order), so
    give-ups and events may be applied in any order."""
    if state.given_up_at is not None and at < state.given_up_at:
        return state
    if STATUS_RANK[state.status] > 0 or state.last_activity_at > at:
        return replace(state, given_up_at=at)  # closed for good, or active since
    if state.status is CartStatus.EXPIRED and state.given_up_at == at:
        reason = min(reason, state.status_reason or reason)
    return replace(state, status=CartStatus.EXPIRED, status_reason=reason, given_up_at=at)


def _settle(state: CartState) -> CartState:
    """An expired cart with activity after its give-up is open again."""
    if state.status is CartStatus.EXPIRED and (
        state.given_up_at is None or state.last_activity_at > state.given_up_at
    ):
        return replace(state, status=CartStatus.OPEN, status_reason=None)
    return state


def _climb(
    state: CartState,
    status: CartStatus,
    reason: str | None,
    version: str,
    versions: dict[str, str],
) -> dict[str, Any]:
    """Status only climbs; at equal rank the reason of the earliest event (by version) wins."""
    rank, current = STATUS_RANK[status], STATUS_RANK[state.status]
    if rank == 0:
        return {}
    if rank > current or (rank == current and version < versions.get("status", "~")):
        versions["status"] = version
        return {"status": status, "status_reason": reason}
    return {}


def _purchase(
    state: CartState, at: datetime, ref: str | None, version: str, versions: dict[str, str]
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    # The first purchase (by version) says when the cart was bought, and the first order
    # names it, whatever order they arrive in. A purchase that named the cart comes
    # before any matched by the shopper's address (see ``order_version``).
    if state.bought_at is None or version < versions.get("bought", "~~"):
        versions["bought"] = version
        changes["bought_at"] = at
    if ref is not None and ("order" not in versions or version < versions["order"]):
        versions["order"] = version
        changes["order_ref"] = ref
    return changes


def join(a: CartState, b: CartState) -> CartState:
    """Merge two states of one cart by the same rules as ``fold``."""
    changes: dict[str, Any] = {}
    versions = dict(a.versions)
    for group, fields in GROUPS.items():
        if b.versions.get(group, "") > a.versions.get(group, ""):
            versions[group] = b.versions[group]
            changes.update({name: getattr(b, name) for name in fields})
    rank_a, rank_b = STATUS_RANK[a.status], STATUS_RANK[b.status]
    if rank_b > rank_a or (
        rank_b == rank_a > 0 and b.versions.get("status", "~") < a.versions.get("status", "~")
    ):
        changes["status"], changes["status_reason"] = b.status, b.status_reason
        if "status" in b.versions:
            versions["status"] = b.versions["status"]
    if b.bought_at is not None and (
        a.bought_at is None or b.versions.get("bought", "~~") < a.versions.get("bought", "~~")
    ):
        changes["bought_at"] = b.bought_at
        if "bought" in b.versions:
            versions["bought"] = b.versions["bought"]
    if "order" in b.versions and (
        "order" not in versions or b.versions["order"] < versions["order"]
    ):
        versions["order"] = b.versions["order"]
        changes["order_ref"] = b.order_ref
    if (b.first_activity_at, b.source) < (a.first_activity_at, a.source):
        changes["source"] = b.source
    changes["first_activity_at"] = min(a.first_activity_at, b.first_activity_at)
    changes["last_activity_at"] = max(a.last_activity_at, b.last_activity_at)
    changes["saved_link"] = a.saved_link or b.saved_link
    changes["versions"] = versions
    given_up = [s.given_up_at for s in (a, b) if s.given_up_at is not None]
    changes["given_up_at"] = max(given_up, default=None)
    joined = replace(a, **changes)
    if STATUS_RANK[joined.status] > 0:
        return joined
    return _expire_joined(joined, a, b)


def _expire_joined(joined: CartState, a: CartState, b: CartState) -> CartState:
    """Two carts neither of which is closed: expired if no activity of either is after the
    later give-up, with the reason of the side that gave up then (as ``give_up`` picks)."""
    at = joined.given_up_at
    if at is None or joined.last_activity_at > at:
        return replace(joined, status=CartStatus.OPEN, status_reason=None)
    # The side whose give-up is the later one has no activity after it either: expired.
    reasons = [s.status_reason or "" for s in (a, b) if s.given_up_at == at]
    return replace(joined, status=CartStatus.EXPIRED, status_reason=min(reasons))
