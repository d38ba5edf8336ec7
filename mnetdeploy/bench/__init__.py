"""Latency and memory benchmarks of exported models.

    from mnetdeploy.bench import run_benchmark
    result = run_benchmark("artifacts/v2_1.0_224/model.tflite", threads=2, runs=100)
    result.latency_ms.p50, result.peak_rss_mb, result.to_dict()

`run_benchmark` dispatches on `device`: "host" (this machine, bench/host.py), "android[:SERIAL]" (LiteRT's
benchmark_model over adb), "adb-linux[:SERIAL]" and "ssh://[USER@]HOST[:PORT]" (Linux boards, the Python runner
or benchmark_model); every backend returns the same `BenchResult` (see schema.py and mnetdeploy/devices/).
Submodules that need heavy libraries import them inside functions; importing this package stays cheap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnetdeploy.bench.schema import SCHEMA_VERSION, BenchResult, InputsInfo, LatencyStats
from mnetdeploy.errors import UserError
from mnetdeploy.fsutil import visible_files

if TYPE_CHECKING:
    from mnetdeploy.config import HostSettings

BENCH_SUFFIXES = {".tflite": "litert", ".onnx": "onnxruntime"}
DEVICES = ("host", "android", "adb-linux", "ssh://")   # "ssh://" stands for ssh://[USER@]HOST[:PORT]


def check_device(device: str) -> None:
    """UserError unless `device` names a device bench can use (the device itself is checked when it runs)."""
    if device == "host":
        return
    from mnetdeploy.devices import parse_target  # light: no device is contacted

    parse_target(device)


def run_benchmark(model_path: str | Path, device: str = "host",
                  progress: Callable[[dict[str, Any]], None] | None = None,
                  settings: HostSettings | None = None, **values: Any) -> BenchResult:
    """Benchmark one model on `device` with `settings`, or with settings made from `values` (runtime, threads,
    warmup, runs, min_seconds, xnnpack, inputs, seed; devices also take the `DeviceSettings` fields: adb,
    serial, benchmark_binary, trials, ...; all declared in mnetdeploy/config.py). `progress` receives
    phase/progress events."""
    from mnetdeploy.config import DeviceSettings, HostSettings, validated

    on_host = device == "host"
    if settings is None:
        settings = validated(HostSettings if on_host else DeviceSettings, values, "run_benchmark")
    elif values:
        raise TypeError("run_benchmark: pass settings or values, not both")
    if on_host:
        # Imported here, not at the top: `python -m mnetdeploy.bench.host` (the measuring child) would
        # otherwise find the module already imported by this package and warn.
        from mnetdeploy.bench.host import benchmark_on_host

        return benchmark_on_host(model_path, settings, progress)
    check_device(device)
    from mnetdeploy.devices.android import benchmark_on_device

    if not isinstance(settings, DeviceSettings):
        settings = DeviceSettings(**settings.model_dump())
    return benchmark_on_device(model_path, device, settings, progress)


def find_models(targets: list[str | Path], runtime: str = "auto", device: str = "host",
                notes: list[str] | None = None) -> list[Path]:
    """The model files named by `targets`: files as given, directories expanded to their .tflite/.onnx
    files (sorted by name; with --runtime litert/onnxruntime only that runtime's files). On an android device
    with runtime auto a directory means its .tflite files: benchmark_model runs nothing else, and quantize
    writes ONNX beside TFLite by default; what was left out is said in `notes`."""
    wanted = {s for s, rt in BENCH_SUFFIXES.items() if runtime in ("auto", rt)}
    android = runtime == "auto" and device.partition(":")[0] == "android"
    if android:
        wanted = {".tflite"}
    models: list[Path] = []
    for target in targets:
        path = Path(target)
        if path.is_dir():
            found = visible_files(path, wanted)  # no atomic-write temporaries
            left_out = visible_files(path, {".onnx"}) if android else []
            if left_out and notes is not None:
                notes.append(f"{path}: left out {len(left_out)} .onnx file(s) ({', '.join(p.name for p in left_out)}): "
                             "on android, benchmark_model runs .tflite only; bench ONNX on the host or on a Linux "
                             "board (--device ssh://HOST or adb-linux)")
            if not found:
                kinds = " or ".join(sorted(wanted))
                why = " (its .onnx files cannot run on android's benchmark_model)" if left_out else ""
                raise UserError(f"{path}: no {kinds} models in this directory{why}; export the model first or "
                                "pass a model file")
            models.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in BENCH_SUFFIXES:
                raise UserError(f"{path}: bench runs .tflite and .onnx models (got {path.suffix or 'no suffix'}); "
                                "export the model first")
            models.append(path)
        else:
            raise UserError(f"{path}: no such model file or directory")
    return models


# ------------------------------------------------------------------------------------- console output

def display_name(path: str | Path) -> str:
    """A model path relative to the working directory when it is under it (shorter table rows)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@contextlib.contextmanager
def bench_progress(console):
    """A progress bar per model on `console` (stderr); yields `track(path)` -> a run_benchmark progress callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    def wait_note(event: dict[str, Any]) -> None:  # waiting for a busy device: worth a line even without a bar
        if event["event"] == "wait":
            console.print(f"note: {event['message']}", soft_wrap=True, highlight=False)

    if not console.is_terminal:  # CI logs and pipes: a line per model once it runs, instead of a bar
        def lines(path: str | Path) -> Callable[[dict[str, Any]], None]:
            name = display_name(path)

            def update(event: dict[str, Any]) -> None:
                wait_note(event)
                # Only once measuring starts: a model that fails to load stays a one-line error.
                if event["event"] == "phase" and event["phase"] == "measure":
                    console.print(f"... {name}: measuring", markup=False, highlight=False, soft_wrap=True)
            return update
        yield lines
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        def track(path: str | Path) -> Callable[[dict[str, Any]], None]:
            name = display_name(path)
            task = bar.add_task(f"{name}: starting", total=None)

            def update(event: dict[str, Any]) -> None:
                if event["event"] == "phase":
                    bar.update(task, description=f"{name}: {event['phase']}")
                elif event["event"] == "progress":
                    bar.update(task, completed=event["done"], total=event["target"])
                else:
                    wait_note(event)
            return update
        yield track


def results_table(results: list[BenchResult]):
    from rich import box
    from rich.table import Table

    folders = {str(Path(display_name(r.model)).parent) for r in results}
    common = folders.pop() if len(folders) == 1 else None  # one folder: say it once, in the title
    title = "latency ms, peak RSS MiB (+ the model's share)" + (f" - {common}" if common else "")
    devices = {r.device for r in results}
    if devices != {"host"}:  # a device benchmark: say where the numbers come from
        title += " on " + ", ".join(sorted(devices))
    header = ("model", "runtime", "precision", "threads", "runs", "p50", "p90", "mean±std", "min", "init", "first",
              "peak RSS")
    def num(value, fmt: str) -> str:  # device results may lack a value (benchmark_model prints no p90)
        return "-" if value is None else format(value, fmt)

    rows = []
    for r in results:
        lat = r.latency_ms
        runtime = r.runtime if r.xnnpack is None else f"{r.runtime}{'+xnnpack' if r.xnnpack else ' no-xnnpack'}"
        rows.append((Path(r.model).name if common else display_name(r.model), runtime, r.precision,
                     str(r.threads), str(r.runs), num(lat.p50, ".3f"), num(lat.p90, ".3f"),
                     f"{num(lat.mean, '.3f')}±{num(lat.std, '.3f')}", num(lat.min, ".3f"), num(r.init_ms, ".1f"),
                     num(r.first_ms, ".2f"), f"{num(r.peak_rss_mb, '.0f')} (+{num(r.model_rss_mb, '.0f')})"))
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, col in enumerate(header):
        if col == "model":  # on a narrow terminal the model path folds; numbers keep their full width
            table.add_column(col, overflow="fold", min_width=12)
        else:
            width = max(len(col), *(len(row[i]) for row in rows))
            table.add_column(col, justify="left" if col in ("runtime", "precision") else "right",
                             min_width=width, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


__all__ = ["run_benchmark", "find_models", "check_device", "results_table", "bench_progress", "BenchResult",
           "LatencyStats", "InputsInfo", "SCHEMA_VERSION",
           "DEVICES"]
