"""Device benchmarks: LiteRT's `benchmark_model` on Android phones, mnetdeploy's runner on Linux boards.

    mnetdeploy bench model.tflite --device android --benchmark-binary ~/bin/android_aarch64_benchmark_model
    mnetdeploy bench model.tflite --device android:R58M123ABC --trials 5 --threads 4
    mnetdeploy bench model.tflite --device ssh://root@board.local         # remote_runner.py, see ssh.py
    mnetdeploy bench model.tflite --device adb-linux                      # a Linux device over adb, same runner

Getting benchmark_model
-----------------------
mnetdeploy does not download it (it is not on a package registry). Either:
- the prebuilt nightly binaries linked from the TensorFlow Lite / LiteRT documentation page "Performance
  measurement", section "Benchmark tools" (ai.google.dev/edge/litert/models/measurement): pick
  `android_aarch64_benchmark_model` for arm64-v8a phones (`android_arm_benchmark_model` for armeabi-v7a,
  `android_x86_64_benchmark_model` for emulators) and `linux_aarch64_benchmark_model` for ARM Linux boards; or
- build it from the LiteRT sources with bazel:
      bazel build -c opt --config=android_arm64 //tflite/tools/benchmark:benchmark_model
  (in the older tensorflow tree: //tensorflow/lite/tools/benchmark:benchmark_model), then pass
  `--benchmark-binary bazel-bin/tflite/tools/benchmark/benchmark_model`.
The binary's ELF header is read before anything is copied: an x86_64 or 32-bit ARM build for an arm64-v8a
phone stops with the build to use instead. A script with a `#!` line (as the test stand-in) is accepted; it
needs its interpreter on the device.

What one device benchmark does (each step's failure is one error line)
---------------------------------------------------------------------
1. Pre-flight, exit 2: adb (or ssh) found; exactly one device chosen and online and authorized (see adb.py);
   the device's facts read in one round trip (hygiene.py); binary ABI vs device ABI; which files the device
   already has (sha256sum on the device, else a `.sha256` marker written after the copy); enough free space
   for the rest (`df -k`, with 1 MiB to spare).
2. Copy: the model to this run's directory (with `--keep`: to `<base>/<sha256[:16]>/`), the tool
   (benchmark_model or remote_runner.py) to `<base>/bin/<sha256[:16]>/`, where base is /data/local/tmp/mnetdeploy
   on Android, /tmp/mnetdeploy on Linux.
   Unchanged files are never copied again. `chmod 755` the tool; a freshly copied binary is started once
   (`--help=true`) so that "cannot execute" (wrong ABI, noexec, missing interpreter or libraries) is a pre-flight
   error rather than a failed benchmark.
3. Hygiene: pin to the big cores (`taskset MASK`; `--cpu-mask` overrides), wait for the CPU zones to cool below
   `--max-temp` (at most `--cool-timeout` s, recorded), read thermal zones before and after each trial.
4. `--trials K` runs: each is a fresh `benchmark_model --graph=... --num_threads=N --warmup_runs=W+1
   --warmup_min_secs=0 --num_runs=R --min_secs=S --use_xnnpack=true|false --report_peak_memory_footprint=true`
   (W+1: benchmark_model counts the first inference as a warm-up run; mnetdeploy reports it as first_ms),
   stdout and stderr merged on the device so the order of its log lines is kept. Every trial is parsed
   (benchmark_output.py): a failed run raises BenchmarkFailed quoting the device (exit 1), never a number.
   A run that times out (`--run-timeout`), is interrupted or loses its connection kills the benchmark on the
   device over a new connection (occupancy.py), so no hung process outlives it.
5. The run's own directory `<base>/runs/<host>-<pid>-<random>/` is removed (a model kept with `--keep` lives in
   `<base>/<sha256[:16]>/`, is reused by later runs and never removed by one); the tool stays cached under
   `<base>/bin/` (it rarely changes and is the large file), older copies of the same tool are removed when a new
   one is copied. Remove everything with `adb shell rm -r /data/local/tmp/mnetdeploy`.
A device that stops answering at any point (adb's `device offline`, a cut output without the exit marker, a
dropped ssh connection) is DeviceLost, exit 1; nothing is returned, so nothing is stored as a result.

The result (mnetdeploy/bench/schema.py, the same schema as the host's)
-----------------------------------------------------------------------
device       "android:<serial>", "adb-linux:<serial>" or "ssh://user@host[:port]"
runtime      "benchmark_model" on Android; "litert" / "onnxruntime" from the runner (the package it used, e.g.
             tflite_runtime, is in execution.runtime_package)
samples_ms   runner: every measured inference of every trial. benchmark_model prints no per-run times, so:
             one trial -> [] ; K trials -> the K trial medians (p50; the trial means if the tool printed no
             median). `execution.samples_kind` says which: "per_run", "trial_p50", "trial_mean" or "none".
             The gate's --baseline regression check needs a distribution: with benchmark_model, bench with
             --trials K (K >= regression.min_samples) so it compares the trials.
latency_ms   runner: statistics of samples_ms. benchmark_model: from its own stats line (mean, std as it prints
             it, min, max, p50 = its median); with K trials: run-weighted mean, pooled std, overall min/max,
             p50 = median of the trial medians. p90 and p99 are null: the tool prints only p5/median/p95
             (kept in execution.tool_percentiles); a p90 budget on such a result is a clear gate error.
init_ms, first_ms, warmup_ms   medians over the trials; warmup_ms excludes the first inference.
peak_rss_mb  benchmark_model's "Overall peak memory footprint" (null if not printed); model_rss_mb its
             "overall" footprint delta; baseline_rss_mb their difference. Runner: VmHWM and VmRSS as on the host.
environment  device facts (model, SoC, ABI, Android version, kernel), cpufreq governors and clocks, the
             taskset mask and why, thermal zones before/after each trial and the cool-down waits, the
             binary's sha256 and ABI, the transport; `cpu_model` is the SoC so the gate's same_cpu check works.
execution    delegates and how much of the graph they took, per-trial numbers, the exact command, and the
             wall time of each phase of the job (phases_s).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnetdeploy.devices import (
    ANDROID_BASE,
    LINUX_BASE,
    DeviceLost,
    DeviceSettings,
    ShellResult,
    Target,
    Transport,
    last_words,
    parse_target,
    push_timeout,
    quote,
)
from mnetdeploy.devices.benchmark_output import BenchmarkFailed, parse_benchmark_output
from mnetdeploy.devices.hygiene import (
    FACTS_SCRIPT,
    DeviceFacts,
    Pinning,
    big_core_mask,
    cpu_zones,
    cpufreq_record,
    parse_cpu_mask,
    parse_facts,
    read_facts,
    read_thermal,
    wait_until_cool,
)
from mnetdeploy.devices.identity import read_identity
from mnetdeploy.devices.occupancy import DeviceLock, lock_expiry, run_id, run_killable
from mnetdeploy.errors import EXIT_USAGE, UserError
from mnetdeploy.fsutil import sha256_file

ELF_MACHINES = {183: "aarch64", 40: "arm", 62: "x86_64", 3: "x86", 243: "riscv64"}
BUILD_FOR_MACHINE = {"aarch64": "android_aarch64_benchmark_model (linux_aarch64_benchmark_model on Linux)",
                     "arm": "android_arm_benchmark_model", "x86_64": "android_x86_64_benchmark_model",
                     "x86": "android_x86_benchmark_model"}
WHERE_TO_GET = ("get LiteRT's benchmark_model for the device: the prebuilt android_aarch64_benchmark_model from the "
                "LiteRT docs' 'Benchmark tools' section, or `bazel build -c opt --config=android_arm64 "
                "//tflite/tools/benchmark:benchmark_model` (see `pydoc mnetdeploy.devices.android`)")
SPACE_HEADROOM = 1 << 20
# What the device says when it cannot start a binary at all (Android's linker, glibc's loader, the kernel via sh).
CANNOT_EXECUTE = ("CANNOT LINK EXECUTABLE", "not executable", "Exec format error", "error while loading shared")

ProgressFn = Callable[[dict[str, Any]], None]


# ------------------------------------------------------------------------------------------- the binary

@dataclasses.dataclass(frozen=True)
class BinaryInfo:
    path: Path
    sha256: str
    bytes: int
    kind: str                   # "elf" | "script"
    machine: str | None         # ELF machine ("aarch64", "arm", "x86_64", ...); None for a script
    interpreter: str | None     # a script's #! line

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "bytes": self.bytes, "kind": self.kind,
                "machine": self.machine, "interpreter": self.interpreter}


def inspect_binary(path: str | Path) -> BinaryInfo:
    """What `--benchmark-binary` is, from its first bytes: an ELF executable (and for which CPU) or a script."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"benchmark_binary {path}: no such file; {WHERE_TO_GET}")
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"\x7fELF") and len(head) >= 20:
        little = head[5] == 1
        machine_id = int.from_bytes(head[18:20], "little" if little else "big")
        machine = ELF_MACHINES.get(machine_id, f"ELF machine {machine_id}")
        return BinaryInfo(path, sha256_file(path), path.stat().st_size, "elf", machine, None)
    if head.startswith(b"#!"):
        interpreter = head[2:].split(b"\n", 1)[0].decode(errors="replace").strip()
        return BinaryInfo(path, sha256_file(path), path.stat().st_size, "script", None, interpreter)
    raise UserError(f"benchmark_binary {path}: not an executable (no ELF header, no #! line); {WHERE_TO_GET}")


