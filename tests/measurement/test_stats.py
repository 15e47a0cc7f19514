"""The intervals behind the lift: published values where there are some, and coverage
where there are not (an interval said to be 95% holds the truth about 95 times in 100)."""

from __future__ import annotations

import random

import pytest

from cartnudge.measurement.stats import (
    Interval,
    bca_difference_of_means,
    newcombe_difference,
    proportion_sample_size,
    sample_size,
    too_small,
    wilson,
)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # Newcombe, Statistics in Medicine 17 (1998), table II, method 10.
        ((56, 70, 48, 80), (0.2, 0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.6, 0.1705, 0.8090)),
        ((5, 56, 0, 29), (0.0893, -0.0381, 0.1926)),
    ],
)
def test_the_difference_of_two_rates_matches_newcombes_published_intervals(
    counts: tuple[int, int, int, int], expected: tuple[float, float, float]
) -> None:
    got = newcombe_difference(*counts)
    assert (got.estimate, got.low, got.high) == pytest.approx(expected, abs=5e-4)


def test_wilsons_interval_stays_inside_0_and_1_and_is_not_empty_at_zero() -> None:
    got = wilson(81, 263)
    assert (got.estimate, got.low, got.high) == pytest.approx((0.3080, 0.2553, 0.3662), abs=1e-4)
    none = wilson(0, 20)
    assert none.low == 0 and 0.1 < none.high < 0.2  # nothing seen is not "certainly nothing"
    assert wilson(20, 20).high == 1


@pytest.mark.parametrize(("successes", "n"), [(-1, 10), (11, 10), (0, 0), (0, -1)])
def test_counts_that_are_not_counts_are_refused(successes: int, n: int) -> None:
    with pytest.raises(ValueError):
        wilson(successes, n)


def test_the_difference_interval_holds_the_true_lift_about_95_times_in_100() -> None:
    rng = random.Random(20261208)
    base, lift, n, runs = 0.08, 0.03, 2_000, 400
    held = 0
    for _ in range(runs):
        x1 = sum(rng.random() < base + lift for _ in range(n))
        x2 = sum(rng.random() < base for _ in range(n))
        held += newcombe_difference(x1, n, x2, n).contains(lift)
    assert 0.92 * runs <= held <= 0.98 * runs, held


def revenue(rng: random.Random, n: int, rate: float, mean: float) -> list[float]:
    """Revenue per cart: most carts nothing, a buying one an exponential amount."""
    return [rng.expovariate(1 / mean) if rng.random() < rate else 0.0 for _ in range(n)]


def test_the_bootstrap_interval_of_revenue_per_cart_holds_the_truth() -> None:
    rng = random.Random(7)
    truth = 0.10 * 40 - 0.07 * 40  # rate times mean amount, reminded minus held out
    runs, held = 60, 0
    for seed in range(runs):
        a, b = revenue(rng, 1_500, 0.10, 40), revenue(rng, 1_500, 0.07, 40)
        got = bca_difference_of_means(a, b, resamples=1_000, seed=seed)
        held += got.contains(truth)
        assert got.low < got.estimate < got.high
    assert held >= 0.88 * runs, held


def test_the_bootstrap_is_the_same_every_time_for_the_same_seed() -> None:
    rng = random.Random(3)
    a, b = revenue(rng, 300, 0.1, 40), revenue(rng, 300, 0.05, 40)
    assert bca_difference_of_means(a, b, seed=1) == bca_difference_of_means(a, b, seed=1)
    assert bca_difference_of_means([5.0, 5.0], [2.0, 2.0]) == Interval(3.0, 3.0, 3.0)
    with pytest.raises(ValueError, match="at least two"):
        bca_difference_of_means([1.0], [1.0, 2.0])


def test_sample_sizes_follow_the_formula() -> None:
    # 2 (1.959964 + 0.841621)^2 = 15.70: a difference of half a standard deviation.
    assert sample_size(1.0, 0.5) == 63
    # A purchase rate of 10% moved by two points: 2 * 15.7/2 * 0.09 / 0.0004 = 3,532.
    assert proportion_sample_size(0.10, 0.02) == 3_532
    assert proportion_sample_size(0.10, 0.04) < proportion_sample_size(0.10, 0.02) / 3
    for bad in ((0.0, 0.5), (1.0, 0.0), (-1.0, 1.0)):
        with pytest.raises(ValueError):
            sample_size(*bad)
    with pytest.raises(ValueError):
        proportion_sample_size(1.0, 0.01)


def test_too_small_says_why_in_words() -> None:
    assert "no carts were held out" in (too_small(500, 0, 40, 0) or "")
    assert "each group needs at least 30" in (too_small(500, 12, 40, 2) or "")
    assert "too few purchases" in (too_small(500, 60, 40, 2) or "")
    assert too_small(500, 60, 40, 6) is None
