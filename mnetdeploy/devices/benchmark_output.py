"""Read what TFLite/LiteRT's `benchmark_model` (and LiteRT's `run_model`) print, into milliseconds.

Formats read (`version_format`):
- "tflite-v1": TF 1.x / 2019 builds. `count=50 first=… avg=… std=…` lines and a closing
  `Average inference timings in us: Warmup: …, Init: …, no stats: …` (later `…, Inference: …`).
- "tflite-v2": TF 2.x. Per phase `count=… first=… curr=… min=… max=… avg=… std=… [p5=… median=… p95=…]`, then
  `Inference timings in us: Init: …, First inference: …, Warmup (avg): …, Inference (avg): …` and the memory
  footprint lines.
- "litert-benchmark": LiteRT's CompiledModel benchmark, which adds a `===== BENCHMARK RESULTS =====` block in ms.
- "litert-run-model": LiteRT's `run_model` absl-log lines (`First run took … microseconds`, `All runs took …`).
Lines may carry `INFO:`/`ERROR:` severities, LiteRT `[file.cc:123]` tags, absl prefixes, or logcat prefixes
(`07-14 13:14:52.097 22838 22838 I tflite  : `); numbers may be in scientific notation (`2.95034e+06`).

A pasted session can hold several runs (each starts with `STARTING!`): `parse_benchmark_runs` returns them all,
`parse_benchmark_output` the last successful one.

A run fails, and `BenchmarkFailed` quotes the tool's own words, when it printed an ERROR line, a `Failed to …` or
`Benchmarking failed.` line, crashed (`Segmentation fault`, …), ignored flags it did not know (`Unconsumed cmdline
flags`: the numbers would not be for the configuration asked for, e.g. a GPU run silently done on the CPU), or
stopped before reporting the measured runs. TFLite logs at ERROR only when something did not run as requested (a
delegate or op failed, the graph fell back), so timings printed after an ERROR line are not trusted either. A
zero, NaN or missing mean latency is never returned as a result.
"""

from __future__ import annotations

import dataclasses
import math
import re
from decimal import Decimal, InvalidOperation

from mnetdeploy.devices.op_profile import OpProfileRow, parse_op_profile
from mnetdeploy.errors import EXIT_FAILED, UserError

__all__ = ["BenchmarkFailed", "BenchmarkOutput", "BenchmarkRun", "DelegationFact", "OpProfileRow",
           "parse_benchmark_output", "parse_benchmark_runs"]


