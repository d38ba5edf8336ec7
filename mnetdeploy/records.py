"""The files that pass between steps: which step writes each, who reads it, and the typed model of each.

One artifact directory per model (artifacts/<name>/):

    file                    written by                        read by                      typed as
    manifest.json           every step (artifacts.record_step) every step's cache check    records.Manifest
    summary.json            build                             quantize, info, report, gate records.ModelSummary
    config.yaml             build                             people                       config.Config
    model.keras             build                             quantize, eval               (Keras)
    model_<p>.tflite/.onnx  quantize                          eval, bench, report, gate    (model files)
    quantize.json           quantize                          report (collect.py)          quantize.step.QuantizeResult
    int8_graph.json         quantize (--int8-graph auto)      quantize (cache), report     quantize.graph_choice
    quant_analysis.json     quantize --analyze                people, report               quantize.analysis
    results/eval.json       eval (results.store_results)      report, gate                 evaluate.EvalResult list
    results/bench.json      bench (results.store_results)     report, gate                 bench.schema.BenchResult list
    results/gate.json       gate (gate.store_gate_results)    report                       records.GateRecord
    report.json/.md/.html   report (report/write.py)          gate, people, re-rendering   report/collect.py schema

A sweep folder (sweeps/<arch>/): sweep.json (sweep.py, schema "mnetdeploy.sweep") and models/<point>/, each an
artifact directory as above.

Every typed file carries `schema` and `schema_version`; `load` refuses another schema or a newer version with a
one-line error, and keeps fields it does not know (a newer writer's additions survive a round trip).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mnetdeploy.errors import UserError
from mnetdeploy.fsutil import write_json

R = TypeVar("R", bound="Record")


class Record(BaseModel):
    """A JSON file that crosses a step boundary."""

    model_config = ConfigDict(extra="allow")
    SCHEMA: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = ""

    schema_: str = Field("", alias="schema")
    schema_version: int = 0

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: not valid JSON ({e}); delete it and rerun the step that writes it") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a JSON object")
        if isinstance(data.get("schema"), int):        # manifests before records.py: "schema": <version>
            data["schema_version"], data["schema"] = data["schema"], cls.SCHEMA
        data.setdefault("schema", cls.SCHEMA)          # files from before the schema field: this schema, v1
        data.setdefault("schema_version", 1)
        if data["schema"] != cls.SCHEMA or int(data["schema_version"]) > cls.VERSION:
            raise UserError(f"{path}: a {data['schema']} v{data['schema_version']} file, not {cls.SCHEMA} "
                            f"v{cls.VERSION} or older; rerun the step that writes it with this version")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            raise UserError(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}; rerun the step that writes "
                            "it") from None

    def save(self, path: str | Path) -> Path:
        self.schema_, self.schema_version = self.SCHEMA, self.VERSION
        write_json(path, self.model_dump(mode="json", by_alias=True))
        return Path(path)


class FileRecord(BaseModel):
    sha256: str
    bytes: int


class StepEntry(BaseModel):
    """What one step recorded: its inputs, their hash (the cache key) and the files it wrote."""

    model_config = ConfigDict(extra="allow")
    inputs: dict[str, Any] = Field(default_factory=dict)
    inputs_hash: str
    outputs: dict[str, FileRecord] = Field(default_factory=dict)
    seconds: float = 0.0
    finished: str = ""


class Manifest(Record):
    SCHEMA: ClassVar[str] = "mnetdeploy.manifest"
    FILE: ClassVar[str] = "manifest.json"

    tool_version: str = ""
    steps: dict[str, StepEntry] = Field(default_factory=dict)


class ModelSummary(Record):
    """summary.json: what was built (the plan's params and MACs per layer, the weights, the input contract)."""

    SCHEMA: ClassVar[str] = "mnetdeploy.summary"
    FILE: ClassVar[str] = "summary.json"

    name: str
    arch: str
    alpha: float
    resolution: int
    classes: int
    params: int
    macs: int
    layers: list[dict[str, Any]] = Field(default_factory=list)
    weights: dict[str, Any] = Field(default_factory=dict)
    input: dict[str, Any] = Field(default_factory=dict)
    tool_version: str = ""
    artifact_dir: str = ""


class GateRecord(Record):
    """results/gate.json: the last gate verdict on this model, for its report."""

    SCHEMA: ClassVar[str] = "mnetdeploy.gate"
    FILE: ClassVar[str] = "gate.json"

    verdict: str
    budgets: str = ""
    checks: list[dict[str, Any]] = Field(default_factory=list)
