"""The statistics behind an honest number: how sure we are of a purchase rate, of the
difference between the reminded carts' rate and the held-out carts' rate, of the
difference in revenue per cart, and how many carts a lift needs before it can be seen.

- A proportion's interval is Wilson's score interval (sound at small counts and near 0
  or 1, where the textbook normal interval is not).
- The difference of two proportions uses Newcombe's hybrid score interval (method 10 of
  Newcombe, *Statistics in Medicine* 1998), built from the two Wilson intervals.
- Revenue per cart is heavily skewed (most carts bring nothing, a few a lot), so its
  difference gets a bootstrap interval with bias correction and acceleration (BCa).
- The sample size for a difference ``delta`` in a quantity of standard deviation
  ``sigma``, two groups, two-sided: n = 2 (z(1 - alpha/2) + z(power))^2 sigma^2 / delta^2
  per group.

Pure functions of counts and amounts. scipy is imported inside them: the web processes
never pay for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
POWER = 0.80
# Below these, an interval says little and the report says so in words instead.
MIN_PER_GROUP = 30
MIN_EVENTS = 5  # purchases in each group
BOOTSTRAP_RESAMPLES = 4_000


@dataclass(frozen=True, slots=True)
class Interval:
    estimate: float
    low: float
    high: float
    confidence: float = CONFIDENCE

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - (1 - confidence) / 2))


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """The proportion ``successes / n`` with Wilson's score interval."""
    _check_counts(successes, n)
    if n == 0:
        raise ValueError("no trials: a proportion of nothing has no interval")
    p = successes / n
    z = _z(confidence)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), confidence)


def newcombe_difference(
    x1: int, n1: int, x2: int, n2: int, confidence: float = CONFIDENCE
) -> Interval:
    """``x1/n1 - x2/n2`` with Newcombe's hybrid score interval."""
    a, b = wilson(x1, n1, confidence), wilson(x2, n2, confidence)
    d = a.estimate - b.estimate
    low = d - math.sqrt((a.estimate - a.low) ** 2 + (b.high - b.estimate) ** 2)
    high = d + math.sqrt((a.high - a.estimate) ** 2 + (b.estimate - b.low) ** 2)
    return Interval(d, low, high, confidence)


def bca_difference_of_means(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = CONFIDENCE,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """``mean(a) - mean(b)`` with a BCa bootstrap interval (each group resampled on its
    own). ``seed`` makes a report say the same thing every time it is made."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a bootstrap needs at least two values in each group")
    import numpy as np
    from scipy.stats import bootstrap

    def difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(np.mean(x, axis=axis) - np.mean(y, axis=axis))

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    estimate = float(x.mean() - y.mean())
    if np.ptp(x) == 0 and np.ptp(y) == 0:  # nothing varies: nothing to be unsure of
        return Interval(estimate, estimate, estimate, confidence)
    result = bootstrap(
        (x, y),
        difference,
        confidence_level=confidence,
        n_resamples=resamples,
        method="BCa",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return Interval(estimate, float(low), float(high), confidence)


def sample_size(
    sigma: float, delta: float, *, confidence: float = CONFIDENCE, power: float = POWER
) -> int:
    """Carts needed in each group to see a difference of ``delta`` in a quantity whose
    standard deviation is ``sigma`` (two-sided, at ``confidence``, with ``power``)."""
    if sigma <= 0 or delta <= 0:
        raise ValueError("the spread and the difference to see must both be more than 0")
    from scipy.stats import norm

    z = _z(confidence) + float(norm.ppf(power))
    return math.ceil(2 * z * z * sigma * sigma / (delta * delta))


def proportion_sample_size(
    baseline: float, lift: float, *, confidence: float = CONFIDENCE, power: float = POWER
) -> int:
    """Carts needed in each group to see a purchase rate move from ``baseline`` by
    ``lift`` (absolute: 0.02 is two points), with the baseline's own spread."""
    if not 0 < baseline < 1:
        raise ValueError("the baseline rate must be between 0 and 1")
    return sample_size(
        math.sqrt(baseline * (1 - baseline)), lift, confidence=confidence, power=power
    )


def too_small(
    n_reminded: int, n_held_out: int, bought_reminded: int, bought_held: int
) -> str | None:
    """Why these groups are too small to say anything, in the owner's words; None when
    they are not."""
    if n_held_out == 0:
        return "no carts were held out, so there is nothing to compare the reminded carts with"
    if min(n_reminded, n_held_out) < MIN_PER_GROUP:
        return (
            f"too few carts to say anything yet: {n_reminded} reminded and {n_held_out} held "
            f"out; each group needs at least {MIN_PER_GROUP}"
        )
    if min(bought_reminded, bought_held) < MIN_EVENTS:
        return (
            f"too few purchases to say anything yet: {bought_reminded} among the reminded "
            f"carts and {bought_held} among the held-out ones; each needs at least {MIN_EVENTS}"
        )
    return None


def _check_counts(successes: int, n: int) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"{successes} of {n} is not a count of successes among trials")
