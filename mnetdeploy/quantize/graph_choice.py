"""`--int8-graph auto`: the int8 TFLite graph chosen by measurement on the machine that will run it.

Whether an op is faster in int8 or in float depends on the CPU's int8 instructions (cpu.py): on the AMX
Xeon the "cpu" rules were measured on, int8 v2 1.0/224 ran 1.77x faster than fp32; on an AVX2-only EPYC,
1.0x. No constant holds for both, so every candidate graph (export/int8_graph.py INT8_GRAPHS) is built,
checked like any export (export/validate.py), and timed on this machine, interleaved: ROUNDS rounds, each
timing every candidate for about ROUND_SECONDS in turn, so drift and other load hit all candidates alike;
a candidate's latency is the median of its round medians. The fastest candidate that passed its check is
kept. Candidates within TIE of the fastest count as tied (round-to-round noise on shared machines is a few
percent), and among tied ones the one closest to the float model (highest cosine) is kept.

The decision is cached per (model, calibration, settings, target): the quantize step stores it as
int8_graph.json with its inputs in the manifest, so `run` does not re-measure, and another machine (another
CPU model or instruction set) decides anew. Timed at 1 thread (`threads`), the deployment default.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROUNDS = 7
ROUND_SECONDS = 0.15
MIN_RUNS_PER_ROUND = 3
WARMUP_RUNS = 3
TIE = 0.03        # candidates within 3 % of the fastest are tied


def target_identity(threads: int = 1) -> dict[str, Any]:
    """What the decision depends on besides the model: the machine that timed it."""
    from mnetdeploy.bench.environment import cpu_identity

    return {"device": "host", **cpu_identity(), "threads": threads}


def time_interleaved(paths: dict[str, Path], threads: int = 1, rounds: int = ROUNDS,
                     round_seconds: float = ROUND_SECONDS, say: Callable[[str], None] | None = None
                     ) -> dict[str, dict[str, Any]]:
    """{name: {"p50_ms", "round_medians_ms", "runs"}} for each model file, timed in interleaved rounds."""
    import numpy as np

    from mnetdeploy.runtimes import open_runner

    runners = {name: open_runner(path, threads=threads) for name, path in paths.items()}
    rng = np.random.default_rng(0)
    inputs = {}
    for name, runner in runners.items():
        image = rng.uniform(-1, 1, (1, *runner.input_shape[1:])).astype(np.float32)
        inputs[name] = runner.prepare(image)
        for _ in range(WARMUP_RUNS):
            runner.run(inputs[name])
    medians: dict[str, list[float]] = {name: [] for name in runners}
    runs = {name: 0 for name in runners}
    for r in range(rounds):
        if say:
            say(f"timing int8 graph candidates (round {r + 1}/{rounds})")
        for name, runner in runners.items():
            samples: list[float] = []
            deadline = time.perf_counter() + round_seconds
            while len(samples) < MIN_RUNS_PER_ROUND or time.perf_counter() < deadline:
                start = time.perf_counter_ns()
                runner.run(inputs[name])
                samples.append((time.perf_counter_ns() - start) / 1e6)
            medians[name].append(statistics.median(samples))
            runs[name] += len(samples)
    return {name: {"p50_ms": round(statistics.median(m), 4), "round_medians_ms": [round(x, 4) for x in m],
                   "runs": runs[name]} for name, m in medians.items()}


def pick(candidates: list[dict[str, Any]], tie: float = TIE) -> dict[str, Any] | None:
    """The chosen candidate: fastest of those that passed; among those within `tie` of it, the closest to
    float (highest cosine). Each candidate: {"graph", "passed", "p50_ms", "cosine"}."""
    passed = [c for c in candidates if c["passed"] and c.get("p50_ms") is not None]
    if not passed:
        return None
    fastest = min(c["p50_ms"] for c in passed)
    tied = [c for c in passed if c["p50_ms"] <= fastest * (1 + tie)]
    return max(tied, key=lambda c: (c["cosine"], -c["p50_ms"]))


def choose_int8_graph(make: Callable[[str], bytes], check: Callable[[Path], dict[str, Any]], workdir: Path,
                      graphs: tuple[str, ...], threads: int = 1,
                      say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build each graph with `make(graph) -> tflite bytes`, check it with `check(path) -> check record`
    (raises CheckFailed when the file fails), time those that pass, and return the decision record."""
    from mnetdeploy.errors import CheckFailed

    candidates, paths = [], {}
    for graph in graphs:
        if say:
            say(f"int8 graph candidate {graph}: converting and checking")
        path = workdir / f"candidate_{graph}.tflite"
        path.write_bytes(make(graph))
        entry: dict[str, Any] = {"graph": graph, "bytes": path.stat().st_size, "float_ops": _float_op_count(path)}
        try:
            record = check(path)
            entry.update(passed=True, cosine=record["cosine"], top1_agreement=record["top1_agreement"])
            paths[graph] = path
        except CheckFailed as e:
            entry.update(passed=False, cosine=None, top1_agreement=None, failure=str(e))
        candidates.append(entry)
    timings = time_interleaved(paths, threads, say=say) if paths else {}
    for entry in candidates:
        entry.update(timings.get(entry["graph"], {"p50_ms": None}))
    chosen = pick(candidates)
    if chosen is None:
        raise CheckFailed("int8 graph: no candidate passed its check (" +
                          "; ".join(c.get("failure", c["graph"]) for c in candidates) + ")")
    fastest = min(c["p50_ms"] for c in candidates if c["passed"])
    return {"requested": "auto", "chosen": chosen["graph"], "target": target_identity(threads),
            "rule": f"fastest that passed its check; within {TIE:.0%} of the fastest ({fastest:.3g} ms) counts "
                    "as tied, and among tied ones the closest to float (cosine) wins",
            "rounds": ROUNDS, "candidates": candidates,
            "decided": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _float_op_count(path: Path) -> int:
    """Compute ops left in float (not QUANTIZE/DEQUANTIZE) in a quantized TFLite file."""
    from mnetdeploy.export.tflite import op_outputs

    return sum(1 for o in op_outputs(path.read_bytes())
               if o["dtype"] == "float32" and o["op"] not in ("QUANTIZE", "DEQUANTIZE"))
