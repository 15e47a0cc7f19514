"""The retry policy for sends that certainly did not reach the provider."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartnudge.delivery.policy import (
    MAX_ATTEMPTS,
    RETRY_CAP,
    RETRY_FLOOR,
    retry_ceiling,
    retry_delay,
)

attempts = st.integers(min_value=1, max_value=10_000)
fractions = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
MINUTE = timedelta(minutes=1)


def test_the_ceiling_doubles_from_a_minute_up_to_an_hour() -> None:
    ceilings = [retry_ceiling(n) for n in range(1, 10)]

    assert ceilings == [m * MINUTE for m in (1, 2, 4, 8, 16, 32, 60, 60, 60)]


@given(attempts, fractions)
def test_a_delay_stays_between_the_floor_and_the_ceiling(n: int, fraction: float) -> None:
    delay = retry_delay(n, fraction)

    assert RETRY_FLOOR <= delay <= retry_ceiling(n) <= RETRY_CAP


@given(attempts)
def test_the_ceiling_never_falls(n: int) -> None:
    assert retry_ceiling(n) <= retry_ceiling(n + 1)


@given(attempts, fractions, fractions)
def test_a_later_attempt_or_a_larger_draw_never_waits_less(
    n: int, fraction: float, other: float
) -> None:
    low, high = sorted((fraction, other))

    assert retry_delay(n, low) <= retry_delay(n, high)
    assert retry_delay(n, fraction) <= retry_delay(n + 1, fraction)


@given(attempts, fractions)
def test_full_jitter_uses_the_whole_window(n: int, fraction: float) -> None:
    expected = retry_ceiling(n) * fraction

    assert abs(retry_delay(n, fraction) - max(expected, RETRY_FLOOR)) <= timedelta(microseconds=1)


def test_an_unlucky_draw_still_waits_ten_seconds() -> None:
    assert retry_delay(1, 0.0) == timedelta(seconds=10)
    assert retry_delay(MAX_ATTEMPTS, 0.0) == timedelta(seconds=10)


def test_a_send_is_given_up_within_the_hour_at_worst() -> None:
    # Retries come after attempts 1 .. MAX_ATTEMPTS - 1; the last attempt is not retried.
    worst = sum((retry_ceiling(n) for n in range(1, MAX_ATTEMPTS)), timedelta())

    assert worst == 31 * MINUTE


@pytest.mark.parametrize(("n", "fraction"), [(0, 0.5), (-1, 0.5), (1, 1.0), (1, -0.1), (1, 1.5)])
def test_nonsense_inputs_are_refused(n: int, fraction: float) -> None:
    with pytest.raises(ValueError):
        retry_delay(n, fraction)
