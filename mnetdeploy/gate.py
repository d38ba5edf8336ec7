"""`mnetdeploy gate`: check reports against budgets (and a baseline), with a verdict CI can act on.

Two kinds of checks:

- **Budgets** (mnetdeploy/budgets.py): absolute limits per rule on what a report measured: latency p50/p90
  (bench), file size, top-1 and top-1 drop against the report's fp32 reference (eval). Each (rule, limit,
  measurement) is one check; FAIL when the measured value is over a max (under a min).
- **Regression** (`--baseline`): each latency result of a report against the baseline report's result with
  the same (model file, device, runtime, threads, xnnpack), comparing the two runs' sample distributions.

Regression decision rule
------------------------
r = median(candidate samples) / median(baseline samples); [L, H] is the percentile-bootstrap interval of r at
`confidence` (mnetdeploy.bench.stats.median_ratio_ci: the two runs resampled independently, each as `blocks`
moving blocks of consecutive samples; fixed seed, so the same inputs always get the same verdict);
T = 1 + max_slowdown.

    FAIL          when L > T and r > T   the slowdown is statistically clear AND larger than max_slowdown
    PASS          when H <= T            the data rules out a slowdown larger than max_slowdown
    INCONCLUSIVE  otherwise              the interval straddles T: this data cannot decide at max_slowdown.
                                         Its own verdict and exit code (3); `on_inconclusive: warn` passes
                                         with a warning, `fail` fails. `mnetdeploy bench NEW --against OLD`
                                         keeps measuring in rounds until it can decide (bench/sequential.py)

Every comparison also reports its minimum detectable slowdown, MDS = T * r / L - 1 (bench/stats.py): the
smallest true slowdown this much noise would let the rule fail. A quiet run detects slowdowns just above
max_slowdown; on a noisy runner MDS grows, and a 30 % regression that the noise hides is INCONCLUSIVE, never
a silent PASS.

(With a percentile interval L <= r almost always, so L > T is the binding condition; r > T is checked too so
a lopsided interval can never fail a point estimate that is within the limit.)

Why this rule, i.e. where false alarms come from. Measured on the 2-core shared development machine (load
average 1.5-3.6 from other people's jobs), v2 0.35/96 fp32 TFLite, 1 thread, p50 ~0.47 ms: 14 experiments of
21 runs each (0.2, 0.5 and 1 s per run), every ordered pair of runs of one experiment compared as
(baseline, identical rerun): 5880 pairs. scripts/gate_flake_test.py repeats the experiment anywhere.

1. Sampling noise within a run: modelled by the bootstrap. If the true slowdown were exactly max_slowdown,
   P(L > T) is about (1 - confidence) / 2 = 2.5 % at 0.95. For identical code, sampling noise alone would
   have to move the median by more than max_slowdown plus the interval's half-width (0.2-0.7 %): never.
2. Run-level shifts, the dominant noise on a shared machine: between two runs the whole distribution moves
   (CPU frequency, other tenants, an SMT sibling's load, memory placement). One run cannot show this, so the
   interval is far narrower than run-to-run variation: identical reruns' medians differ by 1.5-4 % (sd), up
   to 8 % in undisturbed experiments. That is why "the interval excludes 1.0", the textbook test, is wrong
   here: it flagged 13 to 20 of 20 identical reruns per experiment. max_slowdown is the allowance for these
   shifts: an identical rerun fails only if its shift exceeds max_slowdown plus the half-width. With an
   identical-pair log-ratio spread s the false-alarm rate is about P(Z > ln(T) / s); s = 3 %, T = 1.10:
   z = 3.2, ~0.1 % per comparison. Choose max_slowdown at least ~3x the spread your CI runners show (the
   script prints it). With k compared results per gate, the chance that any one alarms is up to k times that.
3. Disturbed stretches inside a run: a neighbour's burst of work slows a stretch of consecutive iterations
   and can move one run's median by 15-25 %. Resampling single samples treats that stretch as independent
   luck and gives a narrow interval around the shifted median: with iid resampling 30 of the 5880 identical
   pairs FAILED (0.5 %; up to 1.2 % in the noisiest experiment). Resampling blocks (20 per run) keeps the
   stretch together, so a disturbed run gets a wide interval: 0 of 5880 FAILED (34 were reported
   unclear, INCONCLUSIVE under today's rule). Its cost: an injected 30 % slowdown was missed in 30 of 5880
   pairs instead of 22, almost all where the *baseline* run was the disturbed one (a 23 % slow baseline
   hides a 30 % slowdown from any rule). A missed alarm shows up again on the next commit; a false alarm
   blocks a merge for nothing.
4. Too little data: a result with fewer than `min_samples` samples or measured for less than `min_seconds`
   (default 0.5 s, so one burst cannot cover most of a run) is refused (exit 2) rather than compared.
5. Different machines: a baseline from another CPU model compares machines, not code (hosted CI runners
   come in several CPU models). With `same_cpu: true` (default) such pairs are SKIPPED, visibly (table,
   JUnit <skipped>), never silently passed; key the baseline cache on the CPU model (examples/).

What it catches: a 30 % slowdown gives r ~ 1.3 and L ~ 1.28 > 1.10. A 2 % change (r = 1.02 < T) passes even
when its interval clearly excludes 1.0. Slowdowns just above max_slowdown are caught only sometimes: the
price of not flaking. A run-level shift that covers a whole run uniformly cannot be told from a slowdown by
any statistic of that run; only max_slowdown (and rerunning on a failure) protects against it. The median,
not p90, is compared because tail percentiles on a shared machine measure the neighbours' load.
"""

