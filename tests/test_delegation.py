"""Every exported TFLite graph (fp32 and int8, every family) runs entirely inside XNNPACK, and the execution
report of ONNX models says which ops run on integer kernels.

A graph that stops being fully delegated gets slow without failing anything else: one op XNNPACK does not
take (HARD_SWISH in int8, a SHAPE chain from a dynamic batch, int8 SOFTMAX) splits the graph into partitions
with reference kernels and tensor copies between them (v3-small 224 int8 was 2.5x slower than fp32 that
way). Small models (96x96, narrow) keep this fast; delegation does not depend on the size.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mnetdeploy.runtimes.inspect import inspect_execution, summary_line

RES = 96
# v3-large has the same op types as v3-small (hard-swish, squeeze-excite, 5x5 depthwise): one v3 is enough.
FAMILIES = (("v1", 0.25), ("v2", 0.35), ("v3-small", 0.75))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    from mnetdeploy.build import build
    from mnetdeploy.config import QuantizeConfig, load_config
    from mnetdeploy.quantize import quantize

    root = tmp_path_factory.mktemp("delegation")
    out = {}
    for arch, alpha in FAMILIES:
        cfg = load_config(overrides={"model.arch": arch, "model.alpha": alpha, "model.resolution": RES,
                                     "model.classes": 100, "output": str(root)})
        directory = build(cfg).artifact_dir
        # Synthetic calibration images (no data folder given): delegation does not depend on the values.
        quantize(directory, QuantizeConfig(formats=["tflite", "onnx"], precisions=["fp32", "int8"], num_calib=4,
                                           int8_graph="cpu"))
        out[arch] = directory
    return out


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("arch", [a for a, _ in FAMILIES])
def test_tflite_fully_delegated_to_xnnpack(exported, arch, precision):
    info = inspect_execution(exported[arch] / f"model_{precision}.tflite", threads=1)
    assert info["delegate"] == "xnnpack", info
    # One partition: no op between two delegated regions falls back (each boundary costs a copy).
    assert info["delegate_partitions"] == 1, summary_line(info)
    # The int8 graph for CPUs (--int8-graph cpu) runs every op in XNNPACK. (The integer-only graph leaves
    # the ops XNNPACK has no int8 kernel for outside, by design: tests/test_int8_graph.py.)
    assert info["default_kernel_ops"] == 0 and info["delegated_percent"] == 100.0, summary_line(info)
    assert info["delegated_ops"] == info["ops"] == sum(info["op_types"].values())
    # Static batch 1: no run-time shape computation left in the graph.
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & set(info["op_types"]), info["op_types"]


def test_inspect_counts_undelegated_ops(tmp_path):
    """The inspector must see an op XNNPACK leaves on the default kernels (int8 HARD_SWISH), or the test
    above could pass for a wrong reason."""
    import keras
    import numpy as np
    from keras import layers

    from mnetdeploy.export.tflite import quantize_int8

    image = keras.Input((16, 16, 8), batch_size=1)
    x = layers.Conv2D(8, 1)(image)
    x = layers.Activation("hard_swish")(x)
    model = keras.Model(image, layers.Conv2D(4, 1)(x))
    path = tmp_path / "hswish_int8.tflite"
    # The plain converter makes an int8 HARD_SWISH; quantize_int8 keeps it float (export/tflite.py).
    import tensorflow as tf

    images = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 8)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([images[i:i + 1]] for i in range(4))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    path.write_bytes(converter.convert())
    info = inspect_execution(path, threads=1)
    assert info["not_delegated_by_type"].get("HARD_SWISH") == 1, info
    assert info["delegated_percent"] < 100
    fixed = tmp_path / "fixed_int8.tflite"
    fixed.write_bytes(quantize_int8(model, images))
    info = inspect_execution(fixed, threads=1)
    assert info["default_kernel_ops"] == 0 and info["delegate_partitions"] == 1, summary_line(info)
    assert info["op_types"].get("DEQUANTIZE") == 1 and info["op_types"].get("QUANTIZE", 0) >= 1


@pytest.mark.parametrize("arch", [a for a, _ in FAMILIES])
def test_onnx_execution_report(exported, arch):
    fp32 = inspect_execution(exported[arch] / "model_fp32.onnx", threads=1)
    assert fp32["runtime"] == "onnxruntime" and not fp32["quantized"] and fp32["int8_nodes"] == 0
    assert fp32["op_types"].get("Conv", 0) + fp32["op_types"].get("FusedConv", 0) > 0
    int8 = inspect_execution(exported[arch] / "model_int8.onnx", threads=1)
    assert int8["quantized"] and int8["int8_nodes"] > 0, summary_line(int8)
    # Every compute node runs on an integer kernel: with int8 (S8S8) activations ONNX Runtime left convs,
    # Add and Mul in float; ReduceMean has no integer kernel (export/onnx.py writes GlobalAveragePool).
    assert int8["float_nodes"] == 0 and not int8["fallback_by_type"], summary_line(int8)
    assert int8["int8_percent"] == 100.0
    assert sum(int8["op_types"].values()) == int8["nodes"]


def test_inspect_rejects_other_files(tmp_path):
    from mnetdeploy.errors import UserError

    path = tmp_path / "model.keras"
    path.write_bytes(b"x")
    with pytest.raises(UserError, match="tflite or .onnx"):
        inspect_execution(path)


def test_info_and_report_carry_the_execution(exported):
    from mnetdeploy.info import describe
    from mnetdeploy.report.collect import build_report
    from mnetdeploy.report.render import artifacts_section

    directory = exported["v2"]
    summary = describe(directory)
    assert set(summary["execution"]) == {"model_fp32.tflite", "model_int8.tflite", "model_fp32.onnx",
                                         "model_int8.onnx"}
    assert list(describe(directory / "model_int8.tflite")["execution"]) == ["model_int8.tflite"]
    report = build_report(directory)
    by_file = {a["file"]: a for a in report["artifacts"]}
    assert by_file["model.keras"]["execution"] is None
    assert by_file["model_fp32.tflite"]["execution"]["delegated_percent"] == 100.0
    assert by_file["model_int8.tflite"]["execution"]["delegated_percent"] == 100.0
    assert by_file["model_int8.onnx"]["execution"]["int8_percent"] == 100.0
    rows = artifacts_section(report).table.rows
    assert any(cell.text == "XNNPACK 100.0 %" for row in rows for cell in row if hasattr(cell, "text"))
