"""Reference exports made straight with TFLite's converter, for tests of the consumers of exported models
(bench, report, gate) that must not depend on mnetdeploy's own quantize step."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np


def export_tflite_pair(directory: Path, resolution: int, samples: int = 8) -> None:
    """`model_fp32.tflite` and a full-integer `model_int8.tflite` (float I/O) from `directory/model.keras`,
    under the names the quantize step uses. Always `from_keras_model`: `from_concrete_functions` silently
    writes broken models with Keras 3."""
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(directory / "model.keras")
    (directory / "model_fp32.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: (
        [rng.uniform(-1, 1, (1, resolution, resolution, 3)).astype(np.float32)] for _ in range(samples))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with warnings.catch_warnings():  # "statistics for quantized inputs were expected": float I/O by design
        warnings.simplefilter("ignore", UserWarning)
        (directory / "model_int8.tflite").write_bytes(converter.convert())
