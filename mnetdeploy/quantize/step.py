"""The quantize step: a built Keras model becomes checked TFLite and ONNX files in its artifact directory.

    from mnetdeploy.quantize import quantize
    result = quantize("artifacts/v2_1.0_224", formats=["tflite"], precisions=["int8"])   # or QuantizeConfig(...)

Per artifact (model_<precision>.<tflite|onnx>): a manifest step "quantize:<file>" whose inputs are the Keras
model's hash, the converter versions, the settings and (int8) the calibration set's content hash. Unchanged
inputs reuse the file (reported as reused); `force` reconverts. Every file, new or reused, is checked against
the float Keras model on held-out images (see export/validate.py) before it counts.

Where each file comes from:
- TFLite fp32/fp16: the Keras model as built (the converter folds batch norm itself);
- ONNX fp32/fp16: the Keras model as built. tf2onnx keeps some batch norms as Mul+Add, which ONNX Runtime
  fuses into the convs at load; folding in Keras first would change the float rounding of deep random-init
  networks by up to ~1e-4 (measured on v3-large), right at the fp32 tolerance;
- int8 (both formats) and TFLite dynamic: the folded model with its weights snapped to the int8 grid,
  bias-corrected and (optionally) adaptively rounded on the calibration images (rounding.py); int8 is then
  calibrated by the converter (TFLite: min/max; ONNX Runtime: minmax/entropy/percentile).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnetdeploy import __version__
from mnetdeploy.artifacts import KERAS_MODEL, SUMMARY, find_artifact_dir, read_json, record_step, step_is_fresh
from mnetdeploy.config import Format, Precision, QuantizeConfig, validated
from mnetdeploy.errors import UserError
from mnetdeploy.export import artifact_name
from mnetdeploy.fsutil import atomic_path, sha256_file, sha256_json, write_json
from mnetdeploy.quantize.models import CALIBRATED, PreparedModels, layer_groups, onnx_int8, step_inputs, tflite_int8
from mnetdeploy.records import ModelSummary

REPORT = "quantize.json"
INT8_GRAPH_DECISION = "int8_graph.json"   # --int8-graph auto: candidates, timings, choice (graph_choice.py)
VALIDATION_IMAGES = 32     # held-out images every export is checked on
MIN_REAL_VALIDATION = 8    # fewer held-out real images than this: synthetic ones are used instead
# (format, precision) pairs this tool does not produce, and why (shown when they are requested).
UNSUPPORTED = {
    ("onnx", "dynamic"): "ONNX Runtime's quantize_dynamic turns convolutions into ConvInteger with per-tensor "
                         "weights; on MobileNets it collapses to chance (measured: 0 % top-1 agreement on the "
                         "pretrained v1 0.25). Use int8 (static, per-channel) for ONNX",
}


@dataclass
class ArtifactResult:
    file: str
    format: str
    precision: str
    bytes: int
    sha256: str
    reused: bool
    seconds: float
    check: dict[str, Any]
    io: dict[str, Any] = field(default_factory=dict)
    keep_float: list[str] = field(default_factory=list)
    check_key: str = ""        # what the check's numbers depend on (check_key()); equal keys give equal numbers
    check_reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QuantizeResult:
    artifact_dir: Path
    artifacts: list[ArtifactResult]
    calibration: dict[str, Any] | None
    validation: dict[str, Any]
    settings: dict[str, Any]
    preparation: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    analysis: dict[str, Any] | None = None
    recovery: dict[str, Any] | None = None
    int8_graph: dict[str, Any] | None = None   # the auto decision (graph_choice.py), reused or new
    seconds: float = 0.0

    @property
    def reused(self) -> bool:
        return bool(self.artifacts) and all(a.reused for a in self.artifacts)

    def to_dict(self) -> dict[str, Any]:
        return {"artifact_dir": str(self.artifact_dir), "artifacts": [a.to_dict() for a in self.artifacts],
                "calibration": self.calibration, "validation": self.validation, "settings": self.settings,
                "preparation": self.preparation, "notes": self.notes, "warnings": self.warnings,
                "analysis": self.analysis, "recovery": self.recovery, "int8_graph": self.int8_graph,
                "checked_on": checked_on(), "seconds": round(self.seconds, 3),
                "tool_version": __version__}


# ----------------------------------------------------------------------------------------------- helpers

def checked_on() -> dict[str, Any]:
    """The machine the exports were checked on: int8 kernels (and so the checks' numbers) differ per CPU."""
    from mnetdeploy.bench.environment import cpu_identity
    from mnetdeploy.runtimes.onnx import session_config

    return {**cpu_identity(), "onnxruntime_session_config": session_config()}


def default_target() -> Path:
    """The artifact directory of the default config (what `mnetdeploy build` with no arguments builds)."""
    from mnetdeploy.config import load_config

    return load_config().artifact_dir


def resolve_artifact_dir(target: str | Path | None) -> Path:
    if target is None:
        directory = default_target()
        if not (directory / SUMMARY).is_file():
            raise UserError(f"{directory}: no built model (the default); run `mnetdeploy build` first or pass "
                            "MODEL_OR_DIR")
        return directory
    path = Path(target)
    if not path.exists():
        raise UserError(f"{path}: not found; pass an artifact directory printed by `mnetdeploy build`")
    directory = find_artifact_dir(path)
    if not (directory / KERAS_MODEL).is_file():
        raise UserError(f"{directory}: no {KERAS_MODEL}; rebuild it with `mnetdeploy build`")
    return directory


def validation_images(calibration, resolution: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Images not used for calibration: the rest of the calibration folder (seeded pick), or synthetic."""
    from mnetdeploy.arch.init import synthetic_images
    from mnetdeploy.data import find_images, load_images, select_seeded

    if calibration is not None and calibration.source == "images" and calibration.directory:
        directory = Path(calibration.directory)
        used = set(calibration.files)
        rest = [p for p in find_images(directory) if p.relative_to(directory).as_posix() not in used]
        if len(rest) >= MIN_REAL_VALIDATION:
            chosen = select_seeded(rest, min(VALIDATION_IMAGES, len(rest)), seed + 1)
            loaded = load_images(chosen, resolution, progress=False, min_ok=0)
            if loaded.count >= MIN_REAL_VALIDATION:
                return loaded.array, {"source": "images", "directory": str(directory), "count": loaded.count,
                                      "note": "images of the calibration folder not used for calibration"}
    images = synthetic_images(VALIDATION_IMAGES, resolution, seed=seed + 1_000_003)
    why = ("no held-out real images (the calibration folder has too few beyond the calibration set)"
           if calibration is not None and calibration.source == "images" else "no real images given")
    return images, {"source": "synthetic", "count": len(images), "note": f"{why}; checked on synthetic images"}


# ------------------------------------------------------------------------------------------ the pipeline

def plan_jobs(options: QuantizeConfig) -> tuple[list[tuple[Format, Precision]], list[str]]:
    """(format, precision) pairs to produce, and notes on requested pairs that are skipped."""
    jobs, notes = [], []
    for fmt in options.formats:
        for precision in options.precisions:
            why = UNSUPPORTED.get((fmt, precision))
            if why:
                notes.append(f"{fmt} {precision}: skipped; {why}")
            else:
                jobs.append((fmt, precision))
    if not jobs:
        raise UserError(f"quantize: nothing to do; {notes[0] if notes else 'no format/precision requested'}")
    return jobs, notes


def adopted_target(target: str | Path | None) -> Path | None:
    """`target` when it is a Keras model file of the user's own (not the model.keras of an artifact
    directory), which quantize first adopts into an artifact directory (adopt.py)."""
    from mnetdeploy.adopt import is_model_file

    if target is None:
        return None
    path = Path(target)
    if not is_model_file(path) or (path.name == KERAS_MODEL and (path.parent / SUMMARY).is_file()):
        return None
    return path


def quantize(target: str | Path | None = None, options: QuantizeConfig | None = None, *,
             calibration=None, force: bool = False, progress: Callable[[str], None] | None = None,
             output: str | Path = "artifacts", name: str | None = None, **values: Any) -> QuantizeResult:
    """Export and quantize the model in `target` (artifact directory or a file in it; None: the default
    build; a Keras model file of your own: adopted first into `output`/`name`, default artifacts/<stem>/)
    with `options` (config.QuantizeConfig), or options made from `values` (its field names: calib,
    num_calib, precisions, ...). `calibration` (a data.CalibrationSet) overrides calib/num_calib/seed."""
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    if options is None:
        options = validated(QuantizeConfig, values, "quantize")
    elif values:
        raise TypeError("quantize: pass options or values, not both")
    calib_dir, num_calib, seed = options.calib, options.num_calib, options.seed
    analyze, eval_data, max_drop = options.analyze, options.eval_data, options.max_drop
    jobs, notes = plan_jobs(options)
    own = adopted_target(target)
    if own is not None:
        from mnetdeploy.adopt import adopt

        adopted = adopt(own, output, name, force=force, progress=say)
        target = adopted.artifact_dir
        s = adopted.summary
        what = "custom model" if s["arch"] == "custom" else f"MobileNet {s['arch']} alpha {s['alpha']:g}"
        notes.append(f"{'reused the adoption of' if adopted.reused else 'adopted'} {own} into {target} "
                     f"({what}, {s['resolution']}x{s['resolution']}, {s['classes']} classes, {s['params']:,} "
                     f"params, {s['macs']:,} MACs)")
    artifact_dir = resolve_artifact_dir(target)
    summary = ModelSummary.load(artifact_dir / SUMMARY)
    resolution = summary.resolution
    needs_int8 = any(p in CALIBRATED for _, p in jobs) or analyze or max_drop is not None
    if options.keep_float and not any(p == "int8" for _, p in jobs):
        raise UserError("keep_float applies to int8 models, and no int8 model is made here")

    # Everything the user can get wrong is checked before anything is written.
    warnings: list[str] = []
    if needs_int8 and calibration is None:
        from mnetdeploy.data import calibration_set

        say("loading calibration images")
        calibration = calibration_set(calib_dir, num_calib, seed, resolution)
    if calibration is not None:
        warnings += calibration.warnings
    eval_set = None
    if eval_data is not None:
        from mnetdeploy.quantize.recovery import load_eval_set

        say("loading evaluation images")
        eval_set = load_eval_set(eval_data, resolution, calibration, summary.classes)

    from mnetdeploy.fsutil import remove_stale_temporaries

    stale = remove_stale_temporaries(artifact_dir)
    if stale:
        notes.append(f"removed {len(stale)} temporary file(s) an interrupted run left behind: {', '.join(stale)}")
    models = PreparedModels(artifact_dir, options, say)
    models.calibration = calibration
    try:
        if options.keep_float:
            layer_groups(models.original, options.keep_float)  # unknown names fail before any write
        check_images, validation = validation_images(calibration if needs_int8 else None, resolution, seed)
        models.check_images = check_images
        requested = options.model_dump(mode="json")
        decision = None
        if options.int8_graph == "auto":
            decision = decide_int8_graph(models, options, force, say) if ("tflite", "int8") in jobs else None
            # Everything after this (exports, analysis, --max-drop) uses the graph chosen here.
            options = options.model_copy(update={"int8_graph": decision["chosen"] if decision else "cpu"})
        previous = previous_report(artifact_dir)
        results = [_produce(fmt, precision, models, options, force, say, previous.get("by_file", {}))
                   for fmt, precision in jobs]
        if not models.preparation and all(r.check_reused for r in results):
            # Nothing was prepared now: the last run's record of the preparation still describes these files.
            models.preparation = previous.get("preparation") or {}
        if any(r.reused for r in results):
            notes.append("inputs unchanged: reused " + ", ".join(r.file for r in results if r.reused)
                         + " (use --force to reconvert)")
        result = QuantizeResult(artifact_dir, results, _calibration_record(calibration), validation,
                                settings={**requested, "int8_graph_used": options.int8_graph,
                                          "num_calib": num_calib, "seed": seed},
                                preparation=models.preparation, notes=notes, warnings=warnings, int8_graph=decision)
        if analyze:
            from mnetdeploy.quantize.analysis import analyze_int8

            say("per-layer quantization analysis")
            result.analysis = analyze_int8(models, options, check_images, progress=say)
        if max_drop is not None:
            from mnetdeploy.quantize.recovery import recover

            assert eval_set is not None  # QuantizeConfig: max_drop needs eval_data
            result.recovery, replacements = recover(models, options, eval_set, max_drop, results, progress=say)
            for artifact in results:
                if artifact.file in replacements:
                    _install(models, options, artifact, *replacements[artifact.file])
    finally:
        models.close()
    result.seconds = time.perf_counter() - start
    write_json(artifact_dir / REPORT, result.to_dict())
    return result


def _produce(fmt: str, precision: str, models: PreparedModels, options: QuantizeConfig, force: bool,
             say: Callable[[str], None], previous: dict[str, dict[str, Any]]) -> ArtifactResult:
    """Convert (or reuse) one export, check it against Keras, record it in the manifest."""
    from mnetdeploy.export.validate import check_export

    artifact_dir = models.artifact_dir
    assert models.check_images is not None  # set by quantize() before any export
    name = artifact_name(fmt, precision)
    inputs, key = step_inputs(models, fmt, precision, options)
    inputs_hash = sha256_json(key)
    path = artifact_dir / name
    t0 = time.perf_counter()
    reused = not force and step_is_fresh(artifact_dir, f"quantize:{name}", inputs_hash)
    check_reused = False
    if reused:
        digest = sha256_file(path)
        this_check = check_key(inputs_hash, digest, models.check_images)
        earlier = previous.get(name, {})
        check_reused = earlier.get("check_key") == this_check and earlier.get("sha256") == digest
        if check_reused:
            say(f"reused {name} and its check (same file, check images, runtimes and CPU)")
            check = earlier["check"]
        else:
            say(f"checking reused {name}")
            check = check_export(path, precision, models.reference, models.check_images).to_dict()
    else:
        say(f"converting {name}")
        with atomic_path(path) as tmp:
            _convert(fmt, precision, models, tmp, options, say)
            say(f"checking {name}")
            check = check_export(tmp, precision, models.reference, models.check_images, name).to_dict()
        record_step(artifact_dir, f"quantize:{name}", inputs, inputs_hash, [name], time.perf_counter() - t0)
        digest = sha256_file(path)
        this_check = check_key(inputs_hash, digest, models.check_images)
    return ArtifactResult(file=name, format=fmt, precision=precision, bytes=path.stat().st_size,
                          sha256=digest, reused=reused, seconds=round(time.perf_counter() - t0, 3),
                          check=check, io=io_of(path),
                          keep_float=sorted(options.keep_float) if precision == "int8" else [],
                          check_key=this_check, check_reused=check_reused)


def check_key(inputs_hash: str, file_sha256: str, images: np.ndarray) -> str:
    """What an export check's numbers depend on: the file, the reference model, converters and check code (all
    in the step's inputs: its code fingerprint reaches export/validate.py), the check images, the runtimes that
    run it and the CPU, whose int8 kernels differ in arithmetic (VNNI or not, NEON dot product). The same key on
    a rerun gives the same numbers, so the check is reused; on another CPU it runs again."""
    from importlib.metadata import version

    from mnetdeploy.bench.environment import cpu_identity

    return sha256_json({"inputs": inputs_hash, "file": file_sha256,
                        "images": hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest(),
                        "runtimes": {name: version(name) for name in ("ai-edge-litert", "onnxruntime")},
                        "cpu": cpu_identity()})


def previous_report(artifact_dir: Path) -> dict[str, Any]:
    """The last quantize.json with its artifacts by file name, for reusing checks; {} when absent or unreadable
    (then every reused export is simply checked again)."""
    try:
        report = read_json(artifact_dir / REPORT)
        return {**report, "by_file": {a["file"]: a for a in report["artifacts"]}}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UserError):
        return {}


def decide_int8_graph(models: PreparedModels, options: QuantizeConfig, force: bool, say: Callable[[str], None]
                      ) -> dict[str, Any]:
    """`--int8-graph auto`: the int8 TFLite graph chosen by timing the checked candidates on this machine
    (graph_choice.py); reused from int8_graph.json while the model, calibration, settings and machine match."""
    import tempfile

    from mnetdeploy.export.int8_graph import INT8_GRAPHS
    from mnetdeploy.export.validate import check_export
    from mnetdeploy.quantize.graph_choice import choose_int8_graph, target_identity

    assert models.check_images is not None  # set by quantize() before any export
    check_images = models.check_images
    inputs, key = step_inputs(models, "tflite", "int8", options)
    inputs = {**inputs, "target": target_identity()}
    key = {**key, "target": inputs["target"]}
    inputs_hash = sha256_json(key)
    path = models.artifact_dir / INT8_GRAPH_DECISION
    if not force and step_is_fresh(models.artifact_dir, "decide:int8_graph", inputs_hash):
        decision = read_json(path)
        say(f"int8 graph: {decision['chosen']} (decided on this machine before; inputs unchanged)")
        return {**decision, "reused": True}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mnetdeploy-graphs-") as work:
        decision = choose_int8_graph(
            make=lambda graph: tflite_int8(models, options.keep_float, options.io, graph),
            check=lambda file: check_export(file, "int8", models.reference, check_images,
                                            "model_int8.tflite").to_dict(),
            workdir=Path(work), graphs=INT8_GRAPHS, say=say)
    write_json(path, decision)
    record_step(models.artifact_dir, "decide:int8_graph", inputs, inputs_hash, [INT8_GRAPH_DECISION],
                time.perf_counter() - start)
    return {**decision, "reused": False}


def _install(models: PreparedModels, options: QuantizeConfig, artifact: ArtifactResult, data: bytes,
             kept: list[str]) -> None:
    """A --max-drop replacement becomes model_int8.*, checked and recorded like any export."""
    from mnetdeploy.export.validate import check_export

    path = models.artifact_dir / artifact.file
    assert models.check_images is not None  # set by quantize() before any export
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        agreement = check_export(tmp, "int8", models.reference, models.check_images, artifact.file)
    chosen = options.model_copy(update={"keep_float": list(kept)})
    inputs, key = step_inputs(models, artifact.format, "int8", chosen)
    record_step(models.artifact_dir, f"quantize:{artifact.file}", inputs, sha256_json(key), [artifact.file], 0.0)
    artifact.keep_float, artifact.bytes = sorted(kept), path.stat().st_size
    artifact.sha256, artifact.check, artifact.reused = sha256_file(path), agreement.to_dict(), False


def _calibration_record(calibration) -> dict[str, Any] | None:
    if calibration is None:
        return None
    record = calibration.describe()
    record["files"] = record["files"][:1000]
    return record


def io_of(path: Path) -> dict[str, Any]:
    if path.suffix == ".tflite":
        from mnetdeploy.export.tflite import io_details

        return io_details(path.read_bytes())
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    elem = {1: "float32", 10: "float16", 2: "uint8", 3: "int8"}

    def describe(value):
        t = value.type.tensor_type
        return {"name": value.name, "dtype": elem.get(t.elem_type, str(t.elem_type)),
                "shape": [d.dim_value if d.dim_value else d.dim_param for d in t.shape.dim]}

    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None)
    return {"input": describe(proto.graph.input[0]), "output": describe(proto.graph.output[0]), "opset": opset}


def _convert(fmt: str, precision: str, models: PreparedModels, tmp: Path, options: QuantizeConfig,
             say: Callable[[str], None]) -> None:
    """Write one export to `tmp`."""
    if fmt == "tflite":
        from mnetdeploy.export import tflite

        if precision == "int8":
            tmp.write_bytes(tflite_int8(models, options.keep_float, options.io, options.int8_graph))
        elif precision == "dynamic":
            tmp.write_bytes(tflite.convert_float(models.snapped(), precision))
        else:
            tmp.write_bytes(tflite.convert_float(models.original, precision))
        return
    from mnetdeploy.export import onnx as onnx_export

    if precision == "int8":
        say(f"ONNX Runtime static quantization ({options.onnx_calib})")
        onnx_int8(models, options.keep_float, options.onnx_calib, tmp)
        return
    proto = onnx_export.keras_to_onnx(models.original)
    if precision == "fp16":
        proto = onnx_export.fp16_weights(proto)
    onnx_export.save(proto, tmp)