from __future__ import annotations

import fnmatch
import math
import platform
import shlex
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mnetdeploy.budgets import LATENCY_LIMITS, Budgets, Regression, Rule, format_size, load_budgets
from mnetdeploy.errors import UserError

BENCHABLE = ("tflite", "onnx")
# Where accuracy comes from: `mnetdeploy eval` results kept in the artifact directory (results/eval.json;
# `eval` and `mnetdeploy run` with eval.data keep them there for model.keras and every export).
_EVAL_HINT = ("run `mnetdeploy eval {dir}/model.keras {dir}/model_int8.tflite ... --data DIR` (or `mnetdeploy "
              "run` with eval.data in the config) then `mnetdeploy report {dir}`")
REGRESSION_BUDGET = "max_slowdown"
LATENCY_KEY = ("model", "device", "runtime", "threads", "xnnpack")  # as results.KEYS["bench"]


@dataclass
class Check:
    """One budget (or regression) check of one measurement. `margin` is headroom: positive = passing."""

    kind: str                     # "latency" | "size" | "accuracy" | "regression"
    budget: str                   # max_p50_ms | max_p90_ms | max_size | max_accuracy_drop | min_top1 | max_slowdown
    rule: str                     # rule title ("rule 2" or its name); "regression" for baseline checks
    model: str                    # the report's name (artifact directory)
    artifact: str                 # model file name
    measured: float | None        # regression: the median ratio r
    limit: float                  # regression: T = 1 + max_slowdown
    unit: str                     # "ms" | "bytes" | "points" | "percent" | "ratio"
    verdict: str                  # "pass" | "fail" | "skip" | "inconclusive" (regression only)
    margin: float | None = None   # limit - measured for max limits, measured - limit for min_top1,
    margin_pct: float | None = None  # T - L for regression (L decides); as a percentage of the limit
    device: str | None = None
    threads: int | None = None
    runtime: str | None = None
    xnnpack: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)
    note: str | None = None

    @property
    def case_name(self) -> str:
        """The JUnit test case name: "artifact device threads=N: budget" (size/accuracy: "artifact: budget")."""
        where = self.artifact
        if self.device is not None:
            where += f" {self.device}" + (f" threads={self.threads}" if self.kind != "accuracy" else "")
            if self.xnnpack is False:
                where += " no-xnnpack"
        if self.kind == "accuracy" and self.details.get("data_hash"):
            where += f" data={self.details['data_hash'][:8]}"
        return f"{where}: {self.budget}"

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), name=self.case_name)


@dataclass
class GateResult:
    checks: list[Check]
    reports: list[str]
    budgets: str
    baselines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    on_inconclusive: str = "inconclusive"   # budgets' regression.on_inconclusive

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == "fail"
                or (c.verdict == "inconclusive" and self.on_inconclusive == "fail")]

    @property
    def inconclusive(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == "inconclusive"]

    @property
    def verdict(self) -> str:
        """fail (exit 1) > inconclusive (exit 3, unless on_inconclusive is warn or fail) > pass (exit 0)."""
        if self.failed:
            return "fail"
        return "inconclusive" if self.inconclusive and self.on_inconclusive == "inconclusive" else "pass"

    def counts(self) -> dict[str, int]:
        return {v: sum(c.verdict == v for c in self.checks) for v in ("pass", "fail", "skip", "inconclusive")}

    def summary(self) -> str:
        n = self.counts()
        text = f"gate {self.verdict.upper()}: {len(self.checks)} checks, {n['pass']} passed, {n['fail']} failed"
        text += f", {n['inconclusive']} inconclusive" if n["inconclusive"] else ""
        text += f", {n['skip']} skipped" if n["skip"] else ""
        if self.failed:
            text += " - " + "; ".join(f"{c.model} {c.case_name}" for c in self.failed[:3])
            text += f"; and {len(self.failed) - 3} more" if len(self.failed) > 3 else ""
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "counts": self.counts(), "reports": self.reports, "budgets": self.budgets,
                "baselines": self.baselines, "on_inconclusive": self.on_inconclusive,
                "checks": [c.to_dict() for c in self.checks], "notes": self.notes}


@dataclass
class Report:
    path: str
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.data.get("name"))

    @property
    def directory(self) -> str:
        return str(self.data.get("artifact_dir") or Path(self.path).parent)

    def list(self, key: str) -> list[dict[str, Any]]:
        value = self.data.get(key)
        if not isinstance(value, list):
            raise UserError(f"{self.path}: report has no '{key}' list; re-run `mnetdeploy report {self.directory}`")
        return value


