"""ONNX models on ONNX Runtime (CPU execution provider).

Every ONNX Runtime session this tool opens (export check, eval, bench, inspection, analysis) is configured
here, so they all compute alike. On x86 CPUs without a VNNI dot product, ONNX Runtime's default U8S8 int8
kernels saturate 16-bit pair sums (cpu.py): the pretrained v1 0.25 int8 model loses 6.5 top-1 points there.
`session.x64quantprecision=1` makes it convert int8 weights to uint8 at load and use exact U8U8 kernels.
It is set only where the CPU needs it: ONNX Runtime applies it on every AVX2 CPU, VNNI or not, and on a
VNNI CPU it would only cost speed (measured in scripts/onnx_int8_precision.py). What was set is recorded
in every result (`session_config`), and README.md tells users deploying the .onnx what their own sessions
need on such CPUs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnetdeploy.runtimes.base import Runner

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
              "tensor(int8)": np.int8}


PRECISE_INT8_KEY = "session.x64quantprecision"


def session_config() -> dict[str, str]:
    """Session config entries this CPU needs for correct int8 arithmetic (empty where the defaults are exact)."""
    from mnetdeploy.cpu import host_cpu

    return {PRECISE_INT8_KEY: "1"} if host_cpu().u8s8_saturates else {}


def session_options(threads: int | None, optimize: bool = True):
    """The session settings every ONNX Runtime use in this tool shares (run, benchmark, inspect, check).
    `optimize=False` runs the graph as written (QDQ as float dequantize -> op -> quantize): the reference
    arithmetic the export check compares the deployed session with."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    for key, value in session_config().items():
        options.add_session_config_entry(key, value)
    return options


class OnnxRunner(Runner):
    format = "onnx"
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None, optimize: bool = True):
        super().__init__(path)
        import onnxruntime as ort

        self.threads, self.optimize = threads, optimize
        self.session_config = session_config()
        self.session = ort.InferenceSession(str(path), session_options(threads, optimize),
                                            providers=["CPUExecutionProvider"])
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

    def settings(self) -> dict:
        return {"session_config": self.session_config, "graph_optimization": "all" if self.optimize else "none"}
