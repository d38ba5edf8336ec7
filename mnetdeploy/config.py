"""The configuration schema: a YAML file in configs/ plus command-line overrides, validated in one place.

A config has a `model` section (what to build) and the project-level `name` and `output`. Later steps add
their own sections. Every error is one line naming the file, the key (and its line in the YAML when known)
and what to do; unknown keys get a did-you-mean.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mnetdeploy.arch.plan import TOTAL_STRIDE
from mnetdeploy.arch.tables import FAMILIES
from mnetdeploy.device_names import BadDeviceName, check_device_name
from mnetdeploy.errors import ConfigError, UserError
from mnetdeploy.fsutil import read_text

M = TypeVar("M", bound=BaseModel)
MAX_CONFIG_BYTES = 1_000_000

DEFAULT_ARCH: Arch = "v2"  # documented default when neither a config nor --arch names one
MIN_RESOLUTION = 32
MAX_RESOLUTION = 1024

# Value lists, declared once: every module that needs one imports it from here (as a tuple via get_args).
Arch = Literal["v1", "v2", "v3-small", "v3-large"]
Format = Literal["tflite", "onnx"]
Precision = Literal["fp32", "fp16", "dynamic", "int8"]
IoType = Literal["float", "int8", "uint8"]
OnnxCalibration = Literal["minmax", "entropy", "percentile"]
Int8Graph = Literal["auto", "integer-only", "float-islands", "cpu"]
Rounding = Literal["nearest", "adaptive"]
Runtime = Literal["auto", "litert", "onnxruntime"]
FORMATS: tuple[str, ...] = get_args(Format)
PRECISIONS: tuple[str, ...] = get_args(Precision)
IO_TYPES: tuple[str, ...] = get_args(IoType)
ONNX_CALIBRATIONS: tuple[str, ...] = get_args(OnnxCalibration)
INT8_GRAPH_CHOICES: tuple[str, ...] = get_args(Int8Graph)
ROUNDINGS: tuple[str, ...] = get_args(Rounding)
RUNTIMES: tuple[str, ...] = get_args(Runtime)
# A sanity bound, not a tuning: no phone or board has more cores, and runtimes crash in native code (SIGSEGV
# in XNNPACK's thread pool) on absurd counts, which would then read as "the model failed".
MAX_THREADS = 256
MAX_SEED = 2**32 - 1   # numpy's seed range


def device_name(v: str) -> str:
    """A device setting's validator: the whole name checked when the config is read, not when it is reached."""
    try:
        return check_device_name(v)
    except BadDeviceName as e:
        raise ValueError(e.why) from None


class StrictModel(BaseModel):
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


class ModelConfig(StrictModel):
    arch: Arch = Field(DEFAULT_ARCH, description="Architecture (MobileNet v1, v2, v3-small, v3-large).")
    alpha: float = Field(1.0, description="Width multiplier (e.g. 0.35, 0.5, 0.75, 1.0).")
    resolution: int = Field(224, description="Input resolution in pixels, a multiple of 32 (e.g. 128, 224).")
    classes: int = Field(1000, ge=2, le=100_000, description="Number of output classes (at least 2).")
    depth_multiplier: int = Field(1, ge=1, le=8, description="v1 only: depthwise channel multiplier.")
    dropout: float | None = Field(None, ge=0.0, lt=1.0, description="Dropout rate before the classifier "
                                                                    "(default: the family's Keras default).")
    weights: str | None = Field(None, description="'imagenet' (Keras cache) or a .h5/.weights.h5/.keras file, "
                                                  "loaded by layer name (default: initialise).")
    classifier_activation: Literal["softmax", "none"] = Field("softmax", description="Output activation.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the weight initialisation.")

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
    def _consistent(self) -> ModelConfig:
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