# ------------------------------------------------------------------------------------------ entry point

def gate(report_paths: list[str | Path], budgets_path: str | Path,
         baseline_paths: Sequence[str | Path] = ()) -> GateResult:
    """Load everything (any bad input raises UserError before a check runs), then check."""
    from mnetdeploy.report.collect import load_report

    budgets = load_budgets(budgets_path)
    reports = [Report(str(p), load_report(_report_file(p, "report"))) for p in report_paths]
    baselines = [Report(str(p), load_report(_report_file(p, "--baseline"))) for p in baseline_paths]
    return check_reports(reports, budgets, baselines)


def _report_file(path: str | Path, what: str) -> Path:
    from mnetdeploy.report.collect import REPORT_JSON

    path = Path(path)
    if path.is_dir():
        from mnetdeploy.artifacts import SUMMARY

        if not (path / REPORT_JSON).is_file() and not (path / SUMMARY).is_file():
            # `mnetdeploy report` needs an artifact directory too: suggest what makes one.
            raise UserError(f"{what} {path}: not an artifact directory (no {SUMMARY}, no {REPORT_JSON}); pass "
                            "one made by `mnetdeploy build`/`mnetdeploy run` (e.g. artifacts/v2_1.0_224), or "
                            "a report.json")
        if not (path / REPORT_JSON).is_file():
            raise UserError(f"{what} {path}: directory has no {REPORT_JSON}; run `mnetdeploy report {path}` first")
        return path / REPORT_JSON
    if not path.is_file():
        raise UserError(f"{what} {path}: no such file; pass a report.json or the artifact directory holding it")
    return path


def check_reports(reports: list[Report], budgets: Budgets, baselines: Sequence[Report] = ()) -> GateResult:
    if not reports:
        raise UserError("gate: no report given; pass REPORT (report.json or its artifact directory)")
    _refuse_duplicate_names(reports, "report")
    _refuse_duplicate_names(baselines, "baseline")
    if not budgets.rules and not baselines:
        raise UserError(f"{budgets.source}: no rules, and no --baseline to compare against: nothing to check; "
                        "add rules (see configs/budgets.yaml)")
    checks: list[Check] = []
    for rule in budgets.rules:
        checks.extend(rule_checks(rule, reports, budgets))
    notes: list[str] = []
    if baselines:
        checks.extend(regression_checks(reports, baselines, budgets.regression, notes))
    elif "regression" in budgets.model_fields_set:
        notes.append(f"{budgets.source}: `regression:` is used only with --baseline")
    return GateResult(checks, [r.path for r in reports], budgets.source, [b.path for b in baselines], notes,
                      budgets.regression.on_inconclusive)


def _refuse_duplicate_names(reports: Sequence[Report], what: str) -> None:
    seen: dict[str, str] = {}
    for r in reports:
        if r.name in seen:
            raise UserError(f"{r.path}: {what} of '{r.name}' given twice (also {seen[r.name]}); checks and baselines "
                            "are matched by name: pass one report per model")
        seen[r.name] = r.path


# ------------------------------------------------------------------------------------- budget checks

def rule_checks(rule: Rule, reports: list[Report], budgets: Budgets) -> list[Check]:
    """The checks of one rule over every report it selects. A rule must select something in every report its
    `model` glob matches: a rule that quietly selects nothing is a gate that no longer gates."""
    where = budgets.where(rule)
    matched = [r for r in reports if fnmatch.fnmatchcase(r.name, rule.model)]
    if not matched:
        raise UserError(f"{where}: selects nothing: model '{rule.model}' matches no report "
                        f"(reports: {', '.join(r.name for r in reports)}); fix the rule's `model` glob")
    checks: list[Check] = []
    for report in matched:
        artifacts = [a for a in report.list("artifacts") if _selects(rule, a)]
        if not artifacts:
            names = ", ".join(a.get("file", "?") for a in report.list("artifacts")) or "none"
            raise UserError(f"{where}: selects nothing in {report.name}: no artifact matches {_selector(rule)} "
                            f"(its artifacts: {names}); fix the rule's selector")
        if rule.max_size is not None:
            checks.extend(_size_check(rule, report, a) for a in artifacts)
        if rule.max_p50_ms is not None or rule.max_p90_ms is not None:
            checks.extend(_latency_checks(rule, report, artifacts, where))
        if rule.min_top1 is not None or rule.max_accuracy_drop is not None:
            checks.extend(_accuracy_checks(rule, report, artifacts, where))
    return checks


def _selects(rule: Rule, artifact: dict[str, Any]) -> bool:
    return (fnmatch.fnmatchcase(str(artifact.get("file")), rule.artifact)
            and rule.format in (None, artifact.get("format"))
            and rule.precision in (None, artifact.get("precision")))


def _selector(rule: Rule) -> str:
    parts = [f"artifact '{rule.artifact}'"]
    parts += [f"{k} {getattr(rule, k)}" for k in ("format", "precision") if getattr(rule, k) is not None]
    return ", ".join(parts)


