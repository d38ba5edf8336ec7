"""`mnetdeploy run`: the whole job as a list of steps with one contract, each cached by what decides its output.

    build -> quantize -> eval -> bench -> report -> gate

Every step is a `Step`: a name, the modules whose code decides its output, a `skip` reason (or None), the
`inputs` that key its cache (or None when the step keeps finer caches of its own, as build and quantize do
per file, or must always run, as report and gate do), and `run`, which returns a `StepRecord`. `run_pipeline`
is the only loop: it checks every input the config names before anything is written (`preflight`), then per
step reuses the recorded result when the inputs hash and the outputs' hashes are unchanged (artifacts.py),
else runs it and records it. Library functions do the work; each step only maps the config onto them.

    from mnetdeploy.config import load_config
    from mnetdeploy.pipeline import run_pipeline
    result = run_pipeline(load_config("configs/v1_0.25_128.yaml"))
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mnetdeploy.artifacts import code_fingerprint, record_step, step_is_fresh
from mnetdeploy.config import Config
from mnetdeploy.errors import ConfigError
from mnetdeploy.fsutil import sha256_file, sha256_json, visible_files

Progress = Callable[[str], None]


@dataclass
class StepRecord:
    """What one step did: the row of `mnetdeploy run`'s table and of `--json`."""

    name: str
    status: str              # ran | reused | skipped
    seconds: float = 0.0
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    artifact_dir: Path
    steps: list[StepRecord]
    gate_passed: bool | None  # None: no gate configured
    gate_verdict: str | None = None  # pass | fail | inconclusive (a latency comparison too noisy to decide)

    def to_dict(self) -> dict[str, Any]:
        return {"artifact_dir": str(self.artifact_dir), "gate_passed": self.gate_passed,
                "gate_verdict": self.gate_verdict, "steps": [asdict(s) for s in self.steps]}


@dataclass
class StepContext:
    config: Config
    force: bool
    progress: Progress
    artifact_dir: Path

    def models(self, suffixes: tuple[str, ...]) -> list[Path]:
        return visible_files(self.artifact_dir, set(suffixes))


class Step:
    """The contract every step of `run` follows (see the module docstring)."""

    name: str = ""
    code: tuple[str, ...] = ()        # modules whose code decides the output: part of the cache key
    outputs: tuple[str, ...] = ()     # files (relative to the artifact directory) a cached result needs

    def skip(self, ctx: StepContext) -> str | None:
        return None

    def inputs(self, ctx: StepContext) -> dict[str, Any] | None:
        return None

    def run(self, ctx: StepContext) -> StepRecord:
        raise NotImplementedError


class BuildStep(Step):
    name = "build"

    def run(self, ctx: StepContext) -> StepRecord:
        from mnetdeploy.build import build

        result = build(ctx.config, force=ctx.force, progress=ctx.progress)
        return StepRecord(self.name, "reused" if result.reused else "ran", detail=(
            f"{result.summary['macs'] / 1e6:.1f} M MACs, {result.summary['params']:,} params"))


class QuantizeStep(Step):
    name = "quantize"

    def run(self, ctx: StepContext) -> StepRecord:
        from mnetdeploy.quantize import quantize

        result = quantize(ctx.artifact_dir, ctx.config.quantize, force=ctx.force, progress=ctx.progress)
        return StepRecord(self.name, "reused" if result.reused else "ran",
                          detail=", ".join(a.file for a in result.artifacts), data={"warnings": result.warnings})


