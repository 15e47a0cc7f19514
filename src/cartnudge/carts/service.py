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
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from cartnudge.carts.matching import (
    KeylessOrder,
    assign,
    keep_match,
    own,
    why_not_closing,
    with_match,
)
from cartnudge.carts.repository import CartRepository
from cartnudge.carts.state import CartState, fold, join, new_state
from cartnudge.db.audit import write_audit
from cartnudge.db.models import CartStatus, ConsentKind
from cartnudge.delivery.service import hand_over_sends
from cartnudge.events import CartEvent, EventKind, email_key, version_of
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
    # For an order: the cart it closed, or why it closed none.
    closed_cart_id: int | None = None
    not_closed: str | None = None


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
    """Apply every event; return each event's cart (``None`` if it named none) and, for
    an order, the cart it closed."""
    batch = _Batch(repo, items, now)
    batch.fold_groups()
    batch.write()
    # Orders that name no cart buy one cart of the same shopper's, matched by address
    # (rare). Their own event names no cart: which cart such an order bought can change
    # as later events arrive, so that answer lives on the order and on the cart's match,
    # both worked out again from what is stored (``_rematch``).
    keyless = [i for i, (_, event) in enumerate(items) if not event.keys and event.order]
    rows = [_order_row(*items[i], now) for i in keyless]
    repo.record_orders(rows)
    refunds = batch.order_refunds + [
        (row, _refunds(items[i][1])) for i, row in zip(keyless, rows, strict=True)
    ]
    repo.add_refunds(
        [(r["shop_id"], r["source"], r["external_id"], found) for r, found in refunds if found]
    )
    addresses = set(batch.orders)
    addresses |= {(row["shop_id"], row["email_key"]) for row in rows if row["email_key"]}
    shops = {shop.id: shop for shop, _ in items}
    bought = _rematch(repo, shops, addresses, now)
    for i, row in zip(keyless, rows, strict=True):
        shop, event = items[i]
        closed = bought.get((shop.id, row["source"], row["external_id"]))
        reason = not_closing(shop, event)
        if reason is None and closed is None:
            reason = (
                "no address to match a cart by"
                if row["email_key"] is None
                else "no cart of this address open within the order match window"
            )
        batch.results[i] = Applied(None, closed_cart_id=closed, not_closed=reason)
    return batch.results


def not_closing(shop: ShopRecord, event: CartEvent) -> str | None:
    """Why this event's order closes no cart (``None``: it is a purchase, or no order)."""
    order = event.order
    if order is None:
        return None
    if event.kind is EventKind.ORDER_CHANGED:
        return "a change to an order, recorded on the order"
    return why_not_closing(
        cancelled=order.cancelled_at is not None,
        financial_status=order.financial_status,
        test=order.test,
        test_orders_close=shop.test_orders_close_carts,
    )