def _max_margin(measured: float, limit: float) -> tuple[float, float]:
    margin = limit - measured
    return margin, 100.0 * margin / limit


def _size_check(rule: Rule, report: Report, artifact: dict[str, Any]) -> Check:
    measured = artifact.get("bytes")
    if not isinstance(measured, int):
        raise UserError(f"{report.path}: artifact {artifact.get('file')} has no size; re-run "
                        f"`mnetdeploy report {report.directory}`")
    assert rule.max_size is not None  # called only for rules with a max_size
    margin, pct = _max_margin(measured, rule.max_size)
    return Check("size", "max_size", rule.title, report.name, artifact["file"], measured, rule.max_size, "bytes",
                 "pass" if measured <= rule.max_size else "fail", margin, pct,
                 details={"format": artifact.get("format"), "precision": artifact.get("precision")})


def _latency_checks(rule: Rule, report: Report, artifacts: list[dict[str, Any]], where: str) -> list[Check]:
    timed = [a for a in artifacts if a.get("format") in BENCHABLE]
    if not timed:
        raise UserError(f"{where}: latency limits select only {', '.join(a['file'] for a in artifacts)} in "
                        f"{report.name}, which `mnetdeploy bench` cannot time; select .tflite/.onnx artifacts")
    checks = []
    for artifact in timed:
        results = [r for r in report.list("latency") if r.get("model") == artifact["file"]
                   and rule.matches_device(r.get("device")) and rule.threads in (None, r.get("threads"))
                   and rule.runtime in (None, r.get("runtime"))]
        if not results:
            wanted = f"device {rule.device}" + (f", threads {rule.threads}" if rule.threads else "") + \
                (f", runtime {rule.runtime}" if rule.runtime else "")
            raise UserError(f"{where}: needs the latency of {artifact['file']} ({wanted}) but {report.path} has "
                            f"none; {_bench_advice(rule, report, artifact)}")
        for result in sorted(results, key=lambda r: (r.get("threads") or 0, str(r.get("runtime")),
                                                      str(r.get("xnnpack")))):
            for budget in LATENCY_LIMITS:
                limit = getattr(rule, budget)
                if limit is None:
                    continue
                quantile = budget.split("_")[1]  # "p50" | "p90"
                measured = (result.get("latency_ms") or {}).get(quantile)
                if not isinstance(measured, (int, float)):
                    why = ("benchmark_model prints no p90; use max_p50_ms for this device" if
                           result.get("runtime") == "benchmark_model" else
                           "re-run `mnetdeploy bench` and `mnetdeploy report`")
                    raise UserError(f"{where}: {budget} needs latency_ms.{quantile} of {artifact['file']} on "
                                    f"{result.get('device')}, but {report.path} has none; {why}")
                margin, pct = _max_margin(measured, limit)
                checks.append(Check(
                    "latency", budget, rule.title, report.name, artifact["file"], float(measured), limit, "ms",
                    "pass" if measured <= limit else "fail", margin, pct, device=result.get("device"),
                    threads=result.get("threads"), runtime=result.get("runtime"), xnnpack=result.get("xnnpack"),
                    details={"runs": result.get("runs"), "timestamp": result.get("timestamp"),
                             # kept so a failure on a loaded machine can say so (load_notes)
                             "warnings": list(result.get("warnings") or []), "directory": report.directory}))
    return checks


def _bench_advice(rule: Rule, report: Report, artifact: dict[str, Any]) -> str:
    """A command that would produce a result this rule selects (or why none can)."""
    device = rule.device
    kind = "ssh" if device.startswith("ssh://") else device.partition(":")[0]
    if any(c in device for c in "*?["):   # a pattern is no --device value: name one device of that kind
        device = {"android": "android:SERIAL", "adb-linux": "adb-linux:SERIAL", "ssh": "ssh://HOST"}.get(kind, "host")
    android = kind == "android"
    if android and artifact.get("format") != "tflite":
        return ("benchmark_model on Android runs .tflite only, so no result can match; narrow the rule to "
                "artifact: '*.tflite' or use another device")
    if android and rule.runtime not in (None, "benchmark_model"):
        return "Android results come from benchmark_model; use runtime: benchmark_model (or drop runtime:)"
    binary = " --benchmark-binary ./android_aarch64_benchmark_model" if android else \
        " --benchmark-binary ./linux_aarch64_benchmark_model" if rule.runtime == "benchmark_model" else ""
    if rule.runtime == "benchmark_model" and device == "host":
        return "benchmark_model results come from devices; set device: android (or adb-linux, ssh://HOST)"
    threads = f" --threads {rule.threads}" if rule.threads else ""
    model = shlex.quote(str(Path(report.directory) / artifact["file"]))
    return (f"run `mnetdeploy bench {model} --device {shlex.quote(device)}{binary}{threads}` then "
            f"`mnetdeploy report {shlex.quote(report.directory)}`")


