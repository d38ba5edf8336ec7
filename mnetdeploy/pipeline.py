"""`mnetdeploy run`: the whole job as a list of steps, each cached by the content of its inputs.

    build -> quantize -> eval -> bench -> report -> gate

Each step is a function of the configuration and the artifact directory that returns a `StepOutcome`. Steps
whose inputs hash (config section + the sha256 of the files they read) is unchanged, and whose outputs are
still there with their recorded hashes, are reused (the manifest records both; see artifacts.py). Build and
quantize keep their own finer-grained caches; eval and bench are cached here as whole steps.

    from mnetdeploy.config import load_config
    from mnetdeploy.pipeline import run_pipeline
    result = run_pipeline(load_config("configs/default.yaml"))
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from mnetdeploy.artifacts import record_step, step_is_fresh, tool_fingerprint
from mnetdeploy.config import Config
from mnetdeploy.fsutil import sha256_file, sha256_json

Say = Callable[[str], None]


@dataclass
class StepOutcome:
    name: str
    status: str              # ran | reused | skipped | failed
    seconds: float
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    artifact_dir: Path
    steps: list[StepOutcome]
    gate_passed: bool | None  # None: no gate configured
    gate_verdict: str | None = None  # pass | fail | inconclusive (a latency comparison too noisy to decide)

    def to_dict(self) -> dict[str, Any]:
        return {"artifact_dir": str(self.artifact_dir), "gate_passed": self.gate_passed,
                "gate_verdict": self.gate_verdict, "steps": [asdict(s) for s in self.steps]}


@dataclass
class _Context:
    config: Config
    force: bool
    say: Say
    artifact_dir: Path = Path()

    def models(self, suffixes: tuple[str, ...]) -> list[Path]:
        from mnetdeploy.fsutil import visible_files

        return visible_files(self.artifact_dir, set(suffixes))


def run_pipeline(config: Config, force: bool = False, progress: Say | None = None) -> RunResult:
    """Run every step in order; a step's failure stops the run (its error propagates)."""
    ctx = _Context(config, force, progress or (lambda _msg: None))
    outcomes = []
    for name, step in STEPS:
        ctx.say(name)
        start = time.perf_counter()
        outcome = step(ctx)
        outcome.seconds = round(time.perf_counter() - start, 3)
        outcomes.append(outcome)
    gate = next(o for o in outcomes if o.name == "gate")
    passed = None if gate.status == "skipped" else bool(gate.data.get("passed"))
    verdict = None if gate.status == "skipped" else gate.data["gate"]["verdict"]
    return RunResult(ctx.artifact_dir, outcomes, passed, verdict)


def _build(ctx: _Context) -> StepOutcome:
    from mnetdeploy.build import build

    result = build(ctx.config, force=ctx.force, progress=ctx.say)
    ctx.artifact_dir = result.artifact_dir
    return StepOutcome("build", "reused" if result.reused else "ran", 0,
                       f"{result.summary['macs'] / 1e6:.1f} M MACs, {result.summary['params']:,} params")


def _quantize(ctx: _Context) -> StepOutcome:
    from mnetdeploy.quantize import quantize

    result = quantize(ctx.artifact_dir, ctx.config.quantize, force=ctx.force, progress=ctx.say)
    files = ", ".join(a.file for a in result.artifacts)
    return StepOutcome("quantize", "reused" if result.reused else "ran", 0, files,
                       {"warnings": result.warnings})


