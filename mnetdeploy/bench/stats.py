"""Latency statistics and the bootstrap comparison the regression gate builds on.

Percentiles use numpy's default method ("linear": interpolate between the two nearest order statistics,
position (n - 1) * q), the same as TFLite's Python benchmark tool and `statistics.median` for p50. Standard
deviations are sample standard deviations (ddof=1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnetdeploy.bench.schema import LatencyStats


def _as_samples(samples, name: str = "samples") -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError(f"{name}: no samples")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: samples must be finite numbers")
    return x


def percentile(samples, q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between order statistics (numpy's default)."""
    return float(np.percentile(_as_samples(samples), q))


def std(samples) -> float:
    """Sample standard deviation (ddof=1); 0.0 for a single sample."""
    x = _as_samples(samples)
    return float(np.std(x, ddof=1)) if x.size > 1 else 0.0


def summarize(samples_ms) -> LatencyStats:
    x = _as_samples(samples_ms, "latency samples")
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return LatencyStats(mean=float(x.mean()), std=std(x), min=float(x.min()), max=float(x.max()),
                        p50=float(p50), p90=float(p90), p99=float(p99))


@dataclass(frozen=True)
class RatioCI:
    """median(a) / median(b) with a bootstrap confidence interval [low, high]."""

    ratio: float
    low: float
    high: float
    confidence: float
    resamples: int
    blocks: int | None = None  # None: samples resampled one by one; k: moving blocks of n/k consecutive samples

    def contains(self, value: float = 1.0) -> bool:
        return self.low <= value <= self.high


def _bootstrap_medians(x: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Medians of `resamples` bootstrap resamples of x (each n draws with replacement), vectorised.

    x is sorted first, so the median of a resample is x at the median of its *indices*: we partition small
    integer index arrays instead of gathering and partitioning floats (about half the time)."""
    x = np.sort(x)
    n = x.size
    dtype = np.uint16 if n <= np.iinfo(np.uint16).max else np.int64
    idx = rng.integers(0, n, size=(resamples, n), dtype=dtype)
    k = n // 2
    if n % 2:
        return x[np.partition(idx, k, axis=1)[:, k]]
    part = np.partition(idx, [k - 1, k], axis=1)
    return 0.5 * (x[part[:, k - 1]] + x[part[:, k]])


def _block_bootstrap_medians(x: np.ndarray, rng: np.random.Generator, resamples: int, blocks: int) -> np.ndarray:
    """Medians of moving-block bootstrap resamples of the time-ordered samples x (Kuensch 1989).

    Each resample joins ceil(n / L) runs of L = ceil(n / blocks) consecutive samples, starting at random
    positions, cut to n. Latency samples are a time series: a neighbour's burst of work slows a stretch of
    consecutive runs. Resampling single samples treats that stretch as independent luck and gives an interval
    far too narrow for such a run; resampling stretches keeps it, so a disturbed run gets the wide interval it
    deserves, while a steady run's interval stays about as narrow as the independent one. Same rank trick as
    `_bootstrap_medians`; done in chunks so memory stays ~ 32 MB whatever n is."""
    n = x.size
    length = max(1, -(-n // blocks))
    count = -(-n // length)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(n, dtype=np.uint16 if n <= np.iinfo(np.uint16).max else np.int64)  # small: fast partition
    ranks[order] = np.arange(n)
    xs = x[order]
    k = n // 2
    offsets = np.arange(length)
    out = np.empty(resamples)
    chunk = max(1, 4_000_000 // (count * length))
    for first in range(0, resamples, chunk):
        m = min(chunk, resamples - first)
        starts = rng.integers(0, n - length + 1, size=(m, count))
        picked = ranks[(starts[:, :, None] + offsets).reshape(m, count * length)[:, :n]]
        if n % 2:
            out[first:first + m] = xs[np.partition(picked, k, axis=1)[:, k]]
        else:
            part = np.partition(picked, [k - 1, k], axis=1)
            out[first:first + m] = 0.5 * (xs[part[:, k - 1]] + xs[part[:, k]])
    return out


def median_ratio_ci(a, b, confidence: float = 0.95, resamples: int = 2000, seed: int = 0,
                    blocks: int | None = None) -> RatioCI:
    """Bootstrap (percentile method) confidence interval of median(a) / median(b).

    a and b are resampled independently (two independent benchmark runs). With a = candidate latencies and
    b = baseline latencies, `low > 1 + x` reads "slower, statistically clearly and by more than x"; an
    interval containing 1.0 means no clear difference at this confidence. Deterministic for a given seed.
    `blocks`: None resamples single samples (iid); an integer k resamples k moving blocks of consecutive
    samples (a and b in time order, as measured), which accounts for slow stretches inside a run.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 100:
        raise ValueError(f"resamples must be at least 100, got {resamples}")
    if blocks is not None and blocks < 2:
        raise ValueError(f"blocks must be at least 2 (or None for single samples), got {blocks}")
    xa, xb = _as_samples(a, "a"), _as_samples(b, "b")
    if np.median(xb) <= 0 or np.any(xb <= 0):
        raise ValueError("b: latencies must be positive to form a ratio")
    rng = np.random.default_rng(seed)
    if blocks is None:
        ratios = _bootstrap_medians(xa, rng, resamples) / _bootstrap_medians(xb, rng, resamples)
    else:
        ratios = (_block_bootstrap_medians(xa, rng, resamples, blocks)
                  / _block_bootstrap_medians(xb, rng, resamples, blocks))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return RatioCI(ratio=float(np.median(xa) / np.median(xb)), low=float(low), high=float(high),
                   confidence=confidence, resamples=resamples, blocks=blocks)


def minimum_detectable_slowdown(ratio: float, low: float, threshold: float) -> float:
    """The smallest true slowdown (a fraction: 0.25 = 25 % slower) a comparison with this ratio and interval
    low end would call a failure.

    A true ratio R shows up as an interval whose low end sits about R * low / ratio (the interval's relative
    lower half-width comes from the noise of both samples, not from R); the rule fails only when that low
    end exceeds `threshold`, so R must exceed threshold * ratio / low."""
    return threshold * ratio / low - 1.0


# ----------------------------------------------------------------------- Student's t (no scipy dependency)

def t_cdf(x: float, df: int) -> float:
    """P(T <= x) for Student's t with `df` degrees of freedom (Simpson's rule on the density; |error| < 1e-9
    for the df >= 2 and |x| <= 60 used here)."""
    import math

    if x < 0:
        return 1.0 - t_cdf(-x, df)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    steps = 4000
    h = x / steps
    u = np.linspace(0.0, x, steps + 1)
    f = np.exp(log_norm - (df + 1) / 2 * np.log1p(u * u / df))
    return 0.5 + float(h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum()))


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t (bisection on t_cdf)."""
    if not 0.5 <= p < 1:
        raise ValueError(f"p must be in [0.5, 1), got {p}")
    low, high = 0.0, 60.0
    for _ in range(60):
        mid = (low + high) / 2
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2