class EvalStep(Step):
    name = "eval"
    code = ("mnetdeploy.evaluate",)
    outputs = ("results/eval.json",)

    def skip(self, ctx: StepContext) -> str | None:
        return None if ctx.config.eval.data else "no eval.data in the config"

    def inputs(self, ctx: StepContext) -> dict[str, Any]:
        from mnetdeploy.data import files_hash, find_images

        e = ctx.config.eval
        assert e.data is not None  # not skipped: eval.data is set
        return {"models": _hashes(ctx.models((".keras", ".tflite", ".onnx"))),
                "eval": e.model_dump(mode="json", exclude={"device"}),   # always host here (preflight)
                "data": files_hash(find_images(e.data))}

    def run(self, ctx: StepContext) -> StepRecord:
        from mnetdeploy.evaluate import evaluate
        from mnetdeploy.results import store_results

        e = ctx.config.eval
        assert e.data is not None  # not skipped: eval.data is set
        reference = ctx.artifact_dir / "model.keras"
        results = evaluate(ctx.models((".keras", ".tflite", ".onnx")), e.data, labels=e.labels,
                           label_offset=e.label_offset, limit=e.limit, skip_first=e.skip_first, threads=e.threads,
                           reference=reference if reference.is_file() else None)
        store_results("eval", [r.to_dict() for r in results])
        return StepRecord(self.name, "ran", detail="top-1: " + ", ".join(f"{Path(r.model).name} {r.top1:.1f}%"
                                                                         for r in results))


class BenchStep(Step):
    name = "bench"
    code = ("mnetdeploy.bench", "mnetdeploy.bench.host", "mnetdeploy.devices.android")
    outputs = ("results/bench.json",)

    def skip(self, ctx: StepContext) -> str | None:
        return None if ctx.models((".tflite", ".onnx")) else "no .tflite or .onnx model to benchmark"

    def inputs(self, ctx: StepContext) -> dict[str, Any]:
        from mnetdeploy.bench.environment import cpu_model
        from mnetdeploy.devices import device_identities

        # Where a latency was measured is part of its identity: a cached result from another CPU, another phone
        # or another benchmark binary is not this one's. Asking each device who it is also means a device that
        # is gone is an error here, never a reuse of its old numbers.
        b = ctx.config.bench
        return {"models": _hashes(ctx.models((".tflite", ".onnx"))), "bench": b.model_dump(mode="json"),
                "machine": {"node": platform.node(), "cpu": cpu_model()}, "devices": device_identities(b)}

    def run(self, ctx: StepContext) -> StepRecord:
        from mnetdeploy.bench import run_benchmark
        from mnetdeploy.results import store_results

        b = ctx.config.bench
        results = []
        for device in b.devices:
            for threads in b.threads:
                for model in ctx.models((".tflite", ".onnx")):
                    ctx.progress(f"bench {model.name} on {device}, {threads} thread(s)")
                    results.append(run_benchmark(model, device=device, settings=b.settings(device, threads)))
        store_results("bench", [r.to_dict() for r in results])
        # A device tool may print no median (p50 None): such a result is never the fastest, nor formatted as one.
        fastest = min(results, key=lambda r: math.inf if r.latency_ms.p50 is None else r.latency_ms.p50)
        p50 = "?" if fastest.latency_ms.p50 is None else f"{fastest.latency_ms.p50:.2f}"
        return StepRecord(self.name, "ran", detail=f"{len(results)} results; fastest {Path(fastest.model).name} "
                                                   f"p50 {p50} ms ({fastest.threads} thr)")


class ReportStep(Step):
    name = "report"

    def run(self, ctx: StepContext) -> StepRecord:
        from mnetdeploy.report.write import write_report

        path = write_report(ctx.artifact_dir)
        return StepRecord(self.name, "ran", detail=str(path), data={"report": str(path)})


class GateStep(Step):
    name = "gate"

    def skip(self, ctx: StepContext) -> str | None:
        return None if ctx.config.gate.budgets else "no gate.budgets in the config"

    def run(self, ctx: StepContext) -> StepRecord:
        from mnetdeploy.gate import gate, store_gate_results, write_junit
        from mnetdeploy.report.write import write_report

        g = ctx.config.gate
        assert g.budgets is not None  # not skipped: gate.budgets is set
        result = gate([ctx.artifact_dir / "report.json"], g.budgets, baseline_paths=[g.baseline] if g.baseline else [])
        if g.junit:
            write_junit(g.junit, result)
        store_gate_results(result)
        write_report(ctx.artifact_dir)  # the report shows the verdict it just got
        return StepRecord(self.name, "ran", detail=result.summary(),
                          data={"passed": result.verdict == "pass", "gate": result.to_dict()})


STEPS: list[Step] = [BuildStep(), QuantizeStep(), EvalStep(), BenchStep(), ReportStep(), GateStep()]


