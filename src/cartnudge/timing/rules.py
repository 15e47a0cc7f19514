"""A shop's reminder rules: a YAML document the owner edits, validated as a whole.

The document is parsed into ``Rules`` (plain, frozen data) or refused with every problem
named; a document that does not validate is never stored, so rules are never half-applied.
Money thresholds are in major units of the shop's currency (``40`` means 40 euros in a
euro shop); waits take units (``90s``, ``30m``, ``4h``, ``2d``).
"""

from __future__ import annotations

import itertools
from datetime import time, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from cartnudge.durations import DurationError, format_duration, parse_duration
from cartnudge.yamldocs import DocumentError, Problems, problems_of, yaml_mapping

MAX_STEPS = 3  # the hard cap: no rules document can ask for more reminders per cart
MAX_WAIT = timedelta(days=30)
MAX_DOCUMENT_BYTES = 64 * 1024


class RulesError(DocumentError):
    """A rules document that cannot be used; ``problems`` names each, where it is."""


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration like 90s, 30m, 4h or 2d")
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise ValueError(str(exc)) from exc


def _clock_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 21:00 as the sexagesimal number 1260.
        hours, minutes = divmod(value, 60)
        if 0 <= hours < 24:
            return time(hours, minutes)
    if isinstance(value, str):
        try:
            parsed = time.fromisoformat(value.strip())
        except ValueError:
            pass
        else:
            if parsed.second == 0 and parsed.microsecond == 0 and parsed.tzinfo is None:
                return parsed
    raise ValueError(f"{value!r} is not a time of day like 21:00")


