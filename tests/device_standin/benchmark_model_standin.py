#!/usr/bin/env python3
"""STAND-IN for TensorFlow Lite / LiteRT's `benchmark_model` binary. TEST USE ONLY.

It replaces the user's real benchmark_model binary (android_aarch64_benchmark_model), which is a prebuilt
download from outside the package registries and so cannot be fetched on this machine. The tests push this
file to the stand-in phone and run it with the phone's python3, so the model really executes as aarch64 code
(qemu-user) in the real aarch64 build of LiteRT (ai_edge_litert's interpreter, XNNPACK included).

What it imitates, and how faithfully:
- the command line: the real tool's flags (`--graph=`, `--num_threads=`, `--warmup_runs=`, `--warmup_min_secs=`,
  `--num_runs=`, `--min_secs=`, `--max_secs=`, `--use_xnnpack=`, `--use_gpu=`, `--use_nnapi=`,
  `--enable_op_profiling=`, `--report_peak_memory_footprint=`, `--verbose=`); unknown flags get the real tool's
  "Unconsumed cmdline flags" warning; malformed values fail;
- the output: TF 2.x's format, on stderr like the real tool's TFLITE_LOG (shared outputs 02 and 05): `INFO:` lines,
  the warm-up and measured phases' `count=… first=… curr=… min=… max=… avg=… std=…` lines (microseconds,
  std truncated to an integer and avg printed with 6 significant digits, as tensorflow's Stat class does)
  followed by `p5=… median=… p95=…` (set BENCHMARK_STANDIN_PERCENTILES=0 for the older, percentile-less output
  of file 05), the closing `Inference timings in us:` line and the memory footprint lines;
- the run loop: each phase runs at least N iterations and at least S seconds, stopping past --max_secs;
- failures: `ERROR: …` lines then `ERROR: Benchmarking failed.` and exit status 1, when the graph is missing or
  cannot be loaded, tensors cannot be allocated, an inference fails, or a GPU/NNAPI delegate is asked for and its
  driver library (libOpenCL.so, libneuralnetworks.so) cannot be loaded (the stand-in phone has neither).

- inputs from files and outputs to a file, as benchmark_tflite_model.cc does them: `--input_layer=a,b`,
  `--input_layer_shape=1,224,224,3:1,20` (one shape per name, else an ERROR; a tensor named differently from the
  flag gets the real WARN; the input is resized to the shape), `--input_layer_value_files=a:FILE,...` (name and
  file split at the first ':' not doubled, '::' standing for ':'; a name missing from --input_layer and a file
  whose size is not the tensor's bytes are FATAL, i.e. killed by SIGABRT, exit status 134), the file's bytes
  fed before every run; `--output_filepath=FILE`: after the last run, the raw bytes of every output tensor in
  output order (nothing written when the file cannot be opened, as the real OutputSaver);

What it cannot imitate: per-operator profiling (the Python interpreter API exposes no op profiler, so
`--enable_op_profiling=true` prints a WARNING and no table); memory figures come from getrusage's peak RSS of the
process, which under qemu-user includes the emulator itself. It also prints one line the real tool does not,
`INFO: Stand-in machine: [aarch64]` (platform.machine()), so a test can prove the model ran as ARM code.
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
import resource
import sys
import time

TRUE_WORDS = {"true", "1"}
FALSE_WORDS = {"false", "0"}

# name -> (type, default). Defaults are the real tool's.
FLAGS = {
    "graph": (str, ""),
    "num_threads": (int, -1),
    "warmup_runs": (int, 1),
    "warmup_min_secs": (float, 0.5),
    "num_runs": (int, 50),
    "min_secs": (float, 1.0),
    "max_secs": (float, 150.0),
    "use_xnnpack": (bool, None),      # None: not given; the runtime applies XNNPACK by default
    "use_gpu": (bool, False),
    "use_nnapi": (bool, False),
    "enable_op_profiling": (bool, False),
    "report_peak_memory_footprint": (bool, False),
    "verbose": (bool, False),
    "input_layer": (str, ""),
    "input_layer_shape": (str, ""),
    "input_layer_value_files": (str, ""),
    "output_filepath": (str, ""),
}

# How the real tool names each flag when it logs the parameter values.
FLAG_LABELS = {
    "num_runs": "Min num runs", "min_secs": "Min runs duration (seconds)", "max_secs": "Max runs duration (seconds)",
    "num_threads": "Num threads", "warmup_runs": "Min warmup runs",
    "warmup_min_secs": "Min warmup runs duration (seconds)", "graph": "Graph",
    "enable_op_profiling": "Enable op profiling", "use_gpu": "Use gpu", "use_nnapi": "Use NNAPI",
    "use_xnnpack": "Use xnnpack", "report_peak_memory_footprint": "Report the peak memory footprint",
}


class BenchmarkError(Exception):
    """Ends the run: each line is logged at ERROR, then "Benchmarking failed."."""

    def __init__(self, *lines: str):
        super().__init__(lines[0] if lines else "")
        self.lines = lines


def log(severity: str, message: str) -> None:
    sys.stderr.write(f"{severity}: {message}\n")
    sys.stderr.flush()  # the runtime's own C++ log lines go to the same stderr; keep the order


def parse_flags(args: list[str]) -> tuple[dict, list[str], list[str]]:
    """(values, explicitly given flag names, unconsumed arguments)."""
    values = {name: default for name, (_, default) in FLAGS.items()}
    given: list[str] = []
    unconsumed: list[str] = []
    for arg in args:
        name, sep, text = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or not sep or name not in FLAGS:
            unconsumed.append(arg)
            continue
        kind = FLAGS[name][0]
        try:
            if kind is bool:
                if text.lower() not in TRUE_WORDS | FALSE_WORDS:
                    raise ValueError(text)
                values[name] = text.lower() in TRUE_WORDS
            else:
                values[name] = kind(text)
        except ValueError:
            raise BenchmarkError(f"Illegal value '{text}' for flag --{name}") from None
        given.append(name)
    return values, given, unconsumed


def format_value(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class Stat:
    """tensorflow/core/util/stats_calculator.h's Stat<int64_t>, printed the same way."""

    def __init__(self) -> None:
        self.values: list[int] = []

    def add(self, value_us: int) -> None:
        self.values.append(value_us)

    @property
    def avg(self) -> float:
        return sum(self.values) / len(self.values) if self.values else math.nan

    @property
    def std(self) -> int:
        if not self.values or len(set(self.values)) == 1:
            return 0
        n = len(self.values)
        variance = sum(v * v for v in self.values) / n - self.avg ** 2
        return int(math.sqrt(max(variance, 0.0)))

    def percentile(self, percent: float) -> int:
        ordered = sorted(self.values)
        return ordered[min(len(ordered) - 1, int(percent / 100.0 * len(ordered)))]

    def line(self, percentiles: bool) -> str:
        values = self.values
        if not values:
            return "count=0"
        if len(set(values)) == 1:
            text = f"count={len(values)} curr={values[-1]}" + ("(all same)" if len(values) > 1 else "")
        else:
            text = (f"count={len(values)} first={values[0]} curr={values[-1]} min={min(values)} "
                    f"max={max(values)} avg={self.avg:g} std={self.std}")
        if percentiles:
            text += (f" p5={self.percentile(5)} median={sorted(values)[len(values) // 2]}"
                     f" p95={self.percentile(95)}")
        return text