def _refunds(event: CartEvent) -> dict[str, int]:
    return dict(event.order.refunds) if event.order is not None else {}


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
        self.order_refunds: list[tuple[dict[str, Any], dict[str, int]]] = []
        self.not_closed: dict[int, str | None] = {}  # event index: why its order closed none
        self.consents: list[tuple[int, dict[str, Any]]] = []  # (group index, ledger row)
        self.group_cart: dict[int, int] = {}

    def fold_groups(self) -> None:
        for index, group in enumerate(self.groups):
            self._fold(index, group)

    def _fold(self, index: int, group: _Group) -> None:
        shop, now = group.shop, self.now
        present = [self.stored[c] for c in sorted(group.cart_ids) if c in self.stored]
        # Events fold into each cart's own state; a purchase matched by address stays
        # laid over it while the cart's own purchase does not replace it (``_rematch``
        # then decides again whether it holds).
        before = CartState.from_row(present[0]) if present else None
        state = own(before) if before is not None else None
        for row in present[1:]:
            assert state is not None
            state = join(state, own(CartState.from_row(row)))
        for i in group.events:
            event = self.items[i][1]
            if event.order is not None:
                order_row = _order_row(shop, event, now)
                self.order_rows.append((index, order_row))
                self.order_refunds.append((order_row, _refunds(event)))
                self.not_closed[i] = not_closing(shop, event)
                if self.not_closed[i] is not None:
                    # What it says of the shopper still counts; it is no purchase.
                    event = replace(event, kind=EventKind.CART_UPDATED)
            state = fold(state, event) if state is not None else new_state(event)
        assert state is not None
        if before is not None:
            state = keep_match(before, state)
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
                cancelled = hand_over_sends(self.repo.conn, shop.id, cart_id, gone, now)
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
                if i in self.not_closed:
                    reason = self.not_closed[i]
                    closed = None if reason is not None else cart_id
                    self.results[i] = Applied(cart_id, made, closed, reason)
                else:
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
        write_audit(
            repo.conn,
            [{**row, "cart_id": self.group_cart[index]} for index, row in created + self.audits],
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


def _order_row(shop: ShopRecord, event: CartEvent, now: datetime) -> dict[str, Any]:
    order = event.order
    assert order is not None
    change_only = event.kind is EventKind.ORDER_CHANGED
    return {
        "shop_id": shop.id,
        # One purchase is one row however it came (a webhook, a CSV row): the platform's.
        "source": order.platform or event.source,
        "external_id": order.external_id,
        "placed_at": order.placed_at,
        "email_key": email_key(event.email),
        "currency": order.currency,
        "total_minor": order.total_minor,
        "has_cart_keys": bool(event.keys),
        "cart_id": None,
        "created_at": now,
        "version": ""
        if change_only
        else version_of(order.updated_at or event.occurred_at, event.source, event.external_id),
        "cancelled_at": order.cancelled_at,
        "financial_status": order.financial_status,
        "test": order.test,
        "placed_live": not change_only
        and order.cancelled_at is None
        and (order.financial_status or "").lower() != "voided",
        "refunds": None,
        "refunded_minor": 0,
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


def _rematch(
    repo: CartRepository,
    shops: dict[int, ShopRecord],
    addresses: set[tuple[int, str]],
    now: datetime,
) -> dict[tuple[int, str, str], int]:
    """Match again every order that named no cart, for these (shop, email) pairs, from
    the stored carts and orders (see ``carts.matching``); lay each match over its cart,
    lift the matches that moved away, and name the matched cart on each order. Returns
    the cart each matched order bought, by (shop id, source, order id)."""
    if not addresses:
        return {}
    carts_of: dict[tuple[int, str], dict[int, Any]] = defaultdict(dict)
    for row in repo.carts_by_email(addresses):
        carts_of[(row.shop_id, row.email_key)][row.id] = row
    orders_of: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for order in repo.keyless_orders_by_email(addresses):
        orders_of[(order.shop_id, order.email_key)].append(order)
    rules = rules_of(repo.conn, {shop_id for shop_id, _ in addresses})
    updates: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    named: list[dict[str, Any]] = []
    matched: dict[int, int] = {}  # order row id: cart id
    for address in sorted(addresses):
        shop = shops[address[0]]
        rows = carts_of.get(address, {})
        owns = {cart_id: own(CartState.from_row(row)) for cart_id, row in rows.items()}
        # An order once seen live was a purchase, whatever became of it later; a test
        # order only where the shop lets test orders close carts.
        orders = {
            o.id: _keyless(o)
            for o in orders_of.get(address, [])
            if o.placed_live and (not o.test or shop.test_orders_close_carts)
        }
        window = timedelta(seconds=shop.order_match_window_s)
        bought = assign(owns, orders.values(), window)
        matched.update(bought)
        order_of_cart = {cart_id: orders[order_id] for order_id, cart_id in bought.items()}
        for cart_id, row in sorted(rows.items()):
            stored = CartState.from_row(row)
            after = with_match(owns[cart_id], order_of_cart.get(cart_id))
            if after == stored:
                continue
            wake = _wake(after, shop, rules[shop.id].value, row)
            updates.append({**after.as_row(), "next_wake_at": wake, "_cart_id": cart_id})
            if after.status is not stored.status:
                change = _audit(
                    shop, now, "intake:order-match", f"status:{after.status.value}",
                    after.status_reason, _summary(stored), _summary(after),
                )  # fmt: skip
                audits.append({**change, "cart_id": cart_id})
        named += [
            {"_order_id": o.id, "_cart_id": bought.get(o.id)}
            for o in orders_of.get(address, [])
            if bought.get(o.id) != o.cart_id
        ]
    repo.update_many([{**row, "updated_at": now} for row in updates])
    write_audit(repo.conn, audits)
    repo.set_order_carts(named)
    return {
        (o.shop_id, o.source, o.external_id): matched[o.id]
        for found in orders_of.values()
        for o in found
        if o.id in matched
    }


def _keyless(order: Any) -> KeylessOrder:
    return KeylessOrder(
        row_id=order.id,
        source=order.source,
        external_id=order.external_id,
        placed_at=order.placed_at,
        currency=order.currency,
        total_minor=order.total_minor,
    )
