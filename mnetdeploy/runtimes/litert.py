"""TFLite models on LiteRT (ai-edge-litert), with XNNPACK on by default like TFLite's own tools."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnetdeploy.runtimes.base import Runner, dequantize, quantize


class LiteRTRunner(Runner):
    format = "tflite"
    runtime = "litert"

    def __init__(self, path: Path, threads: int | None = None, xnnpack: bool = True):
        super().__init__(path)
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        # AUTO applies the default delegate (XNNPACK); BUILTIN_WITHOUT_DEFAULT_DELEGATES runs the plain kernels.
        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.threads = threads
        self.xnnpack = xnnpack
        from mnetdeploy.quiet import quiet_native_output

        with quiet_native_output():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." per model
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads,
                                           experimental_op_resolver_type=resolver)
            self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._in["shape"])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._in["dtype"])

    def prepare(self, images: np.ndarray) -> np.ndarray:
        dtype = self.input_dtype
        if dtype == np.float32:
            return images.astype(np.float32)
        if dtype == np.float16:
            return images.astype(np.float16)
        scale, zero = self._in["quantization"]
        return quantize(images, scale, zero, dtype)

    def run(self, prepared: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._in["index"], prepared)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out["index"])

    def to_float(self, output: np.ndarray) -> np.ndarray:
        if np.issubdtype(output.dtype, np.integer):
            scale, zero = self._out["quantization"]
            return dequantize(output, scale, zero)
        return output.astype(np.float32)

    def settings(self) -> dict:
        return {"xnnpack": self.xnnpack}