def fp32_reference(evals: list[dict[str, Any]], data_hash: str | None) -> dict[str, Any] | None:
    """The float reference top-1 on the same images: the Keras model's eval, else an fp32 export's
    (TFLite before ONNX), else None."""
    same_data = [e for e in evals if (e.get("data") or {}).get("hash") == data_hash and e.get("precision") == "fp32"]
    order: dict[str | None, int] = {"keras": 0, "tflite": 1, "onnx": 2}
    same_data.sort(key=lambda e: (order.get(e.get("format"), 3), str(e.get("model"))))
    return same_data[0] if same_data else None


def _accuracy_checks(rule: Rule, report: Report, artifacts: list[dict[str, Any]], where: str) -> list[Check]:
    """min_top1 / max_accuracy_drop on the eval results measured where the rule's `device:` says (host by
    default; a device's come from `eval --device`). The drop is always against the float model on the host:
    what the deployment loses, wherever that happens."""
    evals = report.list("accuracy")
    host_evals = [e for e in evals if (e.get("device") or "host") == "host"]
    checks = []
    for artifact in artifacts:
        mine = [e for e in evals if e.get("model") == artifact["file"] and rule.matches_device(e.get("device"))]
        if not mine:
            if rule.device != "host":
                model = shlex.quote(str(Path(report.directory) / artifact["file"]))
                device = rule.device if not any(c in rule.device for c in "*?[") else "DEVICE"
                raise UserError(f"{where}: needs the accuracy of {artifact['file']} on device {rule.device} but "
                                f"{report.path} has none; run `mnetdeploy eval {model} --device "
                                f"{shlex.quote(device)} --data DIR` then `mnetdeploy report "
                                f"{shlex.quote(report.directory)}`")
            raise UserError(f"{where}: needs the accuracy of {artifact['file']} but {report.path} has none; "
                            f"{_EVAL_HINT.format(dir=report.directory)}")
        for record in mine:
            data_hash = (record.get("data") or {}).get("hash")
            details = {"data_hash": data_hash, "n": record.get("n"), "precision": record.get("precision")}
            measured_on: str | None = record.get("device") if (record.get("device") or "host") != "host" else None
            if rule.min_top1 is not None:
                top1 = float(record["top1"])
                margin = top1 - rule.min_top1
                checks.append(Check("accuracy", "min_top1", rule.title, report.name, artifact["file"], top1,
                                    rule.min_top1, "percent", "pass" if top1 >= rule.min_top1 else "fail", margin,
                                    100.0 * margin / rule.min_top1 if rule.min_top1 else None, details=dict(details),
                                    device=measured_on))
            if rule.max_accuracy_drop is not None:
                reference = fp32_reference(host_evals, data_hash)
                if reference is None:
                    raise UserError(f"{where}: max_accuracy_drop of {artifact['file']} needs an fp32 reference "
                                    f"(model.keras or an fp32 export) evaluated on the same images, but "
                                    f"{report.path} has none; {_EVAL_HINT.format(dir=report.directory)}")
                if reference is record:
                    continue  # the reference against itself: a drop of 0 by definition
                drop = float(reference["top1"]) - float(record["top1"])
                margin, pct = _max_margin(drop, rule.max_accuracy_drop) if rule.max_accuracy_drop else \
                    (-drop, None)
                checks.append(Check("accuracy", "max_accuracy_drop", rule.title, report.name, artifact["file"],
                                    drop, rule.max_accuracy_drop, "points",
                                    "pass" if drop <= rule.max_accuracy_drop else "fail", margin, pct,
                                    details=dict(details, top1=float(record["top1"]), reference=reference["model"],
                                                 reference_top1=float(reference["top1"])), device=measured_on))
    if rule.max_accuracy_drop is not None and not any(c.budget == "max_accuracy_drop" for c in checks):
        raise UserError(f"{where}: max_accuracy_drop selects only the fp32 reference in {report.name} "
                        f"({', '.join(a['file'] for a in artifacts)}); select the quantized artifacts")
    return checks


# --------------------------------------------------------------------------------- regression checks

def latency_key(result: dict[str, Any]) -> tuple:
    return tuple(Path(str(result.get(k))).name if k == "model" else result.get(k) for k in LATENCY_KEY)


def regression_checks(reports: list[Report], baselines: Sequence[Report], regression: Regression,
                      notes: list[str]) -> list[Check]:
    pairs = _pair_reports(reports, baselines, notes)
    checks: list[Check] = []
    compared = 0
    for report in reports:
        baseline = pairs.get(report.name)
        base_results = {latency_key(r): r for r in baseline.list("latency")} if baseline else {}
        for result in sorted(report.list("latency"), key=lambda r: [str(x) for x in latency_key(r)]):
            key = latency_key(result)
            base = base_results.get(key)
            if base is None:
                why = (f"no baseline report named {report.name}" if baseline is None else
                       f"{baseline.path} has no result for this model/device/runtime/threads/xnnpack")
                checks.append(_regression_skip(report, result, regression, why))
                continue
            compared += 1
            checks.append(compare_latency(result, base, regression, report, baseline))
    if compared == 0:
        keys = sorted({" ".join(map(str, latency_key(r))) for r in reports[0].list("latency")})
        raise UserError(f"--baseline {', '.join(b.path for b in baselines)}: shares no latency result with the "
                        f"report(s) (matched by model file, device, runtime, threads, xnnpack; report has: "
                        f"{'; '.join(keys) or 'none'}); bench the baseline with the same settings")
    return checks


