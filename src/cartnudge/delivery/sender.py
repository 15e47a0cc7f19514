"""The sender: one pass over the queued sends whose time has come.

A batch goes through three steps, each a short transaction or none:

1. **Claim and decide** (one transaction). Sends stranded by a worker that stopped
   mid-delivery are settled first. Then the due sends are claimed and each passes the
   gates (``delivery.policy.check``) against its cart as it is now, which is the second
   guard against a purchase race. A refused send is skipped with its reason, a send in
   quiet hours is deferred, a shop without its sender identity holds its sends. A send
   that passes is marked ``sending`` with a lease, before any byte leaves.
2. **Write, hand over and deliver.** Each email is composed, then handed over: a short
   transaction marks it handed only if its cart is still open and the send still claimed
   (a purchase, an unsubscribe or an owner's stop stored after the claim withdraws it),
   and keeps the email's bytes for the owner to read later (``send_messages``); only then
   does it go to the shop's provider, in lanes side by side. So no email
   leaves after a purchase was stored; one already handed over when it lands is on the wire.
3. **Record** what each provider said, in a transaction every few seconds (which also
   renews the lease of the sends still waiting their turn) and at the end.

A worker that dies in step 2 leaves ``sending`` rows whose lease runs out within a
minute. The next pass settles them: back in the queue when they were never handed over,
or when the provider can take the same email twice without a duplicate (the file outbox),
else ``ambiguous``, shown to the owner and never resent blindly, because a duplicate
reminder is worse than a missing one.
"""

from __future__ import annotations

import logging
import random
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from cartnudge.db.models import CartStatus, ConsentKind, SendStatus
from cartnudge.db.session import each_statement, writing
from cartnudge.db.turns import TurnSize, turn_size_for
from cartnudge.delivery.policy import (
    MAX_ATTEMPTS,
    Defer,
    Go,
    Recipient,
    Skip,
    check,
    retry_delay,
    wire_address,
)
from cartnudge.delivery.providers import (
    Ambiguous,
    Delivered,
    Failed,
    FileProvider,
    Outcome,
    Provider,
    Retry,
    SmtpProvider,
    parse_mail_url,
)
from cartnudge.delivery.repository import HELD, PAUSED, SenderRepository
from cartnudge.measurement.metrics import SEND_LAG, SENDS
from cartnudge.messages.compose import Draft, Line, compose
from cartnudge.messages.service import voice_of
from cartnudge.messages.voice import Voice
from cartnudge.privacy.consent import STOP_REASONS, stopped
from cartnudge.privacy.ledger_repository import LedgerRepository
from cartnudge.shops.repository import ShopRecord, ShopRepository
from cartnudge.timing.service import rules_of
from cartnudge.tracking.policy import landing_url
from cartnudge.tracking.tokens import Purpose, make_token

log = logging.getLogger(__name__)

# Sends per claim when a caller fixes the count. The loops size each claim by time instead
# (``TurnSize``): the claim holds SQLite's write lock while it gates and composes every
# send, and the webhooks wait behind it (200 held it up to 130 ms under the soak).
BATCH = 50
HOLDER = "sender"  # this stage's name on the write-turn timings
LEASE = timedelta(seconds=60)  # a stopped worker's sends are settled within this
HEARTBEAT_S = 15.0  # record outcomes and renew the lease this often while delivering
BOUNCE_SOURCE = "smtp"  # the ledger source of a recipient refused for good
HOLD_FOR = timedelta(minutes=15)  # a held send is looked at again after this
# Providers that can take the same email twice without the shopper getting two.
_RESEND_SAFE = {p.name for p in (FileProvider, SmtpProvider) if p.resend_safe}
LOCAL_PART_MAX = 64  # RFC 5321: a longer reply address would not be deliverable


@dataclass
class SendReport:
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, other: SendReport) -> None:
        self.counts.update(other.counts)

    def as_dict(self) -> dict[str, int]:
        return {name: self.counts[name] for name in _COUNT_NAMES}


_COUNT_NAMES = (
    "claimed",
    "sent",
    "skipped",
    "deferred",
    "held",
    "retrying",
    "failed",
    "ambiguous",
    "requeued",
    "withdrawn",
)


@dataclass(frozen=True, slots=True)
class Links:
    """Where the sender's links point and what signs them."""

    public_url: str
    key: bytes