def fatal(message: str) -> None:
    """TFLITE_LOG(FATAL): the message, then abort (the shell sees status 134)."""
    log("FATAL", message)
    os._exit(134)


def split_name_and_file(item: str) -> tuple[str, str]:
    """SplitInputLayerNameAndValueFile: the first ':' not doubled splits; '::' stands for ':'."""
    delim, i = -1, 0
    while i < len(item) - 1:
        if item[i] == ":":
            if item[i + 1] == ":":
                i += 1
            elif delim == -1:
                delim = i
            else:
                raise BenchmarkError(f"{item} contains more than one delimiter.",
                                     f"Wrong input value file item specified: {item}")
        i += 1
    if delim == -1:
        raise BenchmarkError(f"{item} doesn't contain any delimiter.", f"Wrong input value file item specified: {item}")
    return item[:delim].replace("::", ":"), item[delim + 1:].replace("::", ":")


def input_layers(params: dict) -> list[dict]:
    """PopulateInputLayerInfo: [{name, shape, file}] from --input_layer, --input_layer_shape and value files."""
    names = params["input_layer"].split(",") if params["input_layer"] else []
    shapes = params["input_layer_shape"].split(":") if params["input_layer_shape"] else []
    if len(names) != len(shapes):
        raise BenchmarkError(f"The number of items in --input_layer_shape ({params['input_layer_shape']}, with "
                             f"{len(shapes)} items) must match the number of items in --input_layer "
                             f"({params['input_layer']}, with {len(names)} items). For example "
                             "--input_layer=input1,input2 --input_layer_shape=1,224,224,4:1,20")
    layers = []
    for name, shape in zip(names, shapes):
        try:
            dims = [int(d) for d in shape.split(",")]
        except ValueError:
            fatal(f"Incorrect size string specified: {shape}")
        if -1 in dims:
            raise BenchmarkError("Any unknown sizes in the shapes (-1's) must be replaced with the size you want "
                                 "to benchmark with.")
        layers.append({"name": name, "shape": dims, "file": None})
    files = params["input_layer_value_files"].split(",") if params["input_layer_value_files"] else []
    for item in files:
        name, path = split_name_and_file(item)
        match = [layer for layer in layers if layer["name"] == name]
        if not match:
            fatal(f"Cannot find the corresponding input_layer name({name}) in --input_layer as "
                  f"{params['input_layer']}")
        match[0]["file"] = path
    return layers


