"""Use cases of the cart list: apply canonical events, in the caller's transaction.

Events arrive in batches (the ingest writer commits many deliveries at once), so the cart
list is read and written a batch at a time: one query finds every cart the batch names,
one locks and loads them, the pure rules of ``carts.state`` fold the events in memory,
and a handful of statements write the results. The number of statements is the same for
one event or two hundred, which is what makes group commit pay.

Every identifier in an event leads to the same cart; if the events of a batch (or their
identifiers) show that two carts are one — a Shopify cart and its checkout that arrived
separately — they are merged by ``join``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cartnudge.carts.repository import CartRepository
from cartnudge.carts.state import CartState, fold, join, mark_bought, new_state
from cartnudge.db.models import CartStatus, ConsentKind
from cartnudge.delivery.repository import SenderRepository
from cartnudge.intake.events import CartEvent, email_key, order_version, version_of
from cartnudge.privacy.consent import entry as consent_entry
from cartnudge.privacy.ledger_repository import LedgerRepository
from cartnudge.shops.repository import ShopRecord
from cartnudge.timing.policy import wake_at
from cartnudge.timing.rules import Rules
from cartnudge.timing.service import rules_of

Key = tuple[int, str, str]  # (shop id, key kind, key value)


class ConcurrentChange(Exception):
    """Another process changed a cart this batch read (PostgreSQL, several writers): a
    cart it found was merged away, or a cart it created was created at the same moment
    elsewhere. The whole batch is rolled back and applied again, seeing that change."""


@dataclass(frozen=True, slots=True)
class Applied:
    cart_id: int | None
    created: bool = False


def _summary(state: CartState) -> dict[str, Any]:
    return {"status": state.status.value, "reason": state.status_reason}


def _wake(state: CartState, shop: ShopRecord, rules: Rules, stored: Any | None) -> datetime | None:
    """The cart's timer after this batch: any activity restarts the wait for its next step
    (and reopens an expired cart, see ``carts.state.give_up``)."""
    return wake_at(
        status=state.status,
        last_activity_at=state.last_activity_at,
        total_minor=state.total_minor,
        currency=state.currency,
        activated_at=shop.activated_at,
        rules=rules,
        reminders_sent=stored.reminders_sent if stored is not None else 0,
        last_reminder_at=stored.last_reminder_at if stored is not None else None,
        reachable=state.email_key is not None,
    )


@dataclass(frozen=True, slots=True)
class _Reminded:
    """The waiter's part of a cart: the steps decided so far, and when the latest was."""

    reminders_sent: int = 0
    last_reminder_at: datetime | None = None


def _reminded(present: Sequence[Any]) -> _Reminded:
    """Of carts that are one, the steps either had are the merged cart's: none of them is
    decided again, and the next is timed from the latest."""
    times = [row.last_reminder_at for row in present if row.last_reminder_at is not None]
    return _Reminded(
        max((row.reminders_sent for row in present), default=0), max(times, default=None)
    )


@dataclass
class _Group:
    """The events of one batch that concern one cart, and the stored carts they name."""

    shop: ShopRecord
    events: list[int] = field(default_factory=list)
    keys: set[Key] = field(default_factory=set)
    cart_ids: set[int] = field(default_factory=set)


class _Groups:
    """Union-find over events, keys and stored carts: what is connected is one cart."""

    def __init__(self) -> None:
        self.parent: dict[object, object] = {}

    def find(self, node: object) -> object:
        self.parent.setdefault(node, node)
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:  # path compression
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, a: object, b: object) -> None:
        self.parent[self.find(a)] = self.find(b)


def apply_events(
    repo: CartRepository, items: Sequence[tuple[ShopRecord, CartEvent]], now: datetime
) -> list[Applied]:
    """Apply every event; return each event's cart (``None`` if it named none)."""
    batch = _Batch(repo, items, now)
    batch.fold_groups()
    batch.write()
    # Orders that name no cart buy the same shopper's carts by email (rare). They read
    # what the batch has just written; the join rules make that order-independent. Their
    # own event names no cart: which cart such an order bought can change as later events
    # arrive, so that answer lives on the order (``_name_keyless_orders``).
    addresses = set(batch.orders)
    for shop, event in items:
        if not event.keys and event.order is not None:
            repo.record_orders([_order_row(shop, event, now)])
            if key := _match_order_by_email(repo, shop, event, now):
                addresses.add((shop.id, key))
    _name_keyless_orders(repo, addresses)
    return batch.results


