"""The int8 TFLite graph shapes (export/int8_graph.py): "cpu" keeps float exactly the ops its rules name,
"float-islands" only the ops XNNPACK has no int8 kernel for, "integer-only" quantizes every op. Checked on the
real converter's output, op by op; and the "auto" choice between them (quantize/graph_choice.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mnetdeploy.export.int8_graph import INT8_GRAPHS, float_ops, read_ops

SIZE = 64


@pytest.fixture(scope="module")
def model_and_calibration():
    """A MobileNet-v3-like start: image stem + hard-swish, depthwise, a narrow projection, a wide expansion,
    an int8-fed depthwise, squeeze-excite-style scaling, a wide head."""
    import keras
    from keras import layers

    from mnetdeploy.export.tflite import calibrate

    image = keras.Input((SIZE, SIZE, 3), batch_size=1, name="input")
    x = layers.Conv2D(16, 3, strides=2, padding="same", name="stem")(image)
    x = layers.Activation("hard_swish", name="stem_hswish")(x)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw_fed_float")(x)
    x = layers.Conv2D(16, 1, name="narrow_project")(x)
    x = layers.Conv2D(96, 1, activation="relu", name="wide_expand")(x)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw_fed_int8")(x)
    x = layers.Conv2D(64, 1, name="wide_project")(x)
    model = keras.Model(image, x)
    images = np.random.default_rng(0).uniform(-1, 1, (8, SIZE, SIZE, 3)).astype(np.float32)
    return model, images, calibrate(model, images)


def _dtypes_by_layer(model_bytes: bytes) -> dict[str, str]:
    from mnetdeploy.export.tflite import op_outputs

    found = {}
    for o in op_outputs(model_bytes):
        # (the last op's output tensor is named after the model output, not its layer: not listed)
        for name in ("stem_hswish", "stem", "dw_fed_float", "narrow_project", "wide_expand", "dw_fed_int8"):
            if f"/{name}" in o["tensor"] and o["op"] not in ("QUANTIZE", "DEQUANTIZE"):
                found.setdefault(name, o["dtype"])
                break
    return found


def test_cpu_graph_keeps_float_only_where_xnnpack_is_faster(model_and_calibration):
    from mnetdeploy.export.tflite import quantize_calibrated

    _, _, calibrated = model_and_calibration
    kinds = {op.output: op.kind for op in read_ops(calibrated)}
    kept = [kinds[t] for t in float_ops(calibrated, "cpu")]
    assert kept == ["CONV_2D", "HARD_SWISH", "DEPTHWISE_CONV_2D", "CONV_2D"], kept
    dtypes = _dtypes_by_layer(quantize_calibrated(calibrated, "int8", graph="cpu"))
    assert dtypes == {"stem": "float32", "stem_hswish": "float32", "dw_fed_float": "float32",
                      "narrow_project": "float32", "wide_expand": "int8", "dw_fed_int8": "int8"}, dtypes


def test_integer_only_graph_quantizes_every_op(model_and_calibration):
    from mnetdeploy.export.tflite import op_outputs, quantize_calibrated

    _, _, calibrated = model_and_calibration
    assert float_ops(calibrated, "integer-only") == []
    ops = op_outputs(quantize_calibrated(calibrated, "int8", graph="integer-only"))
    assert {o["dtype"] for o in ops} == {"int8"}, ops
    assert "HARD_SWISH" in {o["op"] for o in ops}


def test_both_graphs_delegate_as_documented(model_and_calibration, tmp_path):
    """cpu: one XNNPACK partition. integer-only: XNNPACK has no int8 HARD_SWISH, so it is left out (why
    cpu is the default for CPU deployment)."""
    from mnetdeploy.export.tflite import quantize_calibrated
    from mnetdeploy.runtimes.inspect import inspect_execution, summary_line

    _, _, calibrated = model_and_calibration
    paths = {}
    for graph in INT8_GRAPHS:
        paths[graph] = tmp_path / f"{graph}.tflite"
        paths[graph].write_bytes(quantize_calibrated(calibrated, "int8", graph=graph))
    for graph in ("cpu", "float-islands"):
        info = inspect_execution(paths[graph], threads=1)
        assert info["delegated_percent"] == 100.0 and info["delegate_partitions"] == 1, summary_line(info)
    integer = inspect_execution(paths["integer-only"], threads=1)
    assert integer["not_delegated_by_type"] == {"HARD_SWISH": 1}, summary_line(integer)


def test_cpu_graph_is_closer_to_float(model_and_calibration, tmp_path):
    """Float islands carry the float model's values: the cpu graph's error is below the integer-only one's."""
    from mnetdeploy.export.tflite import quantize_calibrated
    from mnetdeploy.runtimes.litert import LiteRTRunner

    model, images, calibrated = model_and_calibration
    test = np.random.default_rng(1).uniform(-1, 1, (4, SIZE, SIZE, 3)).astype(np.float32)
    reference = np.asarray(model(test))
    errors = {}
    for graph in INT8_GRAPHS:
        path = tmp_path / f"{graph}.tflite"
        path.write_bytes(quantize_calibrated(calibrated, "float", graph=graph))
        out = LiteRTRunner(path, threads=1).predict(test)
        errors[graph] = float(np.sqrt(np.mean((out - reference) ** 2)))
    assert 0 < errors["cpu"] < errors["integer-only"], errors