@dataclass(frozen=True, slots=True)
class Route:
    """How one shop's email leaves: the provider's name and which open providers serve it."""

    key: tuple[str, str]
    name: str  # "file" or "smtp", recorded on each send


@dataclass(frozen=True, slots=True)
class Outgoing:
    send_id: int
    attempts: int
    due_at: datetime  # when it became due (after any deferral): the lag is counted from it
    route: Route
    # Written after the claim's commit: composing a batch inside it would hold SQLite's
    # one write lock (and the webhooks waiting on it) for tens of milliseconds.
    draft: Draft
    voice: Voice
    envelope_from: str
    to: str


@dataclass(frozen=True, slots=True)
class NotHanded:
    """The email was not given to its provider: its cart was bought or closed, or the send
    cancelled, after the claim (already recorded as skipped), or the hand-off could not be
    written (the send's lease lapses and a later pass sends it)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Handed:
    """What became of one outgoing email."""

    item: Outgoing
    outcome: Outcome | NotHanded
    at: datetime
    subject: str | None  # None when it could not be written


class Providers:
    """The providers of one worker, kept across passes: per mail route, ``LANES``
    providers deliver side by side (each SMTP one keeps its connection open), so one
    email's round trips to the server overlap another's work instead of adding to it."""

    LANES = 4  # connections per SMTP route: as many as a relay comfortably accepts

    def __init__(self, outbox: Path, *, smtp_timeout_s: float = 20.0) -> None:
        self.outbox = outbox
        self.smtp_timeout_s = smtp_timeout_s
        self._make: dict[tuple[str, str], Callable[[], Provider]] = {}
        self._open: dict[tuple[tuple[str, str], int], Provider] = {}
        self._pool: ThreadPoolExecutor | None = None

    def route_of(self, shop: ShopRecord) -> Route:
        route = parse_mail_url(shop.mail_url)
        if route.kind == "file":
            key = ("file", shop.slug)
            folder = self.outbox / shop.slug
            self._make.setdefault(key, lambda: FileProvider(folder))
        else:
            key = ("smtp", shop.mail_url or "")
            timeout = self.smtp_timeout_s
            self._make.setdefault(key, lambda: SmtpProvider(route, timeout_s=timeout))
        return Route(key, route.kind)

    def provider(self, route: Route, lane: int) -> Provider:
        provider = self._open.get((route.key, lane))
        if provider is None:
            provider = self._open[(route.key, lane)] = self._make[route.key]()
        return provider

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.LANES, thread_name_prefix="cartnudge-deliver")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for provider in self._open.values():
            provider.close()
        self._open.clear()


def send_due(
    engine: Engine,
    clock: Callable[[], datetime],
    providers: Providers,
    links: Links,
    *,
    limit: int | None = None,
    turns: TurnSize | None = None,
    rng: random.Random | None = None,
) -> SendReport:
    """Batches until no send is due; each batch claimed, delivered and recorded. A claim
    takes ``limit`` sends if given, else as many as ``turns`` says fit its target time."""
    rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
    turns = turns or turn_size_for(engine)
    total = SendReport()
    while True:
        size = limit or turns.limit()
        report = send_batch(engine, clock, providers, links, limit=size, rng=rng, turns=turns)
        total.add(report)
        for outcome, n in report.counts.items():  # each batch's outcomes are recorded by now
            if outcome != "claimed" and n:
                SENDS.labels(outcome).inc(n)
        if report.counts["claimed"] < size:
            return total


def send_batch(
    engine: Engine,
    clock: Callable[[], datetime],
    providers: Providers,
    links: Links,
    *,
    limit: int = BATCH,
    rng: random.Random,
    turns: TurnSize | None = None,
) -> SendReport:
    report = SendReport()
    started = time.perf_counter()
    with writing(engine, HOLDER) as conn:
        outgoing = claim_batch(conn, clock(), providers, links, limit, report)
    if turns is not None:
        turns.record(report.counts["claimed"], time.perf_counter() - started)
    if outgoing:
        _deliver(engine, clock, providers, outgoing, report, rng)
    return report


def claim_batch(
    conn: Connection,
    now: datetime,
    providers: Providers,
    links: Links,
    limit: int,
    report: SendReport,
) -> list[Outgoing]:
    """Settle stranded sends, claim the due ones, run the gates, compose and mark
    ``sending`` what passes. The caller commits before anything is delivered."""
    repo = SenderRepository(conn)
    _settle_stranded(repo, now, providers, report)
    due = repo.claim_due(now, limit)
    report.counts["claimed"] += len(due)
    if not due:
        return []
    shop_ids = {row.shop_id for row in due}
    shops = ShopRepository(conn).by_ids(shop_ids)
    rules = rules_of(conn, shop_ids)
    voices = voice_of(conn, shop_ids)
    stops, reminded = _address_facts(repo, due)

    updates: list[dict[str, Any]] = []
    outgoing: list[Outgoing] = []
    for row in due:
        shop = shops[row.shop_id]
        if shop.paused_at is not None:
            updates.append(_row(row.id, now, due_at=now + HOLD_FOR, reason=PAUSED))
            report.counts["held"] += 1
            continue
        if shop.sender is None or not shop.postal_address:
            updates.append(_row(row.id, now, due_at=now + HOLD_FOR, reason=HELD))
            report.counts["held"] += 1
            continue
        address = (row.shop_id, row.email_key or "")
        others = [at for cart, at in reminded[address].items() if cart != row.cart_id]
        recipient = Recipient(
            cart_status=CartStatus(row.cart_status),
            email=row.email,
            accepts_marketing=row.accepts_marketing,
            consent_source=row.consent_source,
            timezone=row.timezone,
            shop_timezone=shop.timezone,
            stopped=_stop_reason(stops.get(row.shop_id, {}).get(row.email_key or "")),
            other_cart_reminded_at=max(others, default=None),
        )
        shop_rules = rules[row.shop_id].value
        verdict = check(recipient, shop_rules, now)
        if isinstance(verdict, Skip):
            updates.append(_row(row.id, now, status=SendStatus.SKIPPED, reason=verdict.reason))
            report.counts["skipped"] += 1
        elif isinstance(verdict, Defer):
            updates.append(_row(row.id, now, due_at=verdict.until, reason=verdict.reason))
            report.counts["deferred"] += 1
        else:
            assert isinstance(verdict, Go)
            voice = voices[row.shop_id]
            draft = _draft(row, shop, links, now, last_step=row.step >= shop_rules.steps)
            route = providers.route_of(shop)
            updates.append(
                _row(
                    row.id,
                    now,
                    status=SendStatus.SENDING,
                    reason=None,
                    claimed_until=now + LEASE,
                    email_key=row.email_key,
                    consent_basis=verdict.consent_basis,
                    provider=route.name,
                    message_id=draft.message_id,
                    voice_version=voice.version,
                    sent_at=now,
                    attempts=row.attempts + 1,
                )
            )
            assert row.email is not None and shop.sender_email is not None  # the gates
            outgoing.append(
                Outgoing(
                    row.id,
                    row.attempts + 1,
                    row.due_at,
                    route,
                    draft,
                    voice.value,
                    shop.sender_email,
                    wire_address(row.email),
                )
            )
            reminded[address][row.cart_id] = now
    repo.update(updates)
    return outgoing


def _stop_reason(kind: ConsentKind | None) -> str | None:
    return STOP_REASONS[kind] if kind is not None else None


def _address_facts(
    repo: SenderRepository, due: list[Any]
) -> tuple[dict[int, dict[str, ConsentKind]], dict[tuple[int, str], dict[int, datetime]]]:
    """Per shop, the batch's stopped addresses and why; per address, the latest reminder per
    cart that may have reached it. The caller adds this batch's own sends to the latter
    as they pass, so two carts of one address in one batch get one reminder."""
    addresses: dict[int, set[str]] = defaultdict(set)
    for row in due:
        if row.email_key:
            addresses[row.shop_id].add(row.email_key)
    repo.lock_addresses((s, email) for s, keys in addresses.items() for email in keys)
    stops = {s: stopped(repo.conn, s, keys) for s, keys in addresses.items()}
    reminded: dict[tuple[int, str], dict[int, datetime]] = defaultdict(dict)
    for shop_id, keys in addresses.items():
        for r in repo.reminded(shop_id, keys):
            reminded[(shop_id, r.email_key)][r.cart_id] = r.at
    return stops, reminded


def _deliver(
    engine: Engine,
    clock: Callable[[], datetime],
    providers: Providers,
    outgoing: list[Outgoing],
    report: SendReport,
    rng: random.Random,
) -> None:
    """Deliver in lanes, one thread and provider each; record outcomes as they come and
    renew the lease of the rest. The lanes write only each email's hand-off."""
    lanes: dict[tuple[Route, int], list[Outgoing]] = defaultdict(list)
    per_route: Counter[Route] = Counter()
    for item in outgoing:
        lanes[(item.route, per_route[item.route] % providers.LANES)].append(item)
        per_route[item.route] += 1
    results: SimpleQueue[Handed] = SimpleQueue()
    for (route, lane), items in lanes.items():
        provider = providers.provider(route, lane)
        providers.pool.submit(_deliver_lane, engine, provider, items, clock, results)
    waiting = {item.send_id for item in outgoing}
    done: list[dict[str, Any]] = []
    bounced: list[int] = []
    last_flush = time.monotonic()
    while waiting:
        try:
            handed = results.get(timeout=1.0)
        except Empty:
            pass
        else:
            waiting.discard(handed.item.send_id)
            if isinstance(handed.outcome, NotHanded):
                report.counts["withdrawn"] += 1
                continue
            done.append(_outcome_row(handed, report, rng))
            if isinstance(handed.outcome, Failed) and handed.outcome.bounce:
                bounced.append(handed.item.send_id)
        if waiting and time.monotonic() - last_flush > HEARTBEAT_S:
            _record(engine, clock(), done, bounced, sorted(waiting))
            done, bounced = [], []
            last_flush = time.monotonic()
    _record(engine, clock(), done, bounced, [])


