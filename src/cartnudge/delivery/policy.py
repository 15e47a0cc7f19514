"""The sender's gates: pure checks, in order, each with its reason. No I/O, no clock.

A queued reminder passes through them right before it is composed and delivered:
a usable address; the cart still open (the second guard against a purchase race);
not unsubscribed, and consent under the shop's policy; do-not-disturb; quiet hours,
which defer a send to the next allowed minute in the shopper's time zone, never drop it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cartnudge.addresses import mailbox, usable
from cartnudge.db.models import CartStatus
from cartnudge.timing.rules import ConsentPolicy, QuietHours, Rules

MINUTE = timedelta(minutes=1)
DST_MARGIN = timedelta(hours=3)  # more than any DST shift in the time zone database


@dataclass(frozen=True, slots=True)
class Recipient:
    """What the gates know about one queued reminder."""

    cart_status: CartStatus
    email: str | None
    accepts_marketing: bool | None
    consent_source: str | None
    timezone: str | None  # the shopper's, when known
    shop_timezone: str
    stopped: str | None  # why the ledger stops every reminder to the address, if it does
    # The latest reminder sent to this address about another cart of the shop, if any.
    other_cart_reminded_at: datetime | None


@dataclass(frozen=True, slots=True)
class Go:
    consent_basis: str  # recorded on the send


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str


@dataclass(frozen=True, slots=True)
class Defer:
    until: datetime
    reason: str


Verdict = Go | Skip | Defer


def usable_address(email: str | None) -> bool:
    """One mailbox we can write in a header as it is (``cartnudge.addresses``). A non-ASCII
    local part is usable: it goes out where the mail server offers SMTPUTF8, and fails for
    good where it does not (the provider says so)."""
    return usable(email)


def wire_address(email: str) -> str:
    """A usable address as it goes on the wire: a non-ASCII domain in its IDNA form."""
    return mailbox(email).wire


def consent_basis(r: Recipient, policy: ConsentPolicy) -> str | None:
    """Why this shopper may get a reminder, or ``None`` if they may not."""
    if r.accepts_marketing:
        return f"opt_in:{r.consent_source or 'unknown'}"
    if policy is ConsentPolicy.SOFT_OPT_IN:
        return "soft_opt_in:email_at_checkout"
    return None


def check(r: Recipient, rules: Rules, now: datetime) -> Verdict:
    """The gates in order; the first that does not pass decides. Same inputs, same verdict."""
    if not usable_address(r.email):
        return Skip("no usable email address")
    if r.cart_status is not CartStatus.OPEN:
        return Skip(f"cart is {r.cart_status.value}")
    if r.stopped is not None:
        return Skip(r.stopped)
    basis = consent_basis(r, rules.consent)
    if basis is None:
        return Skip("no consent: the shop requires opt-in and the shopper did not opt in")
    if (
        r.other_cart_reminded_at is not None
        and now - r.other_cart_reminded_at < rules.do_not_disturb
    ):
        return Skip("do not disturb: this address had a reminder about another cart recently")
    if rules.quiet_hours is not None:
        zone = ZoneInfo(r.timezone or r.shop_timezone)
        allowed = next_allowed(now, zone, rules.quiet_hours)
        if allowed > now:
            return Defer(allowed, f"quiet hours in {zone.key}")
    return Go(basis)


def is_quiet(local: time, quiet: QuietHours) -> bool:
    if quiet.start < quiet.end:
        return quiet.start <= local < quiet.end
    return local >= quiet.start or local < quiet.end  # spans midnight


def next_allowed(now: datetime, zone: ZoneInfo, quiet: QuietHours) -> datetime:
    """``now`` if it is outside quiet hours in ``zone``, else the first minute after them
    (on the wall clock of that zone, so a DST change moves it in UTC, not locally)."""
    local = now.astimezone(zone)
    if not is_quiet(local.time(), quiet):
        return now

    def first_allowed(start: datetime) -> datetime | None:
        candidate = _next_minute(start)
        for _ in range(int(DST_MARGIN / MINUTE) * 2 + 2):
            if not is_quiet(candidate.astimezone(zone).time(), quiet):
                return candidate
            candidate += MINUTE
        return None

    # A fall-back can turn the clock back to before the quiet start within the next hours
    # (02:20 becomes 02:00 again under quiet hours from 02:15), so look there first.
    soon = first_allowed(now)
    if soon is not None:
        return soon
    end_day = local.date()
    if quiet.start > quiet.end and local.time() >= quiet.start:
        end_day += timedelta(days=1)  # quiet since this evening: it ends tomorrow morning
    # A DST change can skip or repeat that wall time, so start a little before either
    # reading of it (every minute from now until then is quiet) and step to the first
    # minute the zone's clock shows outside quiet hours. If the change skipped the whole
    # allowed window that day (quiet from 02:15 to 02:00 when 02:00 jumps to 03:00), the
    # next day's end is the one.
    for extra_days in range(3):
        wall = datetime.combine(end_day + timedelta(days=extra_days), quiet.end, tzinfo=zone)
        earliest = min(wall.replace(fold=fold).astimezone(UTC) for fold in (0, 1))
        later = first_allowed(max(now, earliest - DST_MARGIN))
        if later is not None:
            return later
    raise AssertionError("quiet hours never end")  # unreachable: start != end


def _next_minute(at: datetime) -> datetime:
    """``at`` if it is on a whole minute, else the next whole minute."""
    floor = at.replace(second=0, microsecond=0)
    return floor if floor == at else floor + MINUTE


# Retrying a send that certainly did not reach the provider (never an ambiguous one).
MAX_ATTEMPTS = 6  # every attempt counts, the first included; then the send is given up
RETRY_BASE = timedelta(minutes=1)  # ceiling after the first failed attempt, doubling after each
RETRY_CAP = timedelta(hours=1)  # an hour is the longest a reminder should wait for a relay
RETRY_FLOOR = timedelta(seconds=10)  # even an unlucky draw leaves the relay a moment to recover


def retry_ceiling(attempts: int) -> timedelta:
    """The longest wait after ``attempts`` failed attempts (1, 2, 4, … minutes, at most an hour)."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    # Stop doubling once past the cap, so a huge count cannot overflow timedelta.
    doublings = min(attempts - 1, 16)
    return min(RETRY_CAP, RETRY_BASE * (1 << doublings))


def retry_delay(attempts: int, fraction: float) -> timedelta:
    """How long to wait before the next attempt: exponential backoff with full jitter.

    ``fraction`` in [0, 1) is the caller's random draw (``random.random()``), so this stays
    pure. Full jitter spreads a burst of sends that failed together (a relay outage) over the
    whole window instead of bringing them back all at once.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), not {fraction}")
    return max(RETRY_FLOOR, retry_ceiling(attempts) * fraction)
