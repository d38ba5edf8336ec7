"""`mnetdeploy report`: report.json from a real artifact directory, report.md with the measured numbers, and
report.html checked in headless Chromium (DOM after layout + a screenshot that must not be blank).

One small MobileNet (v2 0.35 at 96x96) is built, exported to fp32 and int8 TFLite, benchmarked for real at 1
and 2 threads and evaluated on 20 shared images once per module; a second model is only built, so its
report has nothing measured. Set MNETDEPLOY_SCREENSHOT_DIR to keep the screenshots for a look.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import browser
from converters import export_tflite_pair
from conftest import IMAGENET_SAMPLE, require
from mnetdeploy.cli import cli
from mnetdeploy.fsutil import sha256_file
from mnetdeploy.report.collect import REPORT_SCHEMA, REPORT_SCHEMA_VERSION, load_report
from mnetdeploy.report.html import EXTERNAL_REF
from mnetdeploy.report.html import render_html
from mnetdeploy.report.markdown import render_markdown
from mnetdeploy.report.write import write_report
from mnetdeploy.results import load_results

EVAL_IMAGES = 20
THREADS = (1, 2)


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> Path:
    """A built, exported, benchmarked (and, with the shared images, evaluated) artifact directory."""
    from mnetdeploy.bench import run_benchmark
    from mnetdeploy.build import build
    from mnetdeploy.config import load_config
    from mnetdeploy.results import store_results

    out = tmp_path_factory.mktemp("report-models")
    directory = build(load_config(None, {"model.arch": "v2", "model.alpha": 0.35, "model.resolution": 96,
                                         "output": str(out)})).artifact_dir
    export_tflite_pair(directory, 96)
    results = [run_benchmark(directory / name, runs=20, min_seconds=0, threads=threads)
               for name in ("model_fp32.tflite", "model_int8.tflite") for threads in THREADS]
    store_results("bench", [r.to_dict() for r in results])
    if IMAGENET_SAMPLE.is_dir():
        from mnetdeploy.evaluate import evaluate

        evaluated = evaluate([directory / "model.keras", directory / "model_fp32.tflite",
                              directory / "model_int8.tflite"], IMAGENET_SAMPLE, limit=EVAL_IMAGES, progress=False)
        store_results("eval", [r.to_dict() for r in evaluated])
    write_report(directory)
    return directory


@pytest.fixture(scope="module")
def unmeasured(tmp_path_factory) -> Path:
    """A second model, only built: no export, no bench, no eval."""
    from mnetdeploy.build import build
    from mnetdeploy.config import load_config

    out = tmp_path_factory.mktemp("report-bare")
    return build(load_config(None, {"model.arch": "v1", "model.alpha": 0.25, "model.resolution": 96,
                                    "output": str(out)})).artifact_dir


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _keep(screenshot: Path) -> None:
    keep = os.environ.get("MNETDEPLOY_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(keep) / screenshot.name)


def md_table(md: str, heading: str) -> list[list[str]]:
    """Body rows (cells) of the first table under `## heading` in GitHub Markdown."""
    lines = md.splitlines()
    start = lines.index(f"## {heading}")
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    assert len(rows) >= 2, f"no table under ## {heading}"
    return rows[2:]  # header and alignment rows


def latency_key(r: dict) -> tuple:
    return (Path(r["model"]).name, r["threads"])


# ----------------------------------------------------------------------------------------------- report.json

def test_report_json_round_trips_with_every_artifact_hash_size_and_latency(measured):
    report = load_report(measured / "report.json")
    assert report == json.loads((measured / "report.json").read_text())
    assert (report["schema"], report["schema_version"]) == (REPORT_SCHEMA, REPORT_SCHEMA_VERSION)
    assert report["name"] == measured.name and report["model"]["params"] > 0 and report["model"]["macs"] > 0

    files = {p.name for p in measured.iterdir() if p.suffix in (".keras", ".tflite", ".onnx")}
    assert files == {"model.keras", "model_fp32.tflite", "model_int8.tflite"}
    artifacts = {a["file"]: a for a in report["artifacts"]}
    assert set(artifacts) == files
    for name, a in artifacts.items():
        assert a["sha256"] == sha256_file(measured / name), name
        assert a["bytes"] == (measured / name).stat().st_size, name
    assert (artifacts["model_fp32.tflite"]["precision"], artifacts["model_int8.tflite"]["precision"]) == ("fp32", "int8")

    stored = {latency_key(r): r for r in load_results(measured, "bench")}
    latency = {latency_key(r): r for r in report["latency"]}
    assert set(latency) == {(f, t) for f in ("model_fp32.tflite", "model_int8.tflite") for t in THREADS}
    for key, r in latency.items():
        assert r["latency_ms"]["p50"] == stored[key]["latency_ms"]["p50"] > 0, key
        assert r["samples_ms"] == stored[key]["samples_ms"] and len(r["samples_ms"]) >= 20
    newest = max(report["latency"], key=lambda r: r["timestamp"])
    assert report["environment"] == newest["environment"]


# ----------------------------------------------------------------------------------------------- report.md

def test_markdown_latency_rows_show_the_measured_numbers(measured):
    md = (measured / "report.md").read_text()
    report = load_report(measured)
    rows = {(r[0], int(r[4])): r for r in md_table(md, "Latency")}
    latency = {latency_key(r): r for r in report["latency"]}
    assert set(rows) == set(latency)
    for key, r in latency.items():
        lat = r["latency_ms"]
        row = rows[key]
        assert row[6:9] == [f"{lat['p50']:.3f}", f"{lat['p90']:.3f}", f"{lat['p99']:.3f}"], key
        assert row[9] == f"{lat['mean']:.3f} ± {lat['std']:.3f}"
        assert row[5] == str(r["runs"])
    for threads in THREADS:  # speed-up: fp32 p50 / int8 p50 at the same thread count
        fp32, int8 = latency[("model_fp32.tflite", threads)], latency[("model_int8.tflite", threads)]
        assert rows[("model_fp32.tflite", threads)][-1] == "baseline"
        assert rows[("model_int8.tflite", threads)][-1] == \
            f"{fp32['latency_ms']['p50'] / int8['latency_ms']['p50']:.2f}×"

    artifacts = {r[0]: r for r in md_table(md, "Artifacts")}
    for a in report["artifacts"]:
        assert artifacts[a["file"]][4] == f"{a['bytes']:,}" and artifacts[a["file"]][6] == a["sha256"][:12]
    assert "## Warnings" in md and "random weights" in md


def test_markdown_accuracy_rows_show_eval_results(measured):
    require(IMAGENET_SAMPLE)
    md = (measured / "report.md").read_text()
    rows = {r[0]: r for r in md_table(md, "Accuracy")}
    evals = {r["model"]: r for r in load_results(measured, "eval")}
    assert set(rows) == set(evals) == {"model.keras", "model_fp32.tflite", "model_int8.tflite"}
    for name, r in evals.items():
        assert rows[name][2] == str(EVAL_IMAGES)
        assert rows[name][3:5] == [f"{r['top1']:.2f} %", f"{r['top5']:.2f} %"]
    assert rows["model.keras"][5] == "reference"
    int8 = evals["model_int8.tflite"]
    assert rows["model_int8.tflite"][5] == f"{int8['top1'] - evals['model.keras']['top1']:+.2f}"
    assert rows["model_int8.tflite"][6] == f"{int8['agreement_top1']:.2f} %"


# -------------------------------------------------------------------------------------- report.html, browser

def test_html_in_headless_chromium_shows_artifacts_and_latencies(measured, shots):
    browser.require_chromium()
    page = (measured / "report.html").read_text()
    assert not EXTERNAL_REF.search(page), "report.html must be self-contained (no external src/href/url)"
    assert page.count("<svg") >= 2  # latency distribution + size/latency/accuracy scatter
    rendered = browser.render(measured / "report.html", shots / "report.png")
    _keep(rendered.screenshot)
    report = load_report(measured)
    for a in report["artifacts"]:
        assert f"<td>{a['file']}</td>" in rendered.dom
    for r in report["latency"]:
        assert f'<td class="num">{r["latency_ms"]["p50"]:.3f}</td>' in rendered.dom
    _assert_not_blank(rendered.screenshot)


def _assert_not_blank(png: Path) -> None:
    from PIL import Image

    image = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    assert image.shape[0] >= 1000, f"{png}: {image.shape[0]} px tall"
    assert image.std() > 15, f"{png}: looks blank (pixel std {image.std():.1f})"
    top, bottom = image[: image.shape[0] // 2], image[image.shape[0] // 2:]
    assert top.std() > 10 and bottom.std() > 10, f"{png}: one half of the page is empty"


def test_two_models_side_by_side(measured, unmeasured, tmp_path, shots):
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, ["report", str(measured / "report.json"), str(unmeasured), "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (unmeasured / "report.json").is_file() and (unmeasured / "report.html").is_file()
    md = (out / "comparison.md").read_text()
    models = {r[0]: r for r in md_table(md, "Models")}
    assert set(models) == {measured.name, unmeasured.name}
    trade = md_table(md, "Speed / size / accuracy")
    assert {(r[0].lstrip("★ "), r[1]) for r in trade} == {(measured.name, f) for f in ("model_fp32.tflite",
                                                                                      "model_int8.tflite")}
    page = (out / "comparison.html").read_text()
    assert page.count("<h1>") == 1 and page.count('id="cmp-tradeoff"') == 1
    assert not EXTERNAL_REF.search(page)
    browser.require_chromium()
    rendered = browser.render(out / "comparison.html", shots / "comparison.png")
    _keep(rendered.screenshot)
    assert "Comparison of 2 models" in rendered.dom
    assert '<section class="model" id="m0">' in rendered.dom and 'id="m1"' in rendered.dom
    _assert_not_blank(rendered.screenshot)


def test_missing_sections_render_not_measured(unmeasured, measured):
    write_report(unmeasured)
    md = (unmeasured / "report.md").read_text()
    for heading, command in (("Latency", "mnetdeploy bench"), ("Accuracy", "mnetdeploy eval")):
        section = md.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
        assert "not measured" in section and command in section, section
    assert "not measured" in (unmeasured / "report.html").read_text()

    # A partial report (hand-edited, or from a failed step) renders what it has; nothing crashes.
    partial = load_report(measured)
    for key in ("latency", "accuracy", "environment", "calibration"):
        partial[key] = None
    partial["artifacts"][0]["bytes"] = None
    page, text = render_html([partial]), render_markdown(partial)
    assert text.count("not measured") >= 2 and page.count("not measured") >= 2
    assert "no benchmark yet" in text


def test_rerender_from_json_does_not_rebuild(measured, tmp_path):
    copy = tmp_path / "report.json"
    report = load_report(measured)
    report["latency"][0]["latency_ms"]["p50"] = 123.456  # only the JSON knows this value
    copy.write_text(json.dumps(report))
    result = CliRunner().invoke(cli, ["report", str(copy), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["latency"][0]["latency_ms"]["p50"] == 123.456
    assert "123.456" in (tmp_path / "report.md").read_text() and "123.456" in (tmp_path / "report.html").read_text()
    assert json.loads(copy.read_text()) == report  # the input is not rewritten


def test_strings_are_escaped_in_html(measured):
    report = load_report(measured)
    report["name"] = "<script>alert(1)</script>"
    report["latency"][0]["warnings"] = ["a <b>bold</b> & claim"]
    page = render_html([report])
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;bold&lt;/b&gt; &amp; claim" in page


@pytest.mark.parametrize("make", ["missing", "plain_dir", "bad_json", "wrong_schema", "old_version", "model_file"])
def test_bad_inputs_exit_2_with_one_line(make, measured, tmp_path):
    target = tmp_path / "input"
    if make == "plain_dir":
        target.mkdir()
    elif make == "bad_json":
        target = tmp_path / "report.json"
        target.write_text("{not json")
    elif make == "wrong_schema":
        target = tmp_path / "report.json"
        target.write_text(json.dumps({"schema": "something-else", "schema_version": 1}))
    elif make == "old_version":
        target = tmp_path / "report.json"
        target.write_text(json.dumps(dict(load_report(measured), schema_version=0)))
    elif make == "model_file":
        target = measured / "model_int8.tflite"
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, ["report", str(measured), str(target), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert not out.exists()  # nothing written when an input is bad


def test_report_modules_stay_light():
    code = ("import sys, mnetdeploy.cli, mnetdeploy.report.render, mnetdeploy.report.markdown, "
            "mnetdeploy.report.html; heavy = [m for m in ('matplotlib', 'tensorflow', 'keras', 'onnxruntime') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------ CPU features and int8 speed

def test_report_shows_the_cpu_features_and_says_when_int8_is_not_faster(measured, tmp_path):
    from mnetdeploy.cpu import CpuFeatures, host_cpu

    md = (measured / "report.md").read_text()
    features = " ".join(host_cpu().present)
    yes = "yes" if host_cpu().int8_dot_product else "no"
    assert f"**CPU features**: {features} (int8 dot product: {yes})" in md
    report = load_report(measured)
    assert all(r["environment"]["cpu_features"] == host_cpu().to_dict() for r in report["latency"])

    # The same report as measured on an AVX2-only CPU where int8 ran at fp32's speed (recorded numbers).
    avx2 = CpuFeatures("x86_64", "cpuid", ("avx2",)).to_dict()
    report["environment"]["cpu_features"] = avx2
    for r in report["latency"]:
        r["environment"]["cpu_features"] = avx2
        if r["model"] == "model_int8.tflite":
            fp32 = next(x for x in report["latency"] if x["model"] == "model_fp32.tflite"
                        and x["threads"] == r["threads"])
            r["latency_ms"] = dict(r["latency_ms"], p50=fp32["latency_ms"]["p50"] * 1.02)
    text = render_markdown(report)
    latency = text.split("## Latency\n", 1)[1].split("\n## ", 1)[0]
    assert latency.count("model_int8.tflite: int8 is no faster than fp32 on this CPU (0.98x") == len(THREADS)
    assert "no int8 dot-product instruction (no AVX512-VNNI, AVX-VNNI or AMX)" in latency
    assert "**CPU features**: avx2 (int8 dot product: no)" in text
