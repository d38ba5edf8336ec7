"""The budgets file `mnetdeploy gate` checks reports against: YAML, validated here, one-line errors.

    rules:                          # each rule: a selector (which measurements) and limits (how good)
      - name: int8 tflite           # optional; default "rule N"
        model: "v2_*"               # glob on the report's `name` (its artifact directory), default "*"
        artifact: "*_int8.tflite"   # glob on the artifact file name, default "*"
        format: tflite              # optional: keras | tflite | onnx
        precision: int8             # optional: fp32 | fp16 | dynamic | int8 | int16x8
        device: host                # where it ran (default host; see DEVICE SELECTORS): bench results for latency
                                    # limits, `eval --device` results for accuracy limits
        threads: 1                  # latency limits: only results with this thread count (default: all)
        runtime: litert             # latency limits: optional, litert | onnxruntime | benchmark_model
        max_p50_ms: 12.0
        max_p90_ms: 20.0
        max_size: 4MB               # int bytes or "<number><unit>": B, KB=kB=1000, MB=1000^2, GB=1000^3,
                                    #                                KiB=1024, MiB=1024^2, GiB=1024^3
        max_accuracy_drop: 1.5      # top-1 points below the fp32 reference (on the host) of the same report
        min_top1: 60.0              # top-1 percent
    regression:                     # used with `gate --baseline` (see mnetdeploy/gate.py)
      max_slowdown: 0.10
      confidence: 0.95
      min_samples: 30
      min_seconds: 0.5
      resamples: 2000
      blocks: 20
      same_cpu: true

Device selectors (`device:`): `host`; `android` (any Android device), `android:SERIAL` (one); `adb-linux`,
`adb-linux:SERIAL`; `ssh://HOST` (any user and port on HOST), `ssh://USER@HOST[:PORT]`; or a glob on the result's
full device label, e.g. `android:192.168.1.*` (a network serial changes with the IP) or `ssh://*`. Results of
LiteRT's benchmark_model on Android have `runtime: benchmark_model`.

Errors (unknown keys with a did-you-mean, wrong types, duplicate keys, malformed YAML) are one line with
`file:line`, exit code 2. Duplicate keys are refused because YAML would silently keep the last one: a budget
that quietly stops applying is the way gates rot.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator, model_validator

from mnetdeploy.config import StrictModel, refuse_duplicate_keys
from mnetdeploy.errors import ConfigError

# Decimal (SI) units are powers of 1000, binary (IEC) units powers of 1024. Unit names are case-sensitive
# (except kB/KB) so "mb" (millibit) or "Mb" (megabit) are refused instead of guessed.
SIZE_UNITS = {"B": 1, "kB": 1000, "KB": 1000, "MB": 1000**2, "GB": 1000**3,
              "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")

LATENCY_LIMITS = ("max_p50_ms", "max_p90_ms")
LIMITS = (*LATENCY_LIMITS, "max_size", "max_accuracy_drop", "min_top1")


def parse_size(value: Any) -> int:
    """Bytes from an int or a string like "512KB", "1.5MB", "2MiB"; it must come to a whole number of bytes."""
    if isinstance(value, bool):  # YAML `yes`/`no` are bools, and bool is an int subclass
        raise ValueError(f"a size is bytes or a string like '4MB' (got {value!r})")
    if isinstance(value, int):
        number, unit = Decimal(value), "B"
    elif isinstance(value, float):
        raise ValueError(f"a size in bytes must be a whole number (got {value!r}); or write e.g. '{value:g}MB'")
    elif isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise ValueError(f"a size is bytes or '<number><unit>' like '512KB', '1.5MB', '2MiB' (got {value!r})")
        number, unit = Decimal(match.group(1)), match.group(2) or "B"  # exact: "1.1MB" is 1,100,000 bytes
        if unit not in SIZE_UNITS:
            raise ValueError(f"unknown size unit {unit!r} in {value!r}; use B, KB (=kB, 1000), MB, GB, "
                             "KiB (1024), MiB or GiB")
    else:
        raise ValueError(f"a size is bytes or a string like '4MB' (got {type(value).__name__})")
    size = number * SIZE_UNITS[unit]
    if size != size.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of bytes ({size} B)")
    if size <= 0:
        raise ValueError(f"must be more than 0 bytes (got {value!r})")
    return int(size)


def format_size(n: float) -> str:
    """Bytes for people: exact with thousands separators, plus MB (decimal) for large values."""
    text = f"{int(n):,} B"
    return f"{text} ({n / 1e6:.3f} MB)" if abs(n) >= 100_000 else text


class Rule(StrictModel):
    name: str | None = Field(None, description="label in tables, JUnit and errors (default 'rule N')")
    # Selector
    model: str = Field("*", description="glob on the report's name (its artifact directory name)")
    artifact: str = Field("*", description="glob on the artifact file name")
    format: Literal["keras", "tflite", "onnx"] | None = None
    precision: Literal["fp32", "fp16", "dynamic", "int8", "int16x8"] | None = None
    device: str = Field("host", description="bench device(s) of the latency results: host, android[:SERIAL], "
                                            "adb-linux[:SERIAL], ssh://[USER@]HOST[:PORT] or a glob")
    threads: int | None = Field(None, ge=1, description="latency results with this thread count (default all)")
    runtime: Literal["litert", "onnxruntime", "benchmark_model"] | None = None
    # Limits
    max_p50_ms: float | None = Field(None, gt=0)
    max_p90_ms: float | None = Field(None, gt=0)
    max_size: int | None = Field(None, description="bytes; strings with units are converted on reading")
    max_accuracy_drop: float | None = Field(None, ge=0, description="top-1 points below the fp32 reference")
    min_top1: float | None = Field(None, ge=0, le=100, description="top-1 percent")

    _line: int | None = PrivateAttr(None)
    _index: int = PrivateAttr(0)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v == "host" or v.startswith(("android", "adb-linux", "ssh://")) or any(c in v for c in "*?["):
            return v
        raise ValueError(f"unknown device {v!r}; use host, android, android:SERIAL, adb-linux[:SERIAL], "
                         "ssh://HOST or a glob like 'android:192.168.1.*'")

    def matches_device(self, device: str | None) -> bool:
        return device_matches(self.device, device or "host")

    @field_validator("max_size", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int | None:
        return None if v is None else parse_size(v)

    @model_validator(mode="after")
    def _has_a_limit(self) -> Rule:
        if all(getattr(self, k) is None for k in LIMITS):
            raise ValueError(f"sets no limit; give at least one of {', '.join(LIMITS)}")
        return self

    @property
    def title(self) -> str:
        """Short label for tables and JUnit: the rule's name, or its 1-based position."""
        return self.name or f"rule {self._index + 1}"

    @property
    def label(self) -> str:
        """Label for messages: "rule 'name'" or "rule 3"."""
        return f"rule '{self.name}'" if self.name else self.title

    @property
    def line(self) -> int | None:
        return self._line


