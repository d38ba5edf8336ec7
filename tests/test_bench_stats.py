"""Latency statistics and the bootstrap median-ratio interval: hand-computed values, numpy, coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mnetdeploy.bench.stats import _bootstrap_medians, median_ratio_ci, percentile, std, summarize


def test_percentiles_by_hand_linear_interpolation():
    x = [4.0, 1.0, 3.0, 2.0]                 # sorted 1 2 3 4; position (n - 1) * q
    assert percentile(x, 50) == pytest.approx(2.5)
    assert percentile(x, 90) == pytest.approx(3.7)   # position 2.7: 3 + 0.7 * (4 - 3)
    assert percentile(x, 99) == pytest.approx(3.97)
    assert percentile(x, 0) == 1.0 and percentile(x, 100) == 4.0


def test_summary_by_hand():
    s = summarize([1.0, 2.0, 3.0, 4.0, 10.0])
    assert s.mean == pytest.approx(4.0)
    assert s.std == pytest.approx(math.sqrt(50 / 4))  # squared deviations 9+4+1+0+36, ddof=1
    assert (s.min, s.max, s.p50) == (1.0, 10.0, 3.0)
    assert s.p90 == pytest.approx(7.6)                 # position 3.6: 4 + 0.6 * (10 - 4)
    assert s.p99 == pytest.approx(9.76)                # position 3.96: 4 + 0.96 * 6


def test_summary_matches_numpy_on_random_data():
    x = np.random.default_rng(7).lognormal(1.0, 0.4, size=333)
    s = summarize(x)
    assert s.mean == pytest.approx(np.mean(x))
    assert s.std == pytest.approx(np.std(x, ddof=1))
    for q, value in ((50, s.p50), (90, s.p90), (99, s.p99)):
        assert value == pytest.approx(np.percentile(x, q))
    assert s.min <= s.p50 <= s.p90 <= s.p99 <= s.max


def test_single_sample_and_bad_input():
    s = summarize([5.0])
    assert (s.std, s.p50, s.p99) == (0.0, 5.0, 5.0)
    assert std([2.0]) == 0.0
    with pytest.raises(ValueError, match="no samples"):
        summarize([])
    with pytest.raises(ValueError, match="finite"):
        summarize([1.0, float("nan")])


@pytest.mark.parametrize("n", [7, 8])  # odd and even sample counts take different median paths
def test_bootstrap_medians_equal_the_naive_computation(n):
    x = np.random.default_rng(3).normal(10, 2, size=n)
    fast = _bootstrap_medians(x, np.random.default_rng(11), 50)
    # Same random indices, the obvious way: gather the sorted samples and take np.median of each row.
    idx = np.random.default_rng(11).integers(0, n, size=(50, n), dtype=np.uint16)
    naive = np.median(np.sort(x)[idx], axis=1)
    np.testing.assert_allclose(fast, naive)


def test_same_distribution_interval_contains_one():
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(1.5, 0.2, 500), rng.lognormal(1.5, 0.2, 500)
    ci = median_ratio_ci(a, b)
    assert ci.low < 1.0 < ci.high and ci.contains(1.0)
    assert ci.ratio == pytest.approx(np.median(a) / np.median(b))
    assert ci.high - ci.low < 0.1    # 500 samples pin a median ratio down to a few percent


def test_thirty_percent_shift_is_excluded():
    rng = np.random.default_rng(2)
    base = rng.lognormal(1.5, 0.2, 500)
    slower = 1.3 * rng.lognormal(1.5, 0.2, 500)
    ci = median_ratio_ci(slower, base)
    assert not ci.contains(1.0)
    assert 1.15 < ci.low < ci.ratio < ci.high < 1.45
    reverse = median_ratio_ci(base, slower)
    assert reverse.high < 1.0 and reverse.ratio == pytest.approx(1 / ci.ratio)


def test_interval_is_deterministic_per_seed_and_widens_with_confidence():
    rng = np.random.default_rng(4)
    a, b = rng.normal(10, 1, 200), rng.normal(10.5, 1, 200)
    assert median_ratio_ci(a, b, seed=5) == median_ratio_ci(a, b, seed=5)
    narrow, wide = median_ratio_ci(a, b, confidence=0.8), median_ratio_ci(a, b, confidence=0.99)
    assert wide.low < narrow.low and narrow.high < wide.high


def test_coverage_is_near_the_nominal_level():
    """Over many pairs from one distribution, a 90 % interval contains 1.0 in about 90 % of them."""
    rng = np.random.default_rng(123)
    trials = 200
    hits = sum(median_ratio_ci(rng.gamma(4, 1, 101), rng.gamma(4, 1, 101), confidence=0.9, resamples=500,
                               seed=i).contains(1.0) for i in range(trials))
    assert 0.80 * trials <= hits <= 0.98 * trials


def test_bad_arguments():
    with pytest.raises(ValueError, match="confidence"):
        median_ratio_ci([1, 2], [1, 2], confidence=1.5)
    with pytest.raises(ValueError, match="resamples"):
        median_ratio_ci([1, 2], [1, 2], resamples=10)
    with pytest.raises(ValueError, match="positive"):
        median_ratio_ci([1, 2], [0, 0])
