"""Statistics for eval results: rates with Wilson intervals, exact binomial tests, a seeded
bootstrap (also by cluster, for repeated samples of one scenario), and exact McNemar tests for
paired changes. Resampling p-values are (k + 1) / (B + 1), never 0.

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
    (``resampling_p_value``: (k + 1) / (B + 1) of the resampled means on the other side of
    zero, doubled; never 0)."""
    diffs = np.asarray(second, dtype=float) - np.asarray(first, dtype=float)
    ci = bootstrap_ci(diffs, n_resamples=n_resamples, seed=seed)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diffs.size, size=(n_resamples, diffs.size))
    means = diffs[idx].mean(axis=1)
    return ci, resampling_p_value(means, n_resamples)


def resampling_p_value(stats: np.ndarray, n_resamples: int) -> float:
    """Two-sided p-value from resampled statistics: the smaller tail's count k (resamples on
    the other side of zero, or at it), as (k + 1) / (B + 1), doubled and capped at 1. Never 0:
    B resamples cannot show a probability below 1 / (B + 1)."""
    k = min(int(np.sum(stats <= 0)), int(np.sum(stats >= 0)))
    return min(1.0, 2 * (k + 1) / (n_resamples + 1))


def cluster_bootstrap_rate(
    successes: Sequence[bool],
    clusters: Sequence[str],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """A rate's percentile interval when samples come in clusters (several samples, epochs, of
    one scenario are not independent): whole clusters are resampled with replacement and the
    rate recomputed as successes / samples over the drawn clusters."""
    if len(successes) != len(clusters):
        raise ValueError("one cluster per value")
    if not successes:
        raise ValueError("the bootstrap needs at least one value")
    names = sorted(set(clusters))
    index = {c: i for i, c in enumerate(names)}
    hits = np.zeros(len(names))
    counts = np.zeros(len(names))
    for ok, c in zip(successes, clusters, strict=True):
        hits[index[c]] += float(ok)
        counts[index[c]] += 1
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(names), size=(n_resamples, len(names)))
    stats = hits[idx].sum(axis=1) / counts[idx].sum(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return BootstrapCI(
        estimate=float(hits.sum() / counts.sum()),
        low=float(low),
        high=float(high),
        n_resamples=n_resamples,
        seed=seed,
    )