def check_abi(binary: BinaryInfo, facts: DeviceFacts, label: str) -> None:
    """An ELF binary must be for a machine the device runs natively (Android ABIs, else `uname -m`)."""
    if binary.kind != "elf":
        return
    runs = facts.native_machines()
    if not runs or binary.machine in runs:
        return
    abis = ", ".join(facts.abis()) or facts.machine or "unknown"
    use = BUILD_FOR_MACHINE.get(runs[0], f"a build for {runs[0]}")
    raise UserError(f"benchmark_binary {binary.path}: a {binary.machine} executable, but {label} runs {abis}; "
                    f"use {use}")


# ------------------------------------------------------------------------------------------- the tools

@dataclasses.dataclass
class Trial:
    """One run of the tool on the device, in milliseconds."""

    count: int
    mean_ms: float
    std_ms: float | None
    min_ms: float | None
    max_ms: float | None
    p50_ms: float | None
    percentiles: dict[str, float | None]
    init_ms: float | None
    first_ms: float | None
    warmup_ms: float | None
    peak_mb: float | None
    baseline_mb: float | None
    model_mb: float | None
    measured_seconds: float
    samples_ms: list[float]
    execution: dict[str, Any]
    warnings: list[str]
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    cooldown: dict[str, Any] | None = None
    thermal_after: dict[str, float] | None = None

    def summary(self) -> dict[str, Any]:
        keep = ("count", "mean_ms", "std_ms", "min_ms", "max_ms", "p50_ms", "init_ms", "first_ms", "warmup_ms",
                "peak_mb", "measured_seconds")
        return {**{k: getattr(self, k) for k in keep}, "percentiles": self.percentiles,
                "cooldown": self.cooldown, "thermal_after": self.thermal_after}


