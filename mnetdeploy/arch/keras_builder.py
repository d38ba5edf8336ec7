"""Turn a layer plan (plan.py) into a Keras 3 functional model with Keras-applications layer names.

Static shapes, batch-1 friendly: the input shape is fixed at (resolution, resolution, 3). Stride-2 convs use
SAME padding; because resolutions are multiples of 32 every stride-2 input is even, where SAME pads exactly as
the reference implementations' explicit ZeroPadding2D does, so weights and outputs match without pad layers.
"""

from __future__ import annotations

from mnetdeploy.arch.plan import INPUT, Layer, Network

BN_EPSILON = 1e-3  # Keras applications and TF-slim


def _activation(layers, act: str, name: str):
    if act == "relu6":
        return layers.ReLU(6.0, name=name)
    if act == "relu":
        return layers.ReLU(name=name)
    if act == "hswish":
        return layers.Activation("hard_swish", name=name)
    if act == "hsigmoid":
        return layers.Activation("hard_sigmoid", name=name)
    return layers.Activation(act, name=name)


def to_keras(net: Network, batch_size: int | None = None):
    """Build the Keras model for `net`. Imports Keras lazily (it pulls in TensorFlow).

    `batch_size=None` gives a model that takes any batch (evaluation, calibration); exporters build with
    `batch_size=1` so every shape in the deployed graph is static and no shape-computing ops appear."""
    import keras
    from keras import layers

    image = keras.Input(shape=(net.resolution, net.resolution, 3), batch_size=batch_size, name="input")
    tensors = {INPUT: image}
    for layer in net.layers:
        args = [tensors[name] for name in layer.inputs]
        tensors[layer.name] = _apply(layers, layer, args)
    name = f"mobilenet_{net.arch.replace('-', '_')}_{net.alpha:g}_{net.resolution}"
    return keras.Model(image, tensors[net.layers[-1].name], name=name)


def _apply(layers, layer: Layer, args: list):
    x = args[0]
    kind = layer.kind
    if kind == "conv" or kind == "pw" or (kind == "fc" and not layer.dense):
        x = layers.Conv2D(layer.cout, layer.kernel, strides=layer.stride, padding="same",
                          use_bias=layer.bias, name=layer.name)(x)
    elif kind == "dw":
        x = layers.DepthwiseConv2D(layer.kernel, strides=layer.stride, padding="same",
                                   depth_multiplier=layer.cout // layer.cin, use_bias=False,
                                   name=layer.name)(x)
    elif kind == "fc":  # Dense head (v2): its activation is fused, as in Keras applications
        return layers.Dense(layer.cout, activation=layer.act, name=layer.name)(x)
    elif kind == "gap":
        x = layers.GlobalAveragePooling2D(keepdims=layer.keepdims, name=layer.name)(x)
    elif kind == "dropout":
        x = layers.Dropout(layer.rate, name=layer.name)(x)
    elif kind == "flatten":
        x = layers.Reshape((layer.cout,), name=layer.name)(x)
    elif kind == "add":
        x = layers.Add(name=layer.name)(args)
    elif kind == "mul":
        x = layers.Multiply(name=layer.name)(args)
    else:  # pragma: no cover - plan.py only emits the kinds above
        raise ValueError(f"unknown layer kind {kind!r}")
    if layer.bn:
        x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.999, name=layer.bn)(x)
    if layer.act and layer.act_name:
        x = _activation(layers, layer.act, layer.act_name)(x)
    return x



# ------------------------------------------------------------------------------------- deployment graphs
#
# What the exporters convert is not the model as built but its deployment form: the same layers, names and
# weights, rebuilt with a static batch of 1. With a dynamic batch, Reshape/Flatten compute their target shape
# at run time (SHAPE, STRIDED_SLICE, PACK before RESHAPE): XNNPACK takes none of these, so the graph was split
# and its tail ran on LiteRT's default kernels (measured with TF 2.21 / ai-edge-litert 2.3.0, v3-small 224:
# 108 of 112 ops delegated, 2 partitions; batch 1: 100 %, one partition). How int8 graphs treat hard-swish
# and softmax is decided at quantization (export/tflite.py).


def deploy_graph(model):
    """`model` (as built, BN-folded or with int8 weights) rebuilt with batch 1: same layers, names, weights
    and float function."""
    import keras

    from mnetdeploy.arch.graph import clone_layer, inbound

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("deploy_graph: single-input, single-output models only")
    src = model.inputs[0]
    image = keras.Input(shape=src.shape[1:], batch_size=1, dtype=src.dtype, name=src.name)
    tensors = {id(src): image}
    pending = []
    for layer in model.layers:
        if layer.__class__.__name__ == "InputLayer":
            continue
        args = [tensors[id(t)] for t in inbound(layer)]
        new = clone_layer(layer)
        tensors[id(layer.output)] = new(args if len(args) > 1 else args[0])
        pending.append((new, layer.get_weights()))
    out = keras.Model(image, tensors[id(model.outputs[0])], name=model.name)
    for new, weights in pending:
        if weights:
            new.set_weights(weights)
    return out
