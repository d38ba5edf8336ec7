"""`mnetdeploy run`: every step end to end on a small real model, cached by content, gated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from conftest import IMAGENET_SAMPLE
from mnetdeploy.cli import cli

pytestmark = pytest.mark.slow


def write_config(path: Path, out: Path, **sections) -> Path:
    config = {
        "output": str(out),
        "model": {"arch": "v2", "alpha": 0.35, "resolution": 96},
        "quantize": {"num_calib": 16, "int8_graph": "cpu"},   # auto's timing of candidates: test_export
        "bench": {"threads": [1], "runs": 10, "min_seconds": 0, "warmup": 2},
    }
    if IMAGENET_SAMPLE.is_dir():
        config["eval"] = {"data": str(IMAGENET_SAMPLE), "skip_first": 100, "limit": 20}
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    path.write_text(yaml.safe_dump(config))
    return path


def run(*args):
    result = CliRunner().invoke(cli, ["run", *args, "--json"])
    return result, (json.loads(result.stdout) if result.stdout.strip().startswith("{") else None)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    config = write_config(tmp / "small.yaml", tmp / "artifacts")
    result, data = run(str(config))
    assert result.exit_code == 0, result.output
    return tmp, config, data


def statuses(data) -> dict[str, str]:
    return {s["name"]: s["status"] for s in data["steps"]}


def test_every_step_runs_and_the_report_has_everything(first_run):
    _, _, data = first_run
    expected_eval = "ran" if IMAGENET_SAMPLE.is_dir() else "skipped"
    assert statuses(data) == {"build": "ran", "quantize": "ran", "eval": expected_eval, "bench": "ran",
                              "report": "ran", "gate": "skipped"}
    directory = Path(data["artifact_dir"])
    report = json.loads((directory / "report.json").read_text())
    files = {a["file"] for a in report["artifacts"]}
    assert files == {"model.keras", "model_fp32.tflite", "model_int8.tflite", "model_fp32.onnx", "model_int8.onnx"}
    assert {r["model"] for r in report["latency"]} == files - {"model.keras"}
    fp32 = next(a for a in report["artifacts"] if a["file"] == "model_fp32.tflite")
    assert fp32["validation"]["max_abs_diff"] < 1e-4
    if IMAGENET_SAMPLE.is_dir():
        assert {r["model"] for r in report["accuracy"]} == files
        assert all(r["n"] == 20 for r in report["accuracy"])
    assert (directory / "report.html").stat().st_size > 10_000


def test_unchanged_inputs_reuse_every_step_and_a_changed_section_reruns_only_its_step(first_run):
    tmp, config, _ = first_run
    _, again = run(str(config))
    st = statuses(again)
    assert all(st[s] in ("reused", "skipped") for s in ("build", "quantize", "eval", "bench"))
    changed = write_config(tmp / "threads.yaml", tmp / "artifacts", bench={"threads": [2]})
    _, rerun = run(str(changed))
    st = statuses(rerun)
    assert st["bench"] == "ran" and st["build"] == "reused" and st["quantize"] == "reused"
    report = json.loads((Path(rerun["artifact_dir"]) / "report.json").read_text())
    assert {r["threads"] for r in report["latency"]} == {1, 2}  # results accumulate per thread count


def test_gate_in_the_run_sets_the_exit_code(first_run):
    tmp, _, _ = first_run
    loose = tmp / "loose.yaml"
    loose.write_text(yaml.safe_dump({"rules": [{"artifact": "*.tflite", "max_p50_ms": 10_000, "max_size": "100MB"}]}))
    tight = tmp / "tight.yaml"
    tight.write_text(yaml.safe_dump({"rules": [{"artifact": "model_int8.tflite", "max_p50_ms": 0.0001}]}))
    ok, data = run(str(write_config(tmp / "g1.yaml", tmp / "artifacts", gate={"budgets": str(loose),
                                                                                 "junit": str(tmp / "g.xml")})))
    assert ok.exit_code == 0 and data["gate_passed"] is True and data["gate_verdict"] == "pass"
    assert (tmp / "g.xml").read_text().count("<testcase") >= 3
    bad, data = run(str(write_config(tmp / "g2.yaml", tmp / "artifacts", gate={"budgets": str(tight)})))
    assert bad.exit_code == 1 and data["gate_passed"] is False and data["gate_verdict"] == "fail"


def test_bad_config_is_exit_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  arch: v2\nbench:\n  thread: [1]\n")
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 2 and "did you mean 'threads'" in result.output


@pytest.mark.parametrize("sections,expected", [
    ({"gate": {"budgets": "no_budgets.yaml"}}, "gate.budgets {dir}/no_budgets.yaml: file not found"),
    ({"quantize": {"calib": "no_images"}}, "quantize.calib {dir}/no_images: folder not found"),
    ({"eval": {"data": "no_data"}}, "eval.data {dir}/no_data: folder not found"),
    ({"gate": {"budgets": "broken.yaml"}}, "broken.yaml"),
    ({"quantize": {"keep_float": ["block_3_projectx"]}},
     "quantize.keep_float 'block_3_projectx': no such layer in v2 alpha 0.35; did you mean 'block_3_project'?"),
    ({"bench": {"devices": ["host", "andriod"]}}, "bench.devices.1: unknown device"),
])
def test_run_checks_every_input_before_writing_anything(tmp_path, sections, expected):
    """Each of these used to fail after minutes of work, or (eval.data) not at all: now exit 2, one line,
    naming the setting and the path resolved against the config file, and no artifact directory."""
    (tmp_path / "broken.yaml").write_text("latency: [unclosed\n")
    config = write_config(tmp_path / "c.yaml", tmp_path / "artifacts", **sections)
    result = CliRunner().invoke(cli, ["run", str(config)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected.format(dir=tmp_path) in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.yaml", "c.yaml"]   # nothing written
