"""`mnetdeploy bench` on real TFLite and ONNX models: JSON schema, stopping rule, XNNPACK switch, errors.

One small MobileNet (v2 0.35 at 96x96) is built and converted once per module to fp32 TFLite, int8 TFLite
(full-integer with float I/O) and ONNX. No assertion depends on how fast the machine is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mnetdeploy.bench import find_models, run_benchmark
from mnetdeploy.bench import host as bench_host
from mnetdeploy.bench.environment import classify_precision
from mnetdeploy.bench.schema import SCHEMA_VERSION, BenchResult
from mnetdeploy.cli import cli
from mnetdeploy.errors import UserError

FAST = ["--runs", "20", "--min-seconds", "0", "--warmup", "2"]
slow = pytest.mark.slow  # needs the built-and-converted models (about 30 s once per module)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """Directory with model_fp32.tflite, model_int8.tflite and model_fp32.onnx of one small MobileNet."""
    out = tmp_path_factory.mktemp("bench-models")
    built = CliRunner().invoke(cli, ["build", "--arch", "v2", "--alpha", "0.35", "--res", "96", "--out", str(out),
                                     "--json"], catch_exceptions=False)
    assert built.exit_code == 0, built.output
    directory = Path(json.loads(built.stdout)["artifact_dir"])
    import keras
    import tensorflow as tf
    import tf2onnx

    from converters import export_tflite_pair

    export_tflite_pair(directory, 96, samples=4)
    model = keras.saving.load_model(directory / "model.keras")
    model.output_names = ["output"]
    tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((1, 96, 96, 3), tf.float32, name="input"),),
                               opset=17, output_path=str(directory / "model_fp32.onnx"))
    return directory


def bench(*args: str):
    return CliRunner().invoke(cli, ["bench", *args], catch_exceptions=False)


@slow
def test_json_results_for_tflite_and_onnx(models, tmp_path):
    out = tmp_path / "bench.json"
    result = bench(str(models), *FAST, "--threads", "1", "--json", "--out", str(out))
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)
    assert json.loads(out.read_text()) == results           # --out writes what --json prints
    by_name = {Path(r["model"]).name: r for r in results}
    assert list(by_name) == ["model_fp32.onnx", "model_fp32.tflite", "model_int8.tflite"]  # sorted
    expected = {"model_fp32.onnx": ("onnx", "onnxruntime", "fp32", None),
                "model_fp32.tflite": ("tflite", "litert", "fp32", True),
                "model_int8.tflite": ("tflite", "litert", "int8", True)}
    for name, r in by_name.items():
        assert (r["format"], r["runtime"], r["precision"], r["xnnpack"]) == expected[name]
        assert r["schema_version"] == SCHEMA_VERSION and r["device"] == "host" and r["threads"] == 1
        lat = r["latency_ms"]
        assert r["runs"] == len(r["samples_ms"]) == 20          # --min-seconds 0: exactly --runs runs
        assert r["warmup_runs"] == 2 and r["warmup_ms"] > 0
        assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert lat["min"] == pytest.approx(min(r["samples_ms"]), abs=1e-6)
        assert lat["p50"] == pytest.approx(np.percentile(r["samples_ms"], 50), abs=1e-6)
        assert lat["std"] >= 0 and lat["mean"] > 0
        assert r["init_ms"] > 0 and r["first_ms"] > 0
        assert r["peak_rss_mb"] > r["baseline_rss_mb"] > 0
        assert r["model_rss_mb"] == pytest.approx(r["peak_rss_mb"] - r["baseline_rss_mb"], abs=0.02)
        assert r["inputs"] == {"kind": "random", "count": bench_host.RANDOM_INPUTS, "seed": 0, "directory": None}
        env = r["environment"]
        for key in ("cpu_model", "cpu_count", "cpu_affinity", "cpufreq", "load_average", "os", "kernel",
                    "python", "packages"):
            assert key in env
        assert env["threads"] == 1 and env["runtime"] == r["runtime"]
        assert env["packages"]["numpy"] == np.__version__
        assert env["model"]["bytes"] == (models / name).stat().st_size and len(env["model"]["sha256"]) == 64
        assert env["model"]["input_shape"] == [1, 96, 96, 3]
        assert r["timestamp"].endswith("Z")
        assert BenchResult.from_dict(r).to_dict() == r           # the schema reads back what it wrote
    assert by_name["model_fp32.onnx"]["execution"]["providers"] == ["CPUExecutionProvider"]
    kept = json.loads((models / "results" / "bench.json").read_text())   # kept for `report` and `gate`
    assert {r["model"] for r in kept} >= set(by_name)


@slow
def test_min_seconds_keeps_running_past_runs(models):
    r = run_benchmark(models / "model_int8.tflite", runs=3, min_seconds=0.5, warmup=1)
    assert r.runs > 3 and len(r.samples_ms) == r.runs
    assert r.measured_seconds >= 0.5
    assert r.min_seconds == 0.5


@slow
def test_peak_memory_is_the_childs_own_not_the_parents(models):
    """Linux carries ru_maxrss across fork + exec: a child of a big parent would report the parent's size."""
    import numpy as np

    ballast = np.ones(400 * (1 << 20) // 8)  # 400 MiB resident in this (parent) process
    ballast[::512] = 2.0
    r = run_benchmark(models / "model_int8.tflite", runs=3, min_seconds=0, warmup=1)
    assert 0 < r.baseline_rss_mb <= r.peak_rss_mb < 300
    del ballast


@slow
def test_no_xnnpack_changes_the_execution_path(models):
    model = str(models / "model_fp32.tflite")
    with_x = json.loads(bench(model, *FAST, "--json").stdout)[0]
    without = json.loads(bench(model, *FAST, "--no-xnnpack", "--json").stdout)[0]
    assert with_x["xnnpack"] is True and without["xnnpack"] is False
    assert with_x["execution"]["delegate"] == "xnnpack" and with_x["execution"]["delegate_nodes"] >= 1
    assert without["execution"]["delegate"] is None and without["execution"]["delegate_nodes"] == 0


@slow
def test_real_images_are_cycled_and_recorded(models, tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (120, 140, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    r = run_benchmark(models / "model_fp32.onnx", runs=5, min_seconds=0, warmup=0, inputs=str(folder))
    assert r.inputs.kind == "images" and r.inputs.count == 3 and r.inputs.directory == str(folder)
    assert r.warmup_ms is None and r.runs == 5


@slow
def test_human_table_names_every_model(models):
    result = bench(str(models), "--runtime", "litert", *FAST)
    assert result.exit_code == 0, result.output
    assert "model_fp32.tflite" in result.stdout and "model_int8.tflite" in result.stdout
    assert "model_fp32.onnx" not in result.stdout                 # --runtime litert keeps .tflite only
    assert "p50" in result.stdout and "litert+xnnpack" in result.stdout


def one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@slow
def test_damaged_models_give_one_line_errors(models, tmp_path):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes((models / "model_fp32.tflite").read_bytes()[:200_000])
    one_line_error(bench(str(truncated)), "truncated.tflite", "damaged TFLite")
    not_onnx = tmp_path / "garbage.onnx"
    not_onnx.write_bytes(b"\x08\x07garbage" * 10)
    one_line_error(bench(str(not_onnx)), "garbage.onnx")


def test_model_that_fails_to_load_in_the_runtime(tmp_path):
    """Parses fine (so the parent accepts it) but ONNX Runtime refuses it: the child reports the error."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 3])
    graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], domain="com.example")], "g", [x], [y])
    path = tmp_path / "unknown_op.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("com.example", 1)]), path)
    one_line_error(bench(str(path), *FAST), "unknown_op.onnx", "could not load", "NoSuchOp")


@slow
@pytest.mark.parametrize("code, expected", [
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "crashed with SIGSEGV"),
    ("import sys; print('fatal: out of cheese', file=sys.stderr); sys.exit(3)", "exited with status 3"),
])
def test_child_crash_is_a_clear_error_not_a_result(models, monkeypatch, code, expected):
    monkeypatch.setattr(bench_host, "child_command", lambda fd: [sys.executable, "-c", code])
    line = one_line_error(bench(str(models / "model_fp32.tflite"), *FAST, "--json"), "model_fp32.tflite", expected)
    if "cheese" in code:
        assert "out of cheese" in line                              # the child's last words are shown


@slow
def test_usage_errors(models, tmp_path):
    one_line_error(bench(str(models / "model_fp32.tflite"), "--device", "iphone"),
                   "--device iphone: unknown device; use host, android[:SERIAL][@HOST:PORT],")
    one_line_error(bench(str(models / "model_fp32.tflite"), "--runtime", "onnxruntime"), "runs on litert")
    one_line_error(bench(str(models / "model.keras")), "export the model first")
    one_line_error(bench(str(tmp_path)), "no .onnx or .tflite models")
    one_line_error(bench(str(tmp_path / "missing.tflite")), "no such model")
    with pytest.raises(UserError, match="device 'ssh://pi"):
        run_benchmark(models / "model_fp32.tflite", device="ssh://pi:99999")  # refused before any connection
    with pytest.raises(UserError, match="unknown key 'warmups'; did you mean 'warmup'"):
        run_benchmark(models / "model_fp32.tflite", warmups=3)
    assert find_models([models], "onnxruntime") == [models / "model_fp32.onnx"]


def test_schema_refuses_other_versions():
    with pytest.raises(UserError, match="schema_version 99"):
        BenchResult.from_dict({"schema_version": 99})
    with pytest.raises(UserError, match="missing field"):
        BenchResult.from_dict({"schema_version": SCHEMA_VERSION, "model": "m.tflite"})


@pytest.mark.parametrize("activations, weights, expected", [
    (["float32"] * 5, ["float32"] * 4, "fp32"),
    (["float32"] * 5, ["float16"] * 4 + ["int32"], "fp16"),
    (["float32"] * 5, ["int8"] * 4 + ["float32"], "dynamic"),
    (["float32", "int8", "int8", "int8", "float32"], ["int8", "int32"], "int8"),   # float I/O, int8 inside
    (["int16", "int16", "int16"], ["int8", "int64"], "int16x8"),
])
def test_precision_classification(activations, weights, expected):
    assert classify_precision(activations, weights) == expected


@pytest.mark.parametrize("args, flag", [
    (["bench", "{model}", "--min-seconds", "nan"], "--min-seconds nan"),
    (["bench", "{model}", "--min-seconds", "inf"], "--min-seconds inf"),
    (["bench", "{model}", "--threads", "100000"], "--threads 100000"),
    (["bench", "{model}", "--device", "android", "--min-seconds", "inf"], "--min-seconds inf"),
    (["eval", "{model}", "--data", "{data}", "--threads", "0"], "--threads 0"),
])
def test_bad_option_values_are_blamed_on_the_option_not_the_model(tmp_path, args, flag):
    """Issue 15.6: these used to run and then be reported as 'the runtime failed on this model'."""
    model = tmp_path / "m.tflite"
    model.write_bytes(b"not read: the option is refused first")
    data = tmp_path / "images"
    data.mkdir()
    result = CliRunner().invoke(cli, [a.format(model=model, data=data) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}"), result.stderr
    assert "model" not in lines[0].split(":", 2)[-1]
