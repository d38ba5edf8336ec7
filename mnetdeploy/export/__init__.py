"""Exporters: a Keras model to TFLite (LiteRT) and ONNX files, and the check of every export against Keras.

    export/tflite.py    fp32, fp16, dynamic-range and full-integer int8 through TFLiteConverter.from_keras_model
    export/onnx.py      fp32 through tf2onnx (static batch 1, input "input"), fp16 weights
    export/validate.py  outputs of an exported file against the float Keras model

Quantization with calibration data (int8) is orchestrated by `mnetdeploy.quantize`; these modules only convert.
Heavy libraries are imported inside functions.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

EXTENSIONS = {"tflite": ".tflite", "onnx": ".onnx"}
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")


def artifact_name(fmt: str, precision: str) -> str:
    """File name of an export inside the artifact directory, e.g. model_int8.tflite."""
    return f"model_{precision}{EXTENSIONS[fmt]}"


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to file descriptor 1 to stderr for the duration.

    TensorFlow's converter, Keras' SavedModel export and ONNX Runtime's calibrator print progress on stdout,
    some of it from C++ (below Python's sys.stdout), which would corrupt `--json` output."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no real file descriptor 1 (embedded interpreters): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
