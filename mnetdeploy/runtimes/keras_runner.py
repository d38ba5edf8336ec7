"""Keras models (the float reference every export is checked against)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnetdeploy.runtimes.base import Runner


class KerasRunner(Runner):
    format = "keras"
    runtime = "keras"

    def __init__(self, path: Path | None = None, model=None):
        super().__init__(path or Path("<in-memory>"))
        if model is None:
            from mnetdeploy.arch.weights import load_keras_model
            assert path is not None, "KerasRunner needs a path or a model"
            model = load_keras_model(path)
        self.model = model
        self.threads = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        # A dynamic dimension (None) reads as 1, as in the ONNX runner, instead of crashing on int(None).
        return (1,) + tuple(1 if d is None else int(d) for d in self.model.input_shape[1:])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def prepare(self, images: np.ndarray) -> np.ndarray:
        return images.astype(np.float32)

    def run(self, prepared: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(self._feed(prepared), training=False))

    def _feed(self, x: np.ndarray):
        # Legacy Keras 2 files store a single input as a one-element list; feeding that same structure avoids
        # Keras 3's "structure of `inputs` doesn't match" warning on every batch.
        struct = getattr(self.model, "_inputs_struct", None)
        return [x] if isinstance(struct, (list, tuple)) and len(struct) == 1 else x

    def predict(self, images: np.ndarray) -> np.ndarray:
        # Keras runs whole batches at once: much faster than one image at a time.
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[None]
        outs = [self.invoke(images[i:i + 32]) for i in range(0, len(images), 32)]
        return np.concatenate(outs, axis=0)