def read_value_file(path: str, nbytes: int):
    """LoadInputTensorData for a non-string tensor: the file's bytes, which must be the tensor's size."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        fatal(f"Failed to read the input_layer_value_file:{path}")
    if len(data) != nbytes:
        fatal(f"The size of {path} is {len(data)} bytes. It should be {nbytes} bytes.")
    return data


def save_outputs(interpreter, path: str) -> None:
    """OutputSaver: every output tensor's raw bytes, in output order; silently nothing if it cannot open."""
    try:
        with open(path, "wb") as f:
            for detail in interpreter.get_output_details():
                f.write(interpreter.get_tensor(detail["index"]).tobytes())
    except OSError:
        pass


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def require_library(delegate: str, library: str, failure: str) -> None:
    """A GPU or NNAPI delegate needs its driver library; the real tool fails to apply the delegate without it."""
    try:
        ctypes.CDLL(library)
    except OSError:
        raise BenchmarkError(failure.format(library=library), f"Failed to apply {delegate} delegate.") from None
    raise BenchmarkError(f"{delegate} delegate: found {library}, but the stand-in can only run the CPU path",
                         f"Failed to apply {delegate} delegate.")


def fill_inputs(interpreter, rng_seed: int = 0) -> None:
    import numpy as np
    rng = np.random.default_rng(rng_seed)
    for detail in interpreter.get_input_details():
        shape, dtype = detail["shape"], detail["dtype"]
        if np.issubdtype(dtype, np.floating):
            data = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        elif dtype == np.bool_:
            data = rng.integers(0, 2, size=shape).astype(np.bool_)
        else:
            info = np.iinfo(dtype)
            data = rng.integers(max(info.min, -128), min(info.max, 127), size=shape, endpoint=True).astype(dtype)
        interpreter.set_tensor(detail["index"], data)