def run_pipeline(config: Config, force: bool = False, progress: Progress | None = None) -> RunResult:
    """Check every input, then run each step in order; a step's failure stops the run (its error propagates)."""
    preflight(config)
    ctx = StepContext(config, force, progress or (lambda _msg: None), config.artifact_dir)
    records = []
    for step in STEPS:
        ctx.progress(step.name)
        start = time.perf_counter()
        record = run_step(step, ctx)
        record.seconds = round(time.perf_counter() - start, 3)
        records.append(record)
    gate = records[-1]
    ran = gate.status != "skipped"
    return RunResult(ctx.artifact_dir, records, bool(gate.data.get("passed")) if ran else None,
                     gate.data["gate"]["verdict"] if ran else None)


def run_step(step: Step, ctx: StepContext) -> StepRecord:
    """The one cache helper: skip, reuse (inputs and outputs unchanged) or run and record."""
    reason = step.skip(ctx)
    if reason:
        return StepRecord(step.name, "skipped", detail=reason)
    inputs = step.inputs(ctx)
    if inputs is None:
        return step.run(ctx)
    inputs = dict(inputs, tool=code_fingerprint(*step.code))
    key = sha256_json(inputs)
    if not ctx.force and step_is_fresh(ctx.artifact_dir, step.name, key):
        return StepRecord(step.name, "reused", detail="inputs unchanged")
    record = step.run(ctx)
    record_step(ctx.artifact_dir, step.name, inputs, key, list(step.outputs), 0.0)
    return record


def preflight(config: Config) -> None:
    """Every file and folder the config names must exist before any step writes anything: a missing budgets
    file found after a minute of conversion, or eval data silently skipped, costs the user a rerun."""
    from mnetdeploy.bench import check_device

    checks = [("quantize.calib", config.quantize.calib, "dir"),
              ("quantize.eval_data", config.quantize.eval_data, "dir"),
              ("eval.data", config.eval.data, "dir"), ("eval.labels", config.eval.labels, "file"),
              ("bench.inputs", config.bench.inputs, "dir"),
              ("bench.benchmark_binary", config.bench.benchmark_binary, "file"),
              ("gate.budgets", config.gate.budgets, "file"), ("gate.baseline", config.gate.baseline, "any"),
              ("model.weights", None if config.model.weights in (None, "imagenet") else config.model.weights, "file")]
    for key, value, kind in checks:
        if value is None:
            continue
        path = Path(value)
        ok = path.is_dir() if kind == "dir" else path.is_file() if kind == "file" else path.exists()
        if not ok:
            what = {"dir": "folder", "file": "file", "any": "file or folder"}[kind]
            raise ConfigError(f"{key} {value}: {what} not found; fix the path in the config (relative paths are "
                              "relative to the config file)")
    if config.gate.budgets:
        from mnetdeploy.budgets import load_budgets

        load_budgets(config.gate.budgets)  # a malformed budgets file is an error now, not after the benchmarks
    for device in config.bench.devices:
        check_device(device)
    check_keep_float(config)
    if config.eval.device != "host":
        raise ConfigError(f"eval.device {config.eval.device}: `run` evaluates on the host; measure accuracy on the "
                          "device with `mnetdeploy eval MODEL --device ...` (its result joins the report)")


def check_keep_float(config: Config) -> None:
    """quantize.keep_float names layers of the model the config builds; the plan knows every layer's name (the
    Keras model's are the same), so a typo fails now rather than after the build and the conversions."""
    if not config.quantize.keep_float:
        return
    import difflib

    from mnetdeploy.build import plan_from_config

    names = sorted({n for layer in plan_from_config(config).layers for n in (layer.name, layer.bn, layer.act_name)
                    if n})
    for name in config.quantize.keep_float:
        if name not in names:
            guess = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean '{guess[0]}'?" if guess else " (names as in `mnetdeploy info`)"
            raise ConfigError(f"quantize.keep_float '{name}': no such layer in {config.model.arch} "
                              f"alpha {config.model.alpha:g}{hint}")


def _hashes(paths: list[Path]) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in paths}
