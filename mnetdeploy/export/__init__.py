"""Exporters: a Keras model to TFLite (LiteRT) and ONNX files, and the check of every export against Keras.

    export/tflite.py    fp32, fp16, dynamic-range and full-integer int8 through TFLiteConverter.from_keras_model
    export/onnx.py      fp32 through tf2onnx (static batch 1, input "input"), fp16 weights
    export/validate.py  outputs of an exported file against the float Keras model

Quantization with calibration data (int8) is orchestrated by `mnetdeploy.quantize`; these modules only convert.
Heavy libraries are imported inside functions.
"""

from __future__ import annotations

from mnetdeploy.config import PRECISIONS as CONFIG_PRECISIONS

EXTENSIONS = {"tflite": ".tflite", "onnx": ".onnx"}
PRECISIONS = CONFIG_PRECISIONS   # declared once, in the config schema


def artifact_name(fmt: str, precision: str) -> str:
    """File name of an export inside the artifact directory, e.g. model_int8.tflite."""
    return f"model_{precision}{EXTENSIONS[fmt]}"