class BenchmarkModelTool:
    """LiteRT's benchmark_model: the tool engineers already trust, parsed by benchmark_output.py."""

    runtime = "benchmark_model"
    remote_name = "benchmark_model"

    def __init__(self, binary: BinaryInfo) -> None:
        self.binary = binary
        self.local = binary.path
        self.sha256 = binary.sha256

    def check(self, facts: DeviceFacts, label: str, model_format: str) -> None:
        if model_format != "tflite":
            raise UserError(f"benchmark_model runs .tflite models; this is .{model_format}: bench the .tflite "
                            "export, or a .onnx on a Linux board with the runner (no --benchmark-binary)")
        check_abi(self.binary, facts, label)

    def exec_check(self, transport: Transport, remote: str) -> None:
        """Start the freshly copied binary once; "cannot execute" becomes a pre-flight error (exit 2)."""
        directory, name = remote.rsplit("/", 1)
        result = transport.shell(f"cd {quote(directory)} && ./{quote(name)} --help=true 2>&1",
                                 120.0, "checking that the benchmark binary starts")
        said = last_words(result.output, 400)
        # 126/127: the shell could not execute it (noexec mount, missing #! interpreter, wrong ABI).
        cannot = result.status in (126, 127) or any(word in said for word in CANNOT_EXECUTE)
        if cannot:
            transport.shell(f"rm -rf {quote(directory)}", 30.0, "removing the binary that does not run")
            raise UserError(f"{transport.label}: the benchmark binary does not run there (exit status "
                            f"{result.status}: {said or 'no output'}); use the build for this device's ABI, make sure "
                            f"{transport.base_dir} allows executing files, and that a script's interpreter exists "
                            "on the device", exit_code=EXIT_USAGE)

    def command(self, remote_tool: str, remote_model: str, settings: DeviceSettings, taskset: str | None,
                cpus: list[int]) -> str:
        argv = [remote_tool, f"--graph={remote_model}", f"--num_threads={settings.threads}",
                f"--warmup_runs={settings.warmup + 1}", "--warmup_min_secs=0", f"--num_runs={settings.runs}",
                f"--min_secs={settings.min_seconds:g}", f"--use_xnnpack={'true' if settings.xnnpack else 'false'}",
                "--report_peak_memory_footprint=true"]
        if settings.use_gpu:
            argv.append("--use_gpu=true")
        if settings.use_nnapi:
            argv.append("--use_nnapi=true")
        command = " ".join(quote(a) for a in argv)
        # 2>&1 on the device: the tool logs to stderr; merged there, its lines keep their order.
        return f"{'taskset ' + taskset + ' ' if taskset else ''}{command} 2>&1"

    def parse(self, result: ShellResult, label: str, settings: DeviceSettings) -> Trial:
        how = _exit_description(result.status)
        try:
            out = parse_benchmark_output(result.output)
        except BenchmarkFailed as exc:
            raise BenchmarkFailed(f"{label}: {exc}{f' ({how})' if how else ''}; no result was recorded") from None
        if result.status != 0:
            raise BenchmarkFailed(f"{label}: benchmark_model printed timings but {how} "
                                  f"({last_words(result.output)}); not trusted, no result was recorded")
        warnings = list(out.warnings)
        count = out.count or 0
        if out.count is not None and out.count < settings.runs:
            warnings.append(f"benchmark_model stopped after {out.count} of {settings.runs} runs (its --max_secs "
                            "limit, 150 s by default)")
        warmup = out.warmup_mean_ms
        if warmup is not None and out.first_ms is not None and settings.warmup >= 1:
            # The tool's warm-up average includes the first inference (its warm-up run 1); take it out.
            warmup = ((settings.warmup + 1) * warmup - out.first_ms) / settings.warmup
        elif settings.warmup == 0:
            warmup = None
        peak, overall = out.peak_memory_mb, out.overall_memory_mb
        delegation = [dataclasses.asdict(d) for d in out.delegation]
        main = delegation[0] if delegation else None
        for fact in delegation:
            if fact["execution"] in ("partial", "none"):
                warnings.append(f"the {fact['delegate']} delegate runs {fact['execution']} of the graph "
                                f"({fact['nodes_delegated']} of {fact['nodes_total']} nodes): the rest runs on "
                                "the reference kernels")
        execution = {"delegate": main["delegate"].lower() if main else None,
                     "delegate_nodes": main["nodes_delegated"] if main else None,
                     "nodes": main["nodes_total"] if main else None,
                     "delegates": out.delegates, "delegation": delegation,
                     "version_format": out.version_format, "parameters": out.parameters}
        return Trial(count=count, mean_ms=out.mean_ms, std_ms=out.std_ms, min_ms=out.min_ms, max_ms=out.max_ms,
                     p50_ms=out.percentiles.get("p50"), percentiles=dict(out.percentiles), init_ms=out.init_ms,
                     first_ms=out.first_ms, warmup_ms=warmup, peak_mb=peak,
                     baseline_mb=None if peak is None or overall is None else max(peak - overall, 0.0),
                     model_mb=overall, measured_seconds=count * out.mean_ms / 1000.0, samples_ms=[],
                     execution=execution, warnings=warnings)


