"""Data-dependent initialisation, so an untrained model is a realistic stand-in for latency and quantization.

Keras' default init leaves batch norm at mean 0 / variance 1 in inference mode, so activations shrink or
grow layer after layer and an untrained MobileNet outputs near-constant logits: useless for calibrating int8
ranges. Here one forward pass over a small batch of images walks the graph in order and
- sets every BatchNormalization's moving mean and variance to the statistics of its actual input, so each
  conv output is normalised per channel (what a trained network's BN does), and
- scales every conv/dense that has no BN after it (squeeze-excite, head, classifier) so its output has unit
  standard deviation: layer-sequential unit-variance init (Mishkin & Matas, ICLR 2016).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def synthetic_images(n: int, resolution: int, seed: int = 0) -> np.ndarray:
    """Seeded natural-ish images in [-1, 1]: smooth colour fields plus fine texture (not white noise,
    whose statistics no camera produces)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, resolution, resolution, 3), dtype=np.float32)
    for i in range(n):
        img = np.zeros((resolution, resolution, 3), dtype=np.float32)
        for cells, weight in ((2, 0.6), (8, 0.3), (resolution // 4, 0.1)):
            coarse = rng.uniform(-1, 1, size=(cells, cells, 3)).astype(np.float32)
            reps = -(-resolution // cells)
            img += weight * np.kron(coarse, np.ones((reps, reps, 1), np.float32))[:resolution, :resolution]
        out[i] = np.clip(img * rng.uniform(0.6, 1.4), -1, 1)
    return out


def seeded_kernels(model, seed: int) -> int:
    """Draw every kernel (conv, depthwise, dense) Glorot-uniform from numpy generators keyed by (seed, position).

    Keras' own initializers draw their seeds from process-global random state, which other threads of the
    process may also draw from (a Dask worker's heartbeat does): the same config then built different weights on
    a cluster worker than locally, from the tenth layer on. Keyed generators make a build depend on its config
    only. Returns how many kernels were drawn."""
    count = 0
    for position, variable in enumerate(model.weights):
        if not variable.path.endswith("kernel"):
            continue
        shape = tuple(variable.shape)
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        rng = np.random.default_rng([seed, position])
        variable.assign(rng.uniform(-limit, limit, size=shape).astype(np.float32))
        count += 1
    return count


def data_dependent_init(model, images: np.ndarray) -> dict:
    """Set BN statistics and unnormalised layer scales from one pass over `images`. Returns statistics."""
    import keras

    layers = keras.layers
    consumers_bn = _outputs_feeding_bn(model)
    ops = keras.ops
    # Activations stay framework tensors between layers: converting each to numpy costs more than the convs.
    values = {id(model.inputs[0]): ops.convert_to_tensor(np.asarray(images, np.float32))}
    bn_count = scaled = 0
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        args = [values[id(t)] for t in inputs]
        x: Any = args if len(args) > 1 else args[0]  # a Keras tensor, or a list for multi-input layers
        if isinstance(layer, layers.BatchNormalization):
            mean, var = ops.moments(x, axes=list(range(len(x.shape) - 1)))
            mean, var = ops.convert_to_numpy(mean), ops.convert_to_numpy(var)
            layer.set_weights([np.ones_like(mean), np.zeros_like(mean), mean, var])
            bn_count += 1
        elif isinstance(layer, (layers.Conv2D, layers.Dense)) and id(layer.output) not in consumers_bn:
            _unit_variance(layer, x)
            scaled += 1
        values[id(layer.output)] = layer(x, training=False)
    logits = ops.convert_to_numpy(values[id(model.outputs[0])])
    return {"bn_layers": bn_count, "scaled_layers": scaled, "images": int(len(images)),
            "output_std": float(np.std(logits))}


def _outputs_feeding_bn(model) -> set[int]:
    import keras

    return {id(l.input) for l in model.layers if isinstance(l, keras.layers.BatchNormalization)}


def _unit_variance(layer, x) -> None:
    """Scale the kernel so the pre-activation output has unit std on `x`, and zero the bias."""
    weights = layer.get_weights()
    kernel = weights[0]
    bias = weights[1:] and [np.zeros_like(weights[1])]
    layer.set_weights([kernel] + list(bias))
    import keras

    activation = layer.activation
    layer.activation = None if activation is None else _linear
    try:
        std = float(keras.ops.convert_to_numpy(keras.ops.std(layer(x, training=False))))
    finally:
        layer.activation = activation
    if std > 0:
        layer.set_weights([kernel / std] + list(bias))


def _linear(x):
    return x
