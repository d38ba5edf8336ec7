#!/usr/bin/env python3
"""Int8 accuracy of the real pretrained MobileNet v1 0.25/224, step by step, and the quantize wall time.

    .venv/bin/python scripts/quantize_accuracy.py [--out results.json] [--skip-timing]

Data: ../shared/data/imagenet-sample (500 images, one per even ImageNet class). Calibration: the first 100
by file name; evaluation: the other 400 (no overlap). These are not the ImageNet validation set: use the
numbers to compare float with int8 on the same images, not as published accuracy. One image is 0.25 points.

Recovery steps (each row adds one thing to the row above):
  1. converter defaults: TFLiteConverter full-integer PTQ of the model as built; ONNX Runtime quantize_static
     (QDQ, per-channel, MinMax) straight on tf2onnx's graph
  2. + batch norm folded in Keras before export
  3. + ONNX Runtime Percentile / Entropy calibration (TFLite's converter has min/max only)
  4. + bias correction of the int8 weights (the tool's default)
  5. + adaptive rounding of the int8 weights (--rounding adaptive)
  6. + the worst layers (per-layer analysis) kept in float (--keep-float)
Then the tool's own `quantize()` with defaults is run and evaluated (it must reproduce row 4).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
IMAGES = SHARED / "imagenet-sample"
WEIGHTS = SHARED / "models" / "mobilenet_v1_0.25_224.h5"
CALIBRATION_IMAGES = 100


def metrics(outputs: np.ndarray, labels: np.ndarray, float_pred: np.ndarray | None) -> dict:
    top5 = np.argsort(-outputs, axis=1)[:, :5]
    result = {"top1": 100.0 * float(np.mean(np.argmax(outputs, 1) == labels)),
              "top5": 100.0 * float(np.mean([label in row for label, row in zip(labels, top5)]))}
    if float_pred is not None:
        result["agreement"] = 100.0 * float(np.mean(np.argmax(outputs, 1) == float_pred))
    return result


def run_file(path: Path, images: np.ndarray) -> np.ndarray:
    from mnetdeploy.runtimes import open_runner

    return open_runner(path).predict(images)


def tflite_default(model, calib: np.ndarray, path: Path) -> None:
    """The converter's own full-integer PTQ (int8 I/O), exactly as its documentation shows it."""
    import tensorflow as tf

    from mnetdeploy.export import stdout_to_stderr

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with stdout_to_stderr():
        path.write_bytes(converter.convert())


def onnx_static(model, calib: np.ndarray, work: Path, name: str, method: str = "minmax",
                keep_nodes: list[str] = ()) -> Path:
    from mnetdeploy.export.onnx import keras_to_onnx, save
    from mnetdeploy.quantize.onnx_static import quantize_static_int8

    fp32 = work / f"{name}_fp32.onnx"
    save(keras_to_onnx(model), fp32)
    out = work / f"{name}_{method}.onnx"
    quantize_static_int8(fp32, out, calib, method, keep_nodes)
    return out