def _pair_reports(reports: list[Report], baselines: Sequence[Report], notes: list[str]) -> dict[str, Report]:
    if len(reports) == 1 and len(baselines) == 1:
        if reports[0].name != baselines[0].name:
            notes.append(f"baseline {baselines[0].name} compared with report {reports[0].name} (different names)")
        return {reports[0].name: baselines[0]}
    names = {r.name for r in reports}
    for b in baselines:
        if b.name not in names:
            raise UserError(f"--baseline {b.path}: no report named {b.name} to compare it with (reports: "
                            f"{', '.join(sorted(names))}); baselines are matched to reports by name")
    return {b.name: b for b in baselines}


def _samples(result: dict[str, Any], regression: Regression, where: str) -> list[float]:
    samples = result.get("samples_ms")
    if not isinstance(samples, list) or not samples:
        raise UserError(f"{where}: latency result of {result.get('model')} on {result.get('device')} has no "
                        "samples_ms; the regression check compares distributions: re-run `mnetdeploy bench` (with "
                        f"benchmark_model: --trials {regression.min_samples} or more) and `mnetdeploy report`")
    if len(samples) < regression.min_samples:
        raise UserError(f"{where}: latency result of {result.get('model')} has {len(samples)} samples, fewer than "
                        f"regression.min_samples {regression.min_samples}; bench with --runs "
                        f"{regression.min_samples} or more")
    seconds = result.get("measured_seconds")
    if not isinstance(seconds, (int, float)) or seconds < regression.min_seconds:
        raise UserError(f"{where}: latency result of {result.get('model')} was measured for {seconds} s, less than "
                        f"regression.min_seconds {regression.min_seconds:g}: a run shorter than the machine's "
                        f"interference bursts is not representative; bench with --min-seconds "
                        f"{regression.min_seconds:g} or more")
    if not all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in samples):
        raise UserError(f"{where}: latency result of {result.get('model')} has non-positive or non-finite "
                        "samples_ms; re-run `mnetdeploy bench`")
    return samples


def compare_latency(candidate: dict[str, Any], baseline: dict[str, Any], regression: Regression,
                    report: Report | None = None, base_report: Report | None = None) -> Check:
    """The regression check of one candidate latency result against its baseline (decision rule: module doc)."""
    from mnetdeploy.bench.stats import median_ratio_ci, minimum_detectable_slowdown

    cand_where = report.path if report else "candidate"
    base_where = base_report.path if base_report else "baseline"
    threshold = 1.0 + regression.max_slowdown
    cpus = [(r.get("environment") or {}).get("cpu_model") for r in (candidate, baseline)]
    if regression.same_cpu and all(cpus) and cpus[0] != cpus[1]:
        return _regression_skip(report, candidate, regression,
                                f"baseline measured on another CPU ({cpus[1]} vs {cpus[0]}): the ratio would "
                                "compare machines; set regression.same_cpu: false to compare anyway")
    a = _samples(candidate, regression, cand_where)
    b = _samples(baseline, regression, base_where)
    ci = median_ratio_ci(a, b, confidence=regression.confidence, resamples=regression.resamples, seed=0,
                         blocks=regression.blocks)
    fail = ci.low > threshold and ci.ratio > threshold
    verdict = "fail" if fail else "pass" if ci.high <= threshold else "inconclusive"
    mds = minimum_detectable_slowdown(ci.ratio, ci.low, threshold)
    margin = threshold - ci.low
    note = (f"interval [{ci.low:.3f}, {ci.high:.3f}] straddles the limit {threshold:.3f}: this data detects only "
            f"slowdowns above {100 * mds:.0f} % (max_slowdown {100 * regression.max_slowdown:.0f} %); re-measure "
            "longer or on a quieter machine, or let `mnetdeploy bench NEW --against OLD` sample until it can "
            "decide") if verdict == "inconclusive" else None
    return Check(
        "regression", REGRESSION_BUDGET, "regression", report.name if report else str(candidate.get("model")),
        Path(str(candidate.get("model"))).name, ci.ratio, threshold, "ratio", verdict,
        margin, 100.0 * margin / threshold, device=candidate.get("device"), threads=candidate.get("threads"),
        runtime=candidate.get("runtime"), xnnpack=candidate.get("xnnpack"),
        details={"ratio": ci.ratio, "ci_low": ci.low, "ci_high": ci.high, "confidence": ci.confidence,
                 "threshold": threshold, "max_slowdown": regression.max_slowdown,
                 "min_detectable_slowdown": mds,
                 "candidate_p50_ms": _median(a), "baseline_p50_ms": _median(b),
                 "candidate_samples": len(a), "baseline_samples": len(b), "resamples": ci.resamples,
                 "blocks": ci.blocks},
        note=note)