def _deliver_lane(
    engine: Engine,
    provider: Provider,
    items: list[Outgoing],
    clock: Callable[[], datetime],
    results: SimpleQueue[Handed],
) -> None:
    for item in items:
        outcome: Outcome
        subject = None
        try:
            composed = compose(item.draft, item.voice)
        except (ValueError, UnicodeError) as exc:  # one bad cart must not stop the batch
            results.put(Handed(item, Failed(f"could not be written: {exc}"), clock(), None))
            continue
        subject = composed.subject
        # Compressed here, in the lane: the hand-off's transaction only carries the bytes.
        kept = zlib.compress(composed.raw)
        if withdrawn := _hand_off(engine, item, clock, kept):
            results.put(Handed(item, NotHanded(withdrawn), clock(), subject))
            continue
        try:
            outcome = provider.deliver(
                composed.raw, sender=item.envelope_from, recipient=item.to, key=str(item.send_id)
            )
        except Exception as exc:  # a provider bug must not strand the rest of the batch
            log.exception("provider %s raised on send %s", provider.name, item.send_id)
            outcome = Ambiguous(f"the provider raised {type(exc).__name__}")
        results.put(Handed(item, outcome, clock(), subject))


def _hand_off(
    engine: Engine, item: Outgoing, clock: Callable[[], datetime], message: bytes
) -> str | None:
    """Commit the hand-off, with the email's copy (``message``), just before the provider
    is called (``None``), or say why the email must not go: the cart changed since the
    claim, or the database is unreachable."""
    try:
        with each_statement(engine, HOLDER) as conn:
            return SenderRepository(conn).hand_off(item.send_id, clock(), message)
    except SQLAlchemyError as exc:
        log.warning("send %s not handed over: %s", item.send_id, type(exc).__name__)
        return f"the hand-off could not be written ({type(exc).__name__}); a later pass sends it"


