"""What the report puts first: the gate's verdict (kept by `gate` in results/gate.json) and warnings ranked
by consequence (accuracy and correctness before latency noise), with one line for all load warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mnetdeploy.cli import cli
from mnetdeploy.report.render import report_warnings


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gated")
    assert run("build", "--arch", "v1", "--alpha", "0.25", "--res", "96", "--out", out).exit_code == 0
    return out / "v1_0.25_96"


def test_the_report_shows_the_last_gate_verdict_and_why(built, tmp_path):
    assert run("report", built).exit_code == 0
    assert "## Gate\n\n> not gated; run `mnetdeploy gate" in (built / "report.md").read_text()
    tight = tmp_path / "tight.yaml"
    tight.write_text("rules:\n  - name: keras size\n    artifact: model.keras\n    max_size: 1KB\n")
    assert run("gate", built, "--budgets", tight).exit_code == 1
    stored = json.loads((built / "results" / "gate.json").read_text())
    assert stored["verdict"] == "fail" and stored["counts"]["fail"] == 1
    assert run("report", built).exit_code == 0
    md = (built / "report.md").read_text()
    gate_part = md[md.index("## Gate"):md.index("## Warnings")]
    assert "gate FAIL: 1 checks, 0 passed, 1 failed" in gate_part and str(tight) in gate_part
    assert "model.keras: max_size" in gate_part and "over the limit 1,000 B" in gate_part
    assert md.index("## Gate") < md.index("## Warnings") < md.index("## Artifacts")
    assert "gate FAIL" in (built / "report.html").read_text()
    assert json.loads((built / "report.json").read_text())["gate"]["verdict"] == "fail"


def _report(loads: list[float]) -> dict:
    """A FABRICATED report: random weights, int8 6.5 points below float, one bench result per load figure."""
    data = {"hash": "abc"}
    return {
        "model": {"weights": {"source": None}},
        "accuracy": [
            {"model": "model.keras", "format": "keras", "precision": "fp32", "top1": 55.5, "n": 400, "data": data},
            {"model": "model_int8.tflite", "format": "tflite", "precision": "int8", "top1": 49.0, "n": 400,
             "data": data},
            {"model": "model_fp32.onnx", "format": "onnx", "precision": "fp32", "top1": 55.25, "n": 400,
             "data": data}],
        "latency": [{"model": f"m{i}.tflite", "threads": 1, "latency_ms": {"p50": 1.0}, "inputs": {"kind": "images"},
                     "warnings": [f"load average {x:g} over the last minute on 2 CPU(s): other processes compete "
                                  "for the CPU; latencies are likely inflated and noisy"]}
                    for i, x in enumerate(loads)],
    }


def test_an_accuracy_drop_is_the_first_warning_and_load_warnings_are_one_line():
    warnings = report_warnings(_report([2.5, 3.1, 3.6, 2.2, 4.0, 2.9, 3.3, 2.7, 3.8, 2.4, 3.0]))
    assert warnings[0].startswith("model_int8.tflite: top-1 49.0 % is 6.5 points below model.keras (55.5 %)")
    assert "random weights" in warnings[1]
    (load,) = [w for w in warnings if "load average" in w]
    assert "load average 2.2-4 " in load and warnings[-1] == load
    assert not [w for w in warnings if "model_fp32.onnx" in w]  # fp32 is the reference, not a drop
    small = _report([])
    small["accuracy"][1]["top1"] = 55.0  # half a point: what a good int8 conversion loses
    assert not [w for w in report_warnings(small) if "points below" in w]