def accuracy_table(work: Path) -> dict:
    import keras

    from mnetdeploy.build import build
    from mnetdeploy.config import load_config
    from mnetdeploy.data import find_images, load_images, read_labels_csv
    from mnetdeploy.export.tflite import calibrate, quantize_calibrated
    from mnetdeploy.config import QuantizeConfig
    from mnetdeploy.quantize import quantize
    from mnetdeploy.quantize.analysis import analyze_tflite
    from mnetdeploy.quantize.fold import fold_batchnorm
    from mnetdeploy.quantize.models import onnx_keep_float, tflite_keep_float
    from mnetdeploy.quantize.rounding import apply_int8_weights, plan_int8_weights

    cfg = load_config(overrides={"model.arch": "v1", "model.alpha": 0.25, "model.resolution": 224,
                                 "model.weights": str(WEIGHTS), "output": str(work)})
    directory = build(cfg).artifact_dir
    model = keras.saving.load_model(directory / "model.keras")
    paths = find_images(IMAGES)
    labels_by_name = read_labels_csv(IMAGES / "labels.csv", 0)
    calib = load_images(paths[:CALIBRATION_IMAGES], 224).array
    evaluation = load_images(paths[CALIBRATION_IMAGES:], 224)
    images = evaluation.array
    labels = np.array([labels_by_name[p.name] for p in evaluation.paths])

    float_out = np.concatenate([np.asarray(model(images[i:i + 50])) for i in range(0, len(images), 50)])
    float_pred = np.argmax(float_out, 1)
    table: dict = {"float": metrics(float_out, labels, None), "rows": [],
                   "data": {"directory": str(IMAGES), "calibration": f"first {CALIBRATION_IMAGES} by name",
                            "evaluation": len(images)}}

    def row(step: str, fmt: str, path: Path, note: str = "") -> None:
        m = metrics(run_file(path, images), labels, float_pred)
        m["drop"] = table["float"]["top1"] - m["top1"]
        table["rows"].append({"step": step, "format": fmt, "bytes": path.stat().st_size, "note": note, **m})
        print(f"  {step:34s} {fmt:6s} top-1 {m['top1']:6.2f}  drop {m['drop']:+5.2f}  agreement "
              f"{m['agreement']:6.2f}", flush=True)

    print("float Keras: top-1 %.2f top-5 %.2f" % (table["float"]["top1"], table["float"]["top5"]), flush=True)
    # 1. converter defaults
    path = work / "default.tflite"
    tflite_default(model, calib, path)
    row("1 converter defaults", "tflite", path)
    row("1 converter defaults", "onnx", onnx_static(model, calib, work, "unfolded"))
    # 2. + batch norm folded in Keras
    folded, _ = fold_batchnorm(model)
    path = work / "folded.tflite"
    tflite_default(folded, calib, path)
    row("2 + BN folded in Keras", "tflite", path)
    row("2 + BN folded in Keras", "onnx", onnx_static(folded, calib, work, "folded"))
    # 3. + ONNX Runtime calibration methods
    for method in ("percentile", "entropy"):
        row(f"3 + ORT {method} calibration", "onnx", onnx_static(folded, calib, work, "folded", method))
    # 4. + bias correction (the default), 5. + adaptive rounding
    plans = {"nearest": plan_int8_weights(folded, calib, rounding="nearest"),
             "adaptive": plan_int8_weights(folded, calib, rounding="adaptive")}
    for step, rounding in (("4 + bias correction", "nearest"), ("5 + adaptive rounding", "adaptive")):
        snapped = apply_int8_weights(folded, plans[rounding])
        path = work / f"{rounding}.tflite"
        path.write_bytes(quantize_calibrated(calibrate(snapped, calib), "int8"))
        row(step, "tflite", path, "default" if rounding == "nearest" else "")
        row(step, "onnx", onnx_static(snapped, calib, work, rounding))
    # 6. + worst layers in float (ranked by their own int8 error, TFLite's NumericVerify)
    snapped = apply_int8_weights(folded, plans["nearest"])
    calibrated = calibrate(snapped, calib)
    ranked = [r["layer"] for r in sorted(
        (r for r in analyze_tflite(calibrated, snapped, calib[:16], []) if r.get("own_sqnr_db") is not None
         and r["layer"] in {l.name for l in snapped.layers if l.weights}), key=lambda r: r["own_sqnr_db"])]
    table["worst_layers"] = ranked[:5]
    for n in (1, 3):
        keep = ranked[:n]
        kept_model = apply_int8_weights(folded, plans["nearest"], keep)
        kept_calibrated = calibrate(kept_model, calib)
        path = work / f"keep{n}.tflite"
        path.write_bytes(quantize_calibrated(kept_calibrated, "int8",
                                             tflite_keep_float(kept_calibrated, kept_model, keep)))
        step = f"6 + {n} worst layer(s) in float"
        row(step, "tflite", path, ", ".join(keep))
        from mnetdeploy.export.onnx import keras_to_onnx

        nodes = onnx_keep_float(keras_to_onnx(kept_model), kept_model, keep)
        row(step, "onnx", onnx_static(kept_model, calib, work, f"keep{n}", "minmax", nodes), ", ".join(keep))

    # The tool itself, defaults, calibrated on the same 100 images.
    calib_dir = work / "calib"
    calib_dir.mkdir()
    for p in paths[:CALIBRATION_IMAGES]:
        (calib_dir / p.name).symlink_to(p)
    start = time.perf_counter()
    result = quantize(directory, QuantizeConfig(calib=str(calib_dir), num_calib=CALIBRATION_IMAGES), force=True)
    table["tool_seconds"] = round(time.perf_counter() - start, 1)
    table["tool"] = {}
    for name in ("model_fp32.tflite", "model_int8.tflite", "model_fp32.onnx", "model_int8.onnx"):
        m = metrics(run_file(directory / name, images), labels, float_pred)
        m["drop"] = table["float"]["top1"] - m["top1"]
        m["bytes"] = (directory / name).stat().st_size
        table["tool"][name] = m
    table["tool_settings"] = result.settings
    return table


