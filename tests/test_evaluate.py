"""Accuracy evaluation (mnetdeploy.evaluate, `mnetdeploy eval`) on the real pretrained MobileNet v1 0.25/224
and the 500 shared ImageNet images, plus small synthetic models for the label conventions and formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import IMAGENET_SAMPLE, PRETRAINED_V1, require
from mnetdeploy.cli import cli
from mnetdeploy.data import files_hash, find_images, load_images, read_default_calibration
from mnetdeploy.errors import UserError
from mnetdeploy.evaluate import evaluate, model_precision

pytestmark = pytest.mark.slow


def _to_tflite(model, path, mode="fp32"):
    """Keras model -> TFLite file. from_keras_model: from_concrete_functions writes broken models with Keras 3."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        rng = np.random.default_rng(0)
        shape = (1,) + tuple(model.input_shape[1:])
        converter.representative_dataset = lambda: ([rng.uniform(-1, 1, shape).astype(np.float32)] for _ in range(4))
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="module")
def v1_keras():
    from mnetdeploy.arch.weights import load_keras_model

    return load_keras_model(require(PRETRAINED_V1))


@pytest.fixture(scope="module")
def v1_tflite(v1_keras, tmp_path_factory):
    return _to_tflite(v1_keras, tmp_path_factory.mktemp("v1") / "v1_fp32.tflite")


@pytest.fixture(scope="module")
def full_run(v1_tflite):
    """The Keras model and its TFLite conversion on all 500 images, in one shared-preprocessing run."""
    return evaluate([PRETRAINED_V1, v1_tflite], require(IMAGENET_SAMPLE), progress=False)


# ---------------------------------------------------------------------------------- the real pretrained model

def test_pretrained_keras_accuracy_on_500_images(full_run):
    keras_result = full_run[0]
    print(f"\nkeras  top1 {keras_result.top1:.2f} %  top5 {keras_result.top5:.2f} %")
    assert keras_result.format == "keras" and keras_result.precision == "fp32"
    assert keras_result.reference and keras_result.agreement_top1 is None
    assert keras_result.n == 500 and keras_result.outputs == 1000 and keras_result.label_offset == 0
    assert keras_result.top1 > 50.0
    assert keras_result.top5 > 70.0
    assert keras_result.top5 >= keras_result.top1


def test_tflite_fp32_agrees_with_keras(full_run):
    keras_result, tflite_result = full_run
    print(f"\ntflite top1 {tflite_result.top1:.2f} %  top5 {tflite_result.top5:.2f} %  "
          f"agreement {tflite_result.agreement_top1:.2f} %  cosine {tflite_result.cosine:.6f}")
    assert tflite_result.format == "tflite" and tflite_result.precision == "fp32" and not tflite_result.reference
    assert tflite_result.n == 500
    assert tflite_result.agreement_top1 >= 99.0
    assert tflite_result.cosine > 0.999
    assert abs(tflite_result.top1 - keras_result.top1) <= 1.0


def test_result_records_the_images_used(full_run, imagenet_sample):
    data = full_run[0].data
    assert data == full_run[1].data
    files = find_images(imagenet_sample)
    assert data["count"] == 500 and data["skipped"] == 0
    assert data["hash"] == files_hash(files)
    assert data["labels"].endswith("labels.csv")


def test_1001_class_model_is_detected_by_auto(v1_keras, tmp_path):
    import keras

    # TF-slim convention: a background logit (here constant 0) at index 0 before the 1000 ImageNet classes.
    # Plain layers on the same graph, no nested model or Lambda, so from_keras_model's export path works.
    probs = v1_keras.outputs[0]
    background = keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer="zeros")(probs)
    wrapped = keras.Model(v1_keras.inputs, keras.layers.Concatenate()([background, probs]))
    tflite = _to_tflite(wrapped, tmp_path / "v1_1001.tflite")
    r1000, r1001 = evaluate([PRETRAINED_V1, tflite], require(IMAGENET_SAMPLE), limit=60, progress=False)
    assert (r1001.outputs, r1001.label_offset) == (1001, 1)
    assert (r1000.outputs, r1000.label_offset) == (1000, 0)
    assert r1001.n == 60 and r1001.top1 == pytest.approx(r1000.top1, abs=2.0) and r1001.top1 > 40
    # Agreement and cosine compare class ids / the 1000 real classes, not raw output indices.
    assert r1001.agreement_top1 >= 98.0 and r1001.cosine > 0.999
    with pytest.raises(UserError, match="--label-offset 0 does not fit a model with 1001 outputs"):
        evaluate([tflite], IMAGENET_SAMPLE, label_offset="0", limit=2, progress=False)


# ------------------------------------------------------------------------------------ slices and the CLI