_SSH_LABEL = re.compile(r"^ssh://(?:(?P<user>[^@]+)@)?(?P<host>\[[^\]]+\]|[^:]+)(?::(?P<port>\d+))?/?$")


def device_matches(selector: str, device: str) -> bool:
    """Whether a result measured on `device` (its label) is selected by a rule's `device:` (module docstring)."""
    if any(c in selector for c in "*?["):
        return fnmatch.fnmatchcase(device, selector)
    if selector in ("android", "adb-linux"):
        return device.startswith(selector + ":")
    if selector.startswith("ssh://"):
        want, got = _SSH_LABEL.match(selector), _SSH_LABEL.match(device)
        if not want or not got:
            return selector == device
        return (want["host"] == got["host"] and want["user"] in (None, got["user"])
                and want["port"] in (None, got["port"]))
    return device == selector


class Regression(StrictModel):
    max_slowdown: float = Field(0.10, gt=0, le=10, description="0.10: fail only above 10 % slower")
    confidence: float = Field(0.95, ge=0.5, lt=1, description="two-sided bootstrap interval level")
    min_samples: int = Field(30, ge=10, description="fewer samples in a result is an error (exit 2)")
    min_seconds: float = Field(0.5, ge=0, description="a result measured for less time is an error (exit 2)")
    resamples: int = Field(2000, ge=500, le=100_000, description="bootstrap resamples")
    blocks: int | None = Field(20, ge=2, le=1000, description="moving-block bootstrap over this many stretches "
                                                           "of each run; null: resample single samples")
    same_cpu: bool = Field(True, description="compare only results measured on the same CPU model")
    on_inconclusive: Literal["inconclusive", "warn", "fail"] = Field(
        "inconclusive", description="a comparison too noisy to decide at max_slowdown: inconclusive (exit 3), "
                                    "warn (exit 0, reported), or fail (exit 1)")


class Budgets(StrictModel):
    rules: list[Rule] = Field(default_factory=list)
    regression: Regression = Field(default_factory=Regression)

    _source: str = PrivateAttr("budgets")

    @property
    def source(self) -> str:
        return self._source

    def where(self, rule: Rule) -> str:
        """`file:line: rule 'name'` for messages about one rule."""
        line = f":{rule.line}" if rule.line else ""
        return f"{self._source}{line}: {rule.label}"


def quick_budgets(max_p50_ms: float | None = None, max_size_kb: float | None = None,
                  min_top1: float | None = None, base: Budgets | None = None) -> Budgets:
    """`base` plus one rule over everything for the limits given (sweep's --budget-latency-ms, ...)."""
    budgets = (base or Budgets()).model_copy(deep=True)
    limits = {"max_p50_ms": max_p50_ms, "max_size": None if max_size_kb is None else int(max_size_kb * 1024),
              "min_top1": min_top1}
    if any(v is not None for v in limits.values()):
        rule = Rule(name="command line", device="*", **{k: v for k, v in limits.items() if v is not None})
        rule._index = len(budgets.rules)
        budgets.rules.append(rule)
    return budgets


