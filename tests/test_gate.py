"""`mnetdeploy gate`: budgets, JUnit/JSON output, one-line errors, and the regression rule's flake behaviour.

One small real MobileNet (v2 0.35 at 96x96) is built and exported to fp32 TFLite once per module and
benchmarked for real (the result's schema and environment are real). Its latency SAMPLES are then replaced by
seeded SYNTHETIC ones shaped like a noisy shared 2-core VM (`synthetic`): no verdict asserted here depends on
how fast or how busy the machine running the tests is. The timed flake measurement (20 real reruns) is
scripts/gate_flake_test.py, which prints numbers instead of asserting. Accuracy records are FABRICATED
(clearly marked below): the gate only reads their numbers, and a real eval needs a pretrained model and
labelled images, which test_eval covers.
"""

from __future__ import annotations

import copy
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mnetdeploy.bench import run_benchmark
from mnetdeploy.bench.stats import summarize
from mnetdeploy.budgets import Budgets, load_budgets, parse_budgets, parse_size
from mnetdeploy.cli import cli
from mnetdeploy.errors import ConfigError, UserError
from mnetdeploy.fsutil import write_json
from mnetdeploy.gate import Report, check_reports
from mnetdeploy.report.collect import build_report
from mnetdeploy.results import store_results

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Small real runs: ~0.7 s each on the 2-core development machine, 300-1000 samples of ~0.5 ms. 0.5 s is the
# default regression.min_seconds: shorter runs are refused because one burst of a neighbour's work can move
# their median (measured: see the mnetdeploy/gate.py docstring).
BENCH = {"threads": 1, "warmup": 5, "runs": 30, "min_seconds": 0.5}
RERUNS = 20
SAMPLES = 600


def synthetic(result: dict, seed: int, factor: float = 1.0, cv: float = 0.05) -> dict:
    """`result` with SYNTHETIC samples (seeded): a noisy VM's run of a ~0.5 ms model. Lognormal jitter (cv),
    a slow drift of +-2 %, and 2 % of samples hit by a neighbour's burst (1.5-3x). `factor` scales all."""
    rng = np.random.default_rng(seed)
    x = 0.5 * rng.lognormal(0.0, cv, SAMPLES)
    x *= 1 + 0.02 * np.sin(np.linspace(0, 3, SAMPLES) + rng.uniform(0, 6))
    hit = rng.random(SAMPLES) < 0.02
    x[hit] *= rng.uniform(1.5, 3.0, int(hit.sum()))
    samples = [round(float(v) * factor, 6) for v in x]
    return dict(result, samples_ms=samples, latency_ms=vars(summarize(samples)), runs=SAMPLES,
                measured_seconds=max(float(result["measured_seconds"]), 0.5))
