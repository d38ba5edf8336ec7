"""ONNX int8 through ONNX Runtime's static quantization: QDQ format, per-channel int8 weights, uint8 activations.

The fp32 ONNX given here comes from the batch-norm-folded Keras model (see fold.py): applied to tf2onnx's
unfolded graph, quantize_static squeezes each depthwise batch norm's wide per-channel scale vector into one int8
scale and the model collapses to chance. Weights arrive already on the int8 grid (rounding.py), which
ONNX Runtime's symmetric per-channel quantizer ([-127, 127], scale = max|w| / 127) reproduces exactly.

Why U8S8 (uint8 activations, int8 weights), measured with onnxruntime 1.32 on an AVX-512 VNNI x86 host,
1 thread, interleaved, v2 1.0/224 | v3-small 1.0/224 (fp32: 6.1 | 2.7 ms):
    QDQ S8S8        6.0 | 8.4 ms   ORT's x86 CPU fusions of DQ -> op -> Q into QLinear*/QGemm kernels
                                   mostly want uint8 activations: with int8 ones 15 of v2's 52 convs and
                                   25 of v3-small's stay float Conv between DequantizeLinear/QuantizeLinear,
                                   and v3's Add/Mul run in float (19 % of v3-small's compute nodes int8)
    QDQ U8S8        3.5 | 2.2 ms   98.5 % | 93.5 % of compute nodes on integer kernels; u8 x s8 is the
                                   VNNI dot product (VPDPBUSD)
    QOperator U8S8  3.6 | 2.2 ms   same kernels; QDQ kept (other runtimes and tools read it)
    QOperator S8S8  47.6 | 16.5 ms
    reduce_range    no gain on VNNI (7-bit weights only avoid u8 x s8 saturation on pre-VNNI AVX2) and
                    costs accuracy; off
Graph optimization: ORT_ENABLE_ALL (runtimes/onnx.py) is where the fusions happen; ENABLE_EXTENDED was
10-40 % slower for int8 and 3-4x slower for fp32 (no NCHWc layout).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mnetdeploy.config import ONNX_CALIBRATIONS
from mnetdeploy.errors import UserError
from mnetdeploy.export.onnx import INPUT_NAME
from mnetdeploy.quiet import quiet_native_output

CALIBRATION_METHODS = ONNX_CALIBRATIONS   # declared once, in the config schema


@contextlib.contextmanager
def _quiet_root_logger():
    """quantize_static logs "Please consider to run pre-processing before quantization" on the root logger
    on every call; the pre-processing it means (folding, shape inference) is done here already (fold.py)."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def calibration_reader(images: np.ndarray):
    """ONNX Runtime's CalibrationDataReader over an in-memory batch, one image per call."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.images = np.asarray(images, dtype=np.float32)
            self.i = 0

        def get_next(self):
            if self.i >= len(self.images):
                return None
            self.i += 1
            return {INPUT_NAME: self.images[self.i - 1:self.i]}

        def rewind(self):
            self.i = 0

    return Reader()


def quantize_static_int8(fp32_path: Path, out_path: Path, images: np.ndarray, method: str = "minmax",
                         keep_float_nodes: Iterable[str] = ()) -> None:
    """Write the QDQ int8 model of `fp32_path` to `out_path` (a temporary path; the caller renames it)."""
    if method not in CALIBRATION_METHODS:
        raise UserError(f"onnx_calib: must be one of {', '.join(CALIBRATION_METHODS)} (got {method!r})")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    keep = list(keep_float_nodes)
    calibrate_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                        "percentile": CalibrationMethod.Percentile}[method]
    with quiet_native_output(), _quiet_root_logger():
        quantize_static(
            str(fp32_path), str(out_path), calibration_reader(images),
            quant_format=QuantFormat.QDQ,
            per_channel=True,                     # per-tensor weights fail on depthwise kernels
            activation_type=QuantType.QUInt8,   # U8S8: see the module docstring
            weight_type=QuantType.QInt8,
            calibrate_method=calibrate_method,
            nodes_to_exclude=keep,
            extra_options={
                "WeightSymmetric": True,
                # Dense layers become MatMul with a (in, out) weight: its output channels are axis 1.
                "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
            },
        )
    if keep:
        protect_float_nodes(out_path, keep)


def protect_float_nodes(path: Path, nodes: Iterable[str]) -> None:
    """Keep excluded Conv/Gemm nodes in float when ONNX Runtime loads the model.

    ONNX Runtime's WeightBiasQuantization graph transformer (on at every optimization level above "disable
    all") finds a float Conv/Gemm whose input comes from a DequantizeLinear with a scalar scale and
    quantizes its float weights *per tensor* at load time. On a depthwise or pointwise MobileNet conv that is
    worse than not keeping it at all (measured on the pretrained v1 0.25: top-1 agreement 92 % -> 76 % with one
    such layer). Feeding the node through its own DequantizeLinear with a per-channel scale vector (all
    entries equal, so the values are identical) does not match the transformer's pattern."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    keep = set(nodes)
    inits = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    changed = False
    for node in list(graph.node):
        if node.name not in keep or node.op_type not in ("Conv", "Gemm"):
            continue
        dq = producer.get(node.input[0])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[1] not in inits:
            continue
        scale = numpy_helper.to_array(inits[dq.input[1]])
        if scale.size != 1:
            continue
        zero = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] in inits else None
        channels = _input_channels(node, inits)
        if channels is None:
            continue
        base = f"{node.name}__float_input"
        graph.initializer.append(numpy_helper.from_array(np.full(channels, scale.item(), scale.dtype), base + "_scale"))
        inputs = [dq.input[0], base + "_scale"]
        if zero is not None:
            graph.initializer.append(numpy_helper.from_array(np.full(channels, zero.item(), zero.dtype), base + "_zp"))
            inputs.append(base + "_zp")
        axis = 1  # NCHW channels for Conv, features for Gemm
        new = helper.make_node("DequantizeLinear", inputs, [base], name=base, axis=axis)
        graph.node.insert(list(graph.node).index(node), new)
        node.input[0] = base
        changed = True
    if changed:
        onnx.save(model, str(path))


def _input_channels(node, inits) -> int | None:
    """Input channels of a Conv (weight (out, in/group, kh, kw) x group) or Gemm (from its weight)."""
    from onnx import numpy_helper

    if len(node.input) < 2 or node.input[1] not in inits:
        return None
    weight = numpy_helper.to_array(inits[node.input[1]])
    if node.op_type == "Conv":
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        return int(weight.shape[1] * group)
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return int(weight.shape[1] if trans_b else weight.shape[0])
