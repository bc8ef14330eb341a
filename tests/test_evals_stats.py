"""Statistics against published or exactly computable values."""

from __future__ import annotations

import numpy as np
import pytest

from labelgate.evals.stats import (
    binomial_test,
    bootstrap_ci,
    mcnemar_exact,
    paired_bootstrap_diff,
    rate,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        # 8/10, as computed by statsmodels proportion_confint(method="wilson").
        (8, 10, 0.4902, 0.9433),
    ],
)
def test_wilson_interval_matches_published_values(k: int, n: int, low: float, high: float) -> None:
    got_low, got_high = wilson_interval(k, n)
    assert got_low == pytest.approx(low, abs=1e-4)
    assert got_high == pytest.approx(high, abs=1e-4)


def test_wilson_interval_is_symmetric_and_rejects_bad_input() -> None:
    low, high = wilson_interval(3, 10)
    mirror_low, mirror_high = wilson_interval(7, 10)
    assert low == pytest.approx(1 - mirror_high)
    assert high == pytest.approx(1 - mirror_low)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_rate_of_nothing_is_not_zero() -> None:
    empty = rate(0, 0)
    assert empty.rate is None and empty.low is None
    assert "n/a" in empty.short()
    r = rate(8, 10)
    assert r.rate == 0.8 and r.low == pytest.approx(0.4902, abs=1e-4)


def test_binomial_test_exact_values() -> None:
    # P(X >= 8 | n=10, p=.5) = 56/1024; two-sided doubles it.
    assert binomial_test(8, 10) == pytest.approx(0.109375)
    assert binomial_test(5, 10) == pytest.approx(1.0)
    assert binomial_test(10, 10, alternative="greater") == pytest.approx(1 / 1024)
    assert binomial_test(0, 0) == 1.0


def test_mcnemar_counts_only_discordant_pairs() -> None:
    pairs = [(False, True)] * 6 + [(True, True)] * 10 + [(False, False)] * 4
    result = mcnemar_exact(pairs)
    assert (result.b, result.c, result.n_pairs) == (0, 6, 20)
    assert result.p_value == pytest.approx(2 * 0.5**6)
    assert result.shift == pytest.approx(6 / 20)
    assert mcnemar_exact([(True, True)] * 5).p_value == 1.0
    balanced = mcnemar_exact([(True, False)] * 3 + [(False, True)] * 3)
    assert balanced.p_value == pytest.approx(1.0) and balanced.shift == 0


def test_bootstrap_is_seeded_and_sane() -> None:
    data = np.arange(50, dtype=float)
    a = bootstrap_ci(data, seed=7)
    b = bootstrap_ci(data, seed=7)
    c = bootstrap_ci(data, seed=8)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.estimate == pytest.approx(24.5)
    assert a.low < a.estimate < a.high
    # The standard error of the mean is ~2.04 here: a 95% interval spans roughly +-4.
    assert 6 < a.high - a.low < 10
    constant = bootstrap_ci([3.0] * 10)
    assert constant.low == constant.high == 3.0
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_paired_bootstrap_detects_a_shift_and_not_noise() -> None:
    before = [0.0] * 30
    # Every resample on one side of zero: the smallest p-value 2000 resamples can show,
    # (0 + 1) / (2000 + 1) doubled, never 0.
    assert paired_bootstrap_diff(before, [1.0] * 30)[1] == pytest.approx(2 / 2001)
    ci, p = paired_bootstrap_diff(before, [1.0, -1.0] * 15, seed=1)
    assert ci.low < 0 < ci.high
    assert p > 0.5


def test_resampling_p_values_never_print_zero() -> None:
    import numpy as np

    from labelgate.evals.stats import resampling_p_value

    assert resampling_p_value(np.ones(99), 99) == pytest.approx(2 / 100)
    assert resampling_p_value(np.array([-1.0, 1.0] * 50), 100) == 1.0
    # three pairs, all lower under the incentive (the "p = 0" case)
    _, p = paired_bootstrap_diff([0.2, 0.3, 0.1], [0.9, 0.8, 1.0], n_resamples=500)
    assert p > 0
    assert f"{p:.3g}" != "0"


def test_cluster_bootstrap_resamples_whole_scenarios() -> None:
    from labelgate.evals.stats import cluster_bootstrap_rate

    # two scenarios, eight epochs each: one always schemes, one never does
    values = [True] * 8 + [False] * 8
    clusters = ["a"] * 8 + ["b"] * 8
    ci = cluster_bootstrap_rate(values, clusters, n_resamples=1000, seed=0)
    assert ci.estimate == 0.5
    # samples treated as independent would give a narrow interval around 0.5; resampling
    # the two scenarios can draw "a" twice or "b" twice
    assert ci.low == 0.0 and ci.high == 1.0
    assert cluster_bootstrap_rate(values, clusters, seed=0) == cluster_bootstrap_rate(
        values, clusters, seed=0
    )
    with pytest.raises(ValueError):
        cluster_bootstrap_rate([True], ["a", "b"])