class RunnerTool:
    """remote_runner.py with the board's python3 and LiteRT / tflite_runtime / onnxruntime."""

    remote_name = "remote_runner.py"

    def __init__(self, model_format: str) -> None:
        from mnetdeploy.devices.ssh import RUNNER

        self.local = RUNNER
        self.sha256 = sha256_file(RUNNER)
        self.runtime = "onnxruntime" if model_format == "onnx" else "litert"

    def check(self, facts: DeviceFacts, label: str, model_format: str) -> None:
        if "python3" not in facts.tools:
            raise UserError(f"{label}: no python3 on the device, which the runner needs; install python3 with "
                            "ai-edge-litert (or tflite-runtime) there, or pass --benchmark-binary with LiteRT's "
                            "benchmark_model for the device")

    def exec_check(self, transport: Transport, remote: str) -> None:
        """Nothing to start: python3 was found in pre-flight, and a missing runtime is reported by the runner."""

    def command(self, remote_tool, remote_model, settings, taskset, cpus):
        from mnetdeploy.devices.ssh import runner_command

        return runner_command(remote_tool, remote_model, settings, taskset, None if taskset else cpus)

    def parse(self, result: ShellResult, label: str, settings: DeviceSettings) -> Trial:
        from mnetdeploy.bench.stats import summarize
        from mnetdeploy.devices.ssh import parse_runner_output

        raw = parse_runner_output(result, label)
        samples = [float(x) for x in raw["samples_ms"]]
        stats = summarize(samples)
        warnings = []
        affinity = raw.get("affinity")
        if affinity and affinity.get("error"):
            warnings.append(f"could not pin to the chosen cores on the board ({affinity['error']}): not pinned")
        if raw.get("peak_rss_source") == "getrusage":
            warnings.append("the board has no /proc/self/status: peak memory is getrusage's ru_maxrss (may include "
                            "the interpreter's start-up and, under emulation, the emulator) and no baseline")
        peak, base = raw.get("peak_rss_mb"), raw.get("baseline_rss_mb")
        execution = dict(raw.get("execution") or {}, runtime_package=raw.get("runtime_package"),
                         runtime_version=raw.get("runtime_version"))
        return Trial(count=len(samples), mean_ms=stats.mean, std_ms=stats.std, min_ms=stats.min, max_ms=stats.max,
                     p50_ms=stats.p50, percentiles={"p50": stats.p50, "p90": stats.p90, "p99": stats.p99},
                     init_ms=raw.get("init_ms"), first_ms=raw.get("first_ms"), warmup_ms=raw.get("warmup_ms"),
                     peak_mb=peak, baseline_mb=base,
                     model_mb=None if peak is None or base is None else peak - base,
                     measured_seconds=raw.get("measured_seconds") or sum(samples) / 1000.0, samples_ms=samples,
                     execution=execution, warnings=warnings,
                     facts={k: raw.get(k) for k in ("runtime_package", "runtime_version", "numpy_version", "python",
                                                    "machine", "inputs")})


def _exit_description(status: int) -> str:
    if status == 0:
        return ""
    if status > 128:
        try:
            return f"it was killed by {signal.Signals(status - 128).name} (exit status {status})"
        except ValueError:
            pass
    return f"it exited with status {status}"


# ------------------------------------------------------------------------------------------- the job

def open_transport(target: Target, settings: DeviceSettings) -> Transport:
    if target.kind == "ssh":
        from mnetdeploy.devices.ssh import SshTransport

        return SshTransport(target, settings.ssh_options)
    from mnetdeploy.devices.adb import AdbClient, AdbTransport, select_device

    from_environment = os.environ.get("ANDROID_SERIAL") or None
    if settings.serial and target.serial and settings.serial not in (target.serial, from_environment):
        raise UserError(f"serial {settings.serial} and device {target.kind}:{target.serial} name different "
                        "devices; give one")
    client = AdbClient(settings.adb, target.adb_server or settings.adb_server)
    # The serial typed in --device wins over --serial / $ANDROID_SERIAL.
    entry = select_device(client, target.serial or settings.serial or from_environment)
    return AdbTransport(client, entry.serial, android=target.kind == "android")


