"""The statistics the gate rests on: intervals for rates and exact tests on paired answers.

Pure and standard-library only, so every figure can be checked by hand:

- `wilson`: the Wilson score interval of a proportion, which behaves at 0 and
  1 and for small n, where the textbook (Wald) interval does not;
- `sign_test`: the exact one-sided binomial test on discordant pairs. When the
  same prompt is answered by two models, only the pairs where they differ say
  anything about which is better; under "no difference" each such pair is a
  fair coin. This is McNemar's exact test;
- `paired_difference`: Newcombe's interval (method 10) for the difference of
  two proportions measured on the same pairs.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from pydantic import BaseModel, ConfigDict


def z_of(confidence: float) -> float:
    """The two-sided normal quantile for a confidence level (0.95 -> 1.96)."""
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of `successes` out of `n`; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    z = z_of(confidence)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def sign_test(favourable: int, unfavourable: int) -> float:
    """P(at least `favourable` of the discordant pairs favour one side | no difference).

    Exact: the tail of Binomial(favourable + unfavourable, 1/2). With no
    discordant pairs there is no evidence at all, so the answer is 1.
    """
    d = favourable + unfavourable
    if d == 0:
        return 1.0
    tail = sum(math.comb(d, k) for k in range(favourable, d + 1))
    p: float = tail / 2**d  # exact integers divided once: no overflow for large d
    return p


def two_sided_sign_test(first: int, second: int) -> float:
    """The two-sided exact sign test: twice the smaller tail, at most 1."""
    return min(1.0, 2 * sign_test(max(first, second), min(first, second)))


def pairs_needed(significance: float) -> int:
    """The fewest discordant pairs that can be significant at all: all one way, 2^-d <= level."""
    return max(1, math.ceil(math.log(significance) / math.log(0.5)))


class PairCounts(BaseModel):
    """Binary outcomes on the same units for two conditions: (first, second) counts."""

    model_config = ConfigDict(frozen=True)

    both: int = 0
    only_first: int = 0
    only_second: int = 0
    neither: int = 0

    @property
    def n(self) -> int:
        """All the pairs."""
        return self.both + self.only_first + self.only_second + self.neither

    @property
    def first(self) -> int:
        """Pairs where the first condition holds."""
        return self.both + self.only_first

    @property
    def second(self) -> int:
        """Pairs where the second condition holds."""
        return self.both + self.only_second


def paired_difference(counts: PairCounts, confidence: float = 0.95) -> tuple[float, float, float]:
    """(first rate - second rate, low, high): Newcombe's interval for paired proportions.

    It combines each rate's Wilson interval with the correlation of the pairs
    (Newcombe 1998, method 10), so it stays inside [-1, 1] and is sensible
    for small n and rates near 0 or 1.
    """
    n = counts.n
    if n == 0:
        return 0.0, -1.0, 1.0
    p1, p2 = counts.first / n, counts.second / n
    l1, u1 = wilson(counts.first, n, confidence)
    l2, u2 = wilson(counts.second, n, confidence)
    a, b, c, d = counts.both, counts.only_first, counts.only_second, counts.neither
    denominator = (a + b) * (c + d) * (a + c) * (b + d)
    if denominator == 0:
        phi = 0.0
    else:
        cross = a * d - b * c
        corrected = max(cross - n / 2, 0) if cross > 0 else cross
        phi = corrected / math.sqrt(denominator)
    delta = p1 - p2
    low = delta - math.sqrt(
        max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    )
    high = delta + math.sqrt(
        max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    )
    return delta, max(-1.0, low), min(1.0, high)