def _eval(ctx: _Context) -> StepOutcome:
    e = ctx.config.eval
    if e.data is None:
        return StepOutcome("eval", "skipped", 0, "no eval.data in the config")
    if not Path(e.data).is_dir():
        return StepOutcome("eval", "skipped", 0, f"{e.data}: folder absent; accuracy not measured")
    from mnetdeploy.data import files_hash, find_images
    from mnetdeploy.evaluate import evaluate
    from mnetdeploy.results import store_results

    models = ctx.models((".keras", ".tflite", ".onnx"))
    inputs = {"models": {p.name: sha256_file(p) for p in models}, "eval": e.model_dump(mode="json"),
              "data": files_hash(find_images(e.data)), "tool": tool_fingerprint()}
    cached = _cached(ctx, "eval", inputs)
    if cached:
        return cached
    reference = ctx.artifact_dir / "model.keras"
    results = evaluate(models, e.data, labels=e.labels, label_offset=e.label_offset, limit=e.limit,
                       skip_first=e.skip_first, reference=reference if reference.is_file() else None)
    store_results("eval", [r.to_dict() for r in results])
    _record(ctx, "eval", inputs, ["results/eval.json"])
    best = ", ".join(f"{Path(r.model).name} {r.top1:.1f}%" for r in results)
    return StepOutcome("eval", "ran", 0, f"top-1: {best}")


def _bench(ctx: _Context) -> StepOutcome:
    from mnetdeploy.bench import run_benchmark
    from mnetdeploy.bench.environment import cpu_model
    from mnetdeploy.results import store_results

    b = ctx.config.bench
    models = ctx.models((".tflite", ".onnx"))
    if not models:
        return StepOutcome("bench", "skipped", 0, "no .tflite or .onnx model to benchmark")
    # The machine is part of a latency's identity: a cached result from another CPU is not this one's.
    inputs = {"models": {p.name: sha256_file(p) for p in models}, "bench": b.model_dump(mode="json"),
              "machine": {"node": platform.node(), "cpu": cpu_model()}, "tool": tool_fingerprint()}
    cached = _cached(ctx, "bench", inputs)
    if cached:
        return cached
    results = []
    for device in b.devices:
        for threads in b.threads:
            for model in models:
                ctx.say(f"bench {model.name} on {device}, {threads} thread(s)")
                results.append(run_benchmark(model, device=device, settings=b.settings(device, threads)))
    store_results("bench", [r.to_dict() for r in results])
    _record(ctx, "bench", inputs, ["results/bench.json"])
    fastest = min(results, key=lambda r: r.latency_ms.p50)
    return StepOutcome("bench", "ran", 0, f"{len(results)} results; fastest {Path(fastest.model).name} "
                                          f"p50 {fastest.latency_ms.p50:.2f} ms ({fastest.threads} thr)")


def _report(ctx: _Context) -> StepOutcome:
    from mnetdeploy.report.render import write_report

    path = write_report(ctx.artifact_dir)
    return StepOutcome("report", "ran", 0, str(path), {"report": str(path)})


def _gate(ctx: _Context) -> StepOutcome:
    g = ctx.config.gate
    if g.budgets is None:
        return StepOutcome("gate", "skipped", 0, "no gate.budgets in the config")
    from mnetdeploy.gate import gate, write_junit

    result = gate([ctx.artifact_dir / "report.json"], g.budgets, baseline_paths=[g.baseline] if g.baseline else [])
    if g.junit:
        write_junit(g.junit, result)
    return StepOutcome("gate", "ran", 0, result.summary(), {"passed": result.verdict == "pass",
                                                             "gate": result.to_dict()})


def _cached(ctx: _Context, step: str, inputs: dict[str, Any]) -> StepOutcome | None:
    if not ctx.force and step_is_fresh(ctx.artifact_dir, step, sha256_json(inputs)):
        return StepOutcome(step, "reused", 0, "inputs unchanged")
    return None


def _record(ctx: _Context, step: str, inputs: dict[str, Any], outputs: list[str]) -> None:
    record_step(ctx.artifact_dir, step, inputs, sha256_json(inputs), outputs, 0.0)


STEPS: list[tuple[str, Callable[[_Context], StepOutcome]]] = [
    ("build", _build), ("quantize", _quantize), ("eval", _eval), ("bench", _bench), ("report", _report),
    ("gate", _gate),
]