class DeviceBenchmark:
    """One model on one device: pre-flight, copy, hygiene, trials, result (see the module docstring)."""

    def __init__(self, model_path: str | Path, device: str, settings: DeviceSettings,
                 progress: ProgressFn | None = None) -> None:
        self.model_path = Path(model_path)
        self.target = parse_target(device)
        self.settings = settings
        self.progress = progress
        self.phases: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str, label: str | None = None):
        if self.progress is not None:
            self.progress({"event": "phase", "phase": label or name})
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - start

    def run(self):
        from mnetdeploy.bench.environment import inspect_model
        from mnetdeploy.bench.host import resolve_runtime

        settings = self.settings
        settings.check_for_device()
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self.phase("preflight"):
            model = inspect_model(self.model_path)
            resolve_runtime(model.path, model.format, settings.runtime)
            binary = inspect_binary(settings.benchmark_binary) if settings.benchmark_binary else None
            if binary is None and (settings.use_gpu or settings.use_nnapi):
                raise UserError("--use-gpu/--use-nnapi are benchmark_model flags; pass --benchmark-binary")
            transport = open_transport(self.target, settings)
        lost, cleaned, run_dir, lock = False, False, None, None
        try:
            with self.phase("preflight"):
                facts = read_facts(transport)
                if transport.label.startswith("android:") and not facts.android:
                    transport.label = transport.label.replace("android:", "adb-linux:", 1)  # no getprop: not Android
                # Where files may go and run depends on what the device is, not on how it was named.
                transport.base_dir = ANDROID_BASE if facts.android else LINUX_BASE
                identity = read_identity(transport, binary.sha256 if binary else None)
                tool = self._choose_tool(binary, facts, transport, model.format)
                tool.check(facts, transport.label, model.format)
                pinning = self._pinning(facts)
            # One benchmark at a time per device, before anything on it is looked at or changed (occupancy.py).
            run = run_id()
            with self.phase("lock", "waiting for the device"):
                lock = DeviceLock(transport, transport.base_dir, run)
                lock.acquire(lock_expiry(settings, model.bytes + Path(tool.local).stat().st_size),
                             settings.lock_timeout, self._waiting)
            with self.phase("preflight"):
                # This run's own directory; a model kept by --keep is reused where it is.
                run_dir = f"{transport.base_dir}/runs/{run}"
                kept_dir = f"{transport.base_dir}/{model.sha256[:16]}"
                tool_dir = f"{transport.base_dir}/bin/{tool.sha256[:16]}"
                remote_tool = f"{tool_dir}/{tool.remote_name}"
                kept_model = f"{kept_dir}/model.{model.format}"
                present = remote_hashes(transport, [kept_model, remote_tool], "sha256sum" in facts.tools)
                model_dir = kept_dir if settings.keep or present.get(kept_model) == model.sha256 else run_dir
                remote_model = f"{model_dir}/model.{model.format}"
                files = [(model.path, remote_model, model.sha256, model.bytes),
                         (tool.local, remote_tool, tool.sha256, Path(tool.local).stat().st_size)]
                missing = [f for f in files if present.get(f[1]) != f[2]]
                space = check_space(transport, facts, sum(f[3] for f in missing))
            with self.phase("push", "copying to the device"):
                pushed = copy_files(transport, missing, tool_dir, remote_tool)
                if remote_tool in pushed:
                    tool.exec_check(transport, remote_tool)
                    evict_older_tools(transport, tool_dir, remote_tool)
            trials = self._trials(transport, tool, remote_tool, remote_model, pinning, facts, f"{run_dir}/bench.pid")
            with self.phase("parse"):
                after = parse_facts(transport.check(FACTS_SCRIPT, 60.0, "reading the device state after the run")
                                    .stdout)
            self._cleanup(transport, run_dir)   # before the result, so its phases_s include it
            cleaned = True
            with self.phase("parse"):
                result = assemble_result(model, facts, after, transport, tool, pinning, trials, settings, started,
                                         self.phases, {"pushed": [Path(p).name for p in pushed],
                                                       "model_dir": model_dir, "tool": remote_tool, "free_kb": space,
                                                       "kept": settings.keep})
                result.identity = identity
                return result
        except DeviceLost:
            lost = True   # nothing to clean on a device that is gone, and every attempt would wait on it
            raise
        finally:
            if not lost and not cleaned:
                self._cleanup(transport, run_dir)
            if lock is not None:
                lock.forget() if lost else lock.release()
            transport.close()

    def _waiting(self, message: str) -> None:
        if self.progress is not None:
            self.progress({"event": "wait", "message": message})

    def _choose_tool(self, binary: BinaryInfo | None, facts: DeviceFacts, transport: Transport, model_format: str):
        if binary is not None:
            return BenchmarkModelTool(binary)
        if facts.android and self.target.kind == "android":
            raise UserError(f"benchmark_binary: {transport.label} is an Android device, which runs LiteRT's "
                            f"benchmark_model; {WHERE_TO_GET}")
        return RunnerTool(model_format)

    def _pinning(self, facts: DeviceFacts) -> Pinning:
        if self.settings.cpu_mask:
            return parse_cpu_mask(self.settings.cpu_mask, facts.cpus)
        return big_core_mask(facts.cpus, self.settings.threads)

    def _trials(self, transport, tool, remote_tool, remote_model, pinning, facts, pidfile) -> list[Trial]:
        settings = self.settings
        taskset = pinning.hex if pinning.mask is not None and "taskset" in facts.tools else None
        command = tool.command(remote_tool, remote_model, settings, taskset, pinning.cpus)
        trials = []
        for k in range(settings.trials):
            step = f" {k + 1}/{settings.trials}" if settings.trials > 1 else ""
            with self.phase("cool-down", f"cooling down{step}"):
                cooldown = wait_until_cool(lambda: read_thermal(transport), settings.max_temp,
                                           settings.cool_timeout)
            with self.phase("run", f"benchmarking{step}"):
                result = run_killable(transport, command, pidfile, settings.run_timeout, f"the benchmark run{step}")
            with self.phase("parse"):
                trial = tool.parse(result, transport.label, settings)
            with self.phase("cool-down"):
                trial.thermal_after = read_thermal(transport)
            trial.cooldown = cooldown.as_dict()
            trial.execution["command"] = command
            trials.append(trial)
        return trials

    def _cleanup(self, transport: Transport, run_dir: str | None) -> None:
        """Remove this run's directory (never a kept model, never another run's files)."""
        if not run_dir:
            return
        with self.phase("cleanup"):
            try:
                transport.shell(f"rm -rf {quote(run_dir)}", 60.0, "removing this run's files from the device")
            except UserError:
                pass  # the result (or the error being raised) matters more than a leftover directory