class QuantizeConfig(StrictModel):
    """What `quantize` exports and how it calibrates: the options of the quantize step, CLI and config alike."""

    calib: str | None = Field(None, description="Folder of calibration images (searched recursively). Default: "
                                                "calibration/default.yaml, else synthetic images with a warning.")
    num_calib: int = Field(100, ge=1, le=100_000, description="Calibration images to use.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the calibration image choice.")
    formats: list[Format] = Field(default_factory=lambda: list[Format](["tflite", "onnx"]), min_length=1,
                                  description="Formats to export, comma-separated: tflite, onnx.")
    precisions: list[Precision] = Field(
        default_factory=lambda: list[Precision](["fp32", "int8"]), min_length=1,
        description="Comma-separated: fp32, fp16, dynamic, int8 (ONNX has no dynamic: skipped with a note).")
    io: IoType = Field("int8", description="Input/output type of the int8 TFLite model.")
    onnx_calib: OnnxCalibration = Field("minmax", description="ONNX Runtime activation calibration method.")
    int8_graph: Int8Graph = Field(
        "auto", description="int8 TFLite graph: auto times the candidates on this machine and keeps the fastest "
                            "that passes its check; integer-only makes every op int8 (NPUs, DSPs, "
                            "microcontrollers); float-islands keeps float only ops XNNPACK has no int8 kernel "
                            "for; cpu also the stem and ops fed by them (rules measured on an AMX CPU).")
    bias_correction: bool = Field(True, description="Correct each conv's bias for the mean shift its int8 "
                                                    "weights cause.")
    rounding: Rounding = Field("nearest", description="int8 weight rounding: to nearest, or data-aware (slower; "
                                                      "see quantize/rounding.py).")
    keep_float: list[str] = Field(default_factory=list, description="Keras layers to keep in float in the int8 "
                                                                     "models.")
    analyze: bool = Field(False, description="Write a per-layer int8 error table (quant_analysis.json).")
    max_drop: float | None = Field(None, ge=0, allow_inf_nan=False,
                                   description="Keep the most harmful layers in float until the top-1 drop on "
                                               "eval_data is within this many points.")
    eval_data: str | None = Field(None, description="Labelled images for max_drop (calibration images excluded).")

    @model_validator(mode="after")
    def _consistent(self) -> QuantizeConfig:
        if self.max_drop is not None and self.eval_data is None:
            raise ValueError("max_drop needs eval_data: the drop is measured on labelled images")
        if self.keep_float and "int8" not in self.precisions:
            raise ValueError("keep_float applies to int8 models; add int8 to precisions")
        return self

    def int8_settings(self, fmt: str) -> dict[str, Any]:
        """The settings an int8 export of `fmt` depends on (part of its cache key)."""
        settings: dict[str, Any] = {"bias_correction": self.bias_correction, "rounding": self.rounding,
                                    "keep_float": sorted(self.keep_float)}
        if fmt == "tflite":
            settings["io"] = self.io
            settings["int8_graph"] = self.int8_graph
        else:
            settings["calibration_method"] = self.onnx_calib
        return settings


class EvalConfig(StrictModel):
    """Accuracy measurement; `run` fails when `data` names a folder that is absent."""

    data: str | None = Field(None, description="Image folder: class subfolders (ImageFolder) or images with a "
                                               "labels.csv.")
    labels: str | None = Field(None, description="Labels CSV (default: DATA/labels.csv if present).")
    label_offset: Literal["auto", "0", "1"] = Field(
        "auto", description="1: output index 0 is 'background' (1001 classes). auto: from the model's output width.")
    skip_first: int = Field(0, ge=0, description="Skip the first N images by name (e.g. the ones used to "
                                                 "calibrate).")
    limit: int | None = Field(None, ge=1, description="Evaluate at most N images (after skip_first), sorted by "
                                                      "name.")
    threads: int | None = Field(None, ge=1, le=MAX_THREADS, description="Inference threads for TFLite/ONNX "
                                                                         "(default: the runtime's choice).")
    device: str = Field("host", description="Where the models run: host, android[:SERIAL], adb-linux[:SERIAL] or "
                                            "ssh://[USER@]HOST[:PORT], reached with the bench device settings; "
                                            "each model is also run here and compared.")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return device_name(v)