def _median(x: list[float]) -> float:
    import numpy as np

    return float(np.median(x))


def _regression_skip(report: Report | None, result: dict[str, Any], regression: Regression, why: str) -> Check:
    threshold = 1.0 + regression.max_slowdown
    return Check("regression", REGRESSION_BUDGET, "regression", report.name if report else str(result.get("model")),
                 Path(str(result.get("model"))).name, None, threshold, "ratio", "skip", device=result.get("device"),
                 threads=result.get("threads"), runtime=result.get("runtime"), xnnpack=result.get("xnnpack"),
                 details={"threshold": threshold, "max_slowdown": regression.max_slowdown}, note=why)


# ------------------------------------------------------------------------------------------- output

def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "bytes":
        return format_size(value)
    if unit == "points":
        return f"{value:.2f} pt"
    if unit == "percent":
        return f"{value:.2f} %"
    return f"{value:.3f}"


def format_margin(check: Check) -> str:
    if check.margin is None:
        return "-"
    if check.unit == "bytes":
        absolute = f"{check.margin:+,.0f} B"
    elif check.unit == "ratio":
        absolute = f"{check.margin:+.3f}"
    else:
        absolute = ("+" if check.margin >= 0 else "") + format_value(check.margin, check.unit)
    return absolute + ("" if check.margin_pct is None else f" ({check.margin_pct:+.1f} %)")


def describe_measured(check: Check) -> str:
    if check.kind == "regression" and check.measured is not None:
        d = check.details
        return f"{d['ratio']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"
    return format_value(check.measured, check.unit)


def describe_limit(check: Check) -> str:
    if check.kind == "regression":
        return f"CI low <= {check.limit:.3f}"
    sign = ">=" if check.budget.startswith("min_") else "<="
    return f"{sign} {format_value(check.limit, check.unit)}"


def failure_message(check: Check) -> str:
    if check.kind == "regression":
        d = check.details
        return (f"{check.artifact}: median {d['candidate_p50_ms']:.3f} ms vs baseline {d['baseline_p50_ms']:.3f} ms, "
                f"ratio {d['ratio']:.3f}, {100 * d['confidence']:g} % CI [{d['ci_low']:.3f}, {d['ci_high']:.3f}] "
                f"entirely above {check.limit:.3f} (max_slowdown {d['max_slowdown']:g})")
    word = "below" if check.budget.startswith("min_") else "over"
    assert check.margin is not None  # every failed budget check has a margin (only skipped regressions lack one)
    by = format_value(abs(check.margin), check.unit)
    pct = "" if check.margin_pct is None else f", {abs(check.margin_pct):.1f} % of the limit"
    return (f"{check.artifact}: {check.budget} measured {format_value(check.measured, check.unit)}, "
            f"{word} the limit {format_value(check.limit, check.unit)} by {by}{pct}")


def results_table(result: GateResult):
    from rich import box
    from rich.table import Table

    models = sorted({c.model for c in result.checks})
    title = "gate" + (f" - {models[0]}" if len(models) == 1 else "")
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = ["rule", "budget", *(["model"] if len(models) > 1 else []), "artifact", "device/threads",
               "measured", "limit", "margin", "verdict"]
    for col in columns:
        right = col in ("measured", "limit", "margin")
        table.add_column(col, justify="right" if right else "left", no_wrap=right or col == "verdict",
                         overflow="fold")
    style = {"pass": "green", "fail": "bold red", "skip": "yellow", "inconclusive": "bold yellow"}
    for c in result.checks:
        where = "-" if c.device is None else f"{c.device}/{c.threads}" + (" no-xnnpack" if c.xnnpack is False else "")
        verdict = c.verdict.upper()
        row = [c.rule, c.budget, *([c.model] if len(models) > 1 else []), c.artifact, where,
               describe_measured(c), describe_limit(c), format_margin(c),
               f"[{style[c.verdict]}]{verdict}[/]"]
        table.add_row(*row)
    return table


def check_notes(result: GateResult) -> list[str]:
    """Lines to print under the table: why each check failed, skip reasons, inconclusive comparisons, notes."""
    lines = [f"FAIL {c.model} {failure_message(c)}" for c in result.failed]
    lines += [f"{c.verdict}: {c.model} {c.case_name}: {c.note}" for c in result.checks if c.note]
    lines += [f"{c.model} {c.case_name}: with this noise, detects slowdowns above "
              f"{100 * c.details['min_detectable_slowdown']:.0f} % (max_slowdown "
              f"{100 * c.details['max_slowdown']:.0f} %)"
              for c in result.checks if c.kind == "regression" and "min_detectable_slowdown" in c.details]
    lines += load_notes([c.to_dict() for c in result.failed])
    return lines + [f"note: {n}" for n in result.notes]


