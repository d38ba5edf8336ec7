"""Fold each batch norm into the convolution before it, in Keras, before any export.

Both exporters then start from a BN-free graph: TFLite's converter folds batch norm itself, but tf2onnx
leaves the batch norm after a depthwise conv as a separate Mul + Add whose wide-range per-channel scale
vector ONNX Runtime's quantizer squeezes into one int8 scale (the int8 model collapses to chance). Folded,
every conv carries its own per-channel scale in its (per-channel quantized) weights and a bias.

    y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta
      = conv_with(W * f)(x) + (b - mean) * f + beta,      f = gamma / sqrt(var + eps)  (per output channel)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mnetdeploy.arch.graph import clone_layer, inbound, only_consumer, producers_and_consumers, rebuild

CONV_KINDS = ("Conv2D", "DepthwiseConv2D", "Dense")


@dataclass
class FoldReport:
    folded: list[tuple[str, str]] = field(default_factory=list)   # (conv layer, batch norm folded into it)
    left: list[str] = field(default_factory=list)                 # batch norms that could not be folded

    def describe(self) -> dict:
        return {"folded": len(self.folded), "unfolded": self.left}


def output_channel_view(layer, kernel: np.ndarray) -> np.ndarray:
    """The kernel reshaped so its last axis is the layer's output channel (a view, for in-place scaling)."""
    if layer.__class__.__name__ == "DepthwiseConv2D":
        kh, kw, cin, dm = kernel.shape
        return kernel.reshape(kh, kw, cin * dm)  # output channel c * dm + m, as TensorFlow orders them
    return kernel


def input_channel_axis(layer) -> int:
    """Axis of the kernel that indexes input channels (Conv2D/DepthwiseConv2D: 2, Dense: 0)."""
    return 0 if layer.__class__.__name__ == "Dense" else 2


def bn_factors(bn) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) of an inference-mode batch norm: y = x * scale + shift."""
    weights = dict(zip([w.path.split("/")[-1] for w in bn.weights], bn.get_weights()))
    mean, var = weights["moving_mean"], weights["moving_variance"]
    gamma = weights.get("gamma", np.ones_like(mean))
    beta = weights.get("beta", np.zeros_like(mean))
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale.astype(np.float32), (beta - mean * scale).astype(np.float32)


def fold_batchnorm(model):
    """A copy of `model` with every foldable BatchNormalization merged into its conv/dense. Returns
    (folded model, FoldReport). The function is unchanged up to float rounding (checked by callers)."""
    producer, consumers = producers_and_consumers(model)
    report = FoldReport()
    replace, skip = {}, set()
    for layer in model.layers:
        if layer.__class__.__name__ != "BatchNormalization":
            continue
        source = producer.get(id(inbound(layer)[0]))
        axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
        foldable = (source is not None and source.__class__.__name__ in CONV_KINDS
                    and only_consumer(source, consumers) is layer
                    and axis in (-1, len(layer.output.shape) - 1)
                    and getattr(source, "activation", None) in (None,) + _linear_activations())
        if not foldable:
            report.left.append(layer.name)
            continue
        replace[source.name] = _folder(layer)
        skip.add(layer.name)
        report.folded.append((source.name, layer.name))
    return rebuild(model, skip=skip, replace=replace), report


def _linear_activations():
    import keras

    return (keras.activations.linear,)


def _folder(bn):
    scale, shift = bn_factors(bn)

    def build(conv):
        weights = conv.get_weights()
        kernel = np.array(weights[0], dtype=np.float32)
        bias = weights[1].astype(np.float32) if len(weights) > 1 else np.zeros(scale.shape, np.float32)
        output_channel_view(conv, kernel)[...] *= scale
        bias = bias * scale + shift
        return clone_layer(conv, use_bias=True), [kernel, bias]

    return build