class HostSettings(StrictModel):
    """One benchmark run on this machine: the `bench` keys shared by every device."""

    runtime: Runtime = Field("auto", description="auto: .tflite on LiteRT, .onnx on ONNX Runtime. Naming one "
                                                 "keeps only its models in directories.")
    threads: int = Field(1, ge=1, le=MAX_THREADS, description="Threads given to the runtime (LiteRT/XNNPACK "
                                                              "num_threads, ORT intra-op threads).")
    warmup: int = Field(10, ge=0, le=1_000_000, description="Unmeasured runs after the first inference.")
    runs: int = Field(50, ge=1, le=10_000_000, description="At least this many measured runs ...")
    min_seconds: float = Field(1.0, ge=0, allow_inf_nan=False,
                               description="... and at least this long: runs stop at whichever comes later.")
    xnnpack: bool = Field(True, description="LiteRT: the XNNPACK delegate (off: plain builtin kernels).")
    inputs: str | None = Field(None, description="Folder of images to cycle through (first 50 by name; default: "
                                                 "seeded random inputs).")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the random inputs.")


class DeviceSettings(HostSettings):
    """One benchmark run on a device: the host settings plus how to reach it and keep its timings honest."""

    # how to reach the device
    adb: str | None = Field(None, description="Device: the adb client (default $ADB, else adb on PATH).")
    serial: str | None = Field(None, description="Device: adb serial (default: the serial in the device name, "
                                                 "then $ANDROID_SERIAL, else the only one).")
    adb_server: str | None = Field(None, description="Device: a (remote) adb server HOST:PORT, as adb -H HOST "
                                                     "-P PORT (default: $ANDROID_ADB_SERVER_PORT).")
    ssh_options: list[str] = Field(default_factory=list, description="Device: passed to ssh as -o KEY=VALUE, "
                                                                     "e.g. IdentityFile=~/.ssh/board.")
    # what runs there
    benchmark_binary: str | None = Field(None, description="Device: LiteRT's benchmark_model built for it (e.g. "
                                                           "android_aarch64_benchmark_model).")
    use_gpu: bool = Field(False, description="Device: benchmark_model --use_gpu=true.")
    use_nnapi: bool = Field(False, description="Device: benchmark_model --use_nnapi=true.")
    # hygiene
    cpu_mask: str | None = Field(None, description="Device: taskset mask HEX, or none (default: the big cores).")
    max_temp: float = Field(45.0, gt=0, lt=150, description="Device: wait before each trial until the CPU "
                                                            "thermal zones are at most this many degrees C ...")
    cool_timeout: float = Field(120.0, ge=0, allow_inf_nan=False,
                                description="... for at most this many seconds (a device still hot is a warning "
                                            "in the result).")
    trials: int = Field(1, ge=1, le=1000, description="Device: repeat the benchmark K times (each after "
                                                      "cool-down); K trial medians form samples_ms.")
    keep: bool = Field(False, description="Device: keep the model on the device (the tool stays cached anyway).")
    run_timeout: float = Field(600.0, gt=0, allow_inf_nan=False,
                               description="Device: seconds one benchmark run may take before it counts as hung.")
    lock_timeout: float = Field(600.0, ge=0, allow_inf_nan=False,
                                description="Device: seconds to wait while another benchmark (any host) uses the "
                                            "device.")

    def check_for_device(self) -> None:
        if self.inputs:
            raise UserError("inputs: device benchmarks feed seeded random inputs (benchmark_model and the board "
                            "runner generate their own); drop inputs, or bench images on the host")


HOST_FIELDS = tuple(HostSettings.model_fields)
DEVICE_ONLY_FIELDS = tuple(f for f in DeviceSettings.model_fields if f not in HostSettings.model_fields)