class _Batch:
    """One batch: read everything it names, fold in memory, write in a few statements."""

    def __init__(
        self, repo: CartRepository, items: Sequence[tuple[ShopRecord, CartEvent]], now: datetime
    ) -> None:
        self.repo, self.items, self.now = repo, items, now
        self.results: list[Applied] = [Applied(None)] * len(items)
        keyed = [i for i, (_, event) in enumerate(items) if event.keys]
        self.known = repo.carts_for_keys(
            (shop.id, str(kind), value)
            for shop, event in (items[i] for i in keyed)
            for kind, value in event.keys
        )
        self.groups = _group(items, keyed, self.known)
        self.stored = repo.load_many(c for g in self.groups for c in g.cart_ids)
        if any(c not in self.stored for g in self.groups for c in g.cart_ids):
            raise ConcurrentChange("a cart named by this batch was merged away meanwhile")
        self.orders = _keyless_orders_index(repo, items, self.groups, self.stored)
        self.rules = rules_of(repo.conn, {group.shop.id for group in self.groups})
        self.inserts: list[tuple[int, str, CartState, dict[str, Any]]] = []
        self.updates: list[dict[str, Any]] = []
        self.audits: list[tuple[int, dict[str, Any]]] = []  # (group index, row)
        self.order_rows: list[tuple[int, dict[str, Any]]] = []
        self.consents: list[tuple[int, dict[str, Any]]] = []  # (group index, ledger row)
        self.group_cart: dict[int, int] = {}

    def fold_groups(self) -> None:
        for index, group in enumerate(self.groups):
            self._fold(index, group)

    def _fold(self, index: int, group: _Group) -> None:
        shop, now = group.shop, self.now
        present = [self.stored[c] for c in sorted(group.cart_ids) if c in self.stored]
        before = CartState.from_row(present[0]) if present else None
        state = before
        for row in present[1:]:
            assert state is not None
            state = join(state, CartState.from_row(row))
        for i in group.events:
            event = self.items[i][1]
            state = fold(state, event) if state is not None else new_state(event)
            if event.order is not None:
                self.order_rows.append((index, _order_row(shop, event, now)))
        assert state is not None
        state = _buy_by_email(state, self.orders.get((shop.id, state.email_key or "")), shop)
        stored = _reminded(present)
        rules = self.rules[shop.id].value
        values = {
            **state.as_row(),
            "reminders_sent": stored.reminders_sent,
            "last_reminder_at": stored.last_reminder_at,
            "next_wake_at": _wake(state, shop, rules, stored),
            "updated_at": now,
        }
        actor = f"intake:{self.items[group.events[0]][1].source}"
        if before is None:
            self.inserts.append(
                (index, actor, state, {**values, "shop_id": shop.id, "created_at": now})
            )
        else:
            cart_id = present[0].id
            self.group_cart[index] = cart_id
            self.updates.append({**values, "_cart_id": cart_id})
            if len(present) > 1:
                gone = [row.id for row in present[1:]]
                cancelled = SenderRepository(self.repo.conn).take_over(shop.id, cart_id, gone, now)
                self.repo.absorb(shop.id, cart_id, gone)
                merged = _audit(
                    shop, now, actor, "merged", f"carts {gone} were this cart",
                    after={"cancelled_sends": cancelled} if cancelled else None,
                )  # fmt: skip
                self.audits.append((index, merged))
        if fact := _consent_fact(shop, before, state, [self.items[i][1] for i in group.events]):
            self.consents.append((index, fact))
        if state.status is not (before.status if before else CartStatus.OPEN):
            reopened = before is not None and before.status is CartStatus.EXPIRED
            reopened &= state.status is CartStatus.OPEN
            change = _audit(
                shop, now, actor, f"status:{state.status.value}",
                "the shopper came back" if reopened else state.status_reason,
                _summary(before) if before else None, _summary(state),
            )  # fmt: skip
            self.audits.append((index, change))

    def write(self) -> None:
        repo = self.repo
        new_ids = repo.insert_many([values for *_, values in self.inserts])
        created = []
        for (index, actor, state, _), cart_id in zip(self.inserts, new_ids, strict=True):
            self.group_cart[index] = cart_id
            row = _audit(self.groups[index].shop, self.now, actor, "created", after=_summary(state))
            created.append((index, row))
        repo.update_many(self.updates)
        new_groups = {index for index, *_ in self.inserts}
        links = []
        for index, group in enumerate(self.groups):
            cart_id = self.group_cart[index]
            for i in group.events:
                # The group's first event made the cart; the others updated it.
                made = index in new_groups and i == group.events[0]
                self.results[i] = Applied(cart_id, created=made)
            links += [
                {"shop_id": k[0], "kind": k[1], "value": k[2], "cart_id": cart_id}
                for k in sorted(group.keys)
                if self.known.get(k) != cart_id
            ]
        inserted = repo.link_many(links)
        wanted = {(r["shop_id"], r["kind"], r["value"]) for r in links}
        if any(k not in self.known and k not in inserted for k in wanted):
            raise ConcurrentChange("another writer created a cart for the same key meanwhile")
        repo.record_orders([{**row, "cart_id": self.group_cart[i]} for i, row in self.order_rows])
        repo.audit_many(
            [{**row, "cart_id": self.group_cart[index]} for index, row in created + self.audits]
        )
        LedgerRepository(repo.conn).append(
            [
                {**row, "evidence": {**row["evidence"], "cart": self.group_cart[index]}}
                for index, row in self.consents
            ]
        )