# ------------------------------------------------------------------------------------------- copying

def remote_hashes(transport: Transport, paths: list[str], has_sha256sum: bool) -> dict[str, str]:
    """sha256 of the files the device already has at `paths`: computed there by sha256sum when it exists,
    else read from the `.sha256` marker written after our own copy (a cut copy never gets one)."""
    quoted = " ".join(quote(p) for p in paths)
    if has_sha256sum:
        script = f'for f in {quoted}; do [ -f "$f" ] && sha256sum "$f" 2>/dev/null; done; true'
    else:
        script = (f'for f in {quoted}; do [ -f "$f" ] && [ -r "$f.sha256" ] && read -r h < "$f.sha256" '
                  f'&& echo "$h  $f"; done; true')
    result = transport.check(script, 120.0, "checking which files the device already has")
    found = {}
    for line in result.stdout.splitlines():
        digest, _, path = line.strip().partition("  ")
        if len(digest) == 64 and path:
            found[path.lstrip("*")] = digest.lower()
    return found


def parse_df_available_kb(text: str) -> int | None:
    """The "Available" column of `df -k PATH` (toybox, busybox and GNU alike; a long device name may wrap)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    tokens = " ".join(lines[1:]).split()
    if len(tokens) < 4:
        return None
    available = tokens[-3]
    return int(available) if available.isdigit() else None


def check_space(transport: Transport, facts: DeviceFacts, need_bytes: int) -> int | None:
    """Free KiB where our files go; UserError (exit 2) when what must be copied does not fit."""
    if need_bytes == 0 or "df" not in facts.tools:
        return None
    parent = transport.base_dir.rsplit("/", 1)[0] or "/"
    result = transport.shell(f"df -k {quote(parent)}", 30.0, "reading the free space")
    available_kb = parse_df_available_kb(result.stdout) if result.status == 0 else None
    if available_kb is None:
        return None
    if available_kb * 1024 < need_bytes + SPACE_HEADROOM:
        raise UserError(f"{transport.label}: not enough space in {parent}: {available_kb / 1024:.1f} MiB free, "
                        f"{(need_bytes + SPACE_HEADROOM) / (1 << 20):.1f} MiB needed for the model and the "
                        f"benchmark tool; free space on the device (e.g. remove old files in {parent}) and re-run")
    return available_kb


def copy_files(transport: Transport, files: list[tuple[Path, str, str, int]], tool_dir: str,
               remote_tool: str) -> list[str]:
    """Copy the missing files, mark them with their sha256, make the tool executable; returns what was copied.
    A copy that fails removes the directories it was making (no empty or half-filled cache entry is left)."""
    if not files:
        return []
    directories = sorted({remote.rsplit("/", 1)[0] for _, remote, _, _ in files})
    transport.check("mkdir -p " + " ".join(quote(d) for d in directories), 60.0, "creating the directories")
    try:
        for local, remote, _, size in files:
            transport.push(Path(local), remote, push_timeout(size))
    except DeviceLost:
        raise
    except BaseException:
        with contextlib.suppress(UserError):
            transport.shell("rm -rf " + " ".join(quote(d) for d in directories), 60.0, "removing a failed copy")
        raise
    markers = "; ".join(f"echo {digest} > {quote(remote + '.sha256')}" for _, remote, digest, _ in files)
    finish = [markers]
    if any(remote == remote_tool for _, remote, _, _ in files):
        finish.append(f"chmod 755 {quote(remote_tool)}")
    transport.check("; ".join(finish), 60.0, "finishing the copy")
    return [remote for _, remote, _, _ in files]


def evict_older_tools(transport: Transport, tool_dir: str, remote_tool: str) -> None:
    """Drop older copies of the same tool: the cache holds one benchmark_model, not one per version. Only once
    the new one has started, so a broken binary never evicts the good one."""
    name = remote_tool.rsplit("/", 1)[1]
    bin_dir = tool_dir.rsplit("/", 1)[0]
    transport.check(f'for d in {quote(bin_dir)}/*; do [ "$d" != {quote(tool_dir)} ] && [ -e "$d/{name}" ] '
                    f'&& rm -rf "$d"; done; true', 60.0, "removing older copies of the tool")


# ------------------------------------------------------------------------------------------- the result

def cooldown_warnings(cooldowns: list[dict[str, Any]], max_temp: float) -> list[str]:
    """One warning for all trials that started hot (not one per trial), one for a device without sensors."""
    hot = [c for c in cooldowns if c.get("cooled") is False]
    warnings = []
    if hot:
        n = len(cooldowns)
        which = "the trial" if n == 1 else f"all {n} trials" if len(hot) == n else f"{len(hot)} of {n} trials"
        warnings.append(f"the device was still up to {max(c['end_c'] for c in hot):g} °C (hottest CPU zone) before "
                        f"{which} after waiting up to {max(c['waited_s'] for c in hot):g} s for {max_temp:g} °C: it "
                        "may be throttling; let it cool, or raise --cool-timeout")
    if any(c.get("cooled") is None for c in cooldowns):
        warnings.append("the device exposes no readable thermal zone: its temperature was not checked")
    return warnings


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _combine(trials: list[Trial]):
    """LatencyStats over the trials of a tool that prints no per-run times (see the module docstring)."""
    from mnetdeploy.bench.schema import LatencyStats

    n = sum(t.count for t in trials) or len(trials)
    counts = [t.count or 1 for t in trials]
    mean = sum(c * t.mean_ms for c, t in zip(counts, trials)) / sum(counts)
    std = None
    if all(t.std_ms is not None for t in trials):
        within = sum((c - 1) * t.std_ms ** 2 for c, t in zip(counts, trials) if t.std_ms is not None)
        between = sum(c * (t.mean_ms - mean) ** 2 for c, t in zip(counts, trials))
        std = math.sqrt((within + between) / (n - 1)) if n > 1 else trials[0].std_ms
    mins = [t.min_ms for t in trials if t.min_ms is not None]
    maxs = [t.max_ms for t in trials if t.max_ms is not None]
    p50s = [t.p50_ms for t in trials if t.p50_ms is not None]
    p50 = statistics.median(p50s) if len(p50s) == len(trials) else None
    r = lambda x: None if x is None else round(x, 6)  # noqa: E731
    return LatencyStats(mean=round(mean, 6), std=r(std), min=r(min(mins)) if mins else None,
                        max=r(max(maxs)) if maxs else None, p50=r(p50), p90=None, p99=None)


def assemble_result(model, facts: DeviceFacts, after: DeviceFacts, transport: Transport, tool, pinning: Pinning,
                    trials: list[Trial], settings: DeviceSettings, started: str, phases: dict[str, float],
                    files: dict[str, Any]):
    from mnetdeploy import __version__
    from mnetdeploy.bench.environment import environment_warnings
    from mnetdeploy.bench.schema import BenchResult, InputsInfo
    from mnetdeploy.bench.stats import summarize

    warnings: list[str] = []
    if all(t.samples_ms for t in trials):
        samples = [s for t in trials for s in t.samples_ms]
        exact = summarize(samples)
        stats = type(exact)(**{k: round(v, 6) for k, v in vars(exact).items()})
        samples_kind = "per_run"
    else:
        stats = _combine(trials)
        if len(trials) > 1:
            with_median = all(t.p50_ms is not None for t in trials)
            samples = [round(t.p50_ms if with_median and t.p50_ms is not None else t.mean_ms, 6) for t in trials]
            samples_kind = "trial_p50" if with_median else "trial_mean"
        else:
            samples, samples_kind = [], "none"
            warnings.append("benchmark_model prints no per-run times, so samples_ms is empty; for a distribution "
                            "(the gate's --baseline check needs one) bench with --trials K")
        warnings.append("benchmark_model prints no p90/p99 (only p5, median, p95): latency_ms.p90 and p99 are "
                        "null; budget p50 for device results")
    if len(trials) > 1:
        centres = [t.p50_ms if t.p50_ms is not None else t.mean_ms for t in trials]
        spread = (max(centres) - min(centres)) / statistics.median(centres)
        if spread > 0.10:
            warnings.append(f"trial medians differ by {100 * spread:.0f}% ({min(centres):.3g}-{max(centres):.3g} "
                            "ms): thermal throttling or background load on the device")

    environment = device_environment(model, facts, after, transport, tool, pinning, trials, settings, __version__)
    warnings += environment_warnings(environment)
    if pinning.mask is None:
        warnings.append(f"{pinning.source}: the benchmark may run on little cores")
    elif "taskset" not in facts.tools and tool.runtime == "benchmark_model":
        warnings.append("the device has no taskset: not pinned to the chosen cores")
    warnings += cooldown_warnings([t.cooldown or {} for t in trials], settings.max_temp)
    for t in trials:
        warnings += t.warnings
    warnings = list(dict.fromkeys(warnings))

    first = trials[0]
    peaks = [t.peak_mb for t in trials if t.peak_mb is not None]
    models_mb = [t.model_mb for t in trials if t.model_mb is not None]
    peak = max(peaks) if peaks else None
    model_mb = max(models_mb) if models_mb else None
    baseline = None if peak is None or model_mb is None else max(peak - model_mb, 0.0)
    execution = {key: value for key, value in first.execution.items() if key != "command"}
    execution.update(
        tool=tool.runtime if tool.runtime == "benchmark_model" else "remote_runner.py",
        command=first.execution.get("command"), samples_kind=samples_kind, trials=[t.summary() for t in trials],
        tool_percentiles={k: v for k, v in first.percentiles.items() if k != "p50"} or None,
        files=files, phases_s={k: round(v, 3) for k, v in phases.items()})
    inputs = first.facts.get("inputs") or {"kind": "random", "count": 1, "seed": None, "directory": None}
    r = lambda x, d=4: None if x is None else round(x, d)  # noqa: E731
    return BenchResult(
        model=str(model.path), format=model.format, precision=model.precision, runtime=tool.runtime,
        device=transport.label, threads=settings.threads,
        xnnpack=None if tool.runtime == "onnxruntime" else bool(settings.xnnpack),
        runs=sum(t.count for t in trials), warmup_runs=settings.warmup, min_seconds=settings.min_seconds,
        measured_seconds=round(sum(t.measured_seconds for t in trials), 4),
        init_ms=r(_median([t.init_ms for t in trials])), first_ms=r(_median([t.first_ms for t in trials])),
        warmup_ms=r(_median([t.warmup_ms for t in trials])), latency_ms=stats, samples_ms=samples,
        peak_rss_mb=r(peak, 2), baseline_rss_mb=r(baseline, 2), model_rss_mb=r(model_mb, 2),
        inputs=InputsInfo(**inputs), execution=execution, environment=environment, timestamp=started,
        warnings=warnings)


def device_environment(model, facts: DeviceFacts, after: DeviceFacts, transport: Transport, tool, pinning: Pinning,
                       trials: list[Trial], settings: DeviceSettings, version: str) -> dict[str, Any]:
    """The host environment's keys (so the report and gate read device results alike) plus the device's own."""
    props = facts.properties
    runner = trials[0].facts
    android = facts.android
    os_name = (f"Android {props.get('ro.build.version.release', '?')} (SDK {props.get('ro.build.version.sdk', '?')})"
               if android else (facts.uname.rsplit(" ", 1)[0] if facts.uname else None))
    binary = tool.binary.as_dict() if isinstance(tool, BenchmarkModelTool) else \
        {"path": str(tool.local), "sha256": tool.sha256, "kind": "script", "machine": None,
         "interpreter": "python3"}
    zones_considered = sorted(cpu_zones(trials[0].cooldown.get("zones") or {}) if trials[0].cooldown else [])
    packages: dict[str, str | None] = {"mnetdeploy": version}
    if runner.get("runtime_package"):
        packages[str(runner["runtime_package"]).replace("_", "-")] = runner.get("runtime_version")
        packages["numpy"] = runner.get("numpy_version")
    else:
        packages["benchmark_model"] = f"sha256:{tool.sha256[:16]}"
    return {
        "cpu_model": facts.soc(),
        "cpu_features": facts.cpu_features(),
        "cpu_count": len(facts.cpus) or None,
        "cpu_affinity": pinning.cpus or None,
        "threads": settings.threads,
        "cpufreq": cpufreq_record(facts.cpus),
        "cpufreq_after": cpufreq_record(after.cpus),
        "load_average": facts.load_average,
        "os": os_name,
        "kernel": facts.uname.split()[1] if len(facts.uname.split()) >= 3 else None,
        "machine": runner.get("machine") or facts.machine or None,
        "hostname": transport.label,
        "python": runner.get("python"),
        "runtime": tool.runtime,
        "packages": packages,
        "model": {"path": str(model.path), "sha256": model.sha256, "bytes": model.bytes,
                  "input_shape": list(model.input_shape), "input_dtype": model.input_dtype},
        "device": {
            "label": transport.label, "android": android,
            "model": props.get("ro.product.model"), "manufacturer": props.get("ro.product.manufacturer"),
            "soc": facts.soc(), "board_platform": props.get("ro.board.platform"),
            "abi": props.get("ro.product.cpu.abi"), "abilist": facts.abis() or None,
            "android_version": props.get("ro.build.version.release"), "sdk": props.get("ro.build.version.sdk"),
            "build_fingerprint": props.get("ro.build.fingerprint"), "uname": facts.uname or None,
            "mem_total_mb": round(facts.mem_total_kb / 1024) if facts.mem_total_kb else None,
        },
        "transport": transport.describe(),
        "pinning": {"taskset_mask": pinning.hex, "cpus": pinning.cpus or None, "source": pinning.source,
                    "taskset": "taskset" in facts.tools},
        "thermal": {"max_temp_c": settings.max_temp, "cool_timeout_s": settings.cool_timeout,
                    "cpu_zones": zones_considered,
                    "trials": [{"waited_s": (t.cooldown or {}).get("waited_s"),
                                "cooled": (t.cooldown or {}).get("cooled"),
                                "before": (t.cooldown or {}).get("zones"), "after": t.thermal_after}
                               for t in trials]},
        "benchmark_binary": binary,
        "collected": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def benchmark_on_device(model_path: str | Path, device: str, settings: DeviceSettings | None = None,
                        progress: ProgressFn | None = None):
    """Benchmark one model on `device` ("android[:SERIAL]", "adb-linux[:SERIAL]", "ssh://[USER@]HOST[:PORT]");
    returns a BenchResult (mnetdeploy/bench/schema.py)."""
    return DeviceBenchmark(model_path, device, settings or DeviceSettings(), progress).run()


__all__ = ["BenchmarkModelTool", "BinaryInfo", "DeviceBenchmark", "RunnerTool", "Trial", "WHERE_TO_GET",
           "benchmark_on_device", "check_abi", "cooldown_warnings", "inspect_binary", "parse_df_available_kb"]


def device_identity(device: str, settings: DeviceSettings | None = None, **values: Any) -> dict[str, Any]:
    """Ask `device` ("android[:SERIAL]", "adb-linux[:SERIAL]", "ssh://...") who it is; settings are DeviceSettings
    fields (adb, adb_server, serial, ssh_options, benchmark_binary), as an object or as `values`. UserError, exit 2,
    when the device is absent, unauthorized, offline or unreachable."""
    from mnetdeploy.config import validated

    options = settings or validated(DeviceSettings, values, "device_identity")
    binary = inspect_binary(options.benchmark_binary).sha256 if options.benchmark_binary else None
    transport = open_transport(parse_target(device), options)
    try:
        return read_identity(transport, binary)
    except DeviceLost as exc:
        # Gone between `adb devices` and the question: to a caller building a cache key that is "no device".
        raise UserError(str(exc).replace("; no result was recorded", ""), exit_code=EXIT_USAGE) from None
    finally:
        transport.close()
