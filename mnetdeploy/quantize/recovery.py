"""--max-drop: keep the most harmful layers in float until the measured top-1 drop is within the limit.

The drop is measured on labelled images (`--eval-data`), never on the calibration images (those are removed
from the evaluation set when both come from the same folder). Candidates are ranked by the per-layer
analysis (a layer's own int8 error, TFLite's NumericVerify; see analysis.py) and added one at a time, each
attempt requantized from the same calibration (no recalibration) and measured. Each kept layer costs file
size (float weights) and time (float kernels plus quantize/dequantize around them): both are reported, with a
quick host latency (LiteRT/ONNX Runtime, one thread, median of LATENCY_RUNS invokes).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnetdeploy.errors import UserError
from mnetdeploy.export import EXTENSIONS
from mnetdeploy.quantize.models import onnx_int8, predict, tflite_int8, tflite_keep_float, weighted_names

MAX_KEPT = 8          # give up after this many float layers (beyond it int8 is the wrong tool)
LATENCY_RUNS = 50
LATENCY_WARMUP = 5


@dataclass
class EvalSet:
    array: np.ndarray
    labels: np.ndarray
    directory: str
    count: int
    excluded_calibration: int

    def describe(self) -> dict[str, Any]:
        return {"directory": self.directory, "count": self.count,
                "excluded_calibration_images": self.excluded_calibration}


def load_eval_set(directory: str | Path, resolution: int, calibration, classes: int = 1000) -> EvalSet:
    """Labelled images of `directory` (labels.csv or class subfolders), minus the calibration images."""
    from mnetdeploy.data import load_images
    from mnetdeploy.evaluate import select_data

    data = select_data(directory)
    used = set()
    if calibration is not None and calibration.directory:
        calib_dir = Path(calibration.directory).resolve()
        used = {(calib_dir / f).resolve() for f in calibration.files}
    files = [p for p in data.files if p.resolve() not in used]
    if not files:
        raise UserError(f"{directory}: every image is a calibration image; evaluate on other images")
    offset = 1 if classes == 1001 else 0
    labels = data.labels(offset)
    loaded = load_images(files, resolution)
    return EvalSet(loaded.array, np.array([labels[p] for p in loaded.paths]), str(directory), loaded.count,
                   len(data.files) - len(files))


def top1(outputs: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float(np.mean(np.argmax(outputs, 1) == labels))


def latency_ms(path: Path) -> float:
    """Median single-image latency on this host, one thread (a quick relative cost, not a benchmark)."""
    from mnetdeploy.runtimes import open_runner

    runner = open_runner(path, threads=1)
    prepared = runner.prepare(np.zeros(runner.input_shape, np.float32))
    for _ in range(LATENCY_WARMUP):
        runner.run(prepared)
    times = []
    for _ in range(LATENCY_RUNS):
        t0 = time.perf_counter()
        runner.run(prepared)
        times.append(time.perf_counter() - t0)
    return round(1000.0 * statistics.median(times), 3)


def _measure(path: Path, eval_set: EvalSet, float_top1: float, float_pred: np.ndarray) -> dict[str, Any]:
    from mnetdeploy.runtimes import open_runner

    outputs = open_runner(path).predict(eval_set.array)
    t1 = top1(outputs, eval_set.labels)
    return {"top1": round(t1, 2), "drop": round(float_top1 - t1, 2),
            "agreement": round(100.0 * float(np.mean(np.argmax(outputs, 1) == float_pred)), 2),
            "bytes": path.stat().st_size, "latency_ms_p50": latency_ms(path)}


def rank_candidates(models, options, say) -> list[str]:
    """Conv/dense layers, most harmful first (lowest own SQNR in TFLite's per-layer debugger)."""
    from mnetdeploy.quantize.analysis import analyze_tflite

    say("ranking layers by their own int8 error")
    keep = options.keep_float
    calibrated, snapped = models.tflite_calibrated(keep), models.snapped(keep)
    rows = analyze_tflite(calibrated, snapped, models.check_images[:16], tflite_keep_float(calibrated, snapped, keep),
                          options.int8_graph)
    weighted = weighted_names(snapped)
    scored = [r for r in rows if r["layer"] in weighted and r.get("own_sqnr_db") is not None
              and r["layer"] not in options.keep_float]
    scored.sort(key=lambda r: r["own_sqnr_db"])
    return [r["layer"] for r in scored]


def recover(models, options, eval_set: EvalSet, max_drop: float, results: list, progress=None
            ) -> tuple[dict[str, Any], dict[str, tuple[bytes, list[str]]]]:
    """Greedy keep-float search per int8 format. Returns the report and, per int8 file that needed layers
    kept in float to meet `max_drop`, the replacement model's bytes and the kept layers; the caller (the
    quantize step) installs them, so files and the manifest are written in one place."""
    say: Callable[[str], None] = progress or (lambda _msg: None)
    say("evaluating the float model")
    float_out = predict(models.original, eval_set.array)
    float_top1 = top1(float_out, eval_set.labels)
    float_pred = np.argmax(float_out, 1)
    report: dict[str, Any] = {"max_drop": max_drop, "eval": eval_set.describe(), "float_top1": round(float_top1, 2),
                              "formats": {}}
    ranking = None
    replacements: dict[str, tuple[bytes, list[str]]] = {}
    for result in results:
        if result.precision != "int8":
            continue
        fmt = result.format
        path = models.artifact_dir / result.file
        say(f"measuring {result.file}")
        base = _measure(path, eval_set, float_top1, float_pred)
        steps = [{"keep_float": sorted(options.keep_float), **base}]
        entry = {"steps": steps, "met": base["drop"] <= max_drop, "kept": sorted(options.keep_float)}
        report["formats"][fmt] = entry
        if entry["met"]:
            continue
        if ranking is None:
            ranking = rank_candidates(models, options, say)
        kept = list(options.keep_float)
        with tempfile.TemporaryDirectory(prefix="mnetdeploy-recover-") as tmp:
            for layer in ranking[:MAX_KEPT]:
                kept.append(layer)
                say(f"{fmt}: keeping {len(kept)} layer(s) in float ({layer})")
                attempt = Path(tmp) / f"attempt{EXTENSIONS[fmt]}"
                _write_int8(fmt, models, options, kept, attempt)
                measured = _measure(attempt, eval_set, float_top1, float_pred)
                steps.append({"keep_float": list(kept), **measured})
                if measured["drop"] <= max_drop:
                    entry.update(met=True, kept=list(kept))
                    replacements[result.file] = (attempt.read_bytes(), list(kept))
                    break
        first, last = steps[0], steps[-1]
        entry["cost"] = {"bytes": last["bytes"] - first["bytes"],
                         "latency_ms_p50": round(last["latency_ms_p50"] - first["latency_ms_p50"], 3)}
    return report, replacements


def _write_int8(fmt: str, models, options, kept: list[str], path: Path) -> None:
    if fmt == "tflite":
        path.write_bytes(tflite_int8(models, kept, options.io, options.int8_graph))
    else:
        onnx_int8(models, kept, options.onnx_calib, path)
