"""Where the int8 error comes from: a per-layer table of quantization error, float vs int8 activations.

For each quantized layer (named by its Keras layer; a fused conv+ReLU6 is one row):
- sqnr_db:      signal-to-quantization-noise ratio of the layer's output in the int8 model against the float
                model, both fed the same image: the error accumulated up to here (10 log10 E[f^2] / E[(q-f)^2]);
- lost_db:      sqnr of the layer's input minus sqnr of its output: how much this layer degraded the signal;
- own_sqnr_db:  TFLite only: the layer's own error, with float and int8 op fed the same (quantized) input,
                from TensorFlow's NumericVerify debug ops (QuantizationDebugger); weights + output rounding;
The worst layers (lowest own_sqnr_db for TFLite, largest lost_db for ONNX) are the candidates for
`--keep-float`. Results go to quant_analysis.json in the artifact directory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnetdeploy.fsutil import write_json
from mnetdeploy.quantize.models import weighted_names

ANALYSIS = "quant_analysis.json"
IMAGES = 16        # held-out images run through float and int8 models (all activations are kept per image)
WORST = 5


def _db(signal: float, noise: float) -> float | None:
    if signal <= 0:
        return None
    if noise <= 0:
        return 200.0  # exact: report a large finite number (JSON has no infinity)
    return round(10.0 * math.log10(signal / noise), 2)


# ------------------------------------------------------------------------------------------------ TFLite

def analyze_tflite(calibrated: bytes, snapped, images: np.ndarray, keep_float: list[str],
                   graph: str = "cpu") -> list[dict[str, Any]]:
    """Rows for the TFLite int8 model made from `calibrated` (float I/O, `keep_float` tensors denylisted,
    int8 `graph` as exported: export/int8_graph.py)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from mnetdeploy.export.tflite import keras_layer_of, quantize_calibrated
    from mnetdeploy.quiet import quiet_native_output

    quantized = quantize_calibrated(calibrated, "float", keep_float, graph)
    names = {l.name for l in snapped.layers}
    prefer = weighted_names(snapped)
    plain = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES  # a delegate would hide intermediate tensors

    def interpreter(content: bytes):
        it = Interpreter(model_content=content, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=plain)
        it.allocate_tensors()
        return it

    with quiet_native_output():
        fl, q = interpreter(calibrated), interpreter(quantized)
    float_index = {d["name"]: d["index"] for d in fl.get_tensor_details()}
    q_details = {d["index"]: d for d in q.get_tensor_details()}
    ops = q._get_ops_details()  # noqa: SLF001 - the public API has no op list
    q_out = q.get_output_details()[0]["index"]
    tracked = {}   # quantized model's tensor index -> float model's tensor index
    op_outputs = {op["outputs"][0] for op in ops if len(op["outputs"])}
    for d in q_details.values():
        if d["name"] not in float_index:
            continue
        if d["dtype"] in (np.int8, np.uint8) and d["quantization"][0] > 0:
            tracked[d["index"]] = float_index[d["name"]]
        elif d["dtype"] == np.float32 and d["index"] in op_outputs and d["index"] != q_out:
            tracked[d["index"]] = float_index[d["name"]]  # an op the int8 graph keeps float (its inputs are not)
    signal = dict.fromkeys(tracked, 0.0)
    noise = dict.fromkeys(tracked, 0.0)
    fin, qin = fl.get_input_details()[0]["index"], q.get_input_details()[0]["index"]
    for image in images:
        fl.set_tensor(fin, image[None].astype(np.float32))
        q.set_tensor(qin, image[None].astype(np.float32))
        fl.invoke()
        q.invoke()
        for qi, fi in tracked.items():
            f = fl.get_tensor(fi).astype(np.float64)
            scale, zero = q_details[qi]["quantization"]
            if q_details[qi]["dtype"] == np.float32:
                scale, zero = 1.0, 0
            deq = (q.get_tensor(qi).astype(np.float64) - zero) * scale
            signal[qi] += float(np.sum(f * f))
            noise[qi] += float(np.sum((deq - f) ** 2))
    own = _tflite_own_errors(calibrated, keep_float, images, names, prefer)

    rows = []
    for op in ops:
        out = op["outputs"][0] if len(op["outputs"]) else None
        if out not in tracked:
            continue
        d = q_details[out]
        layer = keras_layer_of(d["name"], names, prefer) or ("input" if op["op_name"] == "QUANTIZE" else d["name"])
        sqnr = _db(signal[out], noise[out])
        src = next((i for i in op["inputs"] if i in tracked), None)
        lost = None
        if src is not None and sqnr is not None and (src_db := _db(signal[src], noise[src])) is not None:
            lost = round(src_db - sqnr, 2)
        is_int8 = d["dtype"] != np.float32
        row = {"layer": layer, "op": op["op_name"].lower(), "shape": [int(s) for s in d["shape"]],
               "precision": "int8" if is_int8 else "float",
               "scale": float(d["quantization"][0]) if is_int8 else None,
               "zero_point": int(d["quantization"][1]) if is_int8 else None,
               "sqnr_db": sqnr, "lost_db": lost}
        stats = own.get(layer) if is_int8 else None
        if stats is not None and signal[out] > 0:
            count = float(np.prod(d["shape"])) * len(images)
            row["own_sqnr_db"] = _db(signal[out] / count, stats["mean_squared_error"])
            row["own_rmse_steps"] = round(math.sqrt(stats["mean_squared_error"]) / row["scale"], 3)
            row["own_mean_error"] = float(f"{stats['mean_error']:.3g}")
        rows.append(row)
    return rows