def run_phase(interpreter, min_runs: int, min_secs: float, max_secs: float) -> Stat:
    log("INFO", f"Running benchmark for at least {min_runs} iterations and at least {min_secs:g} seconds "
                f"but terminate if exceeding {max_secs:g} seconds.")
    stat = Stat()
    start = time.perf_counter()
    min_end, max_end = start + min_secs, start + max_secs
    now = start
    while (len(stat.values) < min_runs or now < min_end) and now <= max_end:
        t0 = time.perf_counter_ns()
        try:
            interpreter.invoke()
        except RuntimeError as exc:
            raise BenchmarkError(str(exc).strip(), "Failed to invoke the interpreter") from None
        stat.add((time.perf_counter_ns() - t0) // 1000)
        now = time.perf_counter()
    return stat


def delegation_sentence(interpreter, nodes_before: int) -> str:
    """What the real tool says after applying XNNPACK explicitly, judged from the execution plan's delegate nodes."""
    native = interpreter._interpreter
    kernels = native.NumNodes() - nodes_before
    if kernels <= 0:
        return "Though XNNPACK delegate is explicitly applied, the model graph will not be executed by the delegate."
    delegate_node = native.NumNodes() - 1
    whole_graph = (kernels == 1
                   and set(native.NodeOutputs(delegate_node)) == set(native.OutputIndices())
                   and set(native.InputIndices()) <= set(native.NodeInputs(delegate_node)))
    if whole_graph:
        return "Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate."
    return ("Explicitly applied XNNPACK delegate, and the model graph will be partially executed by the delegate "
            f"w/ {kernels} delegate kernels.")


def benchmark(argv: list[str]) -> None:
    log("INFO", "STARTING!")
    params, given, unconsumed = parse_flags(argv)
    if unconsumed:
        log("WARNING", "Unconsumed cmdline flags: " + " ".join(unconsumed))
    log("INFO", f"Log parameter values verbosely: [{format_value(params['verbose'])}]")
    for name in FLAGS:
        if name in given and name in FLAG_LABELS:
            log("INFO", f"{FLAG_LABELS[name]}: [{format_value(params[name])}]")
    if "num_threads" in given:
        log("INFO", f"#threads used for CPU inference: [{params['num_threads']}]")
    log("INFO", f"Stand-in machine: [{platform.machine()}]")

    graph = params["graph"]
    if not graph:
        raise BenchmarkError("Please specify the name of your TF Lite input file with --graph")
    if not os.path.isfile(graph):
        raise BenchmarkError(f"Could not open '{graph}'.", f"Failed to mmap model {graph}")
    if params["use_gpu"]:
        log("INFO", "Created TensorFlow Lite delegate for GPU.")
        require_library("GPU", "libOpenCL.so",
                        'TfLiteGpuDelegate Init: OpenCL library not loaded - dlopen failed: library "{library}" '
                        "not found")
    if params["use_nnapi"]:
        require_library("NNAPI", "libneuralnetworks.so", "nnapi error: unable to open library {library}")

    rss_start = peak_rss_mb()
    from ai_edge_litert.interpreter import Interpreter, OpResolverType  # imported late: part of "init" cost

    log("INFO", f"Loaded model {graph}")
    init_start = time.perf_counter_ns()
    resolver = (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if params["use_xnnpack"] is False
                else OpResolverType.AUTO)
    try:
        interpreter = Interpreter(model_path=graph, experimental_op_resolver_type=resolver,
                                  num_threads=None if params["num_threads"] < 0 else params["num_threads"])
    except ValueError as exc:
        raise BenchmarkError(str(exc).strip(), f"Failed to mmap model {graph}") from None
    nodes_before = interpreter._interpreter.NumNodes()
    layers = input_layers(params)
    details = interpreter.get_input_details()
    if layers and len(layers) != len(details):
        fatal(f"Check failed: inputs_.size() == runner_inputs.size() ({len(layers)} vs. {len(details)})"
              f"Inputs mismatch: Model inputs #:{len(layers)} expected: {len(details)}")
    for layer, detail in zip(layers, details):
        if layer["name"] != detail["name"]:
            log("WARN", f"Tensor # {detail['index']} is named {detail['name']} but flags call it {layer['name']}")
        if len(layer["shape"]) != len(detail["shape"]):
            raise BenchmarkError(f"Input tensor #{detail['index']} should have {len(detail['shape'])} dimensions!")
    for layer, detail in zip(layers, details):
        interpreter.resize_tensor_input(detail["index"], layer["shape"])
    try:
        interpreter.allocate_tensors()
    except RuntimeError as exc:
        raise BenchmarkError(str(exc).strip(), "Failed to allocate tensors!") from None
    init_us = (time.perf_counter_ns() - init_start) // 1000
    if params["use_xnnpack"]:
        log("INFO", "XNNPACK delegate created.")
        log("INFO", delegation_sentence(interpreter, nodes_before))
    rss_init = peak_rss_mb()

    log("INFO", f"The input model file size (MB): {os.path.getsize(graph) / 1e6:g}")
    log("INFO", f"Initialized session in {init_us / 1000.0:g}ms.")
    fill_inputs(interpreter)
    for layer, detail in zip(layers, interpreter.get_input_details()):
        if layer["file"]:
            import numpy as np
            nbytes = int(np.prod(detail["shape"])) * np.dtype(detail["dtype"]).itemsize
            data = np.frombuffer(read_value_file(layer["file"], nbytes), dtype=detail["dtype"])
            interpreter.set_tensor(detail["index"], data.reshape(detail["shape"]))

    percentiles = os.environ.get("BENCHMARK_STANDIN_PERCENTILES", "1") != "0"
    warmup = run_phase(interpreter, params["warmup_runs"], params["warmup_min_secs"], params["max_secs"])
    log("INFO", warmup.line(percentiles))
    sys.stderr.write("\n")
    measured = run_phase(interpreter, params["num_runs"], params["min_secs"], params["max_secs"])
    log("INFO", measured.line(percentiles))
    sys.stderr.write("\n")
    if not measured.values:
        raise BenchmarkError("No measured runs completed within --max_secs")

    if params["output_filepath"]:
        save_outputs(interpreter, params["output_filepath"])
    first = warmup.values[0] if warmup.values else measured.values[0]
    log("INFO", f"Inference timings in us: Init: {init_us}, First inference: {first}, "
                f"Warmup (avg): {warmup.avg:g}, Inference (avg): {measured.avg:g}")
    if params["enable_op_profiling"]:
        log("WARNING", "Op profiling is not available in the benchmark_model stand-in (the Python interpreter API "
                       "has no per-op profiler); no profile printed.")
    rss_end = peak_rss_mb()
    log("INFO", "Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE "
                "to the actual memory footprint of the model at runtime. Take the information at your discretion.")
    log("INFO", f"Memory footprint delta from the start of the tool (MB): init={rss_init - rss_start:g} "
                f"overall={rss_end - rss_start:g}")
    if params["report_peak_memory_footprint"]:
        log("INFO", f"Overall peak memory footprint (MB) via periodic monitoring: {rss_end:g}")


def main(argv: list[str]) -> int:
    try:
        benchmark(argv)
    except BenchmarkError as exc:
        for line in exc.lines:
            log("ERROR", line)
        log("ERROR", "Benchmarking failed.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