def _bounded_waits(waits: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
    for wait in waits:
        if not timedelta(0) < wait <= MAX_WAIT:
            raise ValueError(f"a wait must be more than 0 and at most 30d, not {wait}")
    return waits


Duration = Annotated[timedelta, BeforeValidator(_duration)]
# One wait per step, each more than 0 and at most MAX_WAIT (tier waits and the override).
Waits = Annotated[tuple[Duration, ...], Field(max_length=MAX_STEPS), AfterValidator(_bounded_waits)]
ClockTime = Annotated[time, BeforeValidator(_clock_time)]


class ConsentPolicy(StrEnum):
    # Remind only shoppers who ticked "email me offers" (or the platform's equivalent).
    REQUIRE_OPT_IN = "require_opt_in"
    # Also remind shoppers who typed their email during checkout and did not opt out:
    # the "soft opt-in" some jurisdictions allow for a customer's own purchase. The
    # store's legal choice; every send records which basis it used.
    SOFT_OPT_IN = "soft_opt_in"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(_Strict):
    name: str = Field(min_length=1, max_length=40)
    # Carts whose total reaches this take this tier (until the next tier's ``from``).
    from_: Decimal = Field(alias="from", ge=0)
    # The first reminder this long after the shopper's last activity, each later one this
    # long after the previous reminder (or the last activity, if that is later).
    waits: Waits = Field(min_length=1)


class QuietHours(_Strict):
    """No email between ``start`` and ``end`` in the shopper's time zone (the shop's when
    the shopper's is unknown). ``start`` after ``end`` spans midnight."""

    start: ClockTime
    end: ClockTime

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours start and end at the same minute; remove them instead")
        return self


class Rules(_Strict):
    tiers: tuple[Tier, ...] = Field(min_length=1, max_length=10)
    steps: int = Field(default=2, ge=1, le=MAX_STEPS)
    # After the last reminder, a cart still not bought is closed this much later.
    give_up_after: Duration = timedelta(days=2)
    quiet_hours: QuietHours | None = QuietHours(start=time(21), end=time(8))
    # No reminder about a new cart to an email that got one about another cart this recently.
    do_not_disturb: Duration = timedelta(days=7)
    # Carts below this total (major units) are never reminded.
    minimum_cart_value: Decimal = Field(default=Decimal(0), ge=0)
    # Waits for every cart, in place of the tier's (one per step).
    wait_override: Waits | None = None
    consent: ConsentPolicy = ConsentPolicy.REQUIRE_OPT_IN

    @model_validator(mode="after")
    def _consistent(self) -> Rules:
        problems = []
        if self.tiers[0].from_ != 0:
            problems.append(
                ("tiers.0.from", "the first tier must start from 0, so every cart has a tier")
            )
        for n, (a, b) in enumerate(itertools.pairwise(self.tiers), start=1):
            if b.from_ <= a.from_:
                problems.append((f"tiers.{n}.from", "tiers must be listed by increasing `from`"))
        seen: set[str] = set()
        for n, tier in enumerate(self.tiers):
            if tier.name in seen:
                problems.append((f"tiers.{n}.name", "tier names must differ"))
            seen.add(tier.name)
        for n, tier in enumerate(self.tiers):
            if len(tier.waits) < self.steps:
                problems.append(
                    (
                        f"tiers.{n}.waits",
                        f"tier {tier.name!r} has {len(tier.waits)} wait(s) for {self.steps} steps",
                    )
                )
        if self.wait_override is not None and len(self.wait_override) < self.steps:
            problems.append(
                ("wait_override", f"wait_override needs {self.steps} wait(s), one per step")
            )
        if not timedelta(0) < self.give_up_after <= MAX_WAIT:
            problems.append(("give_up_after", "give_up_after must be more than 0 and at most 30d"))
        if not timedelta(0) <= self.do_not_disturb <= timedelta(days=365):
            problems.append(("do_not_disturb", "do_not_disturb must be between 0 and 365d"))
        if problems:
            raise Problems(problems)
        return self

    def tier_for(self, total: Decimal | None) -> Tier:
        """The tier of a cart total in major units; an unknown total takes the middle one
        (neither the most eager nor the most patient)."""
        if total is None:
            return self.tiers[(len(self.tiers) - 1) // 2]
        chosen = self.tiers[0]
        for tier in self.tiers:
            if total >= tier.from_:
                chosen = tier
        return chosen

    def waits_for(self, total: Decimal | None) -> tuple[timedelta, ...]:
        waits = self.wait_override or self.tier_for(total).waits
        return waits[: self.steps]

    def to_document(self) -> dict[str, Any]:
        """The plain form, as YAML would hold it (durations and times as text)."""
        doc: dict[str, Any] = {
            "tiers": [
                {
                    "name": t.name,
                    "from": _number(t.from_),
                    "waits": [format_duration(w) for w in t.waits],
                }
                for t in self.tiers
            ],
            "steps": self.steps,
            "give_up_after": format_duration(self.give_up_after),
            "quiet_hours": None
            if self.quiet_hours is None
            else {
                "start": self.quiet_hours.start.strftime("%H:%M"),
                "end": self.quiet_hours.end.strftime("%H:%M"),
            },
            "do_not_disturb": format_duration(self.do_not_disturb),
            "minimum_cart_value": _number(self.minimum_cart_value),
            "wait_override": None
            if self.wait_override is None
            else [format_duration(w) for w in self.wait_override],
            "consent": self.consent.value,
        }
        return doc


def _number(value: Decimal) -> int | str:
    return int(value) if value == value.to_integral_value() else str(value)


DEFAULT_DOCUMENT = """\
# Reminder rules. Waits take units: 90s, 30m, 4h, 2d. Money is in the shop's currency.

# Cart-size tiers by cart total: a cart takes the last tier whose `from` it reaches.
# waits: the first reminder this long after the shopper's last activity, the second this
# long after the first (activity in between restarts the clock).
tiers:
  - {name: small, from: 0, waits: [4h, 24h]}
  - {name: medium, from: 40, waits: [2h, 22h]}
  - {name: big, from: 150, waits: [1h, 20h]}

steps: 2                 # reminders per cart, at most 3
give_up_after: 2d        # after the last reminder, close the cart this much later

# No email in these hours, in the shopper's time zone (the shop's if unknown);
# a reminder due then waits for the end. `quiet_hours: null` switches this off.
quiet_hours: {start: "21:00", end: "08:00"}

do_not_disturb: 7d       # no reminder about a new cart to an email reminded this recently
minimum_cart_value: 0    # carts below this total are never reminded
wait_override: null      # e.g. [30m, 1d]: the same waits for every cart, whatever its size

# require_opt_in: only shoppers who opted in to marketing email.
# soft_opt_in: also shoppers who entered their email at checkout and did not opt out.
consent: require_opt_in
"""


def parse_rules(text: str) -> Rules:
    """Validate a whole document; ``RulesError`` names every problem found."""
    data = yaml_mapping(
        text, what="rules", of="settings", limit=MAX_DOCUMENT_BYTES, error=RulesError
    )
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        raise RulesError(problems_of(exc, _explain)) from exc


def _explain(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "not a setting (see `rules show` for the settings there are)"
    return error["msg"].removeprefix("Value error, ")


@lru_cache(maxsize=1024)
def cached_rules(text: str) -> Rules:
    """Parsed rules for a stored document (stored documents were validated when set)."""
    return parse_rules(text)


def default_rules() -> Rules:
    return cached_rules(DEFAULT_DOCUMENT)
