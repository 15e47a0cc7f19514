"""The sender's gates over random recipients, rules and clocks, across DST changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cartnudge.db.models import CartStatus
from cartnudge.delivery.policy import (
    MINUTE,
    Defer,
    Go,
    Recipient,
    Skip,
    check,
    is_quiet,
    next_allowed,
)
from cartnudge.timing.rules import ConsentPolicy, QuietHours, Rules, default_rules

# Zones with DST in both hemispheres, a 30-minute shift, a 45-minute offset, none at all.
ZONES = [
    "Europe/London",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Kolkata",
    "UTC",
]
# Around the DST changes of 2026 and 2027, and ordinary days.
instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


def _transitions() -> list[datetime]:
    """Every UTC hour in 2026 at which one of ZONES changes its offset."""
    found = []
    for name in ZONES:
        zone = ZoneInfo(name)
        hour = datetime(2026, 1, 1, tzinfo=UTC)
        before = hour.astimezone(zone).utcoffset()
        while hour.year == 2026:
            hour += timedelta(hours=1)
            offset = hour.astimezone(zone).utcoffset()
            if offset != before:
                found.append(hour)
                before = offset
    return found


TRANSITIONS = _transitions()
near_dst = st.builds(
    lambda at, seconds: at + timedelta(seconds=seconds),
    st.sampled_from(TRANSITIONS),
    st.integers(-14 * 3600, 14 * 3600),
)
clock_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
quiet_hours = (
    st.tuples(clock_times, clock_times)
    .filter(lambda t: t[0] != t[1])
    .map(lambda t: QuietHours(start=t[0], end=t[1]))
)


def test_the_zones_do_change_offset_in_2026() -> None:
    assert len(TRANSITIONS) >= 10


@settings(max_examples=1000)
@given(instants | near_dst, st.sampled_from(ZONES), quiet_hours)
# Found by this test: a fall-back that turns the clock back out of quiet hours (02:59
# AEDT becomes 02:00 AEST, before a 02:15 start), and a spring-forward that skips the
# whole allowed window of the day (02:00-02:15, when 02:00 jumps to 03:00).
@example(
    datetime(2026, 4, 4, 15, 59, 59, tzinfo=UTC),
    "Australia/Sydney",
    QuietHours(start=time(2, 15), end=time(0, 0)),
)
@example(
    datetime(2026, 10, 3, 15, 59, 59, tzinfo=UTC),
    "Australia/Sydney",
    QuietHours(start=time(2, 15), end=time(2, 0)),
)
def test_a_deferred_send_lands_on_the_first_allowed_minute(
    now: datetime, zone_name: str, quiet: QuietHours
) -> None:
    zone = ZoneInfo(zone_name)

    allowed = next_allowed(now, zone, quiet)

    assert allowed >= now
    assert not is_quiet(allowed.astimezone(zone).time(), quiet)
    if allowed > now:  # every whole minute in between is quiet: none was skipped
        assert allowed.second == allowed.microsecond == 0
        minute = allowed - MINUTE
        while minute >= now:
            assert is_quiet(minute.astimezone(zone).time(), quiet)
            minute -= MINUTE


def test_spring_forward_skips_the_quiet_end_and_the_send_goes_at_the_jump() -> None:
    # London, 29 March 2026: 01:00 GMT becomes 02:00 BST; 01:30 never happens.
    quiet = QuietHours(start=time(21), end=time(1, 30))
    zone = ZoneInfo("Europe/London")
    now = datetime(2026, 3, 29, 0, 10, tzinfo=UTC)  # 00:10 GMT, quiet

    assert next_allowed(now, zone, quiet) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 02:00 BST


def test_quiet_hours_follow_the_wall_clock_across_fall_back() -> None:
    # New York, 1 November 2026: 02:00 EDT becomes 01:00 EST. Quiet until 08:00 local.
    zone = ZoneInfo("America/New_York")
    quiet = QuietHours(start=time(21), end=time(8))
    now = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # midnight EDT

    assert next_allowed(now, zone, quiet) == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)  # 08:00 EST


recipients = st.builds(
    Recipient,
    cart_status=st.sampled_from(list(CartStatus)),
    email=st.sampled_from([None, "", "not-an-address", "ana@example.com", "Bo@Example.org"]),
    accepts_marketing=st.none() | st.booleans(),
    consent_source=st.sampled_from([None, "storefront:accepts_marketing"]),
    timezone=st.none() | st.sampled_from(ZONES),
    shop_timezone=st.sampled_from(ZONES),
    stopped=st.sampled_from([None, "address unsubscribed", "address bounced"]),
    other_cart_reminded_at=st.none() | instants,
)
policies = st.builds(
    lambda consent, quiet, dnd: default_rules().model_copy(
        update={"consent": consent, "quiet_hours": quiet, "do_not_disturb": dnd}
    ),
    st.sampled_from(list(ConsentPolicy)),
    st.none() | quiet_hours,
    st.integers(0, 30).map(lambda d: timedelta(days=d)),
)


@settings(max_examples=500)
@given(recipients, policies, instants)
def test_gates_never_let_through_what_they_must_stop(
    r: Recipient, rules: Rules, now: datetime
) -> None:
    verdict = check(r, rules, now)

    assert verdict == check(r, rules, now)
    if isinstance(verdict, Go):
        assert r.cart_status is CartStatus.OPEN
        assert r.stopped is None
        assert r.email and "@" in r.email
        if rules.consent is ConsentPolicy.REQUIRE_OPT_IN:
            assert r.accepts_marketing is True
        if r.other_cart_reminded_at is not None:
            assert now - r.other_cart_reminded_at >= rules.do_not_disturb
        if rules.quiet_hours is not None:
            zone = ZoneInfo(r.timezone or r.shop_timezone)
            assert not is_quiet(now.astimezone(zone).time(), rules.quiet_hours)
    if isinstance(verdict, Defer):
        assert verdict.until > now
        # Deferred, not dropped: at the time it names, the same recipient goes out.
        assert isinstance(check(r, rules, verdict.until), Go | Skip)
        assert not isinstance(check(r, rules, verdict.until), Defer)


def _recipient(**overrides: object) -> Recipient:
    base = Recipient(
        cart_status=CartStatus.OPEN,
        email="ana@example.com",
        accepts_marketing=True,
        consent_source="storefront:accepts_marketing",
        timezone="Europe/Paris",
        shop_timezone="America/New_York",
        stopped=None,
        other_cart_reminded_at=None,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


NOON_PARIS = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, Go("opt_in:storefront:accepts_marketing")),
        ({"email": None}, Skip("no usable email address")),
        ({"cart_status": CartStatus.BOUGHT}, Skip("cart is bought")),
        ({"stopped": "address unsubscribed"}, Skip("address unsubscribed")),
        ({"stopped": "address bounced"}, Skip("address bounced")),
        (
            {"accepts_marketing": False},
            Skip("no consent: the shop requires opt-in and the shopper did not opt in"),
        ),
        (
            {"other_cart_reminded_at": NOON_PARIS - timedelta(days=2)},
            Skip("do not disturb: this address had a reminder about another cart recently"),
        ),
        (
            {"other_cart_reminded_at": NOON_PARIS - timedelta(days=8)},
            Go("opt_in:storefront:accepts_marketing"),
        ),
        # 22:00 in Paris but 16:00 in the shop's New York: the shopper's zone decides.
        ({"timezone": "Europe/Paris"}, Go("opt_in:storefront:accepts_marketing")),
    ],
)
def test_each_gate_names_its_reason(overrides: dict[str, object], expected: object) -> None:
    assert check(_recipient(**overrides), default_rules(), NOON_PARIS) == expected


def test_quiet_hours_use_the_shoppers_zone_then_the_shops() -> None:
    late_in_paris = datetime(2026, 6, 1, 20, 0, tzinfo=UTC)  # 22:00 Paris, 16:00 New York

    deferred = check(_recipient(), default_rules(), late_in_paris)
    assert deferred == Defer(datetime(2026, 6, 2, 6, 0, tzinfo=UTC), "quiet hours in Europe/Paris")
    unknown_zone = check(_recipient(timezone=None), default_rules(), late_in_paris)
    assert isinstance(unknown_zone, Go)


def test_soft_opt_in_is_recorded_as_such() -> None:
    rules = default_rules().model_copy(update={"consent": ConsentPolicy.SOFT_OPT_IN})

    verdict = check(_recipient(accepts_marketing=None), rules, NOON_PARIS)

    assert verdict == Go("soft_opt_in:email_at_checkout")
