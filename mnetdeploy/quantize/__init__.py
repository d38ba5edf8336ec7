"""Quantization and export of a built model: fp32/fp16/dynamic/int8 TFLite and fp32/fp16/int8 ONNX.

    from mnetdeploy.quantize import quantize
    result = quantize("artifacts/v2_1.0_224", precisions=["fp32", "int8"], calib="calib_images/")

    step.py         the step: caching, calibration, checks, reports
    models.py       the Keras models every int8 export starts from, and conversions shared with analysis/recovery
    fold.py         batch norm folded into the convolutions (Keras, before any export)
    rounding.py     int8 weights chosen in Keras: bias correction, adaptive rounding
    onnx_static.py  ONNX Runtime static quantization (QDQ, per-channel)
    analysis.py     per-layer int8 error (quant_analysis.json)
    recovery.py     --max-drop: keep the most harmful layers in float
Heavy libraries are imported inside functions, so importing this package is cheap.
"""

from mnetdeploy.quantize.step import QuantizeResult, quantize

__all__ = ["QuantizeResult", "quantize"]
