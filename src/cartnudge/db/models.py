"""The tables, as SQLAlchemy Core tables: every statement is Core, so the ORM is never
imported (≈ 6 MiB of serve's memory). Every row belongs to a shop; every query names
it.

Statuses are ``StrEnum`` values stored as short strings, so both engines agree and a
new status needs no enum migration.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
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

from cartnudge.db.types import BigId, Json, Sealed, SealedJson, UtcDateTime

# One naming convention, so Alembic's generated names match on both engines.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


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


Shop = Table(
    "shops",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("slug", String(64), unique=True, nullable=False),
    Column("name", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("shopify_domain", String(255), unique=True),
    # Secrets are sealed at rest with the data keys (cartnudge.keys).
    Column("shopify_secret", Sealed()),
    Column("stripe_secret", Sealed()),
    # Current secret first; a second one is accepted during a rotation.
    Column("storefront_secrets", SealedJson(), nullable=False),
    # Orders without a cart or checkout token match a cart of the same email this recent.
    Column("order_match_window_s", BigInteger, default=7 * 86400, nullable=False),
    # Whether a test order (Shopify ``test: true``) closes a cart as a real one would.
    Column(
        "test_orders_close_carts", Boolean, default=False, server_default=false(), nullable=False
    ),
    # Carts whose last activity is older than this are recorded but never reminded.
    Column("activated_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # Who the reminders come from and the postal address they carry; a shop without both
    # keeps collecting carts and holds its sends until they are set.
    Column("sender_name", String(200)),
    Column("sender_email", String(320)),
    Column("postal_address", Text),
    # How its email leaves: None for the file outbox, else an smtp:// or smtps:// URL
    # (which may carry a password, hence sealed).
    Column("mail_url", Sealed()),
    # For money and dates when the shopper's own locale is not known.
    Column("locale", String(35), default="en", server_default="en", nullable=False),
    # Retention, in seconds: raw webhook bodies; the facts a decision read (audit before and
    # after); the shopper's personal data on a cart that is no longer open.
    Column(
        "keep_payloads_s",
        BigInteger,
        default=7 * 86400,
        server_default=str(7 * 86400),
        nullable=False,
    ),
    Column(
        "keep_decisions_s",
        BigInteger,
        default=30 * 86400,
        server_default=str(30 * 86400),
        nullable=False,
    ),
    Column(
        "keep_closed_pii_s",
        BigInteger,
        default=180 * 86400,
        server_default=str(180 * 86400),
        nullable=False,
    ),
    # The host names a cart's return link may point to (each with its subdomains); None
    # until the owner sets them. The cart URL is the link an email gets when a cart's own
    # is refused.
    Column("return_domains", Json),
    Column("cart_url", Text),
    # The owner's kill switch: while set, no reminder of the shop leaves (each waits, held,
    # and goes once sending resumes), from the next hand-off on.
    Column("paused_at", UtcDateTime),
    Column("paused_by", String(64)),
    Column("paused_reason", Text),
    # The nightly sheet: the shop's previous day written at this hour (shop local time,
    # 0-23) to a folder, or to a Google Sheet (``sheets:<spreadsheet id>``), as csv or xlsx.
    # No hour or no destination: no nightly sheet.
    Column("export_hour", Integer),
    Column("export_to", Text),
    Column("export_format", String(8), default="csv", server_default="csv", nullable=False),
    # The share of the shop's carts that get no reminder, so that what reminders add can be
    # measured against them (``measurement.holdout``). 0 to 50. Shops added since default to
    # 10; shops from before were 0, so an upgrade changes no shop's sending.
    Column("holdout_percent", Integer, default=0, server_default="0", nullable=False),
)


# Every signed delivery we acknowledged, once per (shop, source, external id).
InboxEvent = Table(
    "inbox_events",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("source", String(32), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("topic", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("occurred_at", UtcDateTime),
    Column("received_at", UtcDateTime, nullable=False),
    Column("cart_id", BigInteger),
    Column("payload", Text),  # raw body, kept for replay
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


# One row per cart: the single source of truth the waiter and sender read.
Cart = Table(
    "carts",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_reason", Text),
    Column("source", String(32), nullable=False),
    Column("items", Json, nullable=False),
    Column("currency", String(3)),
    Column("total_minor", BigInteger),
    # The parts of the total as the source gave them, each optional (see ``CartEvent``).
    Column("subtotal_minor", BigInteger),
    Column("discount_minor", BigInteger),
    Column("shipping_minor", BigInteger),
    Column("tax_minor", BigInteger),
    Column("email", String(320)),
    Column("email_key", String(320)),
    # Why the address the source gave is not used (not one mailbox), without the address.
    Column("address_problem", Text),
    Column("first_name", String(200)),
    Column("locale", String(35)),
    Column("timezone", String(64)),
    Column("accepts_marketing", Boolean),
    Column("consent_source", String(64)),
    Column("return_url", Text),
    Column("saved_link", Boolean, default=False, nullable=False),
    Column("first_activity_at", UtcDateTime, nullable=False),
    Column("last_activity_at", UtcDateTime, nullable=False),
    Column("next_wake_at", UtcDateTime),
    Column("bought_at", UtcDateTime),
    Column("order_ref", String(255)),
    # Per-field source versions ("<utc instant>|<source>|<event id>"): a field changes only
    # when a newer event sets it, so late or repeated events never move a cart backwards.
    Column("versions", Json, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # The waiter's: reminder steps decided so far and when the latest was. A worker's claim
    # is its transaction's row locks (a dead worker's carts are free again at once), so a
    # cart carries no lease.
    Column("reminders_sent", Integer, default=0, server_default="0", nullable=False),
    Column("last_reminder_at", UtcDateTime),
    # When the waiter last gave up on the cart: only activity after it reopens the cart.
    Column("given_up_at", UtcDateTime),
    # The holdout: whether the cart was held out (no reminder, to measure the lift), decided
    # once, by a stable hash, when its first reminder came due; None until then.
    Column("held_out", Boolean),
    Column("assigned_at", UtcDateTime),
    Index("ix_carts_shop_status", "shop_id", "status", "last_activity_at"),
    Index("ix_carts_shop_email", "shop_id", "email_key"),
    # The dashboard's cart list, newest first, a page at a time (keyset on the pair).
    Index("ix_carts_shop_activity", "shop_id", "last_activity_at", "id"),
    # Today: carts first seen in a window.
    Index("ix_carts_shop_first", "shop_id", "first_activity_at"),
    # The waiter's sweep reads only carts with a timer, so the index holds only those.
    Index(
        "ix_carts_due",
        "next_wake_at",
        sqlite_where=text("next_wake_at IS NOT NULL"),
        postgresql_where=text("next_wake_at IS NOT NULL"),
    ),
)


# Every identifier a source uses for a cart (cart token, checkout token, session id).
CartKey = Table(
    "cart_keys",
    metadata,
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("value", String(255), nullable=False),
    Column("cart_id", ForeignKey("carts.id", ondelete="CASCADE"), nullable=False),
    # Led by the value: finding a batch's carts is one index descent per key, whatever
    # the planner believes of how many keys a shop has (before ANALYZE, PostgreSQL
    # believed one, and read every key of the shop for each batch).
    PrimaryKeyConstraint("value", "kind", "shop_id"),
    Index("ix_cart_keys_cart", "cart_id"),
)


# A purchase, kept once per (shop, source, order id) whether or not a cart matched.
Order = Table(
    "orders",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("source", String(32), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("placed_at", UtcDateTime, nullable=False),
    Column("email_key", String(320)),
    Column("currency", String(3)),
    Column("total_minor", BigInteger),
    # True when the order named a cart or checkout; false ones match carts by email.
    Column("has_cart_keys", Boolean, nullable=False),
    Column("cart_id", BigInteger),
    Column("created_at", UtcDateTime, nullable=False),
    # The version (``events.version_of``) of the delivery the row's fields come
    # from: of two deliveries of one order, the newer one's snapshot is kept.
    Column("version", Text),
    # What became of the order. A cancelled or voided order closes no cart, and one
    # cancelled after it closed a cart stays on the cart's record here, to be netted out.
    Column("cancelled_at", UtcDateTime),
    Column("financial_status", String(32)),
    # Some delivery showed the order live (neither cancelled nor voided): it was a
    # purchase, whatever became of it later.
    Column("placed_live", Boolean, default=True, server_default=true(), nullable=False),
    # A test order (Shopify ``test: true``) closes carts only if the shop says so.
    Column("test", Boolean, default=False, server_default=false(), nullable=False),
    # Each refund once, by its id: {refund id: minor units}; ``refunded_minor`` their sum.
    Column("refunds", Json),
    Column("refunded_minor", BigInteger, default=0, server_default="0", nullable=False),
    UniqueConstraint("shop_id", "source", "external_id"),
    Index("ix_orders_shop_email", "shop_id", "email_key"),
    # Today: orders placed in a window.
    Index("ix_orders_shop_placed", "shop_id", "placed_at"),
    # Today: whether an order is its cart's first that counts as recovered; the nightly
    # sheet: a page of carts' orders.
    Index("ix_orders_shop_cart", "shop_id", "cart_id"),
)


# One version of a shop's editable document (``rules``; later ``voice``). Versions only grow: a
# rollback stores the old text again as the newest version.
ShopDocument = Table(
    "shop_documents",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("body", Text, nullable=False),  # exactly as the owner wrote it
    Column("created_at", UtcDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("note", Text),
    UniqueConstraint("shop_id", "kind", "version"),
)


# Each loops process's last sign of life (``measurement.heartbeat``): /readyz says the loops
# are running when one of them beat recently.
Heartbeat = Table(
    "heartbeats",
    metadata,
    Column("worker", String(255), primary_key=True),  # host and process id
    Column("at", UtcDateTime, nullable=False),
)


# Open carts' timers still to move to a shop's new rules: the carts after
# (``after_activity_at``, ``after_cart_id``) in the order of last activity. A rules change
# moves its first few thousand at once and leaves the rest here for the loops, a batch per
# transaction, so a big shop's change never holds the database (or a web process's
# memory) for long.
TimerMove = Table(
    "timer_moves",
    metadata,
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True),
    Column("after_activity_at", UtcDateTime, nullable=False),
    Column("after_cart_id", BigInteger, nullable=False),
)


class SendStatus(StrEnum):
    QUEUED = "queued"  # decided; the sender will claim it at ``due_at``
    SENDING = "sending"  # handed to a provider; no answer recorded yet
    SENT = "sent"
    SKIPPED = "skipped"  # a gate refused it (reason says which); never sent
    FAILED = "failed"  # the provider refused it for good
    CANCELLED = "cancelled"  # the owner stopped it, or the cart was bought
    AMBIGUOUS = "ambiguous"  # may or may not have reached the provider: never resent blindly


# The outbox: one row per (cart, step), so a reminder is sent at most once. Carts found to be
# one keep every send either had: those of the merged cart are marked ``merged_from`` and stay
# beside the kept cart's own, outside that rule (the merge cancels a step's second copy that has
# not left).
Send = Table(
    "sends",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("cart_id", ForeignKey("carts.id", ondelete="CASCADE"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("due_at", UtcDateTime, nullable=False),  # not before (quiet hours defer it)
    Column("attempts", Integer, default=0, server_default="0", nullable=False),
    Column("claimed_until", UtcDateTime),
    Column("rules_version", Integer, nullable=False),
    Column("email_key", String(320)),  # the address it went to
    Column("consent_basis", String(64)),
    Column("provider", String(32)),
    Column("message_id", String(255)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime),  # claimed for this address
    # Committed just before the provider is called, and only while the cart is open: a
    # purchase stored earlier stops the email, and a send claimed but never handed over
    # (its worker stopped) is safe to send again.
    Column("handed_at", UtcDateTime),
    Column("subject", Text),  # as composed, for the owner to see
    Column("voice_version", Integer),
    # The cart it was decided for, when that cart was later merged into this one.
    Column("merged_from", BigInteger),
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
    # Today: sends by outcome and day, and the reminders sent in a window.
    Index("ix_sends_shop_status", "shop_id", "status", "updated_at"),
    Index("ix_sends_shop_sent", "shop_id", "sent_at"),
    # Today: a cart's first reminder, and whether one went before an order.
    Index("ix_sends_shop_cart_sent", "shop_id", "cart_id", "sent_at"),
    # Sends handed to a provider; the sender's recovery reads only those.
    Index(
        "ix_sends_in_flight",
        "claimed_until",
        sqlite_where=text("status = 'sending'"),
        postgresql_where=text("status = 'sending'"),
    ),
)


# The email each send handed to its provider, exactly as it went (RFC 5322 bytes,
# zlib-compressed), so the owner can see later what the shopper received. Written in the
# hand-off's own transaction: a send handed over always has its copy; a retry's hand-off
# replaces the copy of an attempt that never left. It holds the shopper's address and name,
# so it goes with the send's personal data (erasure, retention).
SendMessage = Table(
    "send_messages",
    metadata,
    Column("send_id", ForeignKey("sends.id", ondelete="CASCADE"), primary_key=True),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("stored_at", UtcDateTime, nullable=False),
    Column("body", LargeBinary, nullable=False),
)


# Today's figures for one closed day of a shop (its own time zone's calendar day), kept by
# the loops (``measurement.tally``) so the page adds up at most a month of these rows
# instead of counting a month of carts. Sends and revenue are small maps summed by the
# reader: {status: count} and {currency: minor units}, so a new status or currency needs
# no migration.
DayTally = Table(
    "day_tallies",
    metadata,
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("day", Date, nullable=False),
    Column("seen", BigInteger, nullable=False),  # carts first active that day
    Column("reminded", BigInteger, nullable=False),  # carts first reminded that day
    Column("recovered", BigInteger, nullable=False),  # carts whose first won order it was
    Column("sends", Json, nullable=False),  # sends by status, by their last change
    Column("revenue", Json, nullable=False),  # the won orders' revenue net of refunds
    Column("tallied_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("shop_id", "day"),
)


class ConsentKind(StrEnum):
    OPT_IN = "opt_in"  # ticked "email me" at checkout
    DECLINED = "declined"  # left it unticked
    UNSUBSCRIBE = "unsubscribe"  # by link, one-click, or the owner on the shopper's behalf
    COMPLAINT = "complaint"  # marked a reminder as spam
    BOUNCE = "bounce"  # the address refused mail for good


# Any of these stops every reminder to the address in that shop, for good.
STOP_KINDS = frozenset({ConsentKind.UNSUBSCRIBE, ConsentKind.COMPLAINT, ConsentKind.BOUNCE})


# The consent ledger: every consent fact about an address in a shop, appended and never
# rewritten. An address is stopped once it has any entry of ``STOP_KINDS``; an opt-in recorded
# later does not lift that (a checkbox can be stale or pre-ticked).
ConsentEntry = Table(
    "consent_ledger",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("email_key", String(320), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("source", String(64), nullable=False),  # one_click, link, owner:cli, …
    Column("send_id", BigInteger),  # the email it came from
    Column("at", UtcDateTime, nullable=False),
    # What shows it: the event, the cart, the server's reply. Never the address itself.
    Column("evidence", Json),
    Index("ix_consent_ledger_address", "shop_id", "email_key", "id"),
)


# A shopper followed a reminder's return link.
Click = Table(
    "clicks",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("send_id", ForeignKey("sends.id", ondelete="CASCADE"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_clicks_send", "send_id"),
)


# Who or what changed a cart's state, when, why, and what it was before and after.
AuditEntry = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("cart_id", BigInteger),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("reason", Text),
    Column("before", Json),
    Column("after", Json),
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


class RequestState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"  # ``error`` says why; the next privacy run tries again


# A compliance request (Shopify's three topics), acted on by the next privacy run.
PrivacyRequest = Table(
    "privacy_requests",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("inbox_event_id", BigInteger, nullable=False),  # the body names the shopper
    Column("state", String(16), default="pending", nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("done_at", UtcDateTime),
    Column("result", Json),  # counts, the export's file
    Column("error", Text),
    Index("ix_privacy_requests_state", "state", "id"),
)


# What a privacy action did, in counts: never who it was about. Not tied to the shop row, so the
# record that a shop was erased outlives the shop.
PrivacyLogEntry = Table(
    "privacy_log",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("shop_id", BigInteger),  # none once the shop is erased
    Column("action", String(32), nullable=False),  # export, erase, shop_erase, retention
    Column("actor", String(64), nullable=False),  # webhook:<topic>, owner:cli, schedule
    Column("request_id", BigInteger),
    Column("at", UtcDateTime, nullable=False),
    Column("counts", Json, nullable=False),
)


# One shop's nightly sheet for one day (shop local), claimed before it is written: the
# primary key makes sure several workers never write it twice. A claim lapses at
# ``claimed_until`` (its worker died) or is released with ``error`` when the write failed;
# either way the next pass tries again. ``done_at`` is set once it is written.
NightlyExport = Table(
    "nightly_exports",
    metadata,
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("day", Date, nullable=False),
    Column("claimed_until", UtcDateTime),
    Column("attempts", Integer, default=0, server_default="0", nullable=False),
    Column("done_at", UtcDateTime),
    Column("rows", BigInteger),
    Column("target", Text),  # the file written, or the sheet
    Column("error", Text),  # why the last attempt failed
    PrimaryKeyConstraint("shop_id", "day"),
)


class Role(StrEnum):
    ADMIN = "admin"  # every shop, and the users
    OWNER = "owner"  # acts on the shops they are given
    VIEWER = "viewer"  # reads the shops they are given, changes nothing


# The people who sign in to the dashboard. Not a shop's row: an admin sees every shop, and
# one owner may run several; ``user_shops`` says which.
User = Table(
    "users",
    metadata,
    Column("id", BigId, primary_key=True),
    # What they sign in with: an email address or a short name, in lower case.
    Column("login", String(320), unique=True, nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=False),  # argon2id, with its parameters
    # A password someone else chose (the first admin's, one set by an admin) must be
    # replaced at the next sign-in.
    Column("must_change_password", Boolean, default=False, nullable=False),
    # Failed sign-ins in a row; from the fifth, each locks the account for longer.
    Column("failed_sign_ins", Integer, default=0, server_default="0", nullable=False),
    Column("locked_until", UtcDateTime),
    Column("last_sign_in_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Which shops an owner or a viewer may see.
UserShop = Table(
    "user_shops",
    metadata,
    Column("shop_id", ForeignKey("shops.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    PrimaryKeyConstraint("shop_id", "user_id"),
    Index("ix_user_shops_user", "user_id"),
)

# A signed-in browser. The cookie holds a random token; only its SHA-256 is stored, so a
# copy of the database signs nobody in. Each session has its own CSRF token for forms.
WebSession = Table(
    "web_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_web_sessions_user", "user_id"),
    Index("ix_web_sessions_expires", "expires_at"),
)
