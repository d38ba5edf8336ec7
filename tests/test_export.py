"""Exports of small built MobileNets: every format and precision, checked independently of the pipeline's own
check; fp32 logits within FP32_RTOL of Keras' (relative to their range); int8 I/O types as requested; ONNX
shape/name/opset; a broken fp32 export fails loudly and is not kept; --int8-graph auto measures, records and caches.

Two models are built once per module (v2 0.35 at 96x96, v3-small at 96x96) and calibrated on a folder of
seeded synthetic PNG files, so the tests need nothing outside the repository.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mnetdeploy.cli import cli

RES = 96
CALIB_FILES = 24          # 16 calibrate, the other 8 are the held-out check images
NUM_CALIB = 16


def write_image_folder(directory: Path, n: int, resolution: int, seed: int) -> Path:
    """n seeded synthetic RGB images as PNG files (real files, so the loaders and hashes are exercised)."""
    from PIL import Image

    from mnetdeploy.arch.init import synthetic_images

    directory.mkdir(parents=True, exist_ok=True)
    images = synthetic_images(n, resolution + 16, seed=seed)  # larger than the model input: resize + crop
    for i, image in enumerate(images):
        pixels = np.clip((image + 1.0) * 127.5, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(directory / f"img_{i:03d}.png")
    return directory


def build_model(out: Path, arch: str, alpha: float, classes: int = 1000) -> Path:
    from mnetdeploy.build import build
    from mnetdeploy.config import load_config

    cfg = load_config(overrides={"model.arch": arch, "model.alpha": alpha, "model.resolution": RES,
                                 "model.classes": classes, "output": str(out)})
    return build(cfg).artifact_dir


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def quantize_json(*args: str) -> dict:
    result = run("quantize", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("calib"), CALIB_FILES, RES, seed=7)


@pytest.fixture(scope="module")
def fresh_images() -> np.ndarray:
    """Images neither used for calibration nor by the pipeline's own check."""
    from mnetdeploy.arch.init import synthetic_images

    return synthetic_images(6, RES, seed=12345)


@pytest.fixture(scope="module")
def v2(tmp_path_factory, calib_dir) -> tuple[Path, dict]:
    directory = build_model(tmp_path_factory.mktemp("v2"), "v2", 0.35)
    # The CPU int8 graph: --int8-graph auto (timing three candidates) is tested on the v3 model below.
    report = quantize_json(str(directory), "--calib", str(calib_dir), "--num-calib", str(NUM_CALIB),
                           "--precisions", "fp32,fp16,dynamic,int8", "--int8-graph", "cpu")
    return directory, report


@pytest.fixture(scope="module")
def v3(tmp_path_factory, calib_dir) -> tuple[Path, dict]:
    # 10 classes: the untrained 1000-class v3-small is near-uniform on synthetic images (max probability
    # 0.0015), below the int8 softmax step, so its int8 output is all zeros (the pipeline refuses it, see
    # test_quantize.py); with 10 classes the int8 output carries the float model's ranking.
    directory = build_model(tmp_path_factory.mktemp("v3"), "v3-small", 1.0, classes=10)
    report = quantize_json(str(directory), "--calib", str(calib_dir), "--num-calib", str(NUM_CALIB))
    return directory, report


def keras_outputs(directory: Path, images: np.ndarray) -> np.ndarray:
    from mnetdeploy.runtimes import open_runner

    return open_runner(directory / "model.keras").predict(images)


def outputs(path: Path, images: np.ndarray) -> np.ndarray:
    from mnetdeploy.runtimes import open_runner

    return open_runner(path).predict(images)


