"""Keras -> ONNX through tf2onnx: static batch 1, NHWC input named "input", the newest opset tf2onnx knows.

A static shape lets ONNX Runtime plan memory and pick kernels once, and matches the TFLite exports (batch 1
on device). The input stays NHWC like the Keras model (tf2onnx adds one Transpose), so every runner feeds the
same arrays.

fp16 here means float16 *weights* (half the file size), cast to float32 when the session loads them: the same
thing TFLite's fp16 post-training quantization does, and it runs on any CPU build of ONNX Runtime (most of its
CPU kernels have no float16 implementation).
"""

from __future__ import annotations

import os

import numpy as np

from mnetdeploy.quiet import quiet_native_output

INPUT_NAME = "input"
FP16_MIN_ELEMENTS = 16   # small constants (shapes, clip bounds) stay float32


def opset() -> int:
    """The newest opset tf2onnx converts to (18 for tf2onnx 1.17)."""
    import tf2onnx.constants

    return max(tf2onnx.constants.OPSET_TO_IR_VERSION)


def keras_to_onnx(model, target_opset: int | None = None):
    """An onnx.ModelProto of `model` with a (1, H, W, C) float input named "input"."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf2onnx

    shape = (1,) + tuple(int(d) for d in model.input_shape[1:])
    spec = (tf.TensorSpec(shape, tf.float32, name=INPUT_NAME),)
    with quiet_native_output():
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=target_opset or opset())
    proto.producer_name = "mnetdeploy (tf2onnx)"
    return global_pool_form(proto)


def global_pool_form(proto):
    """Spatial means (tf2onnx writes Keras' global pooling as ReduceMean over H, W after moving the layout to
    NCHW) become GlobalAveragePool (+ Flatten when the channel axis is all that is kept). Same values; but
    ONNX Runtime fuses DequantizeLinear -> GlobalAveragePool -> QuantizeLinear into QLinearGlobalAveragePool,
    while a ReduceMean in an int8 model stays float between a DequantizeLinear and a QuantizeLinear (v3-small:
    10 such islands, one per squeeze-excite block and the head). Changed in place, returned."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    nodes = []
    for node in graph.node:
        axes = None
        if node.op_type == "ReduceMean" and len(node.input) == 2 and node.input[1] in inits:
            axes = sorted(int(a) for a in numpy_helper.to_array(inits[node.input[1]]).ravel())
        keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        source = node.input[0]
        if axes == [1, 2] and not keepdims:
            # v2's head: Transpose(NCHW -> NHWC) then a mean over H, W to (N, C): pool the NCHW tensor.
            before = producer.get(source)
            perm = [list(a.ints) for a in before.attribute if a.name == "perm"] if before is not None else []
            if before is None or before.op_type != "Transpose" or perm != [[0, 2, 3, 1]]:
                nodes.append(node)
                continue
            source = before.input[0]
        elif axes != [2, 3]:
            nodes.append(node)
            continue
        pooled = node.output[0] if keepdims else f"{node.name}__pooled"
        nodes.append(helper.make_node("GlobalAveragePool", [source], [pooled], name=node.name))
        if not keepdims:  # (N, C, 1, 1) -> (N, C), as ReduceMean without keepdims gave
            nodes.append(helper.make_node("Flatten", [pooled], [node.output[0]], name=f"{node.name}__flatten",
                                          axis=1))
    # Drop what no longer feeds anything (the Transpose bypassed above), then unused constants.
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in nodes for i in n.input} | outputs
        alive = [n for n in nodes if any(o in used for o in n.output)]
        if len(alive) == len(nodes):
            break
        nodes = alive
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return proto


def fp16_weights(proto):
    """A copy of `proto` whose float32 weight initializers are stored as float16, each followed by a Cast
    back to float32 (computations stay float32)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    casts, kept = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < FP16_MIN_ELEMENTS:
            kept.append(init)
            continue
        half_name = f"{init.name}__fp16"
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), half_name)
        kept.append(half)
        casts.append(helper.make_node("Cast", [half_name], [init.name], to=TensorProto.FLOAT,
                                      name=f"{init.name}__cast"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def save(proto, path) -> None:
    import onnx

    onnx.save(proto, str(path))


def node_layer_names(proto, layer_names: set[str]) -> dict[str, str]:
    """{ONNX node name -> Keras layer} from tf2onnx's name scopes ("model_1/conv_pw_3_1/BiasAdd" ->
    conv_pw_3). tf2onnx names some convs "Conv__157"; their weight and bias inputs still carry the layer's
    scope ("model_1/conv_dw_1_1/Squeeze:0"). Other nodes' constant inputs are shared (Clip bounds), so only
    weighted nodes are matched by their inputs."""
    from mnetdeploy.export.tflite import keras_layer_of

    out = {}
    for node in proto.graph.node:
        candidates = [node.name]
        if node.op_type in WEIGHTED_OPS:
            candidates += list(node.input[1:])
        for text in candidates:
            layer = keras_layer_of(text, layer_names)
            if layer:
                out[node.name] = layer
                break
    return out


WEIGHTED_OPS = ("Conv", "MatMul", "Gemm")
