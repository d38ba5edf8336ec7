"""The configuration schema: a YAML file in configs/ plus command-line overrides, validated in one place.

A config has a `model` section (what to build) and the project-level `name` and `output`. Later steps add
their own sections. Every error is one line naming the file, the key (and its line in the YAML when known)
and what to do; unknown keys get a did-you-mean.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mnetdeploy.arch.plan import TOTAL_STRIDE
from mnetdeploy.arch.tables import FAMILIES
from mnetdeploy.errors import ConfigError

DEFAULT_ARCH = "v2"  # documented default when neither a config nor --arch names one
MIN_RESOLUTION = 32
MAX_RESOLUTION = 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info) -> Any:
        # pydantic would read `alpha: true` as 1.0; a boolean where a number or name belongs is a mistake.
        if isinstance(value, bool):
            annotation = cls.model_fields[info.field_name].annotation
            if annotation is not bool and bool not in getattr(annotation, "__args__", ()):
                raise ValueError(f"expected a number or a name, not the boolean {str(value).lower()}")
        return value


class ModelConfig(_Strict):
    arch: Literal["v1", "v2", "v3-small", "v3-large"] = DEFAULT_ARCH
    alpha: float = Field(1.0, description="width multiplier")
    resolution: int = Field(224, description="input height and width in pixels")
    classes: int = Field(1000, ge=2, le=100_000, description="a classifier needs at least 2 classes")
    depth_multiplier: int = Field(1, ge=1, le=8, description="v1 only: depthwise channel multiplier")
    dropout: float | None = Field(None, ge=0.0, lt=1.0, description="None: the family's Keras default")
    weights: str | None = Field(None, description="None (initialise), 'imagenet', or a weights/model file")
    classifier_activation: Literal["softmax", "none"] = "softmax"
    seed: int = Field(0, ge=0, description="seed of the weight initialisation")

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"must be > 0 (got {v})")
        if v > 4:
            raise ValueError(f"must be at most 4 (got {v})")
        return v

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, v: int) -> int:
        if v < MIN_RESOLUTION:
            raise ValueError(f"must be at least {MIN_RESOLUTION} (got {v})")
        if v > MAX_RESOLUTION:
            raise ValueError(f"must be at most {MAX_RESOLUTION} (got {v})")
        if v % TOTAL_STRIDE:
            lo = v // TOTAL_STRIDE * TOTAL_STRIDE
            raise ValueError(
                f"must be a multiple of {TOTAL_STRIDE}, the network's total stride, so every stride-2 stage "
                f"halves it exactly (got {v}; try {max(lo, MIN_RESOLUTION)} or {lo + TOTAL_STRIDE})")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ModelConfig":
        if self.arch != "v1" and self.depth_multiplier != 1:
            raise ValueError(f"depth_multiplier is a v1 option; {self.arch} takes only 1")
        if self.arch == "v1" and int(32 * self.alpha) < 1:
            raise ValueError(f"alpha {self.alpha} leaves v1's first conv with no channels (need alpha >= 1/32)")
        if self.weights == "imagenet":
            fam = FAMILIES[self.arch]
            if self.classes != 1000:
                raise ValueError(f"weights 'imagenet' have a 1000-class head (got classes {self.classes})")
            if self.alpha not in fam.imagenet_alphas:
                raise ValueError(f"weights 'imagenet' exist for {self.arch} alpha in "
                                 f"{list(fam.imagenet_alphas)} only (got {self.alpha})")
            if self.resolution not in fam.imagenet_resolutions and self.arch in ("v1", "v2"):
                raise ValueError(f"weights 'imagenet' exist for {self.arch} at resolutions "
                                 f"{list(fam.imagenet_resolutions)} only (got {self.resolution})")
        return self

    @property
    def default_name(self) -> str:
        alpha = f"{self.alpha:g}"
        alpha = alpha if "." in alpha else alpha + ".0"
        name = f"{self.arch}_{alpha}_{self.resolution}"
        if self.classes != 1000:
            name += f"_c{self.classes}"
        return name


class QuantizeConfig(_Strict):
    """What `mnetdeploy run` exports and how it calibrates (see `mnetdeploy quantize --help`)."""

    calib: str | None = Field(None, description="calibration image folder; None: calibration/default.yaml")
    num_calib: int = Field(100, ge=1, le=100_000)
    seed: int = Field(0, ge=0)
    formats: list[Literal["tflite", "onnx"]] = Field(default_factory=lambda: ["tflite", "onnx"], min_length=1)
    precisions: list[Literal["fp32", "fp16", "dynamic", "int8"]] = Field(
        default_factory=lambda: ["fp32", "int8"], min_length=1)
    io: Literal["float", "int8", "uint8"] = "int8"
    onnx_calib: Literal["minmax", "entropy", "percentile"] = "minmax"
    int8_graph: Literal["auto", "integer-only", "float-islands", "cpu"] = Field(
        "auto", description="auto: the fastest checked candidate, timed on this machine; integer-only: for "
                            "NPUs/DSPs; float-islands / cpu: fixed float-island rules (export/int8_graph.py)")


class EvalConfig(_Strict):
    """Accuracy measurement; skipped when `data` is None or the folder is absent."""

    data: str | None = Field(None, description="labelled image folder (ImageFolder or with labels.csv)")
    labels: str | None = None
    label_offset: Literal["auto", "0", "1"] = "auto"
    skip_first: int = Field(0, ge=0, description="skip the first N images by name (e.g. the calibration ones)")
    limit: int | None = Field(None, ge=1)


class BenchConfig(_Strict):
    devices: list[str] = Field(default_factory=lambda: ["host"], min_length=1)
    threads: list[int] = Field(default_factory=lambda: [1], min_length=1)
    warmup: int = Field(10, ge=0)
    runs: int = Field(50, ge=1)
    min_seconds: float = Field(1.0, ge=0)
    inputs: str | None = Field(None, description="image folder to time real inputs; None: seeded random")

    @field_validator("threads")
    @classmethod
    def _threads(cls, v: list[int]) -> list[int]:
        if any(t < 1 for t in v):
            raise ValueError(f"threads must be >= 1 (got {v})")
        return v


class GateConfig(_Strict):
    budgets: str | None = Field(None, description="budgets YAML; None: no gate")
    baseline: str | None = Field(None, description="baseline report.json for the regression check")
    junit: str | None = Field(None, description="write JUnit XML here")


class Config(_Strict):
    name: str | None = Field(None, description="artifact directory name; default from arch, alpha, resolution")
    output: str = Field("artifacts", description="parent folder of artifact directories")
    model: ModelConfig = Field(default_factory=ModelConfig)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)
    gate: GateConfig = Field(default_factory=GateConfig)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and (not v or "/" in v or v.startswith(".")):
            raise ValueError(f"must be a plain folder name (got {v!r})")
        return v

    @property
    def artifact_name(self) -> str:
        return self.name or self.model.default_name

    @property
    def artifact_dir(self) -> Path:
        return Path(self.output) / self.artifact_name

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# Command-line option -> dotted config key.
CLI_KEYS = {
    "arch": "model.arch", "alpha": "model.alpha", "res": "model.resolution", "classes": "model.classes",
    "depth_multiplier": "model.depth_multiplier", "dropout": "model.dropout", "weights": "model.weights",
    "seed": "model.seed", "name": "name", "out": "output",
}


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read `path` (if any), apply `overrides` (dotted keys, None values ignored), validate."""
    data: dict[str, Any] = {}
    source = "defaults"
    text = None
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        text = path.read_text()
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"{path}{where}: malformed YAML: {problem}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys (got {type(data).__name__})")
        refuse_duplicate_keys(yaml.compose(text), str(path))
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else {}
        node[leaf] = value
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_one_line(e, source, text)) from None


