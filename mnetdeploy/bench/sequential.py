"""A/B latency comparison that keeps measuring until the verdict at the threshold is clear.

    from mnetdeploy.bench.sequential import compare_models
    result = compare_models("new/model_int8.tflite", "old/model_int8.tflite", max_slowdown=0.10)
    result.verdict      # "pass" | "fail" | "inconclusive", with result.rounds, result.minimum_detectable_slowdown

Why rounds, not one long run each. On a shared machine the dominant noise is run-level: between two runs the
whole distribution moves (frequency, other tenants, placement) by a few percent, which no statistic of one
run can see (mnetdeploy/gate.py). So the unit of replication is the run: each round benchmarks the baseline
and the candidate back to back, each in a fresh process, alternating which goes first (ABBA), so slow drift
and load hit both alike. Round i gives d_i = ln(median(candidate_i) / median(baseline_i)).

The test (a group-sequential paired t-test with Bonferroni-corrected looks). After each round from
MIN_ROUNDS on, the interval exp(mean(d) +- t * sd(d) / sqrt(n)) is formed at per-look confidence
1 - (1 - confidence) / max_rounds, so the chance that any of the up to max_rounds looks shows an interval
missing the true ratio is at most 1 - confidence (Bonferroni). With T = 1 + max_slowdown:
    fail          low > T            the slowdown is clearly larger than max_slowdown
    pass          high <= T          the data rules out a slowdown larger than max_slowdown
    (continue)    otherwise, while rounds < max_rounds and time < max_seconds
    inconclusive  still unclear at the cap: the machine is too noisy to decide at this threshold; the
                  minimum detectable slowdown says what it could have decided
Measuring stops as soon as the decision is clear: a quiet machine decides in MIN_ROUNDS rounds, a noisy one
measures longer, and a machine too noisy for the threshold says so instead of passing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mnetdeploy.config import HostSettings

import numpy as np

from mnetdeploy.bench.stats import minimum_detectable_slowdown, t_quantile

MIN_ROUNDS = 3
DEFAULT_MAX_ROUNDS = 20


@dataclass
class SequentialTest:
    """The decision rule alone (module doc), fed one round at a time: testable on recorded samples."""

    max_slowdown: float = 0.10
    confidence: float = 0.95
    max_rounds: int = DEFAULT_MAX_ROUNDS
    log_ratios: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.max_rounds < MIN_ROUNDS:
            raise ValueError(f"max_rounds must be at least {MIN_ROUNDS} (got {self.max_rounds})")

    @property
    def threshold(self) -> float:
        return 1.0 + self.max_slowdown

    def add(self, candidate_samples, baseline_samples) -> None:
        self.log_ratios.append(math.log(float(np.median(candidate_samples)) / float(np.median(baseline_samples))))

    def interval(self) -> tuple[float, float, float] | None:
        """(ratio, low, high) at the per-look confidence; None before MIN_ROUNDS rounds."""
        n = len(self.log_ratios)
        if n < MIN_ROUNDS:
            return None
        d = np.asarray(self.log_ratios)
        alpha = (1.0 - self.confidence) / self.max_rounds
        half = t_quantile(1.0 - alpha / 2.0, n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
        mean = float(d.mean())
        return math.exp(mean), math.exp(mean - half), math.exp(mean + half)

    def decision(self) -> str:
        """"fail", "pass", or "continue" (not yet clear)."""
        ci = self.interval()
        if ci is None:
            return "continue"
        _, low, high = ci
        if low > self.threshold:
            return "fail"
        if high <= self.threshold:
            return "pass"
        return "continue"

    def minimum_detectable_slowdown(self) -> float | None:
        ci = self.interval()
        if ci is None:
            return None
        ratio, low, _ = ci
        return minimum_detectable_slowdown(ratio, low, self.threshold)


@dataclass
class ComparisonResult:
    candidate: str
    baseline: str
    device: str
    threads: int
    verdict: str                   # pass | fail | inconclusive
    ratio: float | None            # geometric mean over rounds of median(candidate) / median(baseline)
    low: float | None
    high: float | None
    threshold: float
    confidence: float              # overall (Bonferroni over max_rounds looks)
    minimum_detectable_slowdown: float | None
    rounds: int
    max_rounds: int
    runs: int                      # timed inferences, both models together
    seconds: float
    round_ratios: list[float]
    stopped: str                   # why measuring stopped
    environment: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_models(candidate: str | Path, baseline: str | Path, *, max_slowdown: float = 0.10,
                   confidence: float = 0.95, max_rounds: int = DEFAULT_MAX_ROUNDS, max_seconds: float = 600.0,
                   device: str = "host", settings: HostSettings | None = None,
                   progress: Callable[[str], None] | None = None, **values: Any) -> ComparisonResult:
    """Benchmark `baseline` and `candidate` in alternating rounds until the verdict at max_slowdown is clear
    or a cap is reached (module doc). Each run is an ordinary `run_benchmark` (fresh process) with `settings`
    (or settings made from `values`, as run_benchmark takes them)."""
    from mnetdeploy.bench import run_benchmark
    from mnetdeploy.config import DeviceSettings, HostSettings, validated
    from mnetdeploy.errors import UserError

    if settings is None:
        settings = validated(HostSettings if device == "host" else DeviceSettings, values, "compare_models")

    if max_seconds <= 0:
        raise UserError(f"max_seconds must be > 0 (got {max_seconds})")
    test = SequentialTest(max_slowdown, confidence, max_rounds)
    start = time.perf_counter()
    environment: dict[str, Any]
    total_runs, environment, stopped = 0, {}, ""
    while True:
        pair = [(baseline, "baseline"), (candidate, "candidate")]
        if len(test.log_ratios) % 2:
            pair.reverse()  # ABBA: neither model always runs first
        samples = {}
        for model, role in pair:
            result = run_benchmark(model, device=device, settings=settings).to_dict()
            samples[role] = result["samples_ms"]
            total_runs += len(result["samples_ms"])
            environment = result.get("environment") or environment
        test.add(samples["candidate"], samples["baseline"])
        decision = test.decision()
        elapsed = time.perf_counter() - start
        if progress:
            ci = test.interval()
            shown = f"ratio {ci[0]:.3f} [{ci[1]:.3f}, {ci[2]:.3f}]" if ci else "collecting"
            progress(f"round {len(test.log_ratios)}: {shown}")
        if decision != "continue":
            stopped = f"decided after {len(test.log_ratios)} rounds"
            break
        if len(test.log_ratios) >= max_rounds:
            stopped, decision = f"max_rounds {max_rounds} reached", "inconclusive"
            break
        if elapsed >= max_seconds and len(test.log_ratios) >= MIN_ROUNDS:
            stopped, decision = f"max_seconds {max_seconds:g} reached", "inconclusive"
            break
    ratio, low, high = test.interval() or (None, None, None)
    return ComparisonResult(
        candidate=str(candidate), baseline=str(baseline), device=device, threads=settings.threads, verdict=decision,
        ratio=ratio, low=low, high=high, threshold=test.threshold, confidence=confidence,
        minimum_detectable_slowdown=test.minimum_detectable_slowdown(), rounds=len(test.log_ratios),
        max_rounds=max_rounds, runs=total_runs, seconds=round(time.perf_counter() - start, 3),
        round_ratios=[round(math.exp(d), 5) for d in test.log_ratios], stopped=stopped, environment=environment)
