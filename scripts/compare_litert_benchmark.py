#!/usr/bin/env python
"""Fidelity check: `mnetdeploy bench` p50 against LiteRT's own benchmark tool, on the same models and threads.

    python scripts/compare_litert_benchmark.py artifacts/v2_1.0_224/model.tflite --threads 1,2 --rounds 3

For every model and thread count the two tools run interleaved (ours, theirs, ours, theirs, ...), each in a
fresh process, so both see the same machine state; a busy moment hits both sides instead of one. LiteRT's
tool is `python -m ai_edge_litert.tools.benchmark_litert_model` (in the ai-edge-litert wheel). It runs the
model through the CompiledModel API (CPU accelerator = XNNPACK), while we run the Interpreter API with the
XNNPACK delegate, so the comparison also checks that the two invoke paths cost the same.

Statistic compared: our p50 (median of the measured runs, linear interpolation) against the tool's
"Inference (median)" line (`statistics.median` of its runs: the same definition). Both tools get the same
warmup and run counts (ours with --min-seconds 0 so the run count matches). Per (model, threads) the table
shows each side's median p50 over rounds, `ratio` = the median of the per-round ratios ours/theirs (the two
runs of a round are seconds apart and share the machine state), `best/best` = fastest round of ours over
fastest round of theirs (on a shared machine load only adds time, so the minimum is the least disturbed
estimate), and the range of the per-round ratios (wide = the machine was busy; re-run).
Exit status 1 when `ratio` is off by more than --tolerance (default 10 %).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

MEDIAN_LINE = re.compile(r"Inference \(median\):\s+([0-9.]+)\s*ms")
AVG_LINE = re.compile(r"Inference \(avg\):\s+([0-9.]+)\s*ms")


def theirs(model: Path, threads: int, runs: int, warmup: int) -> dict[str, float]:
    cmd = [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", "--model", str(model),
           "--num_threads", str(threads), "--num_runs", str(runs), "--warmup_runs", str(warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    median, avg = MEDIAN_LINE.search(proc.stdout), AVG_LINE.search(proc.stdout)
    if proc.returncode != 0 or not median:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"error: {model}: benchmark_litert_model failed (exit {proc.returncode}): {tail[0]}")
    return {"median_ms": float(median.group(1)), "avg_ms": float(avg.group(1)) if avg else float("nan")}


def ours(model: Path, threads: int, runs: int, warmup: int) -> dict[str, float]:
    from mnetdeploy.bench import run_benchmark

    r = run_benchmark(model, threads=threads, runs=runs, warmup=warmup, min_seconds=0.0)
    return {"p50_ms": r.latency_ms.p50, "mean_ms": r.latency_ms.mean}


def compare(models: list[Path], threads_list: list[int], rounds: int, runs: int, warmup: int) -> list[dict]:
    rows = []
    for model in models:
        for threads in threads_list:
            our_p50, their_median, their_avg, ratios = [], [], [], []
            for i in range(rounds):
                a = ours(model, threads, runs, warmup)
                b = theirs(model, threads, runs, warmup)
                our_p50.append(a["p50_ms"])
                their_median.append(b["median_ms"])
                their_avg.append(b["avg_ms"])
                ratios.append(a["p50_ms"] / b["median_ms"])
                print(f"  {model.name} threads {threads} round {i + 1}: ours p50 {a['p50_ms']:.3f} ms, "
                      f"theirs median {b['median_ms']:.2f} ms, ratio {ratios[-1]:.3f}", file=sys.stderr)
            rows.append({"model": str(model), "threads": threads, "rounds": rounds, "runs": runs,
                         "our_p50_ms": statistics.median(our_p50), "their_median_ms": statistics.median(their_median),
                         "their_avg_ms": statistics.median(their_avg),
                         # Paired: each round's two runs are seconds apart, so they share the machine state.
                         "ratio": statistics.median(ratios),
                         # Least-disturbed estimate of each side: on a shared machine, load only adds time.
                         "best_ratio": min(our_p50) / min(their_median),
                         "our_p50_rounds_ms": our_p50, "their_median_rounds_ms": their_median,
                         "round_ratios": ratios})
    return rows


def print_table(rows: list[dict], tolerance: float) -> bool:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mnetdeploy bench p50 vs LiteRT benchmark_litert_model median (ms, medians over rounds; "
                        "ratio = median of per-round ours/theirs; best/best = fastest round each)")
    for col in ("model", "threads", "our p50", "their median", "their avg", "ratio", "best/best", "round ratios",
                "within"):
        table.add_column(col, justify="left" if col == "model" else "right")
    ok = True
    for r in rows:
        within = abs(r["ratio"] - 1.0) <= tolerance
        ok &= within
        rr = r["round_ratios"]
        table.add_row(Path(r["model"]).parent.name + "/" + Path(r["model"]).name, str(r["threads"]),
                      f"{r['our_p50_ms']:.3f}", f"{r['their_median_ms']:.2f}", f"{r['their_avg_ms']:.2f}",
                      f"{r['ratio']:.3f}", f"{r['best_ratio']:.3f}", f"{min(rr):.2f}-{max(rr):.2f}",
                      "yes" if within else f"NO (>{tolerance:.0%})")
    Console(width=max(Console().width, 130)).print(table)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help=".tflite models")
    parser.add_argument("--threads", default="1", help="comma-separated thread counts (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per model and thread count")
    parser.add_argument("--runs", type=int, default=50, help="measured runs per tool and round (tool default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="warmup runs per tool and round (tool default 5)")
    parser.add_argument("--tolerance", type=float, default=0.10, help="allowed |ratio - 1| (default 0.10)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args()
    for m in args.models:
        if m.suffix != ".tflite" or not m.is_file():
            parser.error(f"{m}: not a .tflite file")
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    rows = compare(args.models, threads, args.rounds, args.runs, args.warmup)
    if args.json:
        from mnetdeploy.fsutil import write_json
        write_json(args.json, rows)
    return 0 if print_table(rows, args.tolerance) else 1


if __name__ == "__main__":
    sys.exit(main())
