"""Statistics for eval results: rates with Wilson intervals, exact binomial tests, a seeded
bootstrap, and exact McNemar tests for paired changes.

Everything is a pure function of its inputs (the bootstrap takes its seed), so a report
computed twice from the same database gives the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel
from scipy.stats import binomtest, norm


class Rate(BaseModel):
    """k successes out of n, with a two-sided Wilson score interval."""

    k: int
    n: int
    rate: float | None  # None when n == 0: no evidence, not a rate of 0
    low: float | None
    high: float | None
    confidence: float = 0.95

    def short(self) -> str:
        if self.rate is None:
            return f"n/a (0/{self.n})"
        return f"{self.rate:.1%} [{self.low:.1%}, {self.high:.1%}] ({self.k}/{self.n})"


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval (no continuity correction) for k successes in n trials."""
    if n <= 0:
        raise ValueError("the Wilson interval needs n > 0")
    if not 0 <= k <= n:
        raise ValueError(f"k={k} is not within 0..{n}")
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(k: int, n: int, confidence: float = 0.95) -> Rate:
    if n == 0:
        return Rate(k=0, n=0, rate=None, low=None, high=None, confidence=confidence)
    low, high = wilson_interval(k, n, confidence)
    return Rate(k=k, n=n, rate=k / n, low=low, high=high, confidence=confidence)


Alternative = Literal["two-sided", "less", "greater"]


def binomial_test(k: int, n: int, p: float = 0.5, alternative: Alternative = "two-sided") -> float:
    """Exact binomial test p-value of k successes in n trials against success probability p."""
    if n == 0:
        return 1.0
    return float(binomtest(k, n, p, alternative=alternative).pvalue)


class McNemarResult(BaseModel):
    """Paired binary outcomes: b = yes->no changes, c = no->yes changes."""

    n_pairs: int
    b: int
    c: int
    p_value: float
    shift: float  # (c - b) / n_pairs: the change in the "yes" rate from first to second


def mcnemar_exact(pairs: Sequence[tuple[bool, bool]]) -> McNemarResult:
    """Exact (binomial) McNemar test on paired (before, after) outcomes.

    Only discordant pairs carry information; under H0 each is equally likely to go either way.
    """
    b = sum(1 for before, after in pairs if before and not after)
    c = sum(1 for before, after in pairs if after and not before)
    n = len(pairs)
    p_value = binomial_test(b, b + c, 0.5) if b + c else 1.0
    return McNemarResult(n_pairs=n, b=b, c=c, p_value=p_value, shift=(c - b) / n if n else 0.0)


class BootstrapCI(BaseModel):
    estimate: float
    low: float
    high: float
    n_resamples: int
    seed: int


def bootstrap_ci(
    values: Sequence[float],
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """Percentile bootstrap interval, resampling with numpy's ``default_rng(seed)``."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("the bootstrap needs at least one value")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.size, size=(n_resamples, data.size))
    stats = np.array([statistic(data[row]) for row in idx])
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return BootstrapCI(
        estimate=float(statistic(data)),
        low=float(low),
        high=float(high),
        n_resamples=n_resamples,
        seed=seed,
    )


def paired_bootstrap_diff(
    first: Sequence[float], second: Sequence[float], *, n_resamples: int = 2000, seed: int = 0
) -> tuple[BootstrapCI, float]:
    """Mean of (second - first) over pairs, its bootstrap interval and a two-sided p-value
    (the share of resampled means on the other side of zero, doubled)."""
    diffs = np.asarray(second, dtype=float) - np.asarray(first, dtype=float)
    ci = bootstrap_ci(diffs, n_resamples=n_resamples, seed=seed)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diffs.size, size=(n_resamples, diffs.size))
    means = diffs[idx].mean(axis=1)
    tail = min(float(np.mean(means <= 0)), float(np.mean(means >= 0)))
    return ci, min(1.0, 2 * tail)