def _record(
    engine: Engine,
    now: datetime,
    done: list[dict[str, Any]],
    bounced: list[int],
    waiting: list[int],
) -> None:
    """Outcomes so far, a bounce entry in the ledger for each address refused for good,
    and a renewed lease for the sends still in the lanes."""
    with writing(engine, HOLDER) as conn:
        repo = SenderRepository(conn)
        repo.update(done)
        LedgerRepository(conn).record_bounces(bounced, now, source=BOUNCE_SOURCE)
        repo.extend_lease(waiting, now + LEASE)


def _outcome_row(handed: Handed, report: SendReport, rng: random.Random) -> dict[str, Any]:
    item, outcome, now = handed.item, handed.outcome, handed.at
    extra: dict[str, Any] = {}
    if isinstance(outcome, Delivered):
        status, reason = SendStatus.SENT, None
    elif isinstance(outcome, Retry) and item.attempts < MAX_ATTEMPTS:
        status, reason = SendStatus.QUEUED, f"will retry: {outcome.reason}"
        extra = {
            "due_at": now + retry_delay(item.attempts, rng.random()),
            "sent_at": None,
            "handed_at": None,
        }
    elif isinstance(outcome, Retry):
        status = SendStatus.FAILED
        reason = f"gave up after {item.attempts} attempts: {outcome.reason}"
    elif isinstance(outcome, Failed):
        status, reason = SendStatus.FAILED, outcome.reason
    else:
        assert isinstance(outcome, Ambiguous)
        status, reason = SendStatus.AMBIGUOUS, outcome.reason
    report.counts[_COUNTED[status]] += 1
    if status is SendStatus.SENT:
        SEND_LAG.observe(max(0.0, (now - item.due_at).total_seconds()))
    return _row(
        item.send_id,
        now,
        status=status,
        reason=reason,
        claimed_until=None,
        subject=handed.subject,
        **extra,
    )


