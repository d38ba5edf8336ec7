"""Measured results kept with the model they belong to: `<artifact_dir>/results/<kind>.json`.

`bench` and `eval` run on any model file; when the file lives in an artifact directory, its results are also
merged into that directory, keyed by what makes a measurement distinct (model file, device, runtime,
threads, ...), the newest replacing an older one with the same key. The report is assembled from these.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mnetdeploy.artifacts import SUMMARY
from mnetdeploy.fsutil import write_json

RESULTS_DIR = "results"

# What identifies one measurement of each kind: a newer record with the same key replaces the older one.
KEYS = {
    "bench": lambda r: (Path(r["model"]).name, r.get("device"), r.get("runtime"), r.get("threads"), r.get("xnnpack")),
    "eval": lambda r: (Path(r["model"]).name, r.get("data", {}).get("hash"), r.get("device") or "host"),
}


def artifact_dir_of(model: str | Path) -> Path | None:
    """The artifact directory holding `model`, or None for a model file outside one."""
    directory = Path(model).resolve().parent
    return directory if (directory / SUMMARY).is_file() else None


def _key(kind: str, record: dict[str, Any]) -> tuple:
    return KEYS[kind](record)


def load_results(artifact_dir: str | Path, kind: str) -> list[dict[str, Any]]:
    path = Path(artifact_dir) / RESULTS_DIR / f"{kind}.json"
    if not path.is_file():
        return []
    return json.loads(path.read_text())


def store_results(kind: str, records: Iterable[dict[str, Any]]) -> list[Path]:
    """Merge each record into the results file of the artifact directory its model lives in."""
    by_dir: dict[Path, list[dict[str, Any]]] = {}
    for record in records:
        directory = artifact_dir_of(record["model"])
        if directory is not None:
            by_dir.setdefault(directory, []).append(record)
    written = []
    for directory, new in by_dir.items():
        merged = {_key(kind, r): r for r in load_results(directory, kind)}
        for record in new:
            merged[_key(kind, record)] = dict(record, model=Path(record["model"]).name)
        path = directory / RESULTS_DIR / f"{kind}.json"
        write_json(path, list(merged.values()))
        written.append(path)
    return written