class BenchConfig(DeviceSettings):
    """What `run` and `sweep` benchmark: every device x thread count, each run with these settings."""

    devices: list[Annotated[str, AfterValidator(device_name)]] = Field(default_factory=lambda: ["host"], min_length=1,
                               description="host, android[:SERIAL], adb-linux[:SERIAL] or ssh://[USER@]HOST[:PORT].")
    threads: list[Annotated[int, Field(ge=1, le=MAX_THREADS)]] = Field(  # type: ignore[assignment]
        default_factory=lambda: [1], min_length=1, description="Thread counts to benchmark.")
    pool: bool = Field(False, description="Sweep: the devices are one pool of identical devices (same model and "
                                          "SoC, checked) sharing the points, each point measured once; a device "
                                          "that drops out leaves its points to the others.")

    def settings(self, device: str, threads: int) -> HostSettings | DeviceSettings:
        """The settings of one run: the step options every caller (bench, run, sweep) builds the same way."""
        data = self.model_dump(exclude={"devices", "threads", "pool"})
        if device == "host":
            return HostSettings(threads=threads, **{k: v for k, v in data.items() if k in HOST_FIELDS})
        return DeviceSettings(threads=threads, **data)

    def device_settings_given(self) -> list[str]:
        """Device-only settings that differ from their defaults (an error when only the host is benchmarked)."""
        return [f for f in DEVICE_ONLY_FIELDS if getattr(self, f) != DeviceSettings.model_fields[f].get_default(
            call_default_factory=True)]


class GateConfig(StrictModel):
    budgets: str | None = Field(None, description="Budgets YAML (see configs/budgets.yaml); without it `run` does "
                                                  "not gate.")
    baseline: str | None = Field(None, description="Baseline report.json for the regression check.")
    junit: str | None = Field(None, description="Write JUnit XML here, one test case per check.")


class SweepConfig(StrictModel):
    """The grid `sweep` measures: every alpha x resolution (x quantize.precisions x bench.threads x bench.devices)."""

    alphas: list[Annotated[float, Field(gt=0, le=4)]] = Field(
        default_factory=lambda: [0.35, 0.5, 0.75, 1.0], min_length=1, description="Widths (alpha) to build.")
    resolutions: list[int] = Field(default_factory=lambda: [96, 128, 160, 192, 224], min_length=1,
                                   description="Resolutions to build (multiples of 32).")
    formats: list[Format] = Field(default_factory=lambda: list[Format](["tflite"]), min_length=1,
                                  description="What each point exports and benchmarks (the table has one row per "
                                              "precision; quantize.formats is run's).")
    out: str | None = Field(None, description="Sweep folder: sweep.json/.md/.html and models/ (default "
                                              "sweeps/<arch>).")
    jobs: int = Field(1, ge=1, le=256, description="Build/quantize this many points in parallel (spawned "
                                                   "processes).")
    max_points: int | None = Field(None, ge=0, description="Stop after N new points (rerun to resume).")
    cluster: str | None = Field(None, description="Dask scheduler address (tcp://HOST:8786): build, quantize and "
                                                  "evaluate the points on its workers (pip install "
                                                  "'mnetdeploy[dask]').")
    budgets: str | None = Field(None, description="The gate's budgets YAML (e.g. configs/budgets.yaml): its rules "
                                                  "decide which rows fit, per row.")
    budget_latency_ms: float | None = Field(None, gt=0, allow_inf_nan=False, description="Max p50 (ms).")
    budget_size_kb: float | None = Field(None, gt=0, allow_inf_nan=False, description="Max model file size (KB).")
    min_top1: float | None = Field(None, ge=0, le=100, description="Min top-1 (%).")


class Config(StrictModel):
    name: str | None = Field(None, description="Artifact directory name (default from arch, alpha and "
                                               "resolution).")
    output: str = Field("artifacts", description="Parent folder of artifact directories.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and (not v or "/" in v or v.startswith(".") or any(ord(c) < 32 for c in v)):
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


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                flags: dict[str, str] | None = None) -> Config:
    """Read `path` (if any), apply `overrides` (dotted keys, None values ignored), validate. `flags` maps
    dotted keys to the command-line flags that set them, so an error names the flag the user typed."""
    data: dict[str, Any] = {}
    source = "defaults"
    text = None
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        if path.stat().st_size > MAX_CONFIG_BYTES:  # parsing a huge YAML takes minutes before it fails
            raise ConfigError(f"{path}: {path.stat().st_size / 1e6:.1f} MB is not a config (at most "
                              f"{MAX_CONFIG_BYTES // 1_000_000} MB); pass the YAML file of settings")
        text = read_text(path, "config")
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
        resolve_input_paths(data, path.parent)
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
        raise ConfigError(one_line_error(e, source, text, flags=flags)) from None