def _tflite_own_errors(calibrated: bytes, keep_float: list[str], images: np.ndarray, names: set[str],
                       prefer: set[str]) -> dict[str, dict[str, float]]:
    """{Keras layer: {"mean_squared_error", "mean_error"}} from TensorFlow's QuantizationDebugger."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    from mnetdeploy.export.tflite import keras_layer_of
    from mnetdeploy.quiet import quiet_native_output

    with quiet_native_output():
        debug_model = convert.mlir_quantize(calibrated, enable_numeric_verify=True,
                                            input_data_type=tf.float32, output_data_type=tf.float32,
                                            denylisted_nodes=list(keep_float) or None)
        debugger = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=debug_model,
            debug_dataset=lambda: ([image[None].astype(np.float32)] for image in images))
        debugger.run()
    out = {}
    for tensor, stats in debugger.layer_statistics.items():
        layer = keras_layer_of(tensor.removeprefix("NumericVerify/"), names, prefer)
        if layer is not None:
            out[layer] = {"mean_squared_error": float(stats["mean_squared_error"]),
                          "mean_error": float(stats["mean_error"])}
    return out


# -------------------------------------------------------------------------------------------------- ONNX

def analyze_onnx(float_path: Path, int8_path: Path, proto, snapped, images: np.ndarray) -> list[dict[str, Any]]:
    """Rows for a QDQ int8 ONNX model against the float ONNX model it was quantized from.

    ONNX Runtime fuses a Clip/Relu into the quantization of the conv before it, so a conv's quantized
    output is the activation's output tensor; rows are named after the conv (the weighted node upstream)."""
    import tempfile

    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    from mnetdeploy.export.onnx import WEIGHTED_OPS, node_layer_names
    from mnetdeploy.quantize.onnx_static import calibration_reader
    from mnetdeploy.quiet import quiet_native_output

    node_layer = node_layer_names(proto, {l.name for l in snapped.layers})
    producer = {out: node for node in proto.graph.node for out in node.output}
    with tempfile.TemporaryDirectory(prefix="mnetdeploy-analysis-") as tmp, quiet_native_output():
        aug_float, aug_q = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        modify_model_output_intermediate_tensors(str(float_path), str(aug_float))
        modify_model_output_intermediate_tensors(str(int8_path), str(aug_q))
        float_acts = collect_activations(str(aug_float), calibration_reader(images))
        q_acts = collect_activations(str(aug_q), calibration_reader(images))
    matching = create_activation_matching(q_acts, float_acts)
    energy = {}
    for tensor, m in matching.items():
        if m.get("float"):
            f = np.concatenate([a.ravel() for a in m["float"]]).astype(np.float64)
            q = np.concatenate([a.ravel() for a in m["post_qdq"]]).astype(np.float64)
            energy[tensor] = (float(np.sum(f * f)), float(np.sum((q - f) ** 2)))

    def upstream(tensor: str) -> str | None:
        """The nearest quantized tensor feeding `tensor`'s producer (along first inputs)."""
        node = producer.get(tensor)
        while node is not None and node.input:
            source = node.input[0]
            if source in energy:
                return source
            node = producer.get(source)
        return None

    def layer_of(node) -> str:
        seen = node
        while seen is not None and seen.op_type not in WEIGHTED_OPS and seen.input:
            prev = producer.get(seen.input[0])
            if prev is None or prev.output[0] in energy:
                break
            seen = prev
        if seen is not None and seen.op_type in WEIGHTED_OPS and seen.name in node_layer:
            return node_layer[seen.name]
        return node_layer.get(node.name, node.name)

    rows = []
    for node in proto.graph.node:
        out = node.output[0]
        if out not in energy:
            continue
        sqnr = _db(*energy[out])
        src = upstream(out)
        lost = None
        if src is not None and sqnr is not None and (src_db := _db(*energy[src])) is not None:
            lost = round(src_db - sqnr, 2)
        rows.append({"layer": layer_of(node), "op": node.op_type.lower(), "tensor": out, "sqnr_db": sqnr,
                     "lost_db": lost})
    return rows