def _consent_fact(
    shop: ShopRecord, before: CartState | None, after: CartState, events: list[CartEvent]
) -> dict[str, Any] | None:
    """A ledger row when this batch captured the shopper's choice at checkout for an
    address: a new answer, or the same answer for a new address. ``None`` otherwise."""
    if after.email_key is None or after.accepts_marketing is None:
        return None
    if before is not None and (before.email_key, before.accepts_marketing) == (
        after.email_key,
        after.accepts_marketing,
    ):
        return None
    told = [e for e in events if e.accepts_marketing is not None]
    if not told:  # the answer was on the cart already; only the address is new
        source, evidence = after.consent_source or "unknown", {}
    else:
        source = told[-1].consent_source or told[-1].source
        evidence = {"event": f"{told[-1].source}:{told[-1].external_id}"}
    kind = ConsentKind.OPT_IN if after.accepts_marketing else ConsentKind.DECLINED
    return consent_entry(
        shop.id,
        after.email_key,
        kind,
        source,
        told[-1].occurred_at if told else after.last_activity_at,
        evidence=evidence,
    )


def _group(
    items: Sequence[tuple[ShopRecord, CartEvent]], keyed: list[int], known: dict[Key, int]
) -> list[_Group]:
    uf = _Groups()
    for i in keyed:
        shop, event = items[i]
        for kind, value in event.keys:
            key: Key = (shop.id, str(kind), value)
            uf.union(("event", i), ("key", key))
            if key in known:
                uf.union(("key", key), ("cart", known[key]))
    by_root: dict[object, _Group] = {}
    ordered: list[_Group] = []
    for i in keyed:
        shop, event = items[i]
        root = uf.find(("event", i))
        group = by_root.get(root)
        if group is None:
            group = by_root[root] = _Group(shop)
            ordered.append(group)
        group.events.append(i)
        for kind, value in event.keys:
            key = (shop.id, str(kind), value)
            group.keys.add(key)
            if key in known:
                group.cart_ids.add(known[key])
    return ordered