def test_cli_eval_json_on_images_not_used_for_calibration(v1_tflite, imagenet_sample):
    result = CliRunner().invoke(cli, ["eval", str(v1_tflite), "--data", str(imagenet_sample),
                                      "--skip-first", "100", "--limit", "50", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    files = find_images(imagenet_sample)
    assert row["format"] == "tflite" and row["precision"] == "fp32" and row["n"] == 50
    assert row["data"]["first_file"] == files[100].name and row["data"]["last_file"] == files[149].name
    assert row["data"]["hash"] == files_hash(files[100:150])
    assert 0 <= row["top1"] <= row["top5"] <= 100 and row["top1"] > 30
    # the shipped calibration default (first 100 by name) and this slice do not overlap
    default = read_default_calibration()
    assert default.first == 100 and files[99].name < row["data"]["first_file"]


def test_cli_errors_are_one_line_exit_2(tmp_path, imagenet_sample):
    runner = CliRunner()
    missing = runner.invoke(cli, ["eval", str(tmp_path / "none.tflite"), "--data", str(imagenet_sample)])
    assert missing.exit_code == 2 and "model file not found" in missing.output
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"this is not a flatbuffer" * 10)
    bad = runner.invoke(cli, ["eval", str(garbage), "--data", str(imagenet_sample)])
    assert bad.exit_code == 2 and bad.output.startswith("error: ") and len(bad.output.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    no_data = runner.invoke(cli, ["eval", str(garbage), "--data", str(empty)])
    assert no_data.exit_code == 2 and "no images" in no_data.output


# ------------------------------------------------------------------- ImageFolder, other widths, ONNX, precision

@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    """A 3-class classifier on 32x32 inputs whose predictions depend on colour."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    # 64 filters: 1728 weights, above the TFLite converter's 1024-element threshold for quantizing a tensor
    x = keras.layers.Conv2D(64, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    model.save(path)
    return model, path


def _imagefolder(root, colours_per_class=((255, 0, 0), (0, 255, 0), (0, 0, 255)), per_class=4):
    rng = np.random.default_rng(0)
    for c, colour in enumerate(colours_per_class):
        for i in range(per_class):
            noisy = np.clip(np.array(colour) + rng.integers(-60, 60, (40, 40, 3)), 0, 255).astype(np.uint8)
            (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy).save(root / f"class_{c}" / f"{i}.png")
    return root


def test_imagefolder_eval_matches_direct_prediction(tiny_keras, tmp_path):
    model, path = tiny_keras
    folder = _imagefolder(tmp_path / "data")
    (folder / "class_0" / "extra.heic").write_bytes(b"\0" * 8)  # a phone photo nobody converted
    (result,) = evaluate([path], folder, progress=False)
    assert result.data["ignored"] == (f"{folder}: 1 .heic file(s) ignored (not a supported image type: "
                                      "jpg/jpeg/png/bmp/webp/tif/tiff); convert them to use them")
    files = find_images(folder)
    labels = np.array([int(p.parent.name.split("_")[1]) for p in files])
    predicted = np.argmax(np.asarray(model(load_images(files, 32).array)), axis=1)
    assert result.n == 12 and result.outputs == 3 and result.label_offset == 0
    assert result.data["labels"] == "imagefolder"
    assert result.top1 == pytest.approx(100.0 * np.mean(predicted == labels), abs=1e-6)
    assert result.top5 == 100.0  # top-5 of a 3-class model always contains the label


def test_other_widths_need_explicit_labels(tiny_keras, imagenet_sample):
    _, path = tiny_keras
    with pytest.raises(UserError, match="neither 1000 .* nor 1001"):
        evaluate([path], imagenet_sample, limit=3, progress=False, resolution=None)


def _onnx_classifier(path, classes=1000, quantized=False):
    """NHWC (1, 224, 224, 3) -> mean colour -> MatMul -> (1, classes), optionally with a Q/DQ pair."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    weights = rng.normal(size=(3, classes)).astype(np.float32)
    nodes = [helper.make_node("ReduceMean", ["x"], ["pooled"], axes=[1, 2], keepdims=0)]
    pooled = "pooled"
    if quantized:
        nodes += [helper.make_node("QuantizeLinear", ["pooled", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        pooled = "dq"
    nodes.append(helper.make_node("MatMul", [pooled, "w"], ["y"]))
    inits = [numpy_helper.from_array(weights, "w"),
             numpy_helper.from_array(np.array(0.01, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 224, 224, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path, weights


def test_onnx_model_scored_like_numpy(tmp_path, imagenet_sample):
    path, weights = _onnx_classifier(tmp_path / "tiny.onnx")
    (result,) = evaluate([path], imagenet_sample, limit=20, progress=False)
    files = find_images(imagenet_sample)[:20]
    logits = load_images(files, 224).array.mean(axis=(1, 2)) @ weights
    labels = np.arange(0, 40, 2)  # the first 20 images are the even indices 0..38 of the 1000 classes
    assert result.format == "onnx" and result.precision == "fp32" and result.n == 20
    assert result.top1 == pytest.approx(100.0 * np.mean(np.argmax(logits, 1) == labels))
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert result.top5 == pytest.approx(100.0 * np.mean([l in t for l, t in zip(labels, top5)]))


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")  # int8 with float I/O, as intended
def test_precision_detection(tiny_keras, tmp_path):
    model, keras_path = tiny_keras
    assert model_precision(keras_path) == "fp32"
    for mode in ("fp32", "fp16", "dynamic", "int8"):
        assert model_precision(_to_tflite(model, tmp_path / f"{mode}.tflite", mode)) == mode
    assert model_precision(_onnx_classifier(tmp_path / "f.onnx")[0]) == "fp32"
    assert model_precision(_onnx_classifier(tmp_path / "q.onnx", quantized=True)[0]) == "int8"
