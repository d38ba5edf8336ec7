"""The runner interface shared by every host runtime."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class Runner(ABC):
    """A loaded model. `predict` takes preprocessed float images (N, H, W, 3) and returns float outputs.

    Quantized models are fed and read through their own scale and zero point, so callers always deal in
    the float domain. `prepare` + `run` + `to_float` split those conversions from inference: timing loops
    time `run` alone (the runtime's own work, as TFLite's benchmark_model times Invoke), and `invoke` is
    the three together."""

    format: str = ""
    runtime: str = ""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Shape of the model input, e.g. (1, 224, 224, 3)."""

    @property
    @abstractmethod
    def input_dtype(self) -> np.dtype:
        ...

    @abstractmethod
    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Float images (batch of 1 matching the input) -> the array the runtime takes (quantized if need be)."""

    @abstractmethod
    def run(self, prepared: np.ndarray) -> np.ndarray:
        """One inference on a prepared input; returns the output as the runtime gives it (int8 if quantized)."""

    def to_float(self, output: np.ndarray) -> np.ndarray:
        """The raw output of `run` in the float domain (dequantized if need be)."""
        return np.asarray(output, dtype=np.float32)

    def invoke(self, prepared: np.ndarray) -> np.ndarray:
        """One inference on a prepared input; returns the float output."""
        return self.to_float(self.run(prepared))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Outputs for a batch of any size, one image at a time where the model's batch is fixed at 1."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[None]
        outs = [self.invoke(self.prepare(images[i:i + 1])) for i in range(len(images))]
        return np.concatenate(outs, axis=0)

    def settings(self) -> dict:
        """Runtime settings that decide the arithmetic (recorded with results)."""
        return {}

    @property
    def resolution(self) -> int:
        return int(self.input_shape[1])


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    q = np.round(x / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - zero_point) * np.float32(scale)
