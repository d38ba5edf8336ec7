"""Assemble `report.json` for one artifact directory from what the steps recorded there.

Schema `mnetdeploy-report`, version 1 (`REPORT_SCHEMA_VERSION`):

    schema          "mnetdeploy-report"
    schema_version  1
    tool_version    mnetdeploy version that wrote the report
    generated       ISO 8601 UTC time the report was assembled
    name            artifact directory name (e.g. "v2_0.5_128")
    artifact_dir    path of the artifact directory
    model           {arch, alpha, resolution, classes, params, deploy_params, macs, weights}
                    params = Keras count (incl. batch-norm statistics); deploy_params = after BN folding
    artifacts       one per model file in the directory (model.keras, *.tflite, *.onnx):
                    {file, format: keras|tflite|onnx, precision: fp32|fp16|dynamic|int8|int16x8, bytes, sha256,
                     validation: {max_abs_diff, cosine, top1_agreement (percent), n, images} | null  (vs Keras),
                     calibration: {source, directory, count, content_hash, ...} | null,
                     execution: how this machine's runtime runs the file (runtimes/inspect.py: LiteRT ops
                     taken by XNNPACK vs default kernels by op type; ONNX Runtime int8 vs float nodes after
                     its graph optimizations) | {error} | null (keras)}
    accuracy        `mnetdeploy eval` results for files of this directory: {model (file name), format,
                    precision, n, top1, top5 (percent), agreement_top1 (percent vs reference, or null),
                    cosine, reference (bool), data: {dir, count, hash, ...}}
    latency         `mnetdeploy bench` results for files of this directory, exactly the bench schema
                    (mnetdeploy/bench/schema.py) with `model` = file name; per-run `samples_ms` included so
                    the gate can compare distributions
    calibration     the calibration set used by quantization (or null)
    int8_graph      `--int8-graph auto`'s decision from quantize.json: {requested, chosen, target (the
                    machine and its CPU features), rule, candidates: [{graph, passed, p50_ms, cosine,
                    top1_agreement, float_ops, bytes, round_medians_ms}]} | null (a fixed graph was asked for)
    environment     the environment of the newest latency result (or null); its `cpu_features` are the
                    instruction-set features that decide int8 speed and numerics (mnetdeploy/cpu.py)
    gate            the last `mnetdeploy gate` verdict on this directory (results/gate.json, gate.py
                    store_gate_results: verdict, counts, budgets, summary, failures, gated, report_generated)
                    or null when it was never gated

Readers must check `schema` and `schema_version`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mnetdeploy import __version__
from mnetdeploy.artifacts import SUMMARY, find_artifact_dir, read_json
from mnetdeploy.errors import UserError
from mnetdeploy.fsutil import sha256_file
from mnetdeploy.records import GateRecord
from mnetdeploy.results import load_results

REPORT_SCHEMA = "mnetdeploy-report"
REPORT_SCHEMA_VERSION = 1
REPORT_JSON = "report.json"
MODEL_SUFFIXES = {".keras": "keras", ".tflite": "tflite", ".onnx": "onnx"}


def build_report(artifact_dir: str | Path) -> dict[str, Any]:
    directory = find_artifact_dir(artifact_dir)
    summary = read_json(directory / SUMMARY)
    quantized = _quantization_records(directory)
    latency = load_results(directory, "bench")
    newest = max(latency, key=lambda r: r.get("timestamp", ""), default=None)
    return {
        "schema": REPORT_SCHEMA,
        "schema_version": REPORT_SCHEMA_VERSION,
        "tool_version": __version__,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "name": summary.get("name", directory.name),
        "artifact_dir": str(directory),
        "model": {k: summary.get(k) for k in ("arch", "alpha", "resolution", "classes", "params",
                                               "deploy_params", "macs", "weights")},
        "artifacts": [_artifact(path, quantized.get(path.name)) for path in _model_files(directory)],
        "accuracy": load_results(directory, "eval"),
        "latency": latency,
        "calibration": next((q["calibration"] for q in quantized.values() if q.get("calibration")), None),
        "int8_graph": _int8_graph_decision(directory),
        "environment": newest.get("environment") if newest else None,
        "gate": _gate_result(directory),
    }


def _gate_result(directory: Path) -> dict[str, Any] | None:
    from mnetdeploy.results import RESULTS_DIR

    path = directory / RESULTS_DIR / GateRecord.FILE
    if not path.is_file():
        return None
    record = GateRecord.load(path).model_dump(mode="json")
    keep = ("verdict", "counts", "budgets", "summary", "failures", "gated", "report_generated")
    return {k: record.get(k) for k in keep}


def _int8_graph_decision(directory: Path) -> dict[str, Any] | None:
    from mnetdeploy.quantize.step import REPORT as QUANTIZE_JSON

    path = directory / QUANTIZE_JSON
    return read_json(path).get("int8_graph") if path.is_file() else None


def _model_files(directory: Path) -> list[Path]:
    from mnetdeploy.fsutil import visible_files

    order = {"keras": 0, "tflite": 1, "onnx": 2}
    files = visible_files(directory, set(MODEL_SUFFIXES))
    return sorted(files, key=lambda p: (order[MODEL_SUFFIXES[p.suffix]], p.name))


def _quantization_records(directory: Path) -> dict[str, dict[str, Any]]:
    """Per exported file: precision, validation against Keras and calibration, from the quantize step's
    record (`quantize.json`, written by mnetdeploy.quantize.step)."""
    from mnetdeploy.quantize.step import REPORT as QUANTIZE_JSON

    path = directory / QUANTIZE_JSON
    if not path.is_file():
        return {}
    record = read_json(path)
    calibration = record.get("calibration")
    if calibration:
        calibration = {k: v for k, v in calibration.items() if k != "files"}  # the hash names them
    out = {}
    for artifact in record.get("artifacts", []):
        validation = artifact.get("check")
        out[artifact["file"]] = {
            "precision": artifact.get("precision"),
            "validation": validation,
            "calibration": calibration if artifact.get("precision") == "int8" else None,
            "io": artifact.get("io"),
            "keep_float": artifact.get("keep_float"),
        }
    return out


def _artifact(path: Path, record: dict[str, Any] | None) -> dict[str, Any]:
    fmt = MODEL_SUFFIXES[path.suffix]
    record = record or {}
    precision = record.get("precision") or ("fp32" if fmt == "keras" else _precision_of(path))
    return {
        "file": path.name,
        "format": fmt,
        "precision": precision,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "validation": record.get("validation"),
        "calibration": record.get("calibration"),
        "io": record.get("io"),
        "keep_float": record.get("keep_float") or [],
        "execution": _execution(path) if fmt != "keras" else None,
    }


def _execution(path: Path) -> dict[str, Any]:
    from mnetdeploy.info import execution_of

    return execution_of([path])[path.name]


def _precision_of(path: Path) -> str:
    from mnetdeploy.evaluate import model_precision  # reads the file (no model loaded for .tflite/.onnx)

    return model_precision(path)


def load_report(path: str | Path) -> dict[str, Any]:
    """A report from `report.json` or its artifact directory, checked for schema and version."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_JSON
    report = read_json(path)
    if not isinstance(report, dict) or report.get("schema") != REPORT_SCHEMA:
        what = f"schema {report.get('schema')!r}" if isinstance(report, dict) else f"a JSON {type(report).__name__}"
        raise UserError(f"{path}: not a mnetdeploy report ({what}); pass a report.json written by "
                        "`mnetdeploy report` or an artifact directory")
    if report.get("schema_version") != REPORT_SCHEMA_VERSION:
        raise UserError(f"{path}: report schema_version {report.get('schema_version')!r}; this mnetdeploy "
                        f"reads {REPORT_SCHEMA_VERSION}: re-run `mnetdeploy report` on its directory")
    return report