def _keyless_orders_index(
    repo: CartRepository,
    items: Sequence[tuple[ShopRecord, CartEvent]],
    groups: list[_Group],
    stored: dict[int, Any],
) -> dict[tuple[int, str], list[Any]]:
    """Orders that named no cart, for every email the batch's carts have (one query)."""
    pairs: set[tuple[int, str]] = set()
    for group in groups:
        for i in group.events:
            if key := email_key(items[i][1].email):
                pairs.add((group.shop.id, key))
        for cart_id in group.cart_ids:
            row = stored.get(cart_id)
            if row is not None and row.email_key:
                pairs.add((group.shop.id, row.email_key))
    index: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for order in repo.keyless_orders_by_email(pairs):
        index[(order.shop_id, order.email_key)].append(order)
    return index


def _buy_by_email(state: CartState, candidates: list[Any] | None, shop: ShopRecord) -> CartState:
    """Orders that named no cart buy this cart if the shopper (same email) was active on it
    within the shop's window before the order. Applied whether or not the cart is bought
    already: the versions decide which order names it, whatever arrived first."""
    window = timedelta(seconds=shop.order_match_window_s)
    for order in candidates or ():
        if state.first_activity_at <= order.placed_at <= state.last_activity_at + window:
            version = order_version(order.placed_at, order.source, order.external_id)
            state = mark_bought(
                state, at=order.placed_at, order_ref=order.external_id, version=version
            )
    return state


def _name_keyless_orders(repo: CartRepository, addresses: set[tuple[int, str]]) -> None:
    """Each order of these (shop, email) pairs that named no cart names the cart it bought:
    of the carts whose order it is, the one the shopper was active on last (then the
    lowest id), or none. Worked out again from the stored carts every time, so it does
    not depend on which events arrived first, and an order that loses its cart to an
    order that named it moves on."""
    if not addresses:
        return
    best: dict[tuple[int, str, str], int] = {}
    carts = repo.bought_by_email(addresses)
    for cart in sorted(carts, key=lambda c: (c.last_activity_at, -c.id)):
        best[(cart.shop_id, cart.email_key, cart.order_ref)] = cart.id  # the last one wins
    repo.set_order_carts(
        [
            {"_order_id": order.id, "_cart_id": named}
            for order in repo.keyless_orders_by_email(addresses)
            if (named := best.get((order.shop_id, order.email_key, order.external_id)))
            != order.cart_id
        ]
    )


def _order_row(shop: ShopRecord, event: CartEvent, now: datetime) -> dict[str, Any]:
    assert event.order is not None
    return {
        "shop_id": shop.id,
        "source": event.source,
        "external_id": event.order.external_id,
        "placed_at": event.order.placed_at,
        "email_key": email_key(event.email),
        "currency": event.order.currency,
        "total_minor": event.order.total_minor,
        "has_cart_keys": bool(event.keys),
        "cart_id": None,
        "created_at": now,
        "version": version_of(
            event.order.updated_at or event.occurred_at, event.source, event.external_id
        ),
    }


def _audit(
    shop: ShopRecord,
    at: datetime,
    actor: str,
    action: str,
    reason: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "shop_id": shop.id,
        "at": at,
        "actor": actor,
        "action": action,
        "reason": reason,
        "before": before,
        "after": after,
    }


def _match_order_by_email(
    repo: CartRepository, shop: ShopRecord, event: CartEvent, now: datetime
) -> str | None:
    """An order that names no cart: the same shopper's carts active near it are bought.
    Returns the address it was matched on (``None`` without one)."""
    assert event.order is not None
    key = email_key(event.email)
    if key is None:
        return None
    ids = repo.near_by_email(shop.id, key, event.order.placed_at, shop.order_match_window_s)
    version = order_version(event.order.placed_at, event.source, event.order.external_id)
    audits = []
    for cart_id, row in repo.load_many(ids).items():
        before = CartState.from_row(row)
        after = mark_bought(
            before, at=event.order.placed_at, order_ref=event.order.external_id, version=version
        )
        if after == before:
            continue
        repo.update(cart_id, {**after.as_row(), "next_wake_at": None}, now)
        if after.status is not before.status:
            change = _audit(
                shop, now, f"intake:{event.source}", f"status:{after.status.value}",
                after.status_reason, _summary(before), _summary(after),
            )  # fmt: skip
            audits.append({**change, "cart_id": cart_id})
    repo.audit_many(audits)
    return key
