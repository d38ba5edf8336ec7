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
    """Summary (params, MACs, per-layer rows) of an artifact directory, a file in one, or a config YAML."""
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
