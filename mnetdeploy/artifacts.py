"""Artifact directories and their manifest: what each step produced, from which inputs, with content hashes.

One directory per model (`artifacts/<name>/`). Each pipeline step records, in `manifest.json`, the hash of
its inputs and the sha256/size of every file it wrote. A step whose inputs hash is unchanged and whose outputs
are all present with the recorded hashes is reused instead of rerun (Olive-style content caching).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mnetdeploy import __version__
from mnetdeploy.errors import UserError
from mnetdeploy.fsutil import sha256_file
from mnetdeploy.records import FileRecord, Manifest, StepEntry

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
CONFIG = "config.yaml"
KERAS_MODEL = "model.keras"


def code_fingerprint(*step_modules: str) -> dict[str, str]:
    """This tool's version and a hash of the code a step runs (the modules `step_modules` can reach; comments
    and docstrings ignored): part of every step's cache key, so a changed builder or exporter (even under the
    same version number) never reuses artifacts made by the old code, while an edit to report code does not
    rebuild any model."""
    from mnetdeploy.source_graph import code_fingerprint as fingerprint

    return {"version": __version__, "code_sha256": fingerprint(*step_modules)}


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


def read_manifest(artifact_dir: Path) -> Manifest:
    path = Path(artifact_dir) / MANIFEST
    return Manifest.load(path) if path.is_file() else Manifest(tool_version=__version__)


def file_record(path: Path) -> FileRecord:
    return FileRecord(sha256=sha256_file(path), bytes=path.stat().st_size)


def step_is_fresh(artifact_dir: Path, step: str, inputs_hash: str) -> bool:
    """True when `step` ran with these inputs and all its outputs are still there, unmodified."""
    entry = read_manifest(artifact_dir).steps.get(step)
    if entry is None or entry.inputs_hash != inputs_hash:
        return False
    for name, rec in entry.outputs.items():
        path = Path(artifact_dir) / name
        if not path.is_file() or path.stat().st_size != rec.bytes or sha256_file(path) != rec.sha256:
            return False
    return True


def record_step(artifact_dir: Path, step: str, inputs: dict[str, Any], inputs_hash: str,
                outputs: list[str], seconds: float, manifest_dir: Path | None = None) -> Manifest:
    """Write the manifest entry of `step` (outputs are file names relative to the artifact directory).

    `manifest_dir` is where the files are now (a temporary directory about to replace `artifact_dir`)."""
    where = Path(manifest_dir or artifact_dir)
    manifest = read_manifest(where)
    manifest.tool_version = __version__
    manifest.steps[step] = StepEntry(inputs=inputs, inputs_hash=inputs_hash,
                                     outputs={name: file_record(where / name) for name in outputs},
                                     seconds=round(seconds, 3), finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    manifest.save(where / MANIFEST)
    return manifest


def find_artifact_dir(path: str | Path) -> Path:
    """An artifact directory from the directory itself or a file inside it."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if not (directory / SUMMARY).is_file():
        raise UserError(f"{path}: not a mnetdeploy artifact directory (no {SUMMARY}); "
                        "run `mnetdeploy build` first or pass the directory it printed")
    return directory