def test_every_format_and_precision_is_written_and_recorded(v2):
    directory, report = v2
    files = {a["file"] for a in report["artifacts"]}
    assert files == {"model_fp32.tflite", "model_fp16.tflite", "model_dynamic.tflite", "model_int8.tflite",
                     "model_fp32.onnx", "model_fp16.onnx", "model_int8.onnx"}
    assert any("onnx dynamic: skipped" in n for n in report["notes"])
    manifest = json.loads((directory / "manifest.json").read_text())
    assert "build" in manifest["steps"]  # other steps' entries are kept
    for a in report["artifacts"]:
        path = directory / a["file"]
        assert path.stat().st_size == a["bytes"]
        step = manifest["steps"][f"quantize:{a['file']}"]
        assert step["outputs"][a["file"]]["sha256"] == a["sha256"]
    int8 = manifest["steps"]["quantize:model_int8.tflite"]["inputs"]
    assert int8["calibration"]["count"] == NUM_CALIB and len(int8["calibration"]["content_hash"]) == 64
    assert report["calibration"]["source"] == "images" and len(report["calibration"]["files"]) == NUM_CALIB
    assert report["validation"]["source"] == "images" and report["validation"]["count"] == CALIB_FILES - NUM_CALIB
    # Reduced precision really is smaller.
    size = {a["file"]: a["bytes"] for a in report["artifacts"]}
    assert size["model_fp16.tflite"] < 0.6 * size["model_fp32.tflite"]
    assert size["model_int8.tflite"] < 0.4 * size["model_fp32.tflite"]
    assert size["model_int8.onnx"] < 0.4 * size["model_fp32.onnx"]


@pytest.mark.parametrize("model", ["v2", "v3"])
def test_fp32_exports_match_keras_on_fresh_images(model, request, fresh_images):
    from mnetdeploy.export.validate import FP32_RTOL, logit_rel_error

    directory, _ = request.getfixturevalue(model)
    reference = keras_outputs(directory, fresh_images)
    for name in ("model_fp32.tflite", "model_fp32.onnx"):
        got = outputs(directory / name, fresh_images)
        assert got.shape == reference.shape
        # float kernels sum in another order on every CPU: compare logits relative to their range
        assert logit_rel_error(reference, got) <= FP32_RTOL, name
        assert np.mean(np.argmax(got, 1) == np.argmax(reference, 1)) >= 0.9, name


def test_logit_error_sees_a_one_percent_weight_error_and_ignores_the_softmax_normaliser():
    """SYNTHETIC logits: float-order noise (1e-6 of the range) passes, a 1 % change in one class fails, and
    a constant shift of every logit of an image (what the softmax normaliser hides) is no error at all."""
    from mnetdeploy.export.validate import FP32_RTOL, logit_rel_error

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (8, 1000))
    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    reference = softmax(logits)
    noisy = softmax(logits * (1 + rng.normal(0, 1e-6, logits.shape)) + rng.normal(0, 3, (8, 1)))
    assert logit_rel_error(reference, noisy) < 1e-5
    broken = logits.copy()
    broken[:, 7] += 0.01 * (logits.max(1) - logits.min(1))
    assert logit_rel_error(reference, softmax(broken)) == pytest.approx(0.01, rel=0.05)
    assert logit_rel_error(reference, softmax(broken)) > FP32_RTOL
    assert logit_rel_error(logits, broken) == pytest.approx(0.01, rel=0.05)  # logits compare as logits


@pytest.mark.parametrize("model", ["v2", "v3"])
def test_int8_agrees_with_float(model, request, fresh_images):
    from mnetdeploy.export.validate import compare_outputs

    directory, report = request.getfixturevalue(model)
    reference = keras_outputs(directory, fresh_images)
    for name in ("model_int8.tflite", "model_int8.onnx"):
        agreement = compare_outputs(reference, outputs(directory / name, fresh_images))
        # Random-init models are fragile under int8 (the TFLite converter's own default scores the same);
        # a collapsed model scores ~0.02. The pipeline's own check must agree with ours in kind.
        assert agreement.cosine > 0.3, (name, agreement)
        assert np.isfinite(agreement.max_abs_diff)
    checks = {a["file"]: a["check"] for a in report["artifacts"]}
    assert checks["model_fp32.tflite"]["logit_rel_error"] <= 1e-3
    assert checks["model_int8.tflite"]["cosine"] > 0.3
    for name in ("model_int8.tflite", "model_int8.onnx"):  # the kernels were compared with plain arithmetic
        kernel = checks[name]["kernel"]
        assert kernel["distance"] <= kernel["limit"] and kernel["reference"], (name, kernel)


def test_reduced_precision_tflite_on_v2(v2, fresh_images):
    from mnetdeploy.export.validate import compare_outputs

    directory, _ = v2
    reference = keras_outputs(directory, fresh_images)
    fp16 = compare_outputs(reference, outputs(directory / "model_fp16.tflite", fresh_images))
    dynamic = compare_outputs(reference, outputs(directory / "model_dynamic.tflite", fresh_images))
    assert fp16.cosine > 0.999 and fp16.max_abs_diff < 0.05
    assert dynamic.cosine > 0.8


