"""The rules document: defaults as the product promises, every bad document refused with
a message naming the problem."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal

import pytest
import yaml

from cartnudge.timing.rules import (
    DEFAULT_DOCUMENT,
    ConsentPolicy,
    RulesError,
    default_rules,
    parse_rules,
)

H = timedelta(hours=1)


def test_defaults_size_the_waits_by_cart_total() -> None:
    rules = default_rules()

    assert rules.waits_for(Decimal("39.99")) == (4 * H, 24 * H)
    assert rules.waits_for(Decimal(40)) == (2 * H, 22 * H)
    assert rules.waits_for(Decimal("149.99")) == (2 * H, 22 * H)
    assert rules.waits_for(Decimal(150)) == (1 * H, 20 * H)
    assert rules.waits_for(None) == (2 * H, 22 * H)  # unknown total: the middle tier
    assert rules.steps == 2
    assert rules.quiet_hours is not None
    assert (rules.quiet_hours.start, rules.quiet_hours.end) == (time(21), time(8))
    assert rules.do_not_disturb == timedelta(days=7)
    assert rules.consent is ConsentPolicy.REQUIRE_OPT_IN


def test_a_document_round_trips_through_its_plain_form() -> None:
    rules = default_rules()

    assert parse_rules(yaml.safe_dump(rules.to_document())) == rules


def test_override_and_fewer_steps() -> None:
    rules = parse_rules(
        DEFAULT_DOCUMENT.replace("wait_override: null", "wait_override: [30m]").replace(
            "steps: 2", "steps: 1"
        )
    )

    assert rules.waits_for(Decimal(500)) == (timedelta(minutes=30),)


def test_unquoted_times_of_day_are_understood() -> None:
    # YAML 1.1 reads 21:00 as the number 1260; the owner meant nine in the evening.
    rules = parse_rules(
        DEFAULT_DOCUMENT.replace('{start: "21:00", end: "08:00"}', "{start: 21:00, end: 07:30}")
    )

    assert rules.quiet_hours is not None
    assert (rules.quiet_hours.start, rules.quiet_hours.end) == (time(21), time(7, 30))


def test_quiet_hours_can_be_switched_off() -> None:
    text = DEFAULT_DOCUMENT.replace(
        'quiet_hours: {start: "21:00", end: "08:00"}', "quiet_hours: null"
    )

    assert parse_rules(text).quiet_hours is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("steps: 2", "steps: 4"), "steps: Input should be less than or equal to 3"),
        (("steps: 2", "steps: 0"), "steps: Input should be greater than or equal to 1"),
        (("steps: 2", "steps: 3"), "tier 'small' has 2 wait(s) for 3 steps"),
        (("waits: [4h, 24h]", "waits: [4 hours, 24h]"), "'4 hours' is not a duration"),
        (("waits: [4h, 24h]", "waits: [0s, 24h]"), "a wait must be more than 0 and at most 30d"),
        (("waits: [4h, 24h]", "waits: [4h, 31d]"), "a wait must be more than 0 and at most 30d"),
        (("name: small, from: 0", "name: small, from: 5"), "the first tier must start from 0"),
        (("name: big, from: 150", "name: big, from: 20"), "tiers must be listed by increasing"),
        (("name: big", "name: small"), "tier names must differ"),
        (("consent: require_opt_in", "consent: maybe"), "consent: Input should be"),
        (
            ("do_not_disturb: 7d", "do_not_disturb: soon"),
            "do_not_disturb: 'soon' is not a duration",
        ),
        (("minimum_cart_value: 0", "minimum_cart_value: -5"), "minimum_cart_value: Input should"),
        (("steps: 2", "steps: 2\nsend_at_night: yes"), "send_at_night: not a setting"),
        (('end: "08:00"', 'end: "21:00"'), "quiet hours start and end at the same minute"),
        (('end: "08:00"', 'end: "25:00"'), "'25:00' is not a time of day"),
        (("wait_override: null", "wait_override: [30m]"), "wait_override needs 2 wait(s)"),
    ],
)
def test_bad_documents_are_refused_naming_the_problem(
    change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in DEFAULT_DOCUMENT

    with pytest.raises(RulesError) as refused:
        parse_rules(DEFAULT_DOCUMENT.replace(old, new, 1))

    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tiers: [", "not valid YAML"),
        ("- just\n- a list\n", "a rules document is a mapping"),
        ("", "a rules document is a mapping"),
        ("steps: 2\n", "tiers: Field required"),
        ("x: " + "y" * 70_000, "at most 64 KiB"),
    ],
)
def test_documents_that_are_not_rules_at_all(text: str, message: str) -> None:
    with pytest.raises(RulesError) as refused:
        parse_rules(text)

    assert message in str(refused.value)