slow = pytest.mark.slow  # builds, converts and benchmarks a real model (about 20 s once per module)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """An artifact directory with model.keras, model_fp32.tflite, a real bench result and report.json."""
    import keras
    import tensorflow as tf

    from mnetdeploy.build import build
    from mnetdeploy.config import load_config

    out = tmp_path_factory.mktemp("gate")
    result = build(load_config(None, {"model.arch": "v2", "model.alpha": 0.35, "model.resolution": 96,
                                      "output": str(out)}))
    directory = result.artifact_dir
    model = keras.saving.load_model(directory / "model.keras")
    (directory / "model_fp32.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    real = run_benchmark(directory / "model_fp32.tflite", **BENCH).to_dict()
    assert real["runs"] >= BENCH["runs"] and real["environment"]["cpu_features"]["arch"]
    store_results("bench", [synthetic(real, seed=0)])
    write_json(directory / "report.json", build_report(directory))
    return directory


@pytest.fixture(scope="module")
def report(model_dir) -> dict:
    return json.loads((model_dir / "report.json").read_text())


def gate(*args: str):
    return CliRunner().invoke(cli, ["gate", *map(str, args)], catch_exceptions=False)


def budgets_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "budgets.yaml"
    path.write_text(text)
    return path


def p50(report: dict) -> float:
    (result,) = [r for r in report["latency"] if r["model"] == "model_fp32.tflite"]
    return result["latency_ms"]["p50"]


def one_line_error(result, exit_code: int = 2) -> str:
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# --------------------------------------------------------------------------------------- absolute budgets

@slow
def test_latency_budget_above_the_measurement_passes_and_below_fails(model_dir, report, tmp_path):
    measured = p50(report)
    ok = budgets_file(tmp_path, f"rules:\n  - artifact: model_fp32.tflite\n    max_p50_ms: {measured * 1.5:.6f}\n")
    passed = gate(model_dir / "report.json", "--budgets", ok)
    assert passed.exit_code == 0, passed.output
    assert "PASS" in passed.stdout and "FAIL" not in passed.stdout
    assert "gate PASS: 1 checks, 1 passed, 0 failed" in passed.stdout

    tight = budgets_file(tmp_path, f"rules:\n  - name: too tight\n    artifact: model_fp32.tflite\n"
                                   f"    threads: 1\n    max_p50_ms: {measured * 0.5:.6f}\n")
    failed = gate(model_dir, "--budgets", tight)  # the artifact directory works as well as report.json
    assert failed.exit_code == 1, failed.output
    assert "FAIL" in failed.stdout and "too tight" in failed.stdout
    assert "gate FAIL: 1 checks, 0 passed, 1 failed" in failed.stdout


def test_size_units_are_exact():
    assert parse_size(1000) == 1000
    assert parse_size("10B") == 10 and parse_size("10") == 10
    assert parse_size("512KB") == 512_000 and parse_size("512kB") == 512_000
    assert parse_size("1.5MB") == 1_500_000
    assert parse_size("2MiB") == 2 * 1024 * 1024
    assert parse_size("1KiB") == 1024 and parse_size("1 GiB") == 1024**3 and parse_size("2GB") == 2 * 10**9
    for bad in ("3mb", "3Mb", "1.5", "MB", "-1MB", "0KB", True, 2.5, [1]):
        with pytest.raises(ValueError):
            parse_size(bad)


@slow
def test_size_budget_with_decimal_and_binary_units(model_dir, report, tmp_path):
    size = next(a["bytes"] for a in report["artifacts"] if a["file"] == "model_fp32.tflite")
    k = (size - 1) // 1000  # k KB < size <= k KiB: the same number passes in KiB and fails in KB
    assert k * 1000 < size <= k * 1024
    rules = (f"rules:\n  - name: binary\n    artifact: model_fp32.tflite\n    max_size: {k}KiB\n"
             f"  - name: decimal\n    artifact: model_fp32.tflite\n    max_size: {k}KB\n"
             f"  - name: exact\n    artifact: model_fp32.tflite\n    max_size: {size}\n")
    result = gate(model_dir / "report.json", "--budgets", budgets_file(tmp_path, rules), "--json")
    assert result.exit_code == 1, result.output
    verdicts = {c["rule"]: (c["verdict"], c["measured"], c["limit"]) for c in json.loads(result.stdout)["checks"]}
    assert verdicts == {"binary": ("pass", size, k * 1024), "decimal": ("fail", size, k * 1000),
                        "exact": ("pass", size, size)}


def eval_record(model: str, fmt: str, precision: str, top1: float, data_hash: str = "d" * 64) -> dict:
    """FABRICATED eval result (shape of EvalResult.to_dict()): the gate only reads the numbers."""
    from mnetdeploy.evaluate import EvalResult

    return EvalResult(model=model, format=fmt, precision=precision, n=400, top1=top1, top5=top1 + 15.0,
                      agreement_top1=None, cosine=None, reference=fmt == "keras", outputs=1000, label_offset=0,
                      resolution=96, data={"dir": "fabricated-for-test", "count": 400, "hash": data_hash},
                      seconds=0.0).to_dict()


@pytest.fixture
def eval_dir(model_dir, tmp_path) -> Path:
    """A copy of the model directory plus a real dynamic-range int8 TFLite export, with FABRICATED eval results
    stored where `mnetdeploy run` stores them (results/eval.json)."""
    import keras
    import tensorflow as tf

    directory = tmp_path / model_dir.name
    shutil.copytree(model_dir, directory)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.saving.load_model(directory / "model.keras"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative data: dynamic-range int8 weights
    (directory / "model_dynamic.tflite").write_bytes(converter.convert())
    store_results("eval", [eval_record(str(directory / "model.keras"), "keras", "fp32", 70.0),
                           eval_record(str(directory / "model_fp32.tflite"), "tflite", "fp32", 69.75),
                           eval_record(str(directory / "model_dynamic.tflite"), "tflite", "dynamic", 68.5)])
    write_json(directory / "report.json", build_report(directory))
    return directory


@slow
def test_accuracy_budgets_against_the_fp32_reference(eval_dir, tmp_path):
    rules = ("rules:\n"
             "  - {name: drop ok, precision: dynamic, max_accuracy_drop: 2.0}\n"
             "  - {name: drop too big, artifact: '*.tflite', max_accuracy_drop: 1.0}\n"
             "  - {name: top1 ok, artifact: '*', min_top1: 60}\n"
             "  - {name: top1 low, artifact: model_dynamic.tflite, min_top1: 69}\n")
    result = gate(eval_dir, "--budgets", budgets_file(tmp_path, rules), "--json")
    assert result.exit_code == 1, result.output
    checks = json.loads(result.stdout)["checks"]
    by_rule = {}
    for c in checks:
        by_rule.setdefault(c["rule"], []).append(c)
    (ok,) = by_rule["drop ok"]
    assert (ok["artifact"], ok["verdict"], ok["unit"]) == ("model_dynamic.tflite", "pass", "points")
    assert ok["measured"] == pytest.approx(1.5) and ok["margin"] == pytest.approx(0.5)
    assert ok["details"]["reference"] == "model.keras" and ok["details"]["reference_top1"] == 70.0
    too_big = {c["artifact"]: (c["verdict"], round(c["measured"], 3)) for c in by_rule["drop too big"]}
    assert too_big == {"model_dynamic.tflite": ("fail", 1.5), "model_fp32.tflite": ("pass", 0.25)}
    assert sorted((c["artifact"], c["verdict"]) for c in by_rule["top1 ok"]) == [
        ("model.keras", "pass"), ("model_dynamic.tflite", "pass"), ("model_fp32.tflite", "pass")]
    (low,) = by_rule["top1 low"]
    assert low["verdict"] == "fail" and low["margin"] == pytest.approx(-0.5)


@slow
def test_accuracy_drop_needs_a_reference_on_the_same_images(eval_dir, tmp_path):
    # the int8 model evaluated on other images too (FABRICATED record): no fp32 reference there -> exit 2
    store_results("eval", [eval_record(str(eval_dir / "model_dynamic.tflite"), "tflite", "dynamic", 50.0, "e" * 64)])
    write_json(eval_dir / "report.json", build_report(eval_dir))
    rules = "rules:\n  - {artifact: model_dynamic.tflite, max_accuracy_drop: 2.0}\n"
    line = one_line_error(gate(eval_dir, "--budgets", budgets_file(tmp_path, rules)))
    assert "fp32 reference" in line and "mnetdeploy eval" in line and "model_dynamic.tflite" in line
    # selecting only the reference itself checks nothing: an error, not a silent pass
    rules = "rules:\n  - {name: self, artifact: model.keras, max_accuracy_drop: 2.0}\n"
    line = one_line_error(gate(eval_dir, "--budgets", budgets_file(tmp_path, rules)))
    assert "rule 'self'" in line and "only the fp32 reference" in line


# ------------------------------------------------------------------------------------------ outputs

@slow
def test_junit_xml_has_one_case_per_check_and_parses(model_dir, report, tmp_path):
    measured = p50(report)
    rules = (f"rules:\n  - name: latency\n    artifact: model_fp32.tflite\n"
             f"    max_p50_ms: {measured * 0.5:.6f}\n    max_p90_ms: 1000\n"
             f"  - name: size\n    artifact: '*.tflite'\n    max_size: 1GB\n")
    (tmp_path / "out").mkdir()
    junit = tmp_path / "out" / "gate.xml"
    result = gate(model_dir, "--budgets", budgets_file(tmp_path, rules), "--junit", junit)
    assert result.exit_code == 1, result.output
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and (root.get("tests"), root.get("failures")) == ("3", "1")
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {"model_fp32.tflite host threads=1: max_p50_ms",
                          "model_fp32.tflite host threads=1: max_p90_ms", "model_fp32.tflite: max_size"}
    assert {c.get("classname") for c in cases.values()} == {report["name"]}
    failing = cases["model_fp32.tflite host threads=1: max_p50_ms"]
    (failure,) = failing.findall("failure")
    assert "max_p50_ms" in failure.get("message") and "over the limit" in failure.get("message")
    props = {p.get("name"): p.get("value") for p in failing.iter("property")}
    assert float(props["measured"]) == pytest.approx(measured, rel=1e-5)
    assert float(props["limit"]) == pytest.approx(measured * 0.5, rel=1e-5)
    assert not cases["model_fp32.tflite: max_size"].findall("failure")
    assert not list(junit.parent.glob(".*tmp*"))  # written atomically: no temporary left behind


@slow
def test_json_lists_every_check_with_its_numbers(model_dir, report, tmp_path):
    measured = p50(report)
    rules = f"rules:\n  - artifact: model_fp32.tflite\n    max_p50_ms: {measured * 2:.6f}\n"
    result = gate(model_dir, "--budgets", budgets_file(tmp_path, rules), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["verdict"] == "pass" and out["counts"] == {"pass": 1, "fail": 0, "skip": 0, "inconclusive": 0}
    (check,) = out["checks"]
    assert check["measured"] == pytest.approx(measured) and check["limit"] == pytest.approx(measured * 2, rel=1e-5)
    assert check["margin"] == pytest.approx(measured, rel=1e-4) and check["margin_pct"] == pytest.approx(50, rel=1e-3)
    assert (check["model"], check["device"], check["threads"], check["runtime"]) == (
        report["name"], "host", 1, "litert")
    assert check["name"] == "model_fp32.tflite host threads=1: max_p50_ms" and check["rule"] == "rule 1"


# ------------------------------------------------------------------------------------------- errors

@slow
@pytest.mark.parametrize("text, expected", [
    ("rules:\n  - artifact: model_fp32.tflite\n    max_p50ms: 3\n",
     ":3: unknown key 'rules[0].max_p50ms'; did you mean 'max_p50_ms'?"),
    ("regression:\n  confidance: 0.9\n", ":2: unknown key 'regression.confidance'; did you mean 'confidence'?"),
    ("rules:\n  - {artifact: x, max_size: 3mb}\n", ":2: rules[0].max_size: unknown size unit 'mb'"),
    ("rules:\n  - {artifact: model_fp32.tflite}\n", "sets no limit"),
    ("rules:\n  - artifact: a\n    artifact: b\n    max_size: 1\n", ":3: duplicate key 'artifact'"),
    ("rules:\n  - name: gone\n    artifact: model_int8.tflite\n    max_size: 4MB\n",
     ":2: rule 'gone': selects nothing in v2_0.35_96: no artifact matches artifact 'model_int8.tflite'"),
    ("rules:\n  - {model: 'v3*', max_size: 1MB}\n", ":2: rule 1: selects nothing: model 'v3*' matches no report"),
    ("rules:\n  - {artifact: model_fp32.tflite, threads: 4, max_p50_ms: 3}\n",
     "needs the latency of model_fp32.tflite (device host, threads 4)"),
    ("rules:\n  - {artifact: model_fp32.tflite, device: pixel7, max_p90_ms: 3}\n",
     ":2: rules[0].device: unknown device 'pixel7'; use host, android, android:SERIAL"),
    ("rules:\n  - {artifact: model_fp32.tflite, device: android, max_p50_ms: 3}\n",
     "--device android --benchmark-binary ./android_aarch64_benchmark_model` then `mnetdeploy report"),
    ("rules:\n  - {artifact: model_fp32.tflite, device: 'android:a;b', max_p50_ms: 3}\n",
     "--device 'android:a;b' --benchmark-binary"),
    ("rules:\n  - {artifact: model_fp32.tflite, device: 'android:10.0.0.*', max_p50_ms: 3}\n",
     "--device android:SERIAL --benchmark-binary"),
    ("rules:\n  - {artifact: model_fp32.tflite, device: android, runtime: litert, max_p50_ms: 3}\n",
     "Android results come from benchmark_model; use runtime: benchmark_model"),
    ("rules:\n  - {artifact: model_fp32.tflite, min_top1: 50}\n", "needs the accuracy of model_fp32.tflite"),
    ("rules:\n  - {artifact: model.keras, max_p50_ms: 3}\n", "which `mnetdeploy bench` cannot time"),
])
def test_bad_budgets_are_one_line_errors_with_exit_2(model_dir, tmp_path, text, expected):
    junit = tmp_path / "gate.xml"
    line = one_line_error(gate(model_dir, "--budgets", budgets_file(tmp_path, text), "--junit", junit))
    assert expected in line, line
    assert not junit.exists()  # bad input: nothing written


@slow
def test_missing_files_are_one_line_errors(model_dir, tmp_path):
    ok = budgets_file(tmp_path, "rules:\n  - {max_size: 1GB}\n")
    assert "no such file" in one_line_error(gate(tmp_path / "nope.json", "--budgets", ok))
    assert "pass one made by `mnetdeploy build`/`mnetdeploy run`" in one_line_error(gate(tmp_path, "--budgets", ok))
    assert "budgets file not found" in one_line_error(gate(model_dir, "--budgets", tmp_path / "nope.yaml"))
    assert "no such file" in one_line_error(gate(model_dir, "--budgets", ok, "--baseline", tmp_path / "b.json"))


# --------------------------------------------------------------------------------- regression (baseline)

def with_latency(report: dict, result: dict) -> dict:
    """The report with its one latency result replaced (as if `bench` + `report` had run again)."""
    return dict(copy.deepcopy(report), latency=[dict(result, model="model_fp32.tflite")])


def scaled(result: dict, factor: float) -> dict:
    """A real result with every sample multiplied by `factor`: an injected slowdown of exactly that size."""
    samples = [x * factor for x in result["samples_ms"]]
    return dict(result, samples_ms=samples, latency_ms=vars(summarize(samples)))


def regression_check(candidate: dict, baseline: dict, **regression):
    budgets = Budgets.model_validate({"regression": regression})
    result = check_reports([Report("candidate", candidate)], budgets, [Report("baseline", baseline)])
    (check,) = result.checks
    return check


@slow
def test_identical_reruns_pass_20_of_20_and_injected_slowdowns(report):
    """SYNTHETIC reruns (seeded, independent draws from the baseline's distribution): 20 identical reruns
    pass the default rule (max_slowdown 0.10, 95 % interval); each of them slowed by 30 % fails; a real 2 %
    change passes. The same measurement on real timings is scripts/gate_flake_test.py."""
    (baseline_result,) = report["latency"]
    reruns = [synthetic(baseline_result, seed=100 + i) for i in range(RERUNS)]

    checks = [regression_check(with_latency(report, r), report) for r in reruns]
    table = "\n".join(f"ratio {c.measured:.3f} CI [{c.details['ci_low']:.3f}, {c.details['ci_high']:.3f}] "
                      f"{c.verdict}" for c in checks)
    assert [c.verdict for c in checks] == ["pass"] * RERUNS, table
    assert all(c.details["ci_low"] <= c.measured <= c.details["ci_high"] for c in checks)
    assert all(c.details["blocks"] == 20 and c.details["confidence"] == 0.95 for c in checks)
    assert all(0.97 < c.measured < 1.03 for c in checks), table

    slower = [regression_check(with_latency(report, scaled(r, 1.30)), report) for r in reruns]
    assert [c.verdict for c in slower] == ["fail"] * RERUNS, [round(c.details["ci_low"], 3) for c in slower]
    # A real 2 % change, isolated from run-level noise: below max_slowdown, so it passes.
    wobble = regression_check(with_latency(report, scaled(baseline_result, 1.02)), report)
    assert wobble.measured == pytest.approx(1.02)
    assert wobble.verdict == "pass" and wobble.details["ci_high"] <= 1.10


@slow
def test_baseline_on_the_command_line(model_dir, report, tmp_path):
    rules = budgets_file(tmp_path, "rules:\n  - {artifact: '*.tflite', max_size: 1GB}\nregression:\n"
                                   "  max_slowdown: 0.10\n")
    same = gate(model_dir, "--budgets", rules, "--baseline", model_dir / "report.json")
    assert same.exit_code == 0, same.output
    assert "max_slowdown" in same.stdout and "1.000" in same.stdout

    (real,) = report["latency"]
    slow_report = tmp_path / "slow" / "report.json"
    write_json(slow_report, with_latency(report, scaled(real, 1.30)))
    junit = tmp_path / "gate.xml"
    result = gate(slow_report, "--budgets", rules, "--baseline", model_dir, "--junit", junit, "--json")
    assert result.exit_code == 1, result.output
    regression = [c for c in json.loads(result.stdout)["checks"] if c["kind"] == "regression"]
    (check,) = regression
    assert check["verdict"] == "fail" and check["measured"] == pytest.approx(1.30)
    assert check["details"]["ci_low"] > 1.10 and check["limit"] == pytest.approx(1.10)
    assert check["name"] == "model_fp32.tflite host threads=1: max_slowdown"
    (failure,) = ET.parse(junit).getroot().iter("failure")
    assert "ratio 1.300" in failure.get("message") and "entirely above 1.100" in failure.get("message")
    assert "gate FAIL" in result.stderr


@slow
def test_near_the_limit_is_inconclusive_clearly_under_passes_clearly_over_fails(report):
    (real,) = report["latency"]
    for factor in (1.1001, 1.0999):
        near = regression_check(with_latency(report, scaled(real, factor)), report)
        assert near.verdict == "inconclusive", (factor, near.details)
        assert near.details["ci_low"] <= 1.10 < near.details["ci_high"]
        assert "straddles the limit" in near.note and "detects only slowdowns above" in near.note
    under = regression_check(with_latency(report, scaled(real, 1.02)), report)
    assert under.verdict == "pass" and under.details["ci_high"] <= 1.10 and under.note is None
    # What this (synthetic, quiet) data can detect: a bit above max_slowdown, and exactly the documented formula.
    mds = under.details["min_detectable_slowdown"]
    assert 0.10 < mds < 0.15
    assert mds == pytest.approx(1.10 * under.details["ratio"] / under.details["ci_low"] - 1)


@slow
def test_a_30_percent_slowdown_on_a_noisy_runner_is_inconclusive_never_passed(report, model_dir, tmp_path):
    """SYNTHETIC noisy runs (cv 30 %) whose baseline was slowed by a neighbour for two thirds of its run: the
    30 % slowdown hides (measured ratio 1.07, interval [0.96, 1.20]). Before, such a comparison PASSED; now it
    is INCONCLUSIVE with exit 3, or as the budgets' on_inconclusive says."""
    (real,) = report["latency"]
    noisy_base = synthetic(real, seed=7, cv=0.30)
    noisy_slow = synthetic(real, seed=8, factor=1.30, cv=0.30)
    samples = noisy_base["samples_ms"]
    samples[100:500] = [x * 1.4 for x in samples[100:500]]
    noisy_base.update(latency_ms=vars(summarize(samples)))
    baseline_file, candidate_file = tmp_path / "base" / "report.json", tmp_path / "cand" / "report.json"
    write_json(baseline_file, with_latency(report, noisy_base))
    write_json(candidate_file, with_latency(report, noisy_slow))
    check = regression_check(with_latency(report, noisy_slow), with_latency(report, noisy_base))
    assert check.verdict == "inconclusive", check.details
    assert check.details["min_detectable_slowdown"] > 0.2

    policies = {"inconclusive": 3, "warn": 0, "fail": 1}
    for policy, code in policies.items():
        rules = budgets_file(tmp_path, f"regression:\n  max_slowdown: 0.10\n  on_inconclusive: {policy}\n")
        junit = tmp_path / f"{policy}.xml"
        result = gate(candidate_file, "--budgets", rules, "--baseline", baseline_file, "--junit", junit, "--json")
        assert result.exit_code == code, (policy, result.output)
        data = json.loads(result.stdout)
        (c,) = [c for c in data["checks"] if c["kind"] == "regression"]
        assert c["verdict"] == "inconclusive" and c["details"]["min_detectable_slowdown"] > 0.2
        assert data["verdict"] == {"inconclusive": "inconclusive", "warn": "pass", "fail": "fail"}[policy]
        root = ET.parse(junit).getroot()
        if policy == "fail":
            (failure,) = root.iter("failure")
            assert failure.get("message").startswith("inconclusive:")
        else:
            assert any(s.get("message", "").startswith("inconclusive:") for s in root.iter("skipped"))
    text = gate(candidate_file, "--budgets", rules, "--baseline", baseline_file)
    assert "INCONCLUSIVE" in text.stdout and "with this noise, detects slowdowns above 2" in text.stdout


@slow
def test_baseline_from_another_cpu_is_skipped_visibly(report, tmp_path):
    (real,) = report["latency"]
    elsewhere = dict(real, environment=dict(real["environment"], cpu_model="Some Other CPU @ 2.0GHz"))
    baseline = with_latency(report, scaled(elsewhere, 0.5))  # "2x faster" on another machine
    check = regression_check(report, baseline)
    assert check.verdict == "skip" and "another CPU" in check.note
    compared = regression_check(report, baseline, same_cpu=False)
    assert compared.verdict == "fail" and compared.measured == pytest.approx(2.0)


@slow
def test_too_few_samples_too_short_and_no_shared_result_are_bad_input(report):
    (real,) = report["latency"]
    few = dict(real, samples_ms=real["samples_ms"][:12])
    budgets = Budgets.model_validate({})
    with pytest.raises(UserError, match="12 samples, fewer than regression.min_samples 30"):
        check_reports([Report("candidate", with_latency(report, few))], budgets, [Report("baseline", report)])
    short = dict(real, measured_seconds=0.2)
    with pytest.raises(UserError, match="measured for 0.2 s, less than regression.min_seconds 0.5"):
        check_reports([Report("candidate", with_latency(report, short))], budgets, [Report("baseline", report)])
    other = with_latency(report, dict(real, threads=2))
    with pytest.raises(UserError, match="shares no latency result"):
        check_reports([Report("candidate", other)], budgets, [Report("baseline", report)])


DEVICES = {"host": "litert", "android:192.168.1.7:5555": "benchmark_model", "android:R58M123ABC": "benchmark_model",
           "adb-linux:emulator-5554": "litert", "ssh://root@board.local:2222": "litert",
           "ssh://pi@other.local": "litert"}


@slow
def test_device_selectors_choose_device_results(report):
    (real,) = report["latency"]
    # the real result, as if `bench` had also run on these devices (labels as mnetdeploy writes them)
    measured = dict(copy.deepcopy(report), latency=[
        dict(real, device=device, runtime=runtime, latency_ms=dict(real["latency_ms"], p90=None))
        for device, runtime in DEVICES.items()])
    expected = {
        "android": {"android:192.168.1.7:5555", "android:R58M123ABC"},
        "android:R58M123ABC": {"android:R58M123ABC"},
        "android:192.168.1.*": {"android:192.168.1.7:5555"},
        "adb-linux": {"adb-linux:emulator-5554"},
        "ssh://board.local": {"ssh://root@board.local:2222"},
        "ssh://root@board.local:2222": {"ssh://root@board.local:2222"},
        "ssh://*": {"ssh://root@board.local:2222", "ssh://pi@other.local"},
        "host": {"host"},
    }
    for selector, devices in expected.items():
        budgets = parse_budgets(f"rules:\n  - artifact: model_fp32.tflite\n    device: '{selector}'\n"
                                f"    max_p50_ms: {p50(report) * 2}\n")
        checks = check_reports([Report("r", measured)], budgets).checks
        assert {c.device for c in checks} == devices, selector
        assert all(c.verdict == "pass" for c in checks)
    runtime = parse_budgets("rules:\n  - {artifact: model_fp32.tflite, device: '*', runtime: benchmark_model, "
                            "max_p50_ms: 1000}\n")
    assert {c.device for c in check_reports([Report("r", measured)], runtime).checks} == \
        {"android:192.168.1.7:5555", "android:R58M123ABC"}


# ---------------------------------------------------------------------- block bootstrap (bench/stats.py)

@pytest.mark.parametrize("n", [301, 300])
def test_block_bootstrap_medians_equal_the_naive_computation(n):
    from mnetdeploy.bench.stats import _block_bootstrap_medians

    x = np.random.default_rng(3).lognormal(0, 0.3, n)
    fast = _block_bootstrap_medians(x, np.random.default_rng(11), 40, blocks=7)
    # The obvious way, from the same random starts: 7 blocks of ceil(n/7) consecutive samples, cut to n.
    length = -(-n // 7)
    starts = np.random.default_rng(11).integers(0, n - length + 1, size=(40, -(-n // length)))
    naive = [np.median(np.concatenate([x[s:s + length] for s in row])[:n]) for row in starts]
    np.testing.assert_allclose(fast, naive)


def test_block_interval_widens_for_a_run_with_a_slow_stretch_only():
    """SYNTHETIC series (the property, not a measurement): a steady run keeps about the iid width; a run whose
    middle third is 25 % slower (a neighbour's burst) gets a much wider interval, so it cannot fail alone."""
    from mnetdeploy.bench.stats import median_ratio_ci

    rng = np.random.default_rng(0)
    steady, other = rng.lognormal(0, 0.05, 900), rng.lognormal(0, 0.05, 900)
    burst = other.copy()
    burst[300:600] *= 1.25
    width = lambda ci: ci.high - ci.low  # noqa: E731
    iid, blocked = median_ratio_ci(other, steady), median_ratio_ci(other, steady, blocks=20)
    assert width(blocked) < 2.5 * width(iid)
    iid, blocked = median_ratio_ci(burst, steady), median_ratio_ci(burst, steady, blocks=20)
    assert width(blocked) > 3 * width(iid) and blocked.blocks == 20 and iid.blocks is None
    with pytest.raises(ValueError, match="blocks"):
        median_ratio_ci(steady, other, blocks=1)


# ---------------------------------------------------------------------------------- shipped example

def test_shipped_budgets_example_is_valid_and_covers_the_four_exports():
    budgets = load_budgets(PROJECT_ROOT / "configs" / "budgets.yaml")
    files = ("model_fp32.tflite", "model_int8.tflite", "model_fp32.onnx", "model_int8.onnx")
    import fnmatch

    for name in files:
        assert any(fnmatch.fnmatchcase(name, r.artifact) and r.max_p50_ms for r in budgets.rules), name
        assert any(fnmatch.fnmatchcase(name, r.artifact) and r.max_size for r in budgets.rules), name
    assert all(r.line for r in budgets.rules)
    assert 0 < budgets.regression.max_slowdown < 1 and budgets.regression.confidence == 0.95


def test_rule_lines_and_defaults():
    budgets = parse_budgets("# header\nrules:\n  - max_size: 1MB\n\n  - name: second\n    max_p50_ms: 2\n", "b.yaml")
    assert [r.line for r in budgets.rules] == [3, 5]
    assert budgets.where(budgets.rules[1]) == "b.yaml:5: rule 'second'"
    assert (budgets.rules[0].model, budgets.rules[0].artifact, budgets.rules[0].device) == ("*", "*", "host")
    with pytest.raises(ConfigError, match="empty budgets file"):
        parse_budgets("", "b.yaml")


# ------------------------------------------------------------------------------- demo and loaded machines

def test_demo_budgets_hold_no_machine_specific_latency_and_cover_the_four_exports():
    """`make demo` must pass on any ordinary machine: its budgets may not hold absolute latencies."""
    import fnmatch

    assert "--budgets configs/budgets_demo.yaml" in (PROJECT_ROOT / "Makefile").read_text()
    budgets = load_budgets(PROJECT_ROOT / "configs" / "budgets_demo.yaml")
    assert budgets.rules and not any(r.max_p50_ms or r.max_p90_ms for r in budgets.rules)
    for name in ("model_fp32.tflite", "model_int8.tflite", "model_fp32.onnx", "model_int8.onnx"):
        assert any(fnmatch.fnmatchcase(name, r.artifact) and r.max_size for r in budgets.rules), name


def _loaded_report(directory: Path, warnings: list[str]) -> Report:
    """A FABRICATED report (no model needed): one int8 TFLite result with p90 27.7 ms, as on the busy 2-core
    machine of the issue."""
    return Report(str(directory / "report.json"), {
        "name": "v2_1.0_224", "artifact_dir": str(directory),
        "artifacts": [{"file": "model_int8.tflite", "format": "tflite", "precision": "int8", "bytes": 3993920}],
        "latency": [{"model": "model_int8.tflite", "device": "host", "threads": 1, "runtime": "litert",
                     "xnnpack": True, "latency_ms": {"p50": 14.2, "p90": 27.7}, "warnings": warnings}]})


def test_a_latency_failure_on_a_loaded_machine_says_so_and_how_to_re_measure(tmp_path):
    from mnetdeploy.gate import check_notes

    load = ("load average 3.41 over the last minute on 2 CPU(s): other processes compete for the CPU; "
            "latencies are likely inflated and noisy")
    budgets = parse_budgets("rules:\n  - artifact: model_int8.tflite\n    max_p90_ms: 25\n")
    result = check_reports([_loaded_report(tmp_path, [load])], budgets)
    assert result.verdict == "fail"
    (note,) = [line for line in check_notes(result) if "loaded machine" in line]
    assert "load average 3.41" in note
    assert f"`mnetdeploy bench {tmp_path / 'model_int8.tflite'} --threads 1`" in note
    assert f"`mnetdeploy report {tmp_path}`" in note and "--force" in note
    # No load warning, or a passing check: nothing to explain.
    quiet = check_reports([_loaded_report(tmp_path, [])], budgets)
    assert not [line for line in check_notes(quiet) if "loaded machine" in line]
    roomy = check_reports([_loaded_report(tmp_path, [load])], parse_budgets(
        "rules:\n  - artifact: model_int8.tflite\n    max_p90_ms: 30\n"))
    assert roomy.verdict == "pass" and not [line for line in check_notes(roomy) if "loaded machine" in line]
