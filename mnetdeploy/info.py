"""`mnetdeploy info`: what a model is, layer by layer, without loading TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnetdeploy.artifacts import SUMMARY, find_artifact_dir, read_json
from mnetdeploy.errors import UserError


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
    summary = read_json(directory / SUMMARY)
    summary["artifact_dir"] = str(directory)
    return summary