def timing_v2(work: Path) -> dict:
    """Wall time of `quantize()` (defaults: fp32+int8, TFLite+ONNX) on a random-init v2 1.0/224."""
    from mnetdeploy.build import build
    from mnetdeploy.config import load_config
    from mnetdeploy.config import QuantizeConfig
    from mnetdeploy.quantize import quantize

    directory = build(load_config(overrides={"output": str(work / "timing")})).artifact_dir
    out = {}
    for rounding in ("nearest", "adaptive"):
        start = time.perf_counter()
        result = quantize(directory, QuantizeConfig(rounding=rounding), force=True)
        out[rounding] = {"seconds": round(time.perf_counter() - start, 1),
                         "per_artifact": {a.file: a.seconds for a in result.artifacts},
                         "calibration": result.calibration["source"] if result.calibration else None}
        print(f"v2 1.0/224 quantize (rounding {rounding}): {out[rounding]['seconds']} s "
              f"{out[rounding]['per_artifact']}", flush=True)
    return out


def print_table(table: dict) -> None:
    f = table["float"]
    print(f"\nfloat Keras: top-1 {f['top1']:.2f} %, top-5 {f['top5']:.2f} % on {table['data']['evaluation']} images")
    print("\n| step | format | top-1 | top-5 | drop | agreement | size |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in table["rows"]:
        print(f"| {r['step']} | {r['format']} | {r['top1']:.2f} | {r['top5']:.2f} | {r['drop']:+.2f} | "
              f"{r['agreement']:.2f} | {r['bytes'] / 1e3:.0f} kB |")
    print(f"\nmnetdeploy quantize (defaults), {table['tool_seconds']} s:")
    print("| file | top-1 | top-5 | drop | agreement | size |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in table["tool"].items():
        print(f"| {name} | {m['top1']:.2f} | {m['top5']:.2f} | {m['drop']:+.2f} | {m['agreement']:.2f} | "
              f"{m['bytes'] / 1e3:.0f} kB |")
    print(f"worst layers by own int8 error: {', '.join(table['worst_layers'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    parser.add_argument("--skip-timing", action="store_true", help="skip the v2 1.0/224 timing")
    args = parser.parse_args()
    for needed in (IMAGES, WEIGHTS):
        if not needed.exists():
            print(f"error: {needed}: not found (shared data lives in ../shared next to the project root)",
                  file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="quantize-accuracy-") as tmp:
        work = Path(tmp)
        table = accuracy_table(work)
        print_table(table)
        if not args.skip_timing:
            table["timing_v2_1.0_224"] = timing_v2(work)
    if args.out:
        args.out.write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