def validated(model: type[M], values: dict[str, Any], source: str = "settings") -> M:
    """`model` from plain values (library callers), with a one-line ConfigError naming the parameter."""
    try:
        return model.model_validate(values)
    except ValidationError as e:
        raise ConfigError(one_line_error(e, source, None, root=model)) from None


def one_line_error(error: ValidationError, source: str, text: str | None, root: type[BaseModel] | None = None,
                   flags: dict[str, str] | None = None) -> str:
    """The first validation error as one line: where (file:line, or the command-line flag) and what."""
    err = error.errors()[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc)
    line = _line_of(text, err["loc"]) if text else None
    where = f"{source}:{line}" if line else source
    flag = (flags or {}).get(key) or (flags or {}).get(".".join(loc[:-1]))  # a list item's loc ends in its index
    given = err.get("input")
    shown = ",".join(map(str, given)) if isinstance(given, list) else given
    if isinstance(shown, str) and not shown.isprintable():
        shown = repr(shown)   # a newline or escape typed into a value must not break the error's one line
    if flag:  # a value given on the command line: name the flag and the value typed, not the config key
        where, key = (f"{flag} {shown}" if isinstance(shown, (str, int, float)) else flag), ""
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    if err["type"] == "extra_forbidden":
        model = _schema_at(loc[:-1], root or Config)
        options = sorted(model.model_fields) if model else []
        guess = difflib.get_close_matches(loc[-1], options, n=1)
        hint = f"; did you mean '{guess[0]}'?" if guess else f"; known keys: {', '.join(options)}"
        return f"{where}: unknown key '{key}'{hint}{more}"
    msg = err["msg"]
    msg = msg[len("Value error, "):] if msg.startswith("Value error, ") else msg
    if not flag and isinstance(given, (str, int, float)) and "got" not in msg:
        msg = f"{msg} (got {given!r})"
    section = _schema_at(loc, root or Config)
    if section is not None and flags and any(d.rpartition(".")[0] == key for d in flags):
        # A rule across several settings of a section the user set by flags: say it in flags.
        for name in sorted(section.model_fields, key=len, reverse=True):
            msg = re.sub(rf"\b{name}\b", "--" + name.replace("_", "-"), msg)
        return f"{msg}{more}" if source == "defaults" else f"{where}: {msg}{more}"
    return f"{where}: {key + ': ' if key else ''}{msg}{more}"


def _schema_at(loc: list[str], root: type[BaseModel]) -> type[BaseModel] | None:
    model: type[BaseModel] = root
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


# Files and folders a config reads. Relative paths in a config file mean "next to the config", so a config runs
# the same from any directory; outputs (output, gate.junit, sweep.out) stay relative to where you run.
INPUT_PATHS = ("model.weights", "quantize.calib", "quantize.eval_data", "eval.data", "eval.labels", "bench.inputs",
               "bench.benchmark_binary", "gate.budgets", "gate.baseline", "sweep.budgets")
NOT_PATHS = {"model.weights": "imagenet"}


def resolve_input_paths(data: dict[str, Any], base: Path) -> None:
    """Rewrite the relative input paths of a config file's raw `data` against `base` (the file's folder)."""
    for dotted in INPUT_PATHS:
        section, key = dotted.split(".")
        node = data.get(section)
        value = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(value, str) and value and value != NOT_PATHS.get(dotted):
            path = Path(value).expanduser()
            node[key] = value if path.is_absolute() else _shown_path(base / path)


def _shown_path(path: Path) -> str:
    """Relative to the current directory when inside it (short, and what the user sees in their tree), else
    absolute: "../../tmp/x" names the place no better and reads worse."""
    relative = os.path.relpath(path)
    return os.path.abspath(path) if relative.split(os.sep)[0] == ".." else relative


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