def test_tflite_int8_io_types_follow_the_option(v2, calib_dir):
    from mnetdeploy.export.tflite import io_details

    directory, _ = v2
    default = io_details((directory / "model_int8.tflite").read_bytes())
    assert default["input"]["dtype"] == "int8" and default["output"]["dtype"] == "int8"
    for io, dtype in (("uint8", "uint8"), ("float", "float32")):
        report = quantize_json(str(directory), "--calib", str(calib_dir), "--num-calib", str(NUM_CALIB),
                               "--formats", "tflite", "--precisions", "int8", "--int8-graph", "cpu", "--io", io)
        details = io_details((directory / "model_int8.tflite").read_bytes())
        assert details["input"]["dtype"] == dtype and details["output"]["dtype"] == dtype
        assert report["artifacts"][0]["io"]["input"]["dtype"] == dtype
        assert report["artifacts"][0]["reused"] is False  # the I/O type is part of the cache key


def test_onnx_has_static_batch_one_input_named_input(v2):
    import onnx

    directory, _ = v2
    for name in ("model_fp32.onnx", "model_int8.onnx", "model_fp16.onnx"):
        proto = onnx.load(str(directory / name))
        graph_input = proto.graph.input[0]
        assert graph_input.name == "input"
        assert [d.dim_value for d in graph_input.type.tensor_type.shape.dim] == [1, RES, RES, 3]
        assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    int8 = onnx.load(str(directory / "model_int8.onnx"))
    ops = {n.op_type for n in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # Batch norm was folded before quantization: no stray Mul/Add pair left after the depthwise convs.
    assert not any(n.op_type == "Mul" for n in int8.graph.node)


def test_converters_keep_the_int8_weights_chosen_in_keras(v2, calib_dir):
    """The weights snapped (and bias-corrected) in Keras are exactly the integers both converters store."""
    import onnx
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from onnx import numpy_helper

    from mnetdeploy.arch.weights import load_keras_model
    from mnetdeploy.data import calibration_set
    from mnetdeploy.export.onnx import node_layer_names
    from mnetdeploy.export.tflite import keras_layer_of
    from mnetdeploy.quantize.fold import fold_batchnorm
    from mnetdeploy.quantize.rounding import snap_weights_int8

    directory, _ = v2
    calibration = calibration_set(calib_dir, NUM_CALIB, 0, RES)
    snapped, _ = snap_weights_int8(fold_batchnorm(load_keras_model(directory / "model.keras"))[0],
                                   calibration.array, rounding="nearest")
    pointwise = {l.name: l.get_weights()[0] for l in snapped.layers
                 if l.__class__.__name__ == "Conv2D" and l.kernel_size == (1, 1)}
    names = {l.name for l in snapped.layers}

    # Without the default delegate: XNNPACK takes over (and frees) the constant weight buffers.
    interp = Interpreter(model_path=str(directory / "model_int8.tflite"),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    checked = 0
    for d in interp.get_tensor_details():
        layer = keras_layer_of(d["name"], names)
        scales = d["quantization_parameters"]["scales"]
        if d["dtype"] != np.int8 or len(d["shape"]) != 4 or layer not in pointwise or scales.size < 2:
            continue  # per-channel int8 4-D tensors are kernels; activations have one scale
        kernel = interp.get_tensor(d["index"]).astype(np.float64) * scales[:, None, None, None]  # O,1,1,I
        expected = pointwise[layer].transpose(3, 0, 1, 2)
        assert np.max(np.abs(kernel - expected)) <= 1e-6 * np.max(np.abs(expected)), layer
        checked += 1
    assert checked >= 10

    proto = onnx.load(str(directory / "model_int8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    layers = node_layer_names(proto, names)
    checked = 0
    for node in proto.graph.node:
        if node.op_type != "Conv" or layers.get(node.name) not in pointwise:
            continue
        dq = producer[node.input[1]]
        q, scale = inits[dq.input[0]].astype(np.float64), inits[dq.input[1]]
        kernel = q * scale[:, None, None, None]                                                   # O,I,1,1
        expected = pointwise[layers[node.name]].transpose(3, 2, 0, 1)
        assert np.max(np.abs(kernel - expected)) <= 1e-6 * np.max(np.abs(expected)), node.name
        checked += 1
    assert checked >= 10


def test_broken_fp32_export_fails_loudly_and_is_not_kept(tmp_path, calib_dir, monkeypatch):
    """A converter that silently changes the model (simulated: weights perturbed) must be caught."""
    import mnetdeploy.export.tflite as tflite_export

    directory = build_model(tmp_path, "v2", 0.35)
    real = tflite_export.convert_float

    def perturbed(model, precision):
        import keras

        clone = keras.models.clone_model(model)
        clone.set_weights([w * 1.01 for w in model.get_weights()])
        return real(clone, precision)

    monkeypatch.setattr(tflite_export, "convert_float", perturbed)
    result = CliRunner().invoke(cli, ["quantize", str(directory), "--formats", "tflite", "--precisions", "fp32"])
    assert result.exit_code == 1
    assert "export check failed" in result.output and "model_fp32.tflite" in result.output
    assert "of their range" in result.output and "conversion bug" in result.output
    assert not (directory / "model_fp32.tflite").exists()
    assert not list(directory.glob(".model_fp32*"))  # no temporary left behind
    assert "quantize:model_fp32.tflite" not in json.loads((directory / "manifest.json").read_text())["steps"]


def test_auto_int8_graph_is_measured_recorded_and_cached_per_machine(v3, calib_dir, tmp_path, monkeypatch):
    """--int8-graph auto (the default): every candidate built, checked and timed; the file written is the
    chosen graph; a second run reuses the decision; another machine decides anew. Which candidate wins
    depends on this CPU and is not asserted."""
    import shutil

    import mnetdeploy.quantize.graph_choice as graph_choice
    from mnetdeploy.export.int8_graph import INT8_GRAPHS
    from mnetdeploy.export.tflite import op_outputs

    source, report = v3
    directory = tmp_path / source.name
    shutil.copytree(source, directory)
    decision = report["int8_graph"]
    assert decision["requested"] == "auto" and decision["reused"] is False
    assert [c["graph"] for c in decision["candidates"]] == list(INT8_GRAPHS)
    for c in decision["candidates"]:
        assert c["passed"] and c["p50_ms"] > 0 and len(c["round_medians_ms"]) == graph_choice.ROUNDS, c
    assert graph_choice.pick(decision["candidates"])["graph"] == decision["chosen"]
    assert report["settings"]["int8_graph"] == "auto" and report["settings"]["int8_graph_used"] == decision["chosen"]
    assert decision["target"]["cpu_features"]["arch"] and decision["target"]["threads"] == 1
    float_ops = [c["float_ops"] for c in decision["candidates"]]
    assert float_ops[0] == 0 and float_ops[1] <= float_ops[2], float_ops  # most int8 first
    written = sum(1 for o in op_outputs((directory / "model_int8.tflite").read_bytes())
                  if o["dtype"] == "float32" and o["op"] not in ("QUANTIZE", "DEQUANTIZE"))
    chosen = next(c for c in decision["candidates"] if c["graph"] == decision["chosen"])
    assert written == chosen["float_ops"]

    args = (str(directory), "--calib", str(calib_dir), "--num-calib", str(NUM_CALIB), "--formats", "tflite",
            "--precisions", "int8")
    again = quantize_json(*args)
    assert again["int8_graph"]["reused"] is True and again["int8_graph"]["chosen"] == decision["chosen"]
    assert again["artifacts"][0]["reused"] is True

    real = graph_choice.target_identity
    monkeypatch.setattr(graph_choice, "target_identity",
                        lambda threads=1: {**real(threads), "cpu_model": "Another CPU @ 2.0GHz"})
    elsewhere = quantize_json(*args)
    assert elsewhere["int8_graph"]["reused"] is False
    assert elsewhere["int8_graph"]["target"]["cpu_model"] == "Another CPU @ 2.0GHz"

    fixed = quantize_json(*args, "--int8-graph", "integer-only")
    assert fixed["int8_graph"] is None and fixed["settings"]["int8_graph_used"] == "integer-only"
