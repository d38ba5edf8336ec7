"""Host benchmark: each model is measured in a fresh Python process of its own.

Why a child process per model: peak RSS is a process-wide high-water mark, so only a process that loaded
nothing but this model reports *its* peak memory; one model's allocations (arenas, XNNPACK packed weights)
cannot slow or inflate the next; and a runtime that crashes in native code takes down the child, not the
command. The parent inspects the model and records the environment, the child loads and times it.

Protocol: the parent sends the request as JSON on the child's stdin and reads JSON lines from a dedicated
pipe (fd passed as argv[1]), not from stdout, so nothing a runtime prints can corrupt the messages. The
child's stdout/stderr go to a temporary file that supplies the tail of the log when it fails. Messages:
    {"event": "phase", "phase": "load"|"first"|"warmup"|"measure"}
    {"event": "progress", "done": n, "target": n}     (throttled, ~10/s)
    {"event": "result", ...raw measurements...}
    {"event": "error", "message": "..."}              (a load/run error the user can act on)
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnetdeploy.errors import UserError

if TYPE_CHECKING:  # the measuring child runs this module: it stays free of pydantic
    from mnetdeploy.config import HostSettings

RUNTIMES = {"tflite": "litert", "onnx": "onnxruntime"}
MAX_IMAGES = 50          # images cycled through with --inputs (50 x 224x224x3 float32 = 30 MB, loaded up front)
RANDOM_INPUTS = 8        # distinct seeded random inputs cycled through otherwise
PROGRESS_INTERVAL_NS = 100_000_000

ProgressFn = Callable[[dict[str, Any]], None]


def resolve_runtime(path: Path, fmt: str, requested: str) -> str:
    runtime = RUNTIMES[fmt]
    if requested not in ("auto", runtime):
        raise UserError(f"{path}: a .{fmt} model runs on {runtime}, not {requested}; "
                        f"use --runtime auto or {runtime}")
    return runtime


# ------------------------------------------------------------------------------------------- parent side

def benchmark_on_host(model_path: str | Path, settings: HostSettings, progress: ProgressFn | None = None):
    """Benchmark one .tflite/.onnx model on this machine; returns a `BenchResult`."""
    from mnetdeploy.bench.environment import collect_environment, environment_warnings, inspect_model
    from mnetdeploy.bench.schema import BenchResult, InputsInfo
    from mnetdeploy.bench.stats import summarize

    facts = inspect_model(model_path)
    runtime = resolve_runtime(facts.path, facts.format, settings.runtime)
    if len(facts.input_shape) != 4 or facts.input_shape[-1] != 3:
        raise UserError(f"{facts.path}: input shape {list(facts.input_shape)} is not (1, H, W, 3); "
                        "bench feeds NHWC RGB images")
    xnnpack = settings.xnnpack if runtime == "litert" else None
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    environment = collect_environment(facts, runtime, settings.threads)
    request = {"model": str(facts.path), "runtime": runtime, "threads": settings.threads,
               "xnnpack": bool(settings.xnnpack), "warmup": settings.warmup, "runs": settings.runs,
               "min_seconds": settings.min_seconds, "inputs": str(settings.inputs) if settings.inputs else None,
               "seed": settings.seed,
               "resolution": int(facts.input_shape[1])}
    raw = run_child(request, progress)

    samples = raw["samples_ms"]
    exact = summarize(samples)
    stats = type(exact)(**{k: round(v, 6) for k, v in vars(exact).items()})  # ns resolution, readable JSON
    warnings = environment_warnings(environment)
    if runtime != "litert" and not settings.xnnpack:
        warnings.append("--no-xnnpack applies to LiteRT only; ignored for ONNX Runtime")
    assert stats.p50 is not None and stats.p99 is not None  # summarize() fills every statistic
    if stats.p50 > 0 and stats.p99 > 2 * stats.p50:
        warnings.append(f"p99 {stats.p99:.3g} ms is more than twice p50 {stats.p50:.3g} ms: heavy tail, "
                        "the machine was probably busy; compare medians, or re-run on an idle machine")
    warnings.extend(raw.get("warnings", []))
    peak, base = raw["peak_rss_mb"], raw["baseline_rss_mb"]
    return BenchResult(
        model=str(facts.path), format=facts.format, precision=facts.precision, runtime=runtime, device="host",
        threads=settings.threads, xnnpack=xnnpack, runs=len(samples), warmup_runs=settings.warmup,
        min_seconds=settings.min_seconds, measured_seconds=round(raw["measured_seconds"], 4),
        init_ms=round(raw["init_ms"], 4), first_ms=round(raw["first_ms"], 4),
        warmup_ms=None if raw["warmup_ms"] is None else round(raw["warmup_ms"], 4),
        latency_ms=stats, samples_ms=samples,
        peak_rss_mb=round(peak, 2), baseline_rss_mb=round(base, 2), model_rss_mb=round(peak - base, 2),
        inputs=InputsInfo(**raw["inputs"]), execution=raw["execution"], environment=environment,
        timestamp=started, warnings=warnings)


def child_command(read_fd_in_child: int) -> list[str]:
    """The command that runs one measurement (a function, so tests can substitute a crashing child)."""
    return [sys.executable, "-m", "mnetdeploy.bench.host", str(read_fd_in_child)]


def run_child(request: dict[str, Any], progress: ProgressFn | None = None) -> dict[str, Any]:
    """Run `measure(request)` in a fresh process; returns its raw result or raises `UserError`."""
    model = request["model"]
    read_fd, write_fd = os.pipe()
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryFile(mode="w+b") as log:
        try:
            proc = subprocess.Popen(child_command(write_fd), stdin=subprocess.PIPE, stdout=log,
                                    stderr=subprocess.STDOUT, pass_fds=(write_fd,), env=env)
        except OSError as e:
            os.close(read_fd)
            raise UserError(f"{model}: could not start the benchmark process ({e}); check {sys.executable}") from None
        finally:
            os.close(write_fd)  # the child holds its copy; EOF on our end means the child is gone
        result, error, phase = None, None, "start"
        try:
            try:
                assert proc.stdin is not None  # stdin=PIPE
                proc.stdin.write(json.dumps(request).encode())
                proc.stdin.close()
            except BrokenPipeError:  # the child died before reading; its exit status says why
                pass
            with os.fdopen(read_fd, "rb") as messages:
                for line in messages:
                    try:
                        msg = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    kind = msg.get("event")
                    if kind == "phase":
                        phase = msg["phase"]
                    elif kind == "result":
                        result = msg
                    elif kind == "error":
                        error = msg["message"]
                    if progress is not None and kind in ("phase", "progress"):
                        progress(msg)
            returncode = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted (Ctrl-C) or failed while reading: do not leave it running
                proc.kill()
                proc.wait()
        if error is not None:
            raise UserError(error)
        if returncode != 0 or result is None:
            log.seek(0)
            tail = _last_line(log.read().decode(errors="replace"))
            if returncode < 0:
                try:
                    how = f"crashed with {signal.Signals(-returncode).name}"
                except ValueError:
                    how = f"was killed by signal {-returncode}"
            else:
                how = f"exited with status {returncode}" if returncode else "ended without a result"
            raise UserError(f"{model}: the benchmark process {how} during {phase}"
                            f"{f' (last output: {tail})' if tail else ''}; the runtime failed on this model, "
                            "no result was recorded (try --no-xnnpack, another --threads, or re-export it)")
    return result


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


# -------------------------------------------------------------------------------------------- child side

def _rss_mb() -> float:
    """Current resident set size (MiB) from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def _peak_rss_mb() -> float:
    """Peak resident set size (MiB) of this process's own address space: VmHWM from /proc/self/status.

    Not getrusage's ru_maxrss: Linux carries that high-water mark across fork + exec, so a child started from
    a large parent (a test runner or pipeline that has TensorFlow loaded) would report the parent's size."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def _load_inputs(request: dict[str, Any]):
    """(float images (N, H, W, 3), inputs record, warnings). Loaded before the baseline RSS reading."""
    import numpy as np

    res = request["resolution"]
    if request["inputs"]:
        from mnetdeploy.data import find_images, load_images

        paths = find_images(request["inputs"])[:MAX_IMAGES]
        loaded = load_images(paths, res)
        warnings = [f"{len(loaded.skipped)} unreadable image(s) skipped, e.g. {loaded.skipped[0][0]}"
                    ] if loaded.skipped else []
        return loaded.array, {"kind": "images", "count": int(len(loaded.array)), "seed": None,
                              "directory": str(request["inputs"])}, warnings
    rng = np.random.default_rng(request["seed"])
    images = rng.uniform(-1.0, 1.0, size=(RANDOM_INPUTS, res, res, 3)).astype(np.float32)
    return images, {"kind": "random", "count": RANDOM_INPUTS, "seed": request["seed"], "directory": None}, []


def _import_runtime(runtime: str) -> None:
    """Import the runtime's Python package before the baseline RSS reading, so the baseline contains the
    library and model_rss_mb only the model."""
    if runtime == "litert":
        import ai_edge_litert.interpreter  # noqa: F401
    else:
        import onnxruntime  # noqa: F401


def _execution_info(runner) -> dict[str, Any]:
    """What actually runs the graph: LiteRT lists applied delegates as DELEGATE nodes in its node table."""
    if runner.runtime == "litert":
        try:
            nodes = [op["op_name"] for op in runner.interpreter._get_ops_details()]
        except Exception:  # private API: record that we could not tell rather than failing the benchmark
            return {"delegate": "unknown", "delegate_nodes": None, "nodes": None}
        delegated = sum(name == "DELEGATE" for name in nodes)
        return {"delegate": "xnnpack" if delegated else None, "delegate_nodes": delegated, "nodes": len(nodes)}
    return {"providers": list(runner.session.get_providers()), **runner.settings()}


def measure(request: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Load the model, run first/warmup/measured inferences, return raw timings and memory."""
    from mnetdeploy.runtimes import open_runner

    model = request["model"]
    _import_runtime(request["runtime"])
    images, inputs_info, warnings = _load_inputs(request)
    gc.collect()
    baseline = _rss_mb()

    emit({"event": "phase", "phase": "load"})
    t0 = time.perf_counter_ns()
    try:
        runner = open_runner(model, threads=request["threads"], xnnpack=request["xnnpack"])
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{model}: {request['runtime']} could not load the model ({_short(e)}); "
                        "check that the file is a complete, valid model (re-export it)") from None
    init_ns = time.perf_counter_ns() - t0

    # Inputs are converted to the model's input type (quantized for int8 inputs) here, outside any timing.
    prepared = [runner.prepare(images[i:i + 1]) for i in range(len(images))]
    execution = _execution_info(runner)
    n_inputs = len(prepared)

    def timed(i: int) -> int:
        x = prepared[i % n_inputs]
        start = time.perf_counter_ns()
        runner.run(x)  # the output stays as the runtime gives it: converting it is not the model's work
        return time.perf_counter_ns() - start

    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed region would add a pause unrelated to the model (as timeit)
    try:
        emit({"event": "phase", "phase": "first"})
        try:
            first_ns = timed(0)
        except Exception as e:
            raise UserError(f"{model}: {request['runtime']} failed to run the model ({_short(e)}); "
                            "the model loads but cannot execute on this runtime") from None
        emit({"event": "phase", "phase": "warmup"})
        warmup_ns = [timed(1 + i) for i in range(request["warmup"])]
        offset = 1 + request["warmup"]

        emit({"event": "phase", "phase": "measure"})
        runs, min_ns = request["runs"], int(request["min_seconds"] * 1e9)
        samples: list[int] = []
        start = time.perf_counter_ns()
        next_report = start + PROGRESS_INTERVAL_NS
        # At least `runs` runs AND at least `min_seconds`: stop at whichever comes later.
        while len(samples) < runs or time.perf_counter_ns() - start < min_ns:
            samples.append(timed(offset + len(samples)))
            now = time.perf_counter_ns()
            if now >= next_report:
                elapsed = now - start
                by_time = int(len(samples) * min_ns / elapsed) if elapsed < min_ns else 0
                emit({"event": "progress", "done": len(samples), "target": max(runs, by_time, len(samples))})
                next_report = now + PROGRESS_INTERVAL_NS
        measured_ns = time.perf_counter_ns() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    emit({"event": "progress", "done": len(samples), "target": len(samples)})

    return {
        "init_ms": init_ns / 1e6,
        "first_ms": first_ns / 1e6,
        "warmup_ms": sum(warmup_ns) / len(warmup_ns) / 1e6 if warmup_ns else None,
        "samples_ms": [ns / 1e6 for ns in samples],
        "measured_seconds": measured_ns / 1e9,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": _peak_rss_mb(),
        "inputs": inputs_info,
        "execution": execution,
        "warnings": warnings,
    }


def _short(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    if not lines:
        return type(e).__name__
    text = lines[-1] if len(lines[-1]) <= 300 else "..." + lines[-1][-300:]  # runtimes put the cause last
    return f"{type(e).__name__}: {text}"


def _child_main(argv: list[str]) -> int:
    fd = int(argv[1])

    def emit(msg: dict[str, Any]) -> None:
        data = memoryview((json.dumps(msg) + "\n").encode())
        while data:  # a result with many samples can exceed what one write() to a pipe takes
            data = data[os.write(fd, data):]

    request = json.loads(sys.stdin.read())
    try:
        result = measure(request, emit)
    except UserError as e:
        emit({"event": "error", "message": str(e)})
        return 2
    emit({"event": "result", **result})
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv))
