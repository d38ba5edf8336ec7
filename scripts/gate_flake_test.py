"""Does the latency regression gate flake on this machine? Benchmark one model N+1 times for real, gate every
rerun against the first run (the baseline), and inject exact slowdowns into the real reruns.

    .venv/bin/python scripts/gate_flake_test.py                      # builds a small v2 0.35/96 model first
    .venv/bin/python scripts/gate_flake_test.py --model artifacts/v2_1.0_224/model_fp32.tflite --reruns 50

Prints, per rerun: samples, medians, ratio median(rerun)/median(baseline) with its bootstrap interval and the
verdict under the gate's rule (mnetdeploy/gate.py); then the pass count, the run-to-run spread of the ratio,
the false-alarm rate that spread implies, how the textbook "interval excludes 1.0" test would have done, and
the verdicts for every rerun slowed by exactly 30 % and by 2 %, and for the baseline slowed by 2 %.
Exit status 0 when no identical rerun fails, no 30 % slowdown passes and the exact 2 % change passes.

    .venv/bin/python scripts/gate_flake_test.py --sequential       # the A/B mode of `bench --against`

--sequential runs the sequential design instead (mnetdeploy/bench/sequential.py): each of N experiments
benchmarks the model against itself in alternating rounds (fresh processes) until the paired test decides,
and in the same rounds a copy of the candidate's samples slowed by exactly 30 %; it prints, per experiment,
the verdicts, the rounds each needed and the minimum detectable slowdown, then the counts.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def build_small_model(where: Path) -> Path:
    import keras
    import tensorflow as tf

    from mnetdeploy.build import build
    from mnetdeploy.config import load_config

    result = build(load_config(None, {"model.arch": "v2", "model.alpha": 0.35, "model.resolution": 96,
                                      "output": str(where)}))
    path = result.artifact_dir / "model_fp32.tflite"
    model = keras.saving.load_model(result.artifact_dir / "model.keras")
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its SavedModel signature listing
        path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def report_of(result: dict) -> dict:
    """A minimal report (schema v1 fields the regression check reads) holding one latency result."""
    return {"schema": "mnetdeploy-report", "schema_version": 1, "name": "flake-test", "artifacts": [],
            "accuracy": [], "latency": [dict(result, model=Path(result["model"]).name)]}


def scaled(result: dict, factor: float) -> dict:
    from mnetdeploy.bench.stats import summarize

    samples = [x * factor for x in result["samples_ms"]]
    return dict(result, samples_ms=samples, latency_ms=vars(summarize(samples)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help=".tflite/.onnx model (default: build v2 0.35/96 in a temp dir)")
    parser.add_argument("--reruns", type=int, default=20)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--min-seconds", type=float, default=0.5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-slowdown", type=float, default=0.10)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--blocks", type=int, default=20, help="0: resample single samples (iid)")
    parser.add_argument("--save", type=Path, help="also write every run's samples_ms (time order) as JSON")
    parser.add_argument("--sequential", action="store_true", help="the sequential A/B design (see above)")
    parser.add_argument("--max-rounds", type=int, default=20, help="--sequential: rounds cap per experiment")
    args = parser.parse_args(argv)

    from mnetdeploy.bench import run_benchmark
    from mnetdeploy.budgets import Budgets
    from mnetdeploy.gate import Report, check_reports

    # min_seconds 0: the script may be run with short runs on purpose, to measure how they flake (the gate
    # itself refuses results shorter than regression.min_seconds, default 0.5 s).
    budgets = Budgets.model_validate({"regression": {"max_slowdown": args.max_slowdown, "confidence": args.confidence,
                                                     "min_seconds": 0, "blocks": args.blocks or None}})

    def check(candidate: dict, baseline: dict):
        result = check_reports([Report("rerun", report_of(candidate))], budgets, [Report("baseline", report_of(baseline))])
        return result.checks[0]

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_small_model(Path(tmp))
        settings = {"threads": args.threads, "warmup": args.warmup, "runs": args.runs,
                    "min_seconds": args.min_seconds}
        if args.sequential:
            return sequential_experiments(model, settings, args)
        started = time.perf_counter()
        runs = [run_benchmark(model, **settings).to_dict() for _ in range(args.reruns + 1)]
        seconds = time.perf_counter() - started
    if args.save:
        args.save.write_text(json.dumps([r["samples_ms"] for r in runs]))
    baseline, reruns = runs[0], runs[1:]
    threshold = 1 + args.max_slowdown
    env = baseline["environment"]
    print(f"model {model}  threads {args.threads}  runs>={args.runs}  min {args.min_seconds:g} s  "
          f"{len(runs)} benchmarks in {seconds:.1f} s")
    print(f"cpu {env.get('cpu_model')}  load average {env.get('load_average')}")
    blocks = f"{args.blocks} moving blocks per run" if args.blocks else "single samples (iid)"
    print(f"rule: FAIL when the {100 * args.confidence:g} % interval of the median ratio lies above "
          f"{threshold:.3f} (max_slowdown {args.max_slowdown:g}; bootstrap over {blocks})")
    print(f"baseline: {len(baseline['samples_ms'])} samples, p50 {baseline['latency_ms']['p50']:.4f} ms")
    print(f"{'rerun':>5} {'n':>5} {'p50 ms':>8} {'ratio':>7} {'CI low':>7} {'CI high':>7}  verdict  "
          f"{'x1.30 CI low':>12} verdict  {'x1.02 ratio':>11} verdict")
    identical, slower, wobble = [], [], []
    for i, rerun in enumerate(reruns, 1):
        c, s, w = check(rerun, baseline), check(scaled(rerun, 1.30), baseline), check(scaled(rerun, 1.02), baseline)
        identical.append(c), slower.append(s), wobble.append(w)
        d = c.details
        print(f"{i:>5} {d['candidate_samples']:>5} {d['candidate_p50_ms']:>8.4f} {d['ratio']:>7.3f} "
              f"{d['ci_low']:>7.3f} {d['ci_high']:>7.3f}  {c.verdict.upper():<7}  "
              f"{s.details['ci_low']:>12.3f} {s.verdict.upper():<7}  {w.measured:>11.3f} {w.verdict.upper()}")

    n = len(reruns)
    ratios = [c.measured for c in identical]
    # Every rerun shares the one baseline, so the sd of these log ratios is one run's run-level spread; two
    # independent runs (a fresh baseline and a fresh candidate, as in CI) differ by sqrt(2) times that.
    run_spread = statistics.stdev(math.log(r) for r in ratios) if n > 1 else float("nan")
    spread = math.sqrt(2) * run_spread
    half_widths = [(c.details["ci_high"] - c.details["ci_low"]) / 2 for c in identical]
    z = math.log(threshold) / spread if spread > 0 else float("inf")
    alarm = 0.5 * math.erfc(z / math.sqrt(2))
    textbook = sum(c.details["ci_low"] > 1.0 or c.details["ci_high"] < 1.0 for c in identical)
    print()
    print(f"identical reruns: {sum(c.verdict == 'pass' for c in identical)}/{n} pass, "
          f"{sum(c.verdict == 'inconclusive' for c in identical)} inconclusive, "
          f"{sum(c.verdict == 'fail' for c in identical)} FAIL; detectable slowdown "
          f"{100 * min(c.details['min_detectable_slowdown'] for c in identical):.0f}.."
          f"{100 * max(c.details['min_detectable_slowdown'] for c in identical):.0f} %")
    print(f"  ratio range {min(ratios):.3f} .. {max(ratios):.3f}; run-level spread (sd of log ratio) "
          f"{100 * run_spread:.1f} % per run, {100 * spread:.1f} % between two independent runs")
    print(f"  interval half-width: median {100 * statistics.median(half_widths):.2f} %, "
          f"max {100 * max(half_widths):.2f} % (the within-run sampling noise the bootstrap sees)")
    print(f"  CI range: low {min(c.details['ci_low'] for c in identical):.3f} .. "
          f"high {max(c.details['ci_high'] for c in identical):.3f}")
    print(f"  implied false-alarm rate per comparison of two independent runs (normal approximation): "
          f"P(Z > ln({threshold:.2f}) / {100 * spread:.1f} % = {z:.1f}) = {100 * alarm:.2g} %")
    print(f"  textbook test (interval excludes 1.0) would have flagged {textbook}/{n} identical reruns")
    print(f"injected 30 % slowdown: {sum(c.verdict == 'fail' for c in slower)}/{n} fail, "
          f"{sum(c.verdict == 'inconclusive' for c in slower)} inconclusive, "
          f"{sum(c.verdict == 'pass' for c in slower)} PASS; ratio "
          f"{min(c.measured for c in slower):.3f} .. {max(c.measured for c in slower):.3f}, CI low "
          f"{min(c.details['ci_low'] for c in slower):.3f} .. {max(c.details['ci_low'] for c in slower):.3f}")
    print(f"injected 2 % on reruns: {sum(c.verdict == 'pass' for c in wobble)}/{n} pass; ratio "
          f"{min(c.measured for c in wobble):.3f} .. {max(c.measured for c in wobble):.3f}")
    exact = check(scaled(baseline, 1.02), baseline)
    print(f"2 % on the baseline's own samples: ratio {exact.measured:.3f} CI [{exact.details['ci_low']:.3f}, "
          f"{exact.details['ci_high']:.3f}] {exact.verdict.upper()}")
    ok = (not any(c.verdict == "fail" for c in identical) and not any(c.verdict == "pass" for c in slower)
          and exact.verdict == "pass")
    return 0 if ok else 1


def sequential_experiments(model: Path, settings: dict, args) -> int:
    """A/A and injected-30 % A/B with the sequential paired design, on the same real rounds."""
    import numpy as np

    from mnetdeploy.bench import run_benchmark
    from mnetdeploy.bench.sequential import SequentialTest

    rows = []
    started = time.perf_counter()
    for i in range(1, args.reruns + 1):
        same = SequentialTest(args.max_slowdown, args.confidence, args.max_rounds)
        slow = SequentialTest(args.max_slowdown, args.confidence, args.max_rounds)
        rounds = 0
        while rounds < args.max_rounds and (same.decision() == "continue" or slow.decision() == "continue"):
            order = ["base", "cand"] if rounds % 2 == 0 else ["cand", "base"]
            runs = {role: run_benchmark(model, **settings).to_dict()["samples_ms"] for role in order}
            rounds += 1
            if same.decision() == "continue":
                same.add(runs["cand"], runs["base"])
            if slow.decision() == "continue":
                slow.add(np.asarray(runs["cand"]) * 1.30, runs["base"])
        verdict = lambda t: "inconclusive" if t.decision() == "continue" else t.decision()  # noqa: E731
        row = (verdict(same), len(same.log_ratios), same.minimum_detectable_slowdown(),
               verdict(slow), len(slow.log_ratios), same.interval())
        rows.append(row)
        ratio, low, high = row[5]
        print(f"{i:>3}  A/A {row[0].upper():<12} {row[1]:>2} rounds  ratio {ratio:.3f} [{low:.3f}, {high:.3f}]  "
              f"detects >{100 * row[2]:.0f} %   x1.30 {row[3].upper():<12} {row[4]:>2} rounds", flush=True)
    seconds = time.perf_counter() - started
    n = len(rows)
    count = lambda k, v: sum(r[k] == v for r in rows)  # noqa: E731
    print(f"\n{n} experiments in {seconds:.0f} s (rounds capped at {args.max_rounds})")
    print(f"identical: {count(0, 'pass')} pass, {count(0, 'inconclusive')} inconclusive, {count(0, 'fail')} FAIL; "
          f"rounds median {statistics.median(r[1] for r in rows):g}, max {max(r[1] for r in rows)}")
    print(f"x1.30:     {count(3, 'fail')} fail, {count(3, 'inconclusive')} inconclusive, {count(3, 'pass')} PASS; "
          f"rounds median {statistics.median(r[4] for r in rows):g}, max {max(r[4] for r in rows)}")
    return 0 if count(0, "fail") == 0 and count(3, "pass") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
