"""Keras -> TFLite flatbuffers: fp32, fp16 (float16 weights), dynamic-range int8 and full-integer int8.

Always `TFLiteConverter.from_keras_model`. Never `from_concrete_functions`: with Keras 3 it silently writes
models whose outputs are wrong.

Full-integer int8 is done in two halves, the way TensorFlow's own QuantizationDebugger does it:
`calibrate()` runs the converter's calibration only (a float model annotated with every tensor's min/max), and
`quantize_calibrated()` runs the MLIR quantizer on it. The converter with a representative dataset does exactly
these two calls; splitting them lets a few layers be kept in float (`denylisted_nodes`) and the calibration be
reused across such attempts without recalibrating.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable

import numpy as np

from mnetdeploy.config import IO_TYPES as CONFIG_IO_TYPES
from mnetdeploy.errors import UserError
from mnetdeploy.quiet import quiet_native_output

IO_TYPES = CONFIG_IO_TYPES   # declared once, in the config schema
FLOAT_PRECISIONS = ("fp32", "fp16", "dynamic")


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def convert_float(model, precision: str) -> bytes:
    """fp32, fp16 (weights stored as float16, dequantized at load) or dynamic-range int8 (weights int8,
    activations quantized on the fly by the kernels)."""
    if precision not in FLOAT_PRECISIONS:
        raise ValueError(f"precision must be one of {FLOAT_PRECISIONS}")
    from mnetdeploy.arch.keras_builder import deploy_graph

    tf = _tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(deploy_graph(model))
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with quiet_native_output():
        return bytes(converter.convert())


def calibrate(model, images: np.ndarray) -> bytes:
    """The float model with activation ranges (min/max over `images`) recorded on every tensor. The graph
    is the deployment form (batch 1: arch/keras_builder.py)."""
    from mnetdeploy.arch.keras_builder import deploy_graph

    tf = _tf()
    model = deploy_graph(model)
    images = np.asarray(images, dtype=np.float32)

    def representative():
        for i in range(len(images)):
            yield [images[i:i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # noqa: SLF001 - the documented debugger route
    with quiet_native_output():
        return bytes(converter.convert())


def quantize_calibrated(calibrated: bytes, io: str = "int8", keep_float: Iterable[str] = (),
                        graph: str = "cpu") -> bytes:
    """Full-integer int8 (per-channel weights, per-tensor activations) from a calibrated model.

    io: "int8"/"uint8" make the model's input and output integer tensors (what NPUs and MCUs want); "float"
    keeps float input/output with quantize/dequantize ops inside. keep_float: output tensor names of ops to
    leave in float (see `op_outputs`). graph: "cpu" also keeps float the ops XNNPACK runs faster in float,
    "integer-only" nothing more (export/int8_graph.py)."""
    if io not in IO_TYPES:
        raise UserError(f"io: must be one of {', '.join(IO_TYPES)} (got {io!r})")
    tf = _tf()
    from tensorflow.lite.python import convert

    dtype = {"float": tf.float32, "int8": tf.int8, "uint8": tf.uint8}[io]
    from mnetdeploy.export.int8_graph import float_ops

    denylist = list(dict.fromkeys([*keep_float, *float_ops(calibrated, graph)])) or None
    with quiet_native_output():
        return bytes(convert.mlir_quantize(calibrated, disable_per_channel=False, input_data_type=dtype,
                                           output_data_type=dtype, denylisted_nodes=denylist))


def quantize_int8(model, images: np.ndarray, io: str = "int8", graph: str = "cpu") -> bytes:
    return quantize_calibrated(calibrate(model, images), io, graph=graph)


# ------------------------------------------------------------------------------------ reading flatbuffers

def op_outputs(model_bytes: bytes) -> list[dict]:
    """Every operator's first output: {"index", "tensor" (name), "op" (builtin name), "dtype"}."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in schema.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    types = {v: k for k, v in schema.TensorType.__dict__.items() if not k.startswith("_")}
    out = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if op.OutputsLength() == 0:
            continue
        t = graph.Tensors(op.Outputs(0))
        out.append({"index": i, "tensor": t.Name().decode(), "op": names.get(builtin, str(builtin)),
                    "dtype": types.get(t.Type(), str(t.Type())).lower()})
    return out


def keras_layer_of(tensor_name: str, layer_names: set[str], prefer: Collection[str] = frozenset()) -> str | None:
    """The Keras layer a TFLite tensor comes from. Fused tensors join several op names with ';'
    ("model_1/conv_pw_1_relu_1/Relu6;model_1/conv_pw_1_1/convolution;..."); the layer is the name scope
    after the model's own, minus the call suffix ("_1") Keras adds when tracing, which is stripped first:
    the stem "conv" of a v3 traces as "conv_1", also the name of its last 1x1 conv. `prefer` (e.g. the conv
    layers) wins over other matches, so a fused conv+ReLU6 maps to the conv."""
    found = []
    for part in tensor_name.split(";"):
        scope = part.split("/")
        if len(scope) < 2:
            continue
        stripped = re.sub(r"_\d+$", "", scope[1])
        candidate = stripped if stripped in layer_names else scope[1]
        if candidate in layer_names and candidate not in found:
            found.append(candidate)
    for name in found:
        if name in prefer:
            return name
    return found[0] if found else None


def io_details(model_bytes: bytes) -> dict:
    """Input/output dtypes and quantization of a TFLite model (for the summary and tests)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    details = {}
    for key, items in (("input", interp.get_input_details()), ("output", interp.get_output_details())):
        d = items[0]
        scale, zero = d["quantization"]
        details[key] = {"dtype": np.dtype(d["dtype"]).name, "shape": [int(s) for s in d["shape"]],
                        "scale": float(scale), "zero_point": int(zero)}
    return details
