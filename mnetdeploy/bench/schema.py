"""The benchmark result: one `BenchResult` per model, as written by `mnetdeploy bench --json` / `--out`.

Schema version 1 (`SCHEMA_VERSION`). `--json` prints, and `--out` writes, a JSON list of result objects,
one per model in the order benchmarked. Each object:

    schema_version  1
    model           path of the model file as benchmarked
    format          "tflite" | "onnx"
    precision       read from the model file, not from its name:
                    "fp32"     float weights and activations
                    "fp16"     float16 weights (dequantized to float32 at load), float32 activations
                    "int8"     integer (int8/uint8) activations: full-integer or QDQ-quantized
                    "int16x8"  int16 activations, int8 weights (TFLite 16x8 quantization)
                    "dynamic"  int8 weights, float activations (dynamic-range / weight-only quantization)
    runtime         "litert" (ai-edge-litert Interpreter) | "onnxruntime" (CPU execution provider)
    device          "host" (device benchmarks add other values later)
    threads         threads given to the runtime (LiteRT num_threads incl. XNNPACK; ORT intra-op threads)
    xnnpack         LiteRT: whether the XNNPACK delegate was requested; ONNX Runtime: null (not applicable)
    execution       what the runtime actually did: LiteRT {"delegate": "xnnpack"|null, "delegate_nodes": n,
                    "nodes": n}; ONNX Runtime {"providers": [...], "graph_optimization": "all"}
    runs            number of measured inferences (= len(samples_ms))
    warmup_runs     number of warmup inferences (after the first inference, not measured)
    min_seconds     the --min-seconds the run was asked for
    measured_seconds  wall time of the measured phase
    init_ms         model load: interpreter/session creation + tensor allocation (+ delegate preparation)
    first_ms        the first inference after init (its own run: neither warmup nor measured; TFLite's
                    benchmark_model counts it as warmup run 1)
    warmup_ms       mean of the warmup runs (null when warmup_runs == 0)
    latency_ms      statistics over samples_ms: mean, std (sample std, ddof=1; 0 for one run), min, max,
                    p50, p90, p99 (numpy's default linear interpolation between order statistics)
    samples_ms      every measured inference, in order, in milliseconds
    peak_rss_mb     peak resident memory (MiB) of the process that ran this model alone (VmHWM)
    baseline_rss_mb resident memory (MiB) of that process just before loading the model (runtime imported,
                    inputs in memory)
    model_rss_mb    peak_rss_mb - baseline_rss_mb: what loading and running the model added
    inputs          {"kind": "images"|"random", "count": n, "seed": s|null, "directory": path|null}
    environment     machine, software and model file the numbers belong to (see environment.py)
    warnings        conditions that make the numbers less trustworthy (e.g. a loaded machine)
    identity        device results: who the device is, asked of it (serial, build fingerprint or os-release +
                    uname, SoC, ABI, benchmark binary sha256; mnetdeploy/devices/identity.py); null on the host
    timestamp       when the benchmark started, ISO 8601 UTC

Timing: each sample is `time.perf_counter_ns()` immediately around `Runner.invoke` (copy the prepared input
into the runtime's input tensor, run the model, copy the output out and dequantize it). Input preparation
(image loading, resizing, quantization to the model's input type) happens before any timed region. Python's
garbage collector is disabled during timed loops, as `timeit` does. Measured runs stop at `runs` or
`min_seconds`, whichever comes later (at least N runs and at least S seconds, like benchmark_model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mnetdeploy.errors import UserError

SCHEMA_VERSION = 1


@dataclass
class LatencyStats:
    """Summary statistics of the measured latencies, in milliseconds."""

    mean: float
    std: float | None  # None: device tools that print no such statistic (benchmark_model has no p90/p99)
    min: float | None
    max: float | None
    p50: float | None
    p90: float | None
    p99: float | None


@dataclass
class InputsInfo:
    kind: str                      # "images" | "random"
    count: int                     # distinct inputs cycled through
    seed: int | None = None        # random inputs only
    directory: str | None = None   # images only


@dataclass
class BenchResult:
    model: str
    format: str
    precision: str
    runtime: str
    device: str
    threads: int
    xnnpack: bool | None
    runs: int
    warmup_runs: int
    min_seconds: float
    measured_seconds: float
    init_ms: float | None          # None: not printed by the device's tool
    first_ms: float | None
    warmup_ms: float | None
    latency_ms: LatencyStats
    samples_ms: list[float]
    peak_rss_mb: float | None      # None: not measured on the device
    baseline_rss_mb: float | None
    model_rss_mb: float | None
    inputs: InputsInfo
    execution: dict[str, Any]
    environment: dict[str, Any]
    timestamp: str
    warnings: list[str] = field(default_factory=list)
    # Device results: who the device is (mnetdeploy/devices/identity.py), for cache keys; None on the host.
    identity: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with `schema_version` first, then the fields in the documented order."""
        d = asdict(self)
        return {"schema_version": d.pop("schema_version"), **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "benchmark result") -> BenchResult:
        """Read a result back (e.g. a baseline for the gate); refuses other schema versions."""
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise UserError(f"{where}: schema_version {version!r}, this mnetdeploy reads {SCHEMA_VERSION}; "
                            "re-run `mnetdeploy bench` with this version")
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(d) - {"warnings", "identity"})
        if missing:
            raise UserError(f"{where}: missing field(s) {', '.join(missing)}; not a mnetdeploy bench result")
        kwargs = {k: v for k, v in d.items() if k in names}
        kwargs["latency_ms"] = LatencyStats(**d["latency_ms"])
        kwargs["inputs"] = InputsInfo(**d["inputs"])
        return cls(**kwargs)