# ---------------------------------------------------------------------------------------------- together

def worst_layers(rows: list[dict[str, Any]], key: str, n: int = WORST, lowest: bool = True) -> list[dict]:
    scored = [r for r in rows if r.get(key) is not None and r["layer"] != "input"]
    scored.sort(key=lambda r: r[key], reverse=not lowest)
    return [{k: r.get(k) for k in ("layer", "own_sqnr_db", "lost_db", "sqnr_db") if k in r} for r in scored[:n]]


def analyze_int8(models, options, images: np.ndarray, progress: Callable[[str], None] | None = None
                 ) -> dict[str, Any]:
    """Per-layer analysis of the int8 models of every requested format (with the requested keep-float
    layers); writes quant_analysis.json and returns its summary (file, worst layers per format)."""
    import tempfile

    from mnetdeploy.quantize.models import onnx_keep_float, tflite_keep_float
    from mnetdeploy.quantize.onnx_static import quantize_static_int8

    say = progress or (lambda _msg: None)
    images = np.asarray(images[:IMAGES], dtype=np.float32)
    report: dict[str, Any] = {"images": len(images), "keep_float": sorted(options.keep_float), "formats": {}}
    if "tflite" in options.formats:
        say("analysis: TFLite int8 vs float, layer by layer")
        keep = options.keep_float
        calibrated, snapped = models.tflite_calibrated(keep), models.snapped(keep)
        rows = analyze_tflite(calibrated, snapped, images, tflite_keep_float(calibrated, snapped, keep),
                              options.int8_graph)
        report["formats"]["tflite"] = {"ranked_by": "own_sqnr_db (lowest first)",
                                       "worst": worst_layers(rows, "own_sqnr_db"), "layers": rows}
    if "onnx" in options.formats:
        say("analysis: ONNX int8 vs float, layer by layer")
        keep = options.keep_float
        source, snapped = models.onnx_snapped(keep), models.snapped(keep)
        nodes = onnx_keep_float(source["proto"], snapped, keep)
        with tempfile.TemporaryDirectory(prefix="mnetdeploy-analysis-") as tmp:
            quantized = Path(tmp) / "int8.onnx"
            quantize_static_int8(source["path"], quantized, models.calibration.array, options.onnx_calib, nodes)
            rows = analyze_onnx(source["path"], quantized, source["proto"], snapped, images)
        report["formats"]["onnx"] = {"ranked_by": "lost_db (largest first)",
                                     "worst": worst_layers(rows, "lost_db", lowest=False), "layers": rows}
    write_json(models.artifact_dir / ANALYSIS, report)
    return {"file": ANALYSIS, "images": len(images),
            "worst": {fmt: r["worst"] for fmt, r in report["formats"].items()},
            "final_sqnr_db": {fmt: (r["layers"][-1]["sqnr_db"] if r["layers"] else None)
                              for fmt, r in report["formats"].items()}}
