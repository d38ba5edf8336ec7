"""ONNX models on ONNX Runtime (CPU execution provider)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnetdeploy.runtimes.base import Runner

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
              "tensor(int8)": np.int8}


def session_options(threads: int | None):
    """The session settings every ONNX Runtime use in this tool shares (run, benchmark, inspect)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxRunner(Runner):
    format = "onnx"
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None):
        super().__init__(path)
        import onnxruntime as ort

        self.threads = threads
        self.session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        self._in = self.session.get_inputs()[0]
        self._out_name = self.session.get_outputs()[0].name

    @property
    def input_shape(self) -> tuple[int, ...]:
        # A symbolic batch dimension ("N", None) runs as 1 here.
        return tuple(d if isinstance(d, int) else 1 for d in self._in.shape)

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(_ORT_TYPES.get(self._in.type, np.float32))

    def prepare(self, images: np.ndarray) -> np.ndarray:
        return images.astype(self.input_dtype)

    def run(self, prepared: np.ndarray) -> np.ndarray:
        return self.session.run([self._out_name], {self._in.name: prepared})[0]
