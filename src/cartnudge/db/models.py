"""The tables. Every row belongs to a shop; every query names it.

Statuses are ``StrEnum`` values stored as short strings, so both engines agree and a
new status needs no enum migration.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cartnudge.db.types import BigId, Json, Sealed, SealedJson, UtcDateTime

# One naming convention, so Alembic's generated names match on both engines.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CartStatus(StrEnum):
    OPEN = "open"
    EXPIRED = "expired"  # the waiter gave up; the shopper's next activity reopens it
    CLOSED = "closed"
    SUPPRESSED = "suppressed"
    WRITTEN_OFF = "written_off"
    BOUGHT = "bought"


class InboxStatus(StrEnum):
    APPLIED = "applied"  # turned into a cart change (or recorded for a later stage)
    DEAD = "dead"  # signed and kept, but could not be applied; see ``reason``


class Shop(Base):
    __tablename__ = "shops"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    shopify_domain: Mapped[str | None] = mapped_column(String(255), unique=True)
    # Secrets are sealed at rest with the data keys (cartnudge.keys).
    shopify_secret: Mapped[str | None] = mapped_column(Sealed())
    stripe_secret: Mapped[str | None] = mapped_column(Sealed())
    # Current secret first; a second one is accepted during a rotation.
    storefront_secrets: Mapped[list[str]] = mapped_column(SealedJson())
    # Orders without a cart or checkout token match a cart of the same email this recent.
    order_match_window_s: Mapped[int] = mapped_column(BigInteger, default=7 * 86400)
    # Whether a test order (Shopify ``test: true``) closes a cart as a real one would.
    test_orders_close_carts: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # Carts whose last activity is older than this are recorded but never reminded.
    activated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Who the reminders come from and the postal address they carry; a shop without both
    # keeps collecting carts and holds its sends until they are set.
    sender_name: Mapped[str | None] = mapped_column(String(200))
    sender_email: Mapped[str | None] = mapped_column(String(320))
    postal_address: Mapped[str | None] = mapped_column(Text)
    # How its email leaves: None for the file outbox, else an smtp:// or smtps:// URL
    # (which may carry a password, hence sealed).
    mail_url: Mapped[str | None] = mapped_column(Sealed())
    # For money and dates when the shopper's own locale is not known.
    locale: Mapped[str] = mapped_column(String(35), default="en", server_default="en")
    # Retention, in seconds: raw webhook bodies; the facts a decision read (audit before and
    # after); the shopper's personal data on a cart that is no longer open.
    keep_payloads_s: Mapped[int] = mapped_column(
        BigInteger, default=7 * 86400, server_default=str(7 * 86400)
    )
    keep_decisions_s: Mapped[int] = mapped_column(
        BigInteger, default=30 * 86400, server_default=str(30 * 86400)
    )
    keep_closed_pii_s: Mapped[int] = mapped_column(
        BigInteger, default=180 * 86400, server_default=str(180 * 86400)
    )
    # The host names a cart's return link may point to (each with its subdomains); None
    # until the owner sets them. The cart URL is the link an email gets when a cart's own
    # is refused.
    return_domains: Mapped[list[str] | None] = mapped_column(Json)
    cart_url: Mapped[str | None] = mapped_column(Text)


class InboxEvent(Base):
    """Every signed delivery we acknowledged, once per (shop, source, external id)."""

    __tablename__ = "inbox_events"
    __table_args__ = (
        # Led by the external id: "which of these deliveries are recorded" is one index
        # descent each, whatever the statistics say (migration 0013).
        UniqueConstraint("external_id", "shop_id", "source"),
        Index("ix_inbox_events_dead", "shop_id", "status"),
        Index("ix_inbox_events_cart", "cart_id", "occurred_at"),
        # Retention reads only the bodies still kept, so the index holds only those.
        Index(
            "ix_inbox_events_kept",
            "shop_id",
            "received_at",
            sqlite_where=text("payload IS NOT NULL"),
            postgresql_where=text("payload IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    cart_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[str | None] = mapped_column(Text)  # raw body, kept for replay


class Cart(Base):
    """One row per cart: the single source of truth the waiter and sender read."""

    __tablename__ = "carts"
    __table_args__ = (
        Index("ix_carts_shop_status", "shop_id", "status", "last_activity_at"),
        Index("ix_carts_shop_email", "shop_id", "email_key"),
        # The waiter's sweep reads only carts with a timer, so the index holds only those.
        Index(
            "ix_carts_due",
            "next_wake_at",
            sqlite_where=text("next_wake_at IS NOT NULL"),
            postgresql_where=text("next_wake_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))
    items: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    currency: Mapped[str | None] = mapped_column(String(3))
    total_minor: Mapped[int | None] = mapped_column(BigInteger)
    # The parts of the total as the source gave them, each optional (see ``CartEvent``).
    subtotal_minor: Mapped[int | None] = mapped_column(BigInteger)
    discount_minor: Mapped[int | None] = mapped_column(BigInteger)
    shipping_minor: Mapped[int | None] = mapped_column(BigInteger)
    tax_minor: Mapped[int | None] = mapped_column(BigInteger)
    email: Mapped[str | None] = mapped_column(String(320))
    email_key: Mapped[str | None] = mapped_column(String(320))
    # Why the address the source gave is not used (not one mailbox), without the address.
    address_problem: Mapped[str | None] = mapped_column(Text)
    first_name: Mapped[str | None] = mapped_column(String(200))
    locale: Mapped[str | None] = mapped_column(String(35))
    timezone: Mapped[str | None] = mapped_column(String(64))
    accepts_marketing: Mapped[bool | None] = mapped_column(Boolean)
    consent_source: Mapped[str | None] = mapped_column(String(64))
    return_url: Mapped[str | None] = mapped_column(Text)
    saved_link: Mapped[bool] = mapped_column(Boolean, default=False)
    first_activity_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_activity_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_wake_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    bought_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    order_ref: Mapped[str | None] = mapped_column(String(255))
    # Per-field source versions ("<utc instant>|<source>|<event id>"): a field changes only
    # when a newer event sets it, so late or repeated events never move a cart backwards.
    versions: Mapped[dict[str, str]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The waiter's: reminder steps decided so far and when the latest was. A worker's claim
    # is its transaction's row locks (a dead worker's carts are free again at once), so a
    # cart carries no lease.
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_reminder_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # When the waiter last gave up on the cart: only activity after it reopens the cart.
    given_up_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class CartKey(Base):
    """Every identifier a source uses for a cart (cart token, checkout token, session id)."""

    __tablename__ = "cart_keys"
    __table_args__ = (
        # Led by the value: finding a batch's carts is one index descent per key, whatever
        # the planner believes of how many keys a shop has (before ANALYZE, PostgreSQL
        # believed one, and read every key of the shop for each batch).
        PrimaryKeyConstraint("value", "kind", "shop_id"),
        Index("ix_cart_keys_cart", "cart_id"),
    )

    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(255))
    cart_id: Mapped[int] = mapped_column(ForeignKey("carts.id", ondelete="CASCADE"))


class Order(Base):
    """A purchase, kept once per (shop, source, order id) whether or not a cart matched."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("shop_id", "source", "external_id"),
        Index("ix_orders_shop_email", "shop_id", "email_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    placed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    email_key: Mapped[str | None] = mapped_column(String(320))
    currency: Mapped[str | None] = mapped_column(String(3))
    total_minor: Mapped[int | None] = mapped_column(BigInteger)
    # True when the order named a cart or checkout; false ones match carts by email.
    has_cart_keys: Mapped[bool] = mapped_column(Boolean)
    cart_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The version (``events.version_of``) of the delivery the row's fields come
    # from: of two deliveries of one order, the newer one's snapshot is kept.
    version: Mapped[str | None] = mapped_column(Text)
    # What became of the order. A cancelled or voided order closes no cart, and one
    # cancelled after it closed a cart stays on the cart's record here, to be netted out.
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    financial_status: Mapped[str | None] = mapped_column(String(32))
    # Some delivery showed the order live (neither cancelled nor voided): it was a
    # purchase, whatever became of it later.
    placed_live: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # A test order (Shopify ``test: true``) closes carts only if the shop says so.
    test: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Each refund once, by its id: {refund id: minor units}; ``refunded_minor`` their sum.
    refunds: Mapped[dict[str, int] | None] = mapped_column(Json)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class ShopDocument(Base):
    """One version of a shop's editable document (``rules``; later ``voice``). Versions
    only grow: a rollback stores the old text again as the newest version."""

    __tablename__ = "shop_documents"
    __table_args__ = (UniqueConstraint("shop_id", "kind", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)  # exactly as the owner wrote it
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)


class SendStatus(StrEnum):
    QUEUED = "queued"  # decided; the sender will claim it at ``due_at``
    SENDING = "sending"  # handed to a provider; no answer recorded yet
    SENT = "sent"
    SKIPPED = "skipped"  # a gate refused it (reason says which); never sent
    FAILED = "failed"  # the provider refused it for good
    CANCELLED = "cancelled"  # the owner stopped it, or the cart was bought
    AMBIGUOUS = "ambiguous"  # may or may not have reached the provider: never resent blindly


class Send(Base):
    """The outbox: one row per (cart, step), so a reminder is sent at most once. Carts
    found to be one keep every send either had: those of the merged cart are marked
    ``merged_from`` and stay beside the kept cart's own, outside that rule (the merge
    cancels a step's second copy that has not left)."""

    __tablename__ = "sends"
    __table_args__ = (
        Index(
            "ix_sends_one_per_step",
            "shop_id",
            "cart_id",
            "step",
            unique=True,
            sqlite_where=text("merged_from IS NULL"),
            postgresql_where=text("merged_from IS NULL"),
        ),
        Index(
            "ix_sends_due",
            "due_at",
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
        Index("ix_sends_shop_email", "shop_id", "email_key", "sent_at"),
        # Sends handed to a provider; the sender's recovery reads only those.
        Index(
            "ix_sends_in_flight",
            "claimed_until",
            sqlite_where=text("status = 'sending'"),
            postgresql_where=text("status = 'sending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    cart_id: Mapped[int] = mapped_column(ForeignKey("carts.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)  # not before (quiet hours defer it)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    rules_version: Mapped[int] = mapped_column(Integer)
    email_key: Mapped[str | None] = mapped_column(String(320))  # the address it went to
    consent_basis: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[str | None] = mapped_column(String(32))
    message_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # claimed for this address
    # Committed just before the provider is called, and only while the cart is open: a
    # purchase stored earlier stops the email, and a send claimed but never handed over
    # (its worker stopped) is safe to send again.
    handed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    subject: Mapped[str | None] = mapped_column(Text)  # as composed, for the owner to see
    voice_version: Mapped[int | None] = mapped_column(Integer)
    # The cart it was decided for, when that cart was later merged into this one.
    merged_from: Mapped[int | None] = mapped_column(BigInteger)


class ConsentKind(StrEnum):
    OPT_IN = "opt_in"  # ticked "email me" at checkout
    DECLINED = "declined"  # left it unticked
    UNSUBSCRIBE = "unsubscribe"  # by link, one-click, or the owner on the shopper's behalf
    COMPLAINT = "complaint"  # marked a reminder as spam
    BOUNCE = "bounce"  # the address refused mail for good


# Any of these stops every reminder to the address in that shop, for good.
STOP_KINDS = frozenset({ConsentKind.UNSUBSCRIBE, ConsentKind.COMPLAINT, ConsentKind.BOUNCE})


class ConsentEntry(Base):
    """The consent ledger: every consent fact about an address in a shop, appended and never
    rewritten. An address is stopped once it has any entry of ``STOP_KINDS``; an opt-in
    recorded later does not lift that (a checkbox can be stale or pre-ticked)."""

    __tablename__ = "consent_ledger"
    __table_args__ = (Index("ix_consent_ledger_address", "shop_id", "email_key", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    email_key: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(64))  # one_click, link, owner:cli, …
    send_id: Mapped[int | None] = mapped_column(BigInteger)  # the email it came from
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    # What shows it: the event, the cart, the server's reply. Never the address itself.
    evidence: Mapped[dict[str, Any] | None] = mapped_column(Json)


class Click(Base):
    """A shopper followed a reminder's return link."""

    __tablename__ = "clicks"
    __table_args__ = (Index("ix_clicks_send", "send_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class AuditEntry(Base):
    """Who or what changed a cart's state, when, why, and what it was before and after."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_cart", "cart_id", "id"),
        # Retention reads only entries that still hold a decision's inputs.
        Index(
            "ix_audit_log_inputs",
            "shop_id",
            "at",
            sqlite_where=text("before IS NOT NULL OR after IS NOT NULL"),
            postgresql_where=text("before IS NOT NULL OR after IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    cart_id: Mapped[int | None] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    before: Mapped[dict[str, Any] | None] = mapped_column(Json)
    after: Mapped[dict[str, Any] | None] = mapped_column(Json)


class RequestState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"  # ``error`` says why; the next privacy run tries again


class PrivacyRequest(Base):
    """A compliance request (Shopify's three topics), acted on by the next privacy run."""

    __tablename__ = "privacy_requests"
    __table_args__ = (Index("ix_privacy_requests_state", "state", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    inbox_event_id: Mapped[int] = mapped_column(BigInteger)  # the body names the shopper
    state: Mapped[str] = mapped_column(String(16), default="pending")
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    result: Mapped[dict[str, Any] | None] = mapped_column(Json)  # counts, the export's file
    error: Mapped[str | None] = mapped_column(Text)


class PrivacyLogEntry(Base):
    """What a privacy action did, in counts: never who it was about. Not tied to the shop
    row, so the record that a shop was erased outlives the shop."""

    __tablename__ = "privacy_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shop_id: Mapped[int | None] = mapped_column(BigInteger)  # none once the shop is erased
    action: Mapped[str] = mapped_column(String(32))  # export, erase, shop_erase, retention
    actor: Mapped[str] = mapped_column(String(64))  # webhook:<topic>, owner:cli, schedule
    request_id: Mapped[int | None] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    counts: Mapped[dict[str, Any]] = mapped_column(Json)


def table_of(model: type[Base]) -> Table:
    """The Core table of a model, for the hot paths that use Core statements."""
    return cast(Table, model.__table__)