class BenchmarkFailed(UserError):
    """The benchmark ran on the device but produced no trustworthy timing; the message quotes the device."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))  # always one line, whatever the device printed


@dataclasses.dataclass(frozen=True)
class DelegationFact:
    """What the tool said about one delegate: how much of the graph it took."""

    delegate: str                       # "XNNPACK", "GPU", "NNAPI", "Hexagon", ...
    nodes_delegated: int | None = None  # "Replacing 539 out of 548 node(s) with delegate ..."
    nodes_total: int | None = None
    partitions: int | None = None
    execution: str | None = None        # "complete", "partial" or "none" ("... will be completely executed ...")


@dataclasses.dataclass
class BenchmarkOutput:
    """One successful run. Times in milliseconds; None where the tool did not print the value."""

    mean_ms: float
    version_format: str
    count: int | None = None            # number of measured (non-warm-up) runs
    init_ms: float | None = None
    first_ms: float | None = None       # the very first inference ("First inference", "Warmup (first)")
    warmup_mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    percentiles: dict[str, float] = dataclasses.field(default_factory=dict)   # "p5", "p50" (median), "p95"
    peak_memory_mb: float | None = None
    init_memory_mb: float | None = None
    overall_memory_mb: float | None = None
    delegates: list[str] = dataclasses.field(default_factory=list)
    delegation: list[DelegationFact] = dataclasses.field(default_factory=list)
    op_profile: list[OpProfileRow] | None = None
    model_size_mb: float | None = None
    # "Num threads: [4]" -> {"Num threads": "4"}
    parameters: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BenchmarkRun:
    """One run found in the text: either `output` or the one-line `error` is set."""

    output: BenchmarkOutput | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.output is not None

    def result(self) -> BenchmarkOutput:
        if self.output is None:
            raise BenchmarkFailed(self.error or "benchmark_model failed")
        return self.output


# ----------------------------------------------------------------------------------------------------------
# Lines: strip whatever wraps the tool's own text, remember the severity.

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_LOGCAT = re.compile(  # threadtime (`adb logcat`), with the doc's "..." stand-in for the prefix, or brief format
    r"^(?:(?:\d{4}-)?\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+(?P<sev>[VDIWEF])\s+[^\s:]+\s*: ?"
    r"|\.\.\.\s+[^\s:]+\s+: ?"
    r"|(?P<sev2>[VDIWEF])/[^\s(]+\s*\(\s*\d+\): ?)")
# absl: "I0000 00:00:1762389540.165346   15104 run_model.cc:361] " (severity letter, MMDD, time, thread, source).
# The time field is hh:mm:ss.micros, or 00:00:<epoch seconds> where the clock was not set; pastes lose the letter.
_ABSL = re.compile(r"^(?P<sev>[IWEF])?\d{4}\s+\d\d:\d\d:\d+(?:\.\d+)?\s+\d+\s+[\w./-]+:\d+\] ?")
_SEVERITY = re.compile(r"^(?P<sev>INFO|WARNING|ERROR|VERBOSE|DEBUG|FATAL): ?")
_SOURCE_TAG = re.compile(r"^\[[^\]\s]+:\d+\] ?")
_LETTER_SEVERITY = {"V": "VERBOSE", "D": "DEBUG", "I": "INFO", "W": "WARNING", "E": "ERROR", "F": "FATAL"}


@dataclasses.dataclass(frozen=True)
class _Line:
    raw: str        # the tool's text with prefixes removed, leading tabs kept (op-profile tables need them)
    text: str       # the same, stripped
    severity: str   # INFO, WARNING, ERROR, FATAL, VERBOSE, DEBUG, or "" when the line had none


def _split_line(line: str) -> _Line:
    line = line.rstrip("\r\n")
    severity = ""
    match = _LOGCAT.match(line)
    if match:
        letter = match.group("sev") or match.group("sev2")
        severity = _LETTER_SEVERITY.get(letter, "") if letter else ""
        line = line[match.end():]
    match = _ABSL.match(line)
    if match:
        severity = _LETTER_SEVERITY.get(match.group("sev") or "", severity)
        line = line[match.end():]
    match = _SEVERITY.match(line)
    if match:
        severity = match.group("sev")
        line = line[match.end():]
    match = _SOURCE_TAG.match(line)
    if match:
        line = line[match.end():]
    return _Line(raw=line, text=line.strip(), severity=severity)


# ----------------------------------------------------------------------------------------------------------
# What the lines say.

_STATS = re.compile(r"^count=\d")
_STATS_FIELD = re.compile(rf"(\w+)=({_NUM})")
_PHASE_HEADER = re.compile(r"^Running benchmark for ")
_SUMMARY = re.compile(r"^(?P<old>Average )?[Ii]nference timings in us: (?P<fields>.*)$")
_SUMMARY_FIELD = re.compile(rf"([^,:]+?):\s*({_NUM})")
_INIT_SESSION = re.compile(rf"^Initialized session in ({_NUM})\s*ms")
_MODEL_SIZE = re.compile(rf"^The input model file size \(MB\): ({_NUM})")
_MEMORY_DELTA = re.compile(rf"^Memory footprint delta from the start of the tool \(MB\): "
                           rf"init=({_NUM}) overall=({_NUM})")
_PEAK_MEMORY = re.compile(rf"^Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})")
_PARAMETER = re.compile(r"^([A-Za-z#][^:\[\]]*?)\s*:\s*\[(.*)\]$")
_LITERT_RESULTS = re.compile(r"^=+ BENCHMARK RESULTS =+$")
_LITERT_VALUE = re.compile(
    rf"^(?P<key>Model initialization|Warmup \(first\)|Warmup \(avg\)|Inference \((?:avg|min|max|std)\)"
    rf"|Init footprint|Overall footprint|Peak memory usage):\s+(?P<value>{_NUM})\s*(?:ms|MB)?"
    r"(?:\s+\((?P<runs>\d+) runs\))?")
_RUN_MODEL = re.compile(rf"^(?P<key>First run took|Slowest run took|Fastest run took|All runs took average) "
                        rf"(?P<value>{_NUM}) microseconds")
_DELEGATE_CREATED = re.compile(r"^Created TensorFlow Lite (?:(?P<a>\w+) delegate for \w+|delegate for (?P<b>\w+))\.")
_DELEGATE_REPLACING = re.compile(r"^Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\) node, "
                                 r"yielding (\d+) partitions(?: for subgraph (\d+))?")
_DELEGATE_APPLIED = re.compile(r"^Explicitly applied (\w+) delegate, and the model graph will be "
                               r"(completely|partially) executed by the delegate")
_DELEGATE_UNUSED = re.compile(r"^Though (\w+) delegate is explicitly applied, the model graph will not be executed")

# The delegate class names `Replacing ... with delegate (X)` prints, by the names the tool uses elsewhere.
_DELEGATE_KERNEL_NAMES = {
    "TfLiteXNNPackDelegate": "XNNPACK", "TfLiteGpuDelegateV2": "GPU", "TfLiteGpuDelegate": "GPU",
    "TfLiteNnapiDelegate": "NNAPI", "TfLiteHexagonDelegate": "Hexagon", "TfLiteCoreMlDelegate": "CoreML",
}

# Lines that end a run whatever else it printed (the tool's or the shell's own words).
_FATAL = re.compile(
    r"^(?:Benchmarking failed|Failed to |Unconsumed cmdline flags|Segmentation fault|Aborted|Bus error"
    r"|Illegal instruction|Killed|Floating point exception|CANNOT LINK EXECUTABLE|Fatal signal|terminate called"
    r"|qemu: uncaught target signal|Check failed|Could not open )"
    r"|^(?:/system/bin/sh|sh|bash|/bin/sh): .*(?:not found|Permission denied|not executable|No such file)")


def _num(text: str) -> float:
    return float(text)


def _us_to_ms(text: str) -> float:
    # The tool prints microseconds with at most a few decimals; rounding drops the binary noise of /1000
    # (79760.9 us -> 79.7609 ms, not 79.76089999999999).
    return round(float(text) / 1000.0, 9)


def _first_present(*values: float | None) -> float | None:
    """The first value that was printed at all (0.0 counts as printed)."""
    return next((value for value in values if value is not None), None)


def _resolution(text: str) -> float:
    """Half a unit in the last printed digit: how far a printed value may be from the true one."""
    try:
        exponent = Decimal(text).as_tuple().exponent
    except InvalidOperation:
        return 0.0
    return 0.5 * 10.0 ** exponent if isinstance(exponent, int) else 0.0


@dataclasses.dataclass
class _Reported:
    """A value as printed, converted to ms, with the precision it was printed at (also in ms)."""

    ms: float
    resolution_ms: float


class _RunParser:
    """Collects what one run printed; `finish` turns it into a BenchmarkRun."""

    def __init__(self) -> None:
        self.lines: list[_Line] = []
        self.stats: list[dict[str, str]] = []
        self.summary: dict[str, _Reported] = {}
        self.summary_format = ""
        self.litert: dict[str, _Reported] = {}
        self.litert_runs: dict[str, int] = {}
        self.litert_block = False
        self.run_model: dict[str, _Reported] = {}
        self.init_session_ms: float | None = None
        self.model_size_mb: float | None = None
        self.memory: dict[str, float] = {}
        self.parameters: dict[str, str] = {}
        self.delegates: list[str] = []
        self.delegation: dict[str, dict] = {}
        self.replacing: dict[tuple[str, int], tuple[int, int, int]] = {}
        self.failures: list[str] = []
        self.tool_warnings: list[str] = []
        self.recognised = False

    # --- reading ---------------------------------------------------------------------------------------
    def feed(self, line: _Line) -> None:
        self.lines.append(line)
        text = line.text
        if not text:
            return
        if line.severity in ("ERROR", "FATAL") or _FATAL.match(text):
            if text not in self.failures:
                self.failures.append(text)
            self.recognised = True
            return
        if line.severity == "WARNING":
            self.tool_warnings.append(text)
        if _STATS.match(text):
            self.stats.append(dict(_STATS_FIELD.findall(text)))
        elif _PHASE_HEADER.match(text):
            pass  # "Running benchmark for at least N iterations…": the stats line that follows is what counts
        elif match := _SUMMARY.match(text):
            self._read_summary(match)
        elif match := _INIT_SESSION.match(text):
            self.init_session_ms = _num(match.group(1))
        elif match := _MODEL_SIZE.match(text):
            self.model_size_mb = _num(match.group(1))
        elif match := _MEMORY_DELTA.match(text):
            self.memory["init"], self.memory["overall"] = _num(match.group(1)), _num(match.group(2))
        elif match := _PEAK_MEMORY.match(text):
            self.memory["peak"] = _num(match.group(1))
        elif _LITERT_RESULTS.match(text):
            self.litert_block = True
        elif match := _LITERT_VALUE.match(text):
            self._read_litert(match)
        elif match := _RUN_MODEL.match(text):
            self.run_model[match.group("key")] = _Reported(_us_to_ms(match.group("value")),
                                                           _resolution(match.group("value")) / 1000.0)
        elif match := _DELEGATE_CREATED.match(text):
            self._delegate(match.group("a") or match.group("b"))
        elif match := _DELEGATE_REPLACING.match(text):
            done, total, kernel, partitions, subgraph = match.groups()
            name = _DELEGATE_KERNEL_NAMES.get(kernel, kernel)
            self._delegate(name)
            self.replacing[(name, int(subgraph or 0))] = (int(done), int(total), int(partitions))
        elif match := _DELEGATE_APPLIED.match(text):
            self._delegate(match.group(1))["execution"] = "complete" if match.group(2) == "completely" else "partial"
        elif match := _DELEGATE_UNUSED.match(text):
            self._delegate(match.group(1))["execution"] = "none"
        elif match := _PARAMETER.match(text):
            self.parameters[match.group(1)] = match.group(2)
        else:
            return
        self.recognised = True

    def _read_summary(self, match: re.Match) -> None:
        self.summary_format = "tflite-v1" if match.group("old") else "tflite-v2"
        for key, value in _SUMMARY_FIELD.findall(match.group("fields")):
            self.summary[key.strip()] = _Reported(_us_to_ms(value), _resolution(value) / 1000.0)

    def _read_litert(self, match: re.Match) -> None:
        key, value = match.group("key"), match.group("value")
        self.litert[key] = _Reported(_num(value), _resolution(value))
        if match.group("runs"):
            self.litert_runs[key] = int(match.group("runs"))

    def _delegate(self, name: str) -> dict:
        if name not in self.delegates:
            self.delegates.append(name)
        return self.delegation.setdefault(name, {})

    # --- deciding --------------------------------------------------------------------------------------
    def finish(self) -> BenchmarkRun:
        if self.failures:
            return BenchmarkRun(None, self._failure_message())
        try:
            return BenchmarkRun(self._output(), None)
        except BenchmarkFailed as exc:
            return BenchmarkRun(None, str(exc))

    def _failure_message(self) -> str:
        # "Benchmarking failed." only says that something before it failed; quote the cause when there is one.
        causes = [f for f in self.failures if not f.startswith("Benchmarking failed")] or self.failures
        return "benchmark_model failed: " + " | ".join(causes)

    def _last_words(self) -> str:
        for line in reversed(self.lines):
            if line.text:
                return f"last line: '{line.text[:160]}'"
        return "it printed nothing"

    def _output(self) -> BenchmarkOutput:
        summary_mean = self.summary.get("Inference (avg)") or self.summary.get("Inference") \
            or self.summary.get("no stats")
        litert_mean = self.litert.get("Inference (avg)")
        run_model_mean = self.run_model.get("All runs took average")
        finished = summary_mean or litert_mean or run_model_mean
        # Per-phase lines come warm-up first, measured runs last. Without the closing summary, a single
        # stats line is the warm-up of a run that never got to its measured runs (cut output or a crash).
        if not finished and len(self.stats) < 2:
            if not self.stats and not self.recognised:
                raise BenchmarkFailed(f"benchmark_model printed no timing ({self._last_words()})")
            raise BenchmarkFailed("benchmark_model output ends before the measured runs were reported "
                                  f"(truncated or interrupted; {self._last_words()})")
        warnings: list[str] = list(self.tool_warnings)
        measured = self.stats[-1] if self.stats else None
        warmup = self.stats[-2] if len(self.stats) >= 2 else None
        if measured is None and (summary_mean or litert_mean):
            warnings.append("only the closing summary was found: run count, std, min, max and percentiles unknown")
        if not finished:
            warnings.append("no closing summary line (output cut short?): values come from the last stats line")

        out = BenchmarkOutput(mean_ms=math.nan, version_format=self._version_format())
        if measured is not None:
            self._apply_stats(out, measured)
        elif summary_mean:
            out.mean_ms = summary_mean.ms
        elif litert_mean:
            out.mean_ms = litert_mean.ms
            out.count = self.litert_runs.get("Inference (avg)")
            out.min_ms = self._value(self.litert, "Inference (min)")
            out.max_ms = self._value(self.litert, "Inference (max)")
            out.std_ms = self._value(self.litert, "Inference (std)")
        else:
            # No stats line and no summary/LiteRT mean: `finished` must then be run_model's (else raised above).
            assert run_model_mean is not None
            out.mean_ms = run_model_mean.ms
            out.min_ms = self._value(self.run_model, "Fastest run took")
            out.max_ms = self._value(self.run_model, "Slowest run took")
            warnings.append("run_model prints no run count or std")

        # Each value from the most precise place the tool printed it (microsecond lines before rounded ms blocks).
        out.init_ms = _first_present(self._value(self.summary, "Init"), self.init_session_ms,
                                     self._value(self.litert, "Model initialization"))
        out.first_ms = _first_present(self._value(self.summary, "First inference"), self._stat_ms(warmup, "first"),
                                      self._single_run_ms(warmup), self._value(self.litert, "Warmup (first)"),
                                      self._value(self.run_model, "First run took"))
        out.warmup_mean_ms = _first_present(self._value(self.summary, "Warmup (avg)"),
                                            self._value(self.summary, "Warmup"), self._stat_ms(warmup, "avg"),
                                            self._single_run_ms(warmup), self._value(self.litert, "Warmup (avg)"))
        out.init_memory_mb = _first_present(self.memory.get("init"), self._value(self.litert, "Init footprint"))
        out.overall_memory_mb = _first_present(self.memory.get("overall"),
                                               self._value(self.litert, "Overall footprint"))
        out.peak_memory_mb = _first_present(self.memory.get("peak"), self._value(self.litert, "Peak memory usage"))
        out.model_size_mb = self.model_size_mb
        out.parameters = dict(self.parameters)
        out.delegates = list(self.delegates)
        out.delegation = self._delegation_facts()
        out.op_profile = parse_op_profile([line.raw for line in self.lines])

        for reported in (summary_mean, litert_mean):
            if measured is not None and reported is not None and \
                    abs(out.mean_ms - reported.ms) > max(reported.resolution_ms, 1e-3 * reported.ms):
                warnings.append(f"the closing summary's mean ({reported.ms:g} ms) differs from the measured "
                                f"runs' stats line ({out.mean_ms:g} ms); using the stats line")
        out.warnings = warnings
        self._check_plausible(out)
        return out

    def _apply_stats(self, out: BenchmarkOutput, stats: dict[str, str]) -> None:
        ms = {key: _us_to_ms(value) for key, value in stats.items() if key != "count"}
        out.count = int(_num(stats["count"]))
        out.mean_ms = ms.get("avg", math.nan)
        out.std_ms = ms.get("std")
        out.min_ms = ms.get("min")
        out.max_ms = ms.get("max")
        for key, value in ms.items():
            if key == "median":
                out.percentiles["p50"] = value
            elif re.fullmatch(r"p\d+(?:\.\d+)?", key):
                out.percentiles[key] = value
        if "avg" not in ms and out.count == 1 and "curr" in ms:
            out.mean_ms = ms["curr"]   # a single run prints only `count=1 curr=…`

    @staticmethod
    def _value(values: dict[str, _Reported], key: str) -> float | None:
        reported = values.get(key)
        return reported.ms if reported is not None else None

    @staticmethod
    def _stat_ms(stats: dict[str, str] | None, key: str) -> float | None:
        return _us_to_ms(stats[key]) if stats and key in stats else None

    @staticmethod
    def _single_run_ms(stats: dict[str, str] | None) -> float | None:
        """A one-run phase prints only `count=1 curr=…`: that run is both its first and its average."""
        if stats and stats.get("count") == "1" and "curr" in stats:
            return _us_to_ms(stats["curr"])
        return None

    def _version_format(self) -> str:
        if self.litert_block or self.litert:
            return "litert-benchmark"
        if self.run_model and not self.stats and not self.summary:
            return "litert-run-model"
        if self.summary_format:
            return self.summary_format
        # No closing line: TF 2.x is the one that prints "Initialized session in 0.53ms." with a period and
        # `first=` on the warm-up line; 1.x printed a bare `count=1 curr=…` warm-up and no period.
        return "tflite-v2" if any("first" in s for s in self.stats[:-1]) or self.model_size_mb else "tflite-v1"

    def _delegation_facts(self) -> list[DelegationFact]:
        facts = []
        for name in self.delegates:
            subgraphs = [v for (delegate, _), v in self.replacing.items() if delegate == name]
            facts.append(DelegationFact(
                delegate=name,
                nodes_delegated=sum(v[0] for v in subgraphs) if subgraphs else None,
                nodes_total=sum(v[1] for v in subgraphs) if subgraphs else None,
                partitions=sum(v[2] for v in subgraphs) if subgraphs else None,
                execution=self.delegation.get(name, {}).get("execution"),
            ))
        return facts

    @staticmethod
    def _check_plausible(out: BenchmarkOutput) -> None:
        if not (math.isfinite(out.mean_ms) and out.mean_ms > 0):
            raise BenchmarkFailed(f"benchmark_model reported no usable mean latency (mean={out.mean_ms:g} ms)")
        if out.count is not None and out.count <= 0:
            raise BenchmarkFailed(f"benchmark_model reported {out.count} measured runs")


def parse_benchmark_runs(text: str) -> list[BenchmarkRun]:
    """Every run in the text, in order. A new run starts at each `STARTING!` line."""
    segments: list[_RunParser] = [_RunParser()]
    for raw in text.splitlines():
        line = _split_line(raw)
        if line.text.endswith("STARTING!"):
            if segments[-1].lines and any(l.text for l in segments[-1].lines):
                segments.append(_RunParser())
        segments[-1].feed(line)
    # Text before the first STARTING! that says nothing the parser knows (a shell prompt, a command line) is
    # not a run of its own.
    if len(segments) > 1 and not segments[0].recognised and not segments[0].stats:
        segments.pop(0)
    return [segment.finish() for segment in segments]


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """The last successful run in `text`; BenchmarkFailed (quoting the device) if no run succeeded."""
    if not text.strip():
        raise BenchmarkFailed("benchmark_model printed nothing")
    runs = parse_benchmark_runs(text)
    successes = [i for i, run in enumerate(runs) if run.ok]
    if not successes:
        raise BenchmarkFailed(runs[-1].error or "benchmark_model failed")
    index = successes[-1]
    output = runs[index].result()
    later_failures = [run.error for run in runs[index + 1:] if not run.ok]
    if later_failures:
        output.warnings.append(f"a later run in the same output failed: {later_failures[-1]}")
    return output
