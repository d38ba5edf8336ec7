"""`mnetdeploy info`: what a model is, layer by layer, without loading TensorFlow; for exported models also
how the runtime executes them (`execution`: XNNPACK delegation, ONNX Runtime int8 kernels; see
mnetdeploy/runtimes/inspect.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnetdeploy.artifacts import SUMMARY, find_artifact_dir
from mnetdeploy.errors import UserError
from mnetdeploy.fsutil import visible_files
from mnetdeploy.records import ModelSummary


def describe(target: str | Path) -> dict[str, Any]:
    """Summary (params, MACs, per-layer rows) of an artifact directory, a file in one, a config YAML, or any
.keras/.h5 (per-layer from its graph) or .tflite/.onnx file (execution, and per-layer for TFLite)."""
    target = Path(target)
    if not target.exists():
        raise UserError(f"{target}: no such file or directory")
    if target.suffix in (".yaml", ".yml"):
        from mnetdeploy.build import plan_from_config
        from mnetdeploy.config import load_config

        config = load_config(target)
        summary = plan_from_config(config).summary()
        summary.update(name=config.artifact_name, artifact_dir=str(config.artifact_dir))
        return summary
    directory = target if target.is_dir() else target.parent
    if not (directory / SUMMARY).is_file() and target.is_file():
        # A model file of the user's own, outside any artifact directory: described from the file itself.
        from mnetdeploy.adopt import KERAS_SUFFIXES

        if target.suffix.lower() in KERAS_SUFFIXES:
            return keras_file_summary(target)
        if target.suffix in EXPORT_SUFFIXES:
            return export_file_summary(target)
    directory = find_artifact_dir(target)
    summary = ModelSummary.load(directory / SUMMARY).model_dump(mode="json", by_alias=True)
    summary["artifact_dir"] = str(directory)
    exports = [target] if target.suffix in EXPORT_SUFFIXES else (
        visible_files(directory, set(EXPORT_SUFFIXES)) if target.is_dir() else [])
    if exports:
        summary["execution"] = execution_of(exports)
    return summary


EXPORT_SUFFIXES = (".tflite", ".onnx")


def execution_of(paths: list[Path], threads: int = 1) -> dict[str, Any]:
    """{file name: inspect_execution(...)}; a file the runtime cannot load gets {"error": ...} instead of
    failing the whole summary (info is how one finds out what is wrong with it)."""
    from mnetdeploy.runtimes.inspect import inspect_execution

    out = {}
    for path in paths:
        try:
            out[path.name] = inspect_execution(path, threads)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - a broken model file is reported, not raised
            out[path.name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    return out


def keras_file_summary(path: Path) -> dict[str, Any]:
    """A Keras model file's per-layer params and MACs, read from its graph (arch/imported.py)."""
    from mnetdeploy.arch.imported import keras_summary
    from mnetdeploy.arch.weights import load_keras_model

    summary = keras_summary(load_keras_model(path), str(path))
    summary.update(name=path.stem, file=str(path))
    return summary


def export_file_summary(path: Path) -> dict[str, Any]:
    """A .tflite/.onnx file: how the runtime executes it, its I/O, and (TFLite) params and MACs per op."""
    from mnetdeploy.quantize.step import io_of

    summary: dict[str, Any] = {"name": path.stem, "file": str(path), "format": path.suffix[1:],
                               "execution": execution_of([path])}
    try:
        summary["io"] = io_of(path)
    except Exception as e:  # noqa: BLE001 - an unreadable file is what execution's error already says
        summary["io"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    if path.suffix == ".tflite" and "error" not in summary["execution"][path.name]:
        from mnetdeploy.runtimes.inspect import tflite_layers

        layers = tflite_layers(path)
        summary.update(layers=layers, params=sum(r["params"] for r in layers), macs=sum(r["macs"] for r in layers))
    return summary
