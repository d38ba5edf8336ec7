"""Sequential A/B latency comparison (bench/sequential.py) and the gate's inconclusive verdict.

The statistics are tested on SYNTHETIC sample sets with known true ratios (seeded, so every run of the suite
sees the same numbers): quiet and noisy machines, heavy tails, drift and bimodal runs. Nothing here asserts a
verdict about a real timing; the one real A/B run checks the record's consistency, not who won.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mnetdeploy.bench.sequential import MIN_ROUNDS, SequentialTest
from mnetdeploy.bench.stats import t_quantile

SAMPLES = 60   # samples per run: medians of 60 are what one short benchmark run gives


class Machine:
    """A synthetic machine: each run's samples are lognormal around `base_ms` * a run-level shift (sd
    `run_sd`, the dominant noise between runs on shared machines), with `burst` of samples hit by a
    neighbour (x1.5-3), optional drift (per round) and a bimodal mix (a second mode `bimodal` slower)."""

    def __init__(self, seed: int, run_sd: float, sample_cv: float = 0.03, burst: float = 0.0,
                 drift: float = 0.0, bimodal: float = 0.0, base_ms: float = 2.0):
        self.rng = np.random.default_rng(seed)
        self.run_sd, self.cv, self.burst, self.drift, self.bimodal, self.base = (run_sd, sample_cv, burst, drift,
                                                                                  bimodal, base_ms)
        self.round = 0

    def run(self, true_ratio: float = 1.0) -> np.ndarray:
        shift = np.exp(self.rng.normal(0.0, self.run_sd)) * (1 + self.drift * self.round)
        x = self.base * true_ratio * shift * self.rng.lognormal(0.0, self.cv, SAMPLES)
        if self.bimodal:
            x[self.rng.random(SAMPLES) < 0.5] *= 1 + self.bimodal
        hit = self.rng.random(SAMPLES) < self.burst
        x[hit] *= self.rng.uniform(1.5, 3.0, int(hit.sum()))
        return x


def sequential(machine: Machine, true_ratio: float, max_rounds: int = 20, max_slowdown: float = 0.10) -> SequentialTest:
    test = SequentialTest(max_slowdown=max_slowdown, max_rounds=max_rounds)
    while True:
        base, cand = machine.run(), machine.run(true_ratio)
        machine.round += 1
        test.add(cand, base)
        if test.decision() != "continue" or len(test.log_ratios) >= max_rounds:
            return test


def verdict(test: SequentialTest) -> str:
    decision = test.decision()
    return "inconclusive" if decision == "continue" else decision


QUIET = dict(run_sd=0.01, sample_cv=0.02)
NOISY = dict(run_sd=0.06, sample_cv=0.08, burst=0.03)


def test_student_t_quantiles_match_the_tables():
    for p, df, table in ((0.975, 2, 4.302653), (0.975, 3, 3.182446), (0.995, 10, 3.169273), (0.975, 60, 2.000298)):
        assert t_quantile(p, df) == pytest.approx(table, abs=1e-5)


@pytest.mark.parametrize("name, machine", [
    ("quiet", QUIET), ("noisy", NOISY), ("heavy tails", dict(run_sd=0.03, sample_cv=0.05, burst=0.10)),
    ("drift", dict(run_sd=0.02, drift=0.02)), ("bimodal", dict(run_sd=0.03, bimodal=0.25)),
])
def test_identical_models_false_alarms_stay_below_the_configured_rate(name, machine):
    """300 seeded A/A comparisons per machine: the Bonferroni-corrected looks keep false failures at or below
    (1 - confidence) / 2 = 2.5 % (one-sided); a binomial 99.9 % bound on 300 trials is 14."""
    verdicts = [verdict(sequential(Machine(seed, **machine), 1.0)) for seed in range(300)]
    assert verdicts.count("fail") <= 14, (name, verdicts.count("fail"))
    if name == "quiet":
        assert verdicts.count("pass") >= 295


def test_quiet_machine_decides_in_few_rounds_and_noisy_measures_longer():
    quiet = [sequential(Machine(seed, **QUIET), 1.0) for seed in range(50)]
    noisy = [sequential(Machine(seed, **NOISY), 1.0) for seed in range(50)]
    quiet_rounds = np.median([len(t.log_ratios) for t in quiet])
    assert MIN_ROUNDS <= quiet_rounds <= 5  # the corrected t quantile at 2-4 degrees of freedom is wide
    assert np.median([len(t.log_ratios) for t in noisy]) > quiet_rounds
    # The minimum detectable slowdown says how much more the noisy machine needs to see.
    assert np.median([t.minimum_detectable_slowdown() for t in quiet]) < 0.25
    assert np.median([t.minimum_detectable_slowdown() for t in noisy]) > np.median(
        [t.minimum_detectable_slowdown() for t in quiet])


@pytest.mark.parametrize("name, machine", [("quiet", QUIET), ("noisy", NOISY),
                                           ("bimodal", dict(run_sd=0.03, bimodal=0.25))])
def test_a_30_percent_slowdown_is_caught_or_inconclusive_never_passed(name, machine):
    verdicts = [verdict(sequential(Machine(seed, **machine), 1.30)) for seed in range(100)]
    assert verdicts.count("pass") == 0, name
    assert verdicts.count("fail") >= 95, (name, verdicts.count("fail"), verdicts.count("inconclusive"))


def test_too_noisy_for_the_threshold_is_inconclusive_with_its_detectable_slowdown():
    """A 12 % slowdown against a 10 % limit on a very noisy machine, 5 rounds at most: cannot be decided."""
    test = sequential(Machine(3, run_sd=0.15), 1.12, max_rounds=5)
    assert verdict(test) == "inconclusive" and len(test.log_ratios) == 5
    ratio, low, high = test.interval()
    assert low <= test.threshold < high and test.minimum_detectable_slowdown() > 0.2


def test_fewer_than_three_rounds_decide_nothing():
    test = SequentialTest()
    test.add([2.6] * 5, [2.0] * 5)
    test.add([2.6] * 5, [2.0] * 5)
    assert test.interval() is None and test.decision() == "continue"
    with pytest.raises(ValueError, match="max_rounds"):
        SequentialTest(max_rounds=2)


# ------------------------------------------------------------------------------- one real A/B (no verdict)

@pytest.mark.slow
def test_bench_against_runs_rounds_and_records_a_consistent_decision(tmp_path):
    from converters import export_tflite_pair
    from mnetdeploy.build import build
    from mnetdeploy.cli import cli
    from mnetdeploy.config import load_config

    directory = build(load_config(None, {"model.arch": "v2", "model.alpha": 0.35, "model.resolution": 96,
                                         "output": str(tmp_path)})).artifact_dir
    export_tflite_pair(directory, 96)
    out = tmp_path / "ab.json"
    result = CliRunner().invoke(cli, ["bench", str(directory / "model_int8.tflite"), "--against",
                                      str(directory / "model_fp32.tflite"), "--runs", "10", "--min-seconds", "0.1",
                                      "--warmup", "2", "--max-rounds", "3", "--out", str(out)])
    record = json.loads(out.read_text())
    assert result.exit_code == {"pass": 0, "fail": 1, "inconclusive": 3}[record["verdict"]], result.output
    assert record["rounds"] == 3 and len(record["round_ratios"]) == 3 and record["runs"] >= 60
    assert record["low"] <= record["ratio"] <= record["high"]
    if record["verdict"] == "pass":
        assert record["high"] <= record["threshold"]
    elif record["verdict"] == "fail":
        assert record["low"] > record["threshold"]
    else:
        assert record["low"] <= record["threshold"] < record["high"]
    assert record["environment"]["cpu_features"]["arch"]
    geometric = float(np.exp(np.mean(np.log(record["round_ratios"]))))
    assert geometric == pytest.approx(record["ratio"], rel=1e-4)