def test_unknown_graph_is_refused(model_and_calibration):
    from pydantic import ValidationError

    from mnetdeploy.config import QuantizeConfig, load_config
    from mnetdeploy.errors import ConfigError

    _, _, calibrated = model_and_calibration
    with pytest.raises(ValueError, match="int8 graph must be one of"):
        float_ops(calibrated, "gpu")
    with pytest.raises(ValidationError):
        QuantizeConfig(int8_graph="npu")
    with pytest.raises(ConfigError, match="--int8-graph npu: Input should be 'auto', 'integer-only', 'float-islands' or 'cpu'"):
        load_config(None, {"quantize.int8_graph": "npu"}, {"quantize.int8_graph": "--int8-graph"})
    assert QuantizeConfig(int8_graph="integer-only").int8_settings("tflite")["int8_graph"] == "integer-only"


def test_float_islands_keep_only_ops_without_an_int8_kernel(model_and_calibration):
    from mnetdeploy.export.tflite import quantize_calibrated

    _, _, calibrated = model_and_calibration
    kinds = {op.output: op.kind for op in read_ops(calibrated)}
    assert [kinds[t] for t in float_ops(calibrated, "float-islands")] == ["HARD_SWISH"]
    dtypes = _dtypes_by_layer(quantize_calibrated(calibrated, "int8", graph="float-islands"))
    assert dtypes["stem_hswish"] == "float32" and dtypes["stem"] == "int8" and dtypes["dw_fed_float"] == "int8"


@pytest.mark.parametrize("candidates, chosen", [
    # fastest wins when nothing is tied
    ([("integer-only", True, 1.00, 0.90), ("float-islands", True, 0.80, 0.91), ("cpu", True, 0.90, 0.95)],
     "float-islands"),
    # within 3 % of the fastest: tied, the closest to float wins
    ([("integer-only", True, 1.00, 0.90), ("float-islands", True, 0.80, 0.91), ("cpu", True, 0.82, 0.95)], "cpu"),
    # a failed candidate is never chosen, however fast
    ([("integer-only", False, 0.10, 0.10), ("float-islands", True, 0.80, 0.91), ("cpu", True, 0.90, 0.95)],
     "float-islands"),
])
def test_auto_picks_the_fastest_passing_candidate_ties_to_accuracy(candidates, chosen):
    """Recorded timings (not measured here): the rule alone."""
    from mnetdeploy.quantize.graph_choice import pick

    records = [{"graph": g, "passed": ok, "p50_ms": p50, "cosine": cos} for g, ok, p50, cos in candidates]
    assert pick(records)["graph"] == chosen
    assert pick([dict(r, passed=False) for r in records]) is None