_COUNTED = {
    SendStatus.SENT: "sent",
    SendStatus.QUEUED: "retrying",
    SendStatus.FAILED: "failed",
    SendStatus.AMBIGUOUS: "ambiguous",
}


def _settle_stranded(
    repo: SenderRepository, now: datetime, providers: Providers, report: SendReport
) -> None:
    updates = []
    for row in repo.stranded(now):
        # Never handed over, or a provider for which a second copy is harmless (writing the
        # same file again): safe to send again.
        if row.handed_at is None or row.provider in _RESEND_SAFE:
            updates.append(
                _row(
                    row.id,
                    now,
                    status=SendStatus.QUEUED,
                    reason=(
                        "requeued: its worker stopped before handing it over"
                        if row.handed_at is None
                        else "requeued: a worker stopped while writing it"
                    ),
                    due_at=now,
                    claimed_until=None,
                    sent_at=None,
                    handed_at=None,
                )
            )
            report.counts["requeued"] += 1
        else:
            reason = (
                f"a worker stopped while handing it to {row.provider}: it may or may not have "
                "been delivered, so it is not sent again"
            )
            updates.append(
                _row(row.id, now, status=SendStatus.AMBIGUOUS, reason=reason, claimed_until=None)
            )
            report.counts["ambiguous"] += 1
    repo.update(updates)


def _row(send_id: int, now: datetime, **values: Any) -> dict[str, Any]:
    if isinstance(values.get("status"), SendStatus):
        values["status"] = values["status"].value
    return {"_send_id": send_id, "updated_at": now, **values}


def _draft(row: Any, shop: ShopRecord, links: Links, now: datetime, *, last_step: bool) -> Draft:
    assert shop.sender is not None and shop.sender_email is not None
    base = links.public_url.rstrip("/")

    def token(purpose: Purpose) -> str:
        return make_token(links.key, purpose, row.id, row.shop_id, row.email_key)

    unsubscribe = token(Purpose.UNSUBSCRIBE)
    reply = token(Purpose.REPLY)
    local, _, domain = shop.sender_email.rpartition("@")
    reply_local = f"{local}+r-{reply}"
    return Draft(
        step=row.step,
        last_step=last_step,
        saved_link=bool(row.saved_link),
        shop_name=shop.name,
        sender=shop.sender,
        postal_address=shop.postal_address or "",
        to=row.email,
        first_name=row.first_name,
        locale=row.locale,
        shop_locale=shop.locale,
        currency=row.currency,
        total_minor=row.total_minor,
        items=Line.all_of(row.items),
        subtotal_minor=row.subtotal_minor,
        discount_minor=row.discount_minor,
        shipping_minor=row.shipping_minor,
        tax_minor=row.tax_minor,
        return_link=(
            f"{base}/c/{token(Purpose.CLICK)}"
            if landing_url(row.return_url, row.step) is not None
            else None
        ),
        unsubscribe_url=f"{base}/u/{unsubscribe}",
        unsubscribe_mailto=f"mailto:{shop.sender_email}?subject=unsubscribe%20{unsubscribe}",
        reply_to=(
            f"{reply_local}@{domain}" if len(reply_local) <= LOCAL_PART_MAX else shop.sender_email
        ),
        # Unique per send and installation, and the same on every attempt, so a mailbox
        # that sees one email twice can tell.
        message_id=f"<{row.id}.{reply[-16:]}@{domain}>",
        date=now,
    )
