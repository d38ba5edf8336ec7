"""Walking and rebuilding Keras functional graphs, for the float rewrites done before quantization.

The rewrites (batch-norm folding, activation equalisation, bias correction) change weights and drop layers
but never change the model's function, so they rebuild the functional graph layer by layer from each
layer's config instead of editing a live model in place (the original stays the untouched reference).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection
from typing import Any

import numpy as np


def inbound(layer) -> list:
    """The KerasTensors a layer was called on (Keras 3 functional models call each layer once)."""
    x = layer.input
    return list(x) if isinstance(x, (list, tuple)) else [x]


def producers_and_consumers(model) -> tuple[dict[int, object], dict[int, list]]:
    """{id(tensor): layer that makes it} and {id(tensor): layers that read it}."""
    producer, consumers = {}, defaultdict(list)
    for layer in model.layers:
        producer[id(layer.output)] = layer
        if layer.__class__.__name__ == "InputLayer":
            continue
        for t in inbound(layer):
            consumers[id(t)].append(layer)
    return producer, consumers


def only_consumer(layer, consumers: dict[int, list]):
    """The single layer reading `layer`'s output, or None when it has zero or several readers."""
    readers = consumers.get(id(layer.output), [])
    return readers[0] if len(readers) == 1 else None


def clone_layer(layer, **config_changes):
    config = layer.get_config()
    config.update(config_changes)
    return layer.__class__.from_config(config)


def rebuild(model, skip: Collection[str] = frozenset(),
            replace: dict[str, Callable[[Any], tuple[Any, list[np.ndarray]]]] | None = None):
    """A new functional model equal to `model` except that layers named in `skip` (single-input layers)
    pass their input through, and layers named in `replace` are built by `replace[name](layer)`, which
    returns (new layer, its weights). All other layers are copied with their weights."""
    import keras

    replace = replace or {}
    tensors: dict[int, Any] = {}
    for src in model.inputs:
        tensors[id(src)] = keras.Input(shape=src.shape[1:], batch_size=src.shape[0], dtype=src.dtype,
                                       name=src.name)
    new_inputs = [tensors[id(t)] for t in model.inputs]
    pending_weights = []
    for layer in model.layers:
        if layer.__class__.__name__ == "InputLayer":
            continue
        args = [tensors[id(t)] for t in inbound(layer)]
        if layer.name in skip:
            if len(args) != 1:
                raise ValueError(f"cannot skip layer {layer.name}: it has {len(args)} inputs")
            tensors[id(layer.output)] = args[0]
            continue
        if layer.name in replace:
            new_layer, weights = replace[layer.name](layer)
        else:
            new_layer, weights = clone_layer(layer), layer.get_weights()
        out = new_layer(args if len(args) > 1 else args[0])
        pending_weights.append((new_layer, weights))
        tensors[id(layer.output)] = out
    # Single input/output models take and return plain tensors (a list would make Keras warn on every call).
    rebuilt = keras.Model(new_inputs if len(new_inputs) > 1 else new_inputs[0],
                          [tensors[id(t)] for t in model.outputs] if len(model.outputs) > 1
                          else tensors[id(model.outputs[0])], name=model.name)
    for new_layer, weights in pending_weights:
        if weights:
            new_layer.set_weights(weights)
    return rebuilt