def load_notes(checks: list[dict[str, Any]]) -> list[str]:
    """For failed latency checks measured while the machine was loaded: say so, and how to re-measure. A busy
    machine inflates latencies, and `mnetdeploy run` reuses its cached benchmark until told otherwise, so
    without this line a rerun fails identically with nothing pointing at the cause."""
    lines = []
    for c in checks:
        loaded = [w for w in (c.get("details") or {}).get("warnings") or [] if "load average" in str(w)]
        if c.get("kind") != "latency" or c.get("verdict") != "fail" or not loaded:
            continue
        model = Path(str(c["details"].get("directory") or ".")) / str(c.get("artifact"))
        threads = f" --threads {c['threads']}" if c.get("threads") else ""
        lines.append(f"note: {c.get('artifact')} {c.get('budget')} was measured on a loaded machine ({loaded[0]}); "
                     f"re-measure when it is quieter: `mnetdeploy bench {model}{threads}` then `mnetdeploy report "
                     f"{model.parent}` (`mnetdeploy run` reuses its cached benchmark unless given --force)")
    return list(dict.fromkeys(lines))


def junit_xml(result: GateResult) -> bytes:
    """One <testcase> per check (classname = model name, name = "artifact device threads=N: budget")."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    attrs = {"name": "mnetdeploy gate", "tests": str(len(result.checks)), "failures": str(len(result.failed)),
             "errors": "0", "skipped": str(sum(c.verdict in ("skip", "inconclusive") and c not in result.failed
                                               for c in result.checks)), "time": "0"}
    suites = ET.Element("testsuites", attrs)
    suite = ET.SubElement(suites, "testsuite", dict(attrs, timestamp=stamp, hostname=platform.node()))
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="budgets", value=result.budgets)
    for path in result.reports:
        ET.SubElement(props, "property", name="report", value=path)
    for path in result.baselines:
        ET.SubElement(props, "property", name="baseline", value=path)
    used: dict[tuple[str, str], int] = {}
    for c in result.checks:
        name = c.case_name
        count = used.get((c.model, name), 0)
        used[(c.model, name)] = count + 1
        if count:  # the same measurement checked by two rules: keep JUnit names unique
            name = f"{name} [{c.rule}]" if count == 1 else f"{name} [{c.rule} #{count}]"
        case = ET.SubElement(suite, "testcase", classname=c.model, name=name, time="0")
        props = ET.SubElement(case, "properties")
        values = {"rule": c.rule, "budget": c.budget, "measured": c.measured, "limit": c.limit, "unit": c.unit,
                  "margin": c.margin, "margin_pct": c.margin_pct}
        if c.kind == "regression":
            values.update({k: c.details.get(k) for k in ("ci_low", "ci_high", "confidence", "candidate_samples",
                                                           "baseline_samples", "min_detectable_slowdown")})
        for key, value in values.items():
            if value is not None:
                ET.SubElement(props, "property", name=key, value=_xml_number(value))
        if c in result.failed and c.verdict == "inconclusive":  # on_inconclusive: fail
            ET.SubElement(case, "failure", message=f"inconclusive: {c.note}", type=c.kind).text = c.note
        elif c.verdict == "fail":
            message = failure_message(c)
            ET.SubElement(case, "failure", message=message, type=c.kind).text = message
        elif c.verdict == "inconclusive":
            ET.SubElement(case, "skipped", message=f"inconclusive: {c.note}")
        elif c.verdict == "skip":
            ET.SubElement(case, "skipped", message=c.note or "skipped")
        elif c.note:
            ET.SubElement(case, "system-out").text = c.note
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


def _xml_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.0f}"
    return str(value)




def store_gate_results(result: GateResult) -> list[Path]:
    """Keep, in each gated report's artifact directory, that model's part of the verdict (results/gate.json):
    the report shows it, because a report that hides whether its numbers passed the budgets hides what
    matters. Reports outside an artifact directory keep nothing."""
    from mnetdeploy.artifacts import SUMMARY
    from mnetdeploy.records import GateRecord
    from mnetdeploy.report.collect import load_report
    from mnetdeploy.results import RESULTS_DIR

    written = []
    for path in result.reports:
        data = load_report(_report_file(path, "report"))
        directory = Path(str(data.get("artifact_dir") or Path(path).parent))
        if not (directory / SUMMARY).is_file():
            continue
        mine = GateResult([c for c in result.checks if c.model == data.get("name")], [path], result.budgets,
                          result.baselines, result.notes, result.on_inconclusive)
        record = dict(mine.to_dict(), summary=mine.summary(), report_generated=data.get("generated"),
                      gated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      failures=[f"{c.case_name}: {failure_message(c) if c.verdict == 'fail' else c.note}"
                                for c in mine.failed] + load_notes([c.to_dict() for c in mine.failed]))
        target = GateRecord.model_validate(record).save(directory / RESULTS_DIR / GateRecord.FILE)
        written.append(target)
    return written


def write_junit(path: str | Path, result: GateResult) -> None:
    from mnetdeploy.fsutil import write_bytes

    write_bytes(path, junit_xml(result))


__all__ = ["gate", "check_reports", "compare_latency", "Check", "GateResult", "Report", "results_table", "junit_xml",
           "write_junit", "check_notes", "fp32_reference", "load_notes", "store_gate_results"]
