"""Your own model (issue 15, item 7): `quantize own.keras` adopts a Keras model file into an artifact directory
(params/MACs per layer read from its graph) and quantizes it there; `info` describes any .keras/.h5, .tflite
or .onnx file; models that are not fixed-size RGB classifiers are refused in one line.

Models are Keras-applications MobileNets with random weights (weights=None), small enough to convert fast.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mnetdeploy.artifacts import read_manifest
from mnetdeploy.cli import cli
from test_export import write_image_folder

RES = 96


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _save(model, path: Path) -> Path:
    model.save(path)
    return path


@pytest.fixture(scope="module")
def own_keras(tmp_path_factory) -> Path:
    """A Keras-applications MobileNetV2 saved as the user would: not built by this tool."""
    import keras

    model = keras.applications.MobileNetV2(alpha=0.35, input_shape=(RES, RES, 3), weights=None, classes=10)
    return _save(model, tmp_path_factory.mktemp("own") / "own.keras")


@pytest.fixture(scope="module")
def quantized(own_keras, tmp_path_factory) -> tuple[dict, dict, Path]:
    """`quantize own.keras` run twice (the second must reuse), into --out/--name."""
    calib = write_image_folder(tmp_path_factory.mktemp("calib"), 16, RES, seed=3)
    out = tmp_path_factory.mktemp("artifacts")
    args = ["quantize", str(own_keras), "--calib", str(calib), "--num-calib", "8", "--formats", "tflite,onnx",
            "--int8-graph", "cpu", "--out", str(out), "--name", "mine", "--json"]
    first, second = run(*args), run(*args)
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    return json.loads(first.stdout), json.loads(second.stdout), out / "mine"


def test_quantize_own_keras_makes_a_checked_artifact_directory_and_reuses_it(quantized):
    first, second, directory = quantized
    assert Path(first["artifact_dir"]) == directory
    assert {a["file"] for a in first["artifacts"]} == {"model_fp32.tflite", "model_int8.tflite",
                                                      "model_fp32.onnx", "model_int8.onnx"}
    for a in first["artifacts"]:
        assert not a["reused"] and a["check"]["cosine"] > 0.99, a  # a failed check exits 1
        assert (directory / a["file"]).is_file()
    assert any(n.startswith("adopted") and "MobileNet v2 alpha 0.35" in n for n in first["notes"])
    summary = json.loads((directory / "summary.json").read_text())
    assert (summary["arch"], summary["alpha"], summary["resolution"], summary["classes"]) == ("v2", 0.35, RES, 10)
    steps = read_manifest(directory).steps
    assert "adopt" in steps and set(steps["adopt"].outputs) == {"model.keras", "summary.json"}
    # The second run: the adoption and every export reused, byte for byte.
    assert all(a["reused"] for a in second["artifacts"])
    assert any(n.startswith("reused the adoption") for n in second["notes"])
    assert [a["sha256"] for a in second["artifacts"]] == [a["sha256"] for a in first["artifacts"]]


def test_params_and_macs_read_from_a_keras_graph_equal_the_plan():
    import keras

    from mnetdeploy.arch.imported import keras_summary
    from mnetdeploy.arch.plan import plan_network

    cases = [(keras.applications.MobileNetV2(alpha=0.35, input_shape=(RES, RES, 3), weights=None, classes=10),
              ("v2", 0.35, RES)),
             (keras.applications.MobileNet(alpha=0.25, input_shape=(128, 128, 3), weights=None, classes=10),
              ("v1", 0.25, 128))]
    for model, (arch, alpha, res) in cases:
        read = keras_summary(model, "test")
        net = plan_network(arch, alpha, res, 10)
        assert (read["arch"], read["alpha"]) == (arch, alpha)
        assert read["params"] == net.params == model.count_params()
        assert read["macs"] == net.macs and read["deploy_params"] == net.deploy_params
        assert read["layers"] == net.summary()["layers"]


def test_own_head_on_the_pretrained_v1_is_recognised_with_its_head_counted(pretrained_v1, tmp_path):
    import keras

    from mnetdeploy.arch.imported import keras_summary
    from mnetdeploy.arch.weights import load_keras_model

    base = load_keras_model(pretrained_v1)
    features = base.get_layer("conv_pw_13_relu").output
    x = keras.layers.GlobalAveragePooling2D()(features)
    x = keras.layers.Dense(32, activation="relu", name="my_hidden")(x)
    tuned = keras.Model(base.input, keras.layers.Dense(5, activation="softmax", name="my_classes")(x))
    read = keras_summary(tuned, "tuned")
    assert (read["arch"], read["alpha"], read["classes"]) == ("v1", 0.25, 5)
    rows = {r["name"]: r for r in read["layers"]}
    assert rows["my_hidden"]["macs"] == 256 * 32 and rows["my_classes"]["macs"] == 32 * 5
    assert read["params"] == tuned.count_params()


def test_info_describes_keras_tflite_and_onnx_files_outside_artifact_directories(quantized, own_keras, tmp_path):
    _, _, directory = quantized
    loose = {}
    for name in ("model_int8.tflite", "model_int8.onnx"):
        loose[name] = shutil.copy(directory / name, tmp_path / name)  # no summary.json next to them
    keras_info = run("info", str(own_keras))
    assert keras_info.exit_code == 0, keras_info.output
    assert "block_16_project" in keras_info.stdout and "10,666,928" in keras_info.stdout

    tflite = json.loads(run("info", str(loose["model_int8.tflite"]), "--json").stdout)
    assert tflite["execution"]["model_int8.tflite"]["runtime"] == "litert"
    # MACs from the file's tensor shapes equal the Keras graph's (batch norm folded does not change MACs).
    assert tflite["macs"] == 10_666_928 and len(tflite["layers"]) == 53
    table = run("info", str(loose["model_int8.tflite"]))
    assert table.exit_code == 0 and "delegated" in table.stdout and "10,666,928" in table.stdout

    onnx = run("info", str(loose["model_int8.onnx"]))
    assert onnx.exit_code == 0, onnx.output
    assert "onnxruntime" in onnx.stdout and "int8" in onnx.stdout and "op types" in onnx.stdout
    assert "not a mnetdeploy artifact directory" not in onnx.output


@pytest.mark.parametrize("kind", ["dense-1d", "dynamic-size", "two-outputs"])
def test_a_model_that_is_not_a_fixed_size_image_classifier_is_refused_in_one_line(kind, tmp_path):
    import keras

    if kind == "dense-1d":
        inp = keras.Input((20,))
        model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(8)(inp)))
        expected = "is not an image"
    elif kind == "dynamic-size":
        inp = keras.Input((None, None, 3))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.DepthwiseConv2D(3)(keras.layers.Conv2D(8, 3)(inp)))
        model = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x))
        expected = "is dynamic"
    else:
        inp = keras.Input((32, 32, 3))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp))
        model = keras.Model(inp, [keras.layers.Dense(3)(x), keras.layers.Dense(2)(x)])
        expected = "2 output(s)"
    path = _save(model, tmp_path / f"{kind}.keras")
    for command in (["quantize", str(path), "--out", str(tmp_path / "a")], ["info", str(path)]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if not line.startswith("... ")]  # progress
        assert len(lines) == 1 and expected in lines[0] and lines[0].startswith("error: "), result.output
    assert not (tmp_path / "a").exists()  # refused before anything was written


def test_out_and_name_are_refused_for_an_artifact_directory(quantized):
    _, _, directory = quantized
    result = CliRunner().invoke(cli, ["quantize", str(directory), "--name", "other"])
    assert result.exit_code == 2 and "--name" in result.output and result.output.strip().count("\n") == 0