def row_failures(budgets: Budgets, row: dict[str, Any], reference_top1: float | None = None) -> list[str]:
    """Why one measured model (a sweep row: point, file, precision, threads, device, p50_ms, p90_ms,
    size_bytes, top1) breaks the budgets: the gate's rules, applied to a single row. `reference_top1` is the
    fp32 model's top-1 of the same point (for max_accuracy_drop). Each reason starts with what broke."""
    why = []
    for rule in budgets.rules:
        if not (fnmatch.fnmatchcase(row["point"], rule.model)
                and fnmatch.fnmatchcase(row.get("file", ""), rule.artifact)
                and rule.format in (None, row.get("format", "tflite")) and rule.precision in (None, row["precision"])):
            continue
        if rule.matches_device(row["device"]) and rule.threads in (None, row["threads"]):
            for limit, key in (("max_p50_ms", "p50_ms"), ("max_p90_ms", "p90_ms")):
                bound = getattr(rule, limit)
                if bound is not None and row.get(key) is not None and row[key] > bound:
                    why.append(f"{key[:3]} {row[key]:.2f} ms > {bound:g} ({rule.title})")
        if rule.max_size is not None and row["size_bytes"] > rule.max_size:
            why.append(f"size {row['size_bytes'] / 1024:.0f} KB > {rule.max_size / 1024:g} ({rule.title})")
        top1 = row.get("top1")
        if rule.min_top1 is not None and (top1 is None or top1 < rule.min_top1):
            got = "not measured" if top1 is None else f"{top1:.1f} %"
            why.append(f"top-1 {got} < {rule.min_top1:g} ({rule.title})")
        if rule.max_accuracy_drop is not None and top1 is not None and reference_top1 is not None \
                and reference_top1 - top1 > rule.max_accuracy_drop:
            why.append(f"drop {reference_top1 - top1:.1f} points > {rule.max_accuracy_drop:g} ({rule.title})")
    return why


def rule_summary(rule: Rule) -> str:
    """One line: the rule's limits and what it selects, for reports."""
    limits = [f"{k} {v:g}" if k != "max_size" else f"max_size {format_size(v)}" for k in LIMITS
              if (v := getattr(rule, k)) is not None]
    selector = [f"{k} {v}" for k in ("model", "artifact", "format", "precision", "device", "threads", "runtime")
                if (v := getattr(rule, k)) not in (None, "*", "host")]
    return f"{rule.title}: {', '.join(limits)}" + (f" ({', '.join(selector)})" if selector else "")


def load_budgets(path: str | Path) -> Budgets:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: budgets file not found; pass --budgets FILE (example: configs/budgets.yaml)")
    from mnetdeploy.fsutil import read_text

    return parse_budgets(read_text(path, "budgets file"), str(path))


def parse_budgets(text: str, source: str = "budgets") -> Budgets:
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}{where}: malformed YAML: {problem}") from None
    if data is None:
        raise ConfigError(f"{source}: empty budgets file; add a `rules:` list (see configs/budgets.yaml)")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with `rules:` and `regression:` "
                          f"(got {type(data).__name__})")
    refuse_duplicate_keys(root, source)
    try:
        budgets = Budgets.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_one_line(e, source, root)) from None
    budgets._source = source
    for i, rule in enumerate(budgets.rules):
        rule._index = i
        rule._line = _line_at(root, ("rules", i))
    return budgets


# ------------------------------------------------------------------------------------ error messages

def _one_line(error: ValidationError, source: str, root: yaml.Node | None) -> str:
    err = error.errors()[0]
    loc = tuple(err["loc"])
    line = _line_at(root, loc)
    where = f"{source}:{line}" if line else source
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    key = _dotted(loc)
    if err["type"] == "extra_forbidden":
        options = sorted(_schema_at(loc[:-1]).model_fields)
        guess = difflib.get_close_matches(str(loc[-1]), options, n=1, cutoff=0.6)
        hint = f"; did you mean '{guess[0]}'?" if guess else f"; known keys: {', '.join(options)}"
        return f"{where}: unknown key '{key}'{hint}{more}"
    msg = err["msg"]
    msg = msg[len("Value error, "):] if msg.startswith("Value error, ") else msg
    if err["type"] in ("literal_error", "greater_than", "greater_than_equal", "less_than", "less_than_equal",
                       "float_parsing", "int_parsing", "bool_parsing"):
        msg = f"{msg} (got {err['input']!r})"
    return f"{where}: {key or 'budgets'}: {msg}{more}"


def _dotted(loc: tuple) -> str:
    """('rules', 2, 'max_p50ms') -> 'rules[2].max_p50ms' (0-based like the YAML list it points into)."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _schema_at(loc: tuple) -> type[BaseModel]:
    """The model whose keys are valid at `loc` (for the did-you-mean of an unknown key)."""
    if loc and loc[0] == "rules":
        return Rule
    if loc and loc[0] == "regression":
        return Regression
    return Budgets


def _line_at(node: yaml.Node | None, loc: tuple) -> int | None:
    """1-based line of the key (or list item) at `loc` in the composed YAML, for messages."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