def _one_line(error: ValidationError, source: str, text: str | None) -> str:
    err = error.errors()[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc)
    line = _line_of(text, err["loc"]) if text else None
    where = f"{source}:{line}" if line else source
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    if err["type"] == "extra_forbidden":
        model = _schema_at(loc[:-1])
        options = sorted(model.model_fields) if model else []
        guess = difflib.get_close_matches(loc[-1], options, n=1)
        hint = f"; did you mean '{guess[0]}'?" if guess else f"; known keys: {', '.join(options)}"
        return f"{where}: unknown key '{key}'{hint}{more}"
    msg = err["msg"]
    msg = msg[len("Value error, "):] if msg.startswith("Value error, ") else msg
    if err["type"] == "literal_error":
        msg = f"{msg} (got {err['input']!r})"
    return f"{where}: {key or 'model'}: {msg}{more}"


def _schema_at(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return None
        model = field.annotation
    return model


def _line_of(text: str, loc: tuple) -> int | None:
    """1-based line of the key at `loc` in the YAML text, for error messages."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        for key, value in node.value:
            if key.value == str(part):
                line, node = key.start_mark.line + 1, value
                break
        else:
            break
    return line


def refuse_duplicate_keys(node: yaml.Node | None, source: str) -> None:
    """Duplicate keys anywhere in a YAML document are an error (YAML itself keeps the last one silently)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                raise ConfigError(f"{source}:{key.start_mark.line + 1}: duplicate key '{key.value}'; YAML would "
                                  "silently keep only the last one: remove or merge it")
            seen.add(key.value)
            refuse_duplicate_keys(value, source)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            refuse_duplicate_keys(item, source)
