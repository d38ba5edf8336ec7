#!/usr/bin/env python3
"""mnetdeploy's benchmark runner for Linux boards: copied to the board and run with its python3.

Self-contained on purpose (standard library + the board's own runtime and numpy; no mnetdeploy import): a board
has whatever its vendor image or `pip install` gave it. It uses the first runtime it finds:
    .tflite  ai_edge_litert (LiteRT), else tflite_runtime (the older TFLite package), XNNPACK unless --no-xnnpack
    .onnx    onnxruntime (CPU execution provider)

    python3 remote_runner.py --model m.tflite --threads 4 --warmup 10 --runs 50 --min-seconds 1 [--cpus 4,5]

Timing as on the host (mnetdeploy/bench/host.py): model load (interpreter + tensor allocation) is `init_ms`, the
first inference its own `first_ms`, then `--warmup` unmeasured runs, then measured runs until at least `--runs`
AND at least `--min-seconds`. Each sample is `time.perf_counter_ns()` around copying the input in, running the
model and copying the output out. Inputs are seeded random tensors prepared before any timing; the garbage
collector is off during the timed loops. Peak memory is VmHWM of /proc/self/status (getrusage's ru_maxrss where
/proc is not mounted, said in `peak_rss_source`).

Eval mode (`mnetdeploy eval --device`, devices/device_eval.py): `--eval-inputs in.npy --eval-outputs out.npy`
runs the model once per image of in.npy (already in the model's input type: quantized on the host) and saves
the raw outputs (in the model's output type) stacked in out.npy; no timing loop. The result line then holds
the facts and the image count.

Prints exactly one line on stdout, `__MNETDEPLOY_RESULT__ {json}`, with the samples and facts, or
`__MNETDEPLOY_RESULT__ {"error": "...", "setup": false}` and exit status 3 when the model cannot be loaded or run
(`"setup": true` and status 4 when the board lacks a runtime or numpy).
"""

import argparse
import gc
import json
import os
import platform
import sys
import time

RESULT_PREFIX = "__MNETDEPLOY_RESULT__ "
RANDOM_INPUTS = 8


def emit(payload):
    sys.stdout.write(RESULT_PREFIX + json.dumps(payload) + "\n")
    sys.stdout.flush()


class RunnerError(Exception):
    """The model could not be loaded or run (exit status 3)."""


class SetupError(RunnerError):
    """The board lacks what the runner needs: a runtime, numpy (exit status 4)."""


def status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def mib(kb):
    return None if kb is None else kb / 1024.0


def peak_rss_mb():
    """(peak resident MiB, where it came from): VmHWM, else getrusage (a board without /proc/self/status). On
    Linux ru_maxrss can carry a parent's high-water mark over fork + exec, hence VmHWM first."""
    kb = status_kb("VmHWM")
    if kb is not None:
        return mib(kb), "VmHWM"
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "getrusage"
    except (ImportError, OSError):
        return None, None


def pin(cpus):
    """Pin to `cpus` when taskset was not available on the board; returns what happened, for the result."""
    if not cpus:
        return None
    try:
        os.sched_setaffinity(0, cpus)
        return {"cpus": sorted(os.sched_getaffinity(0)), "error": None}
    except (AttributeError, OSError) as exc:
        return {"cpus": None, "error": str(exc)}


def import_litert():
    """(interpreter module, package name, version) of the first TFLite runtime installed."""
    errors = []
    for package in ("ai_edge_litert", "tflite_runtime"):
        try:
            module = __import__(package + ".interpreter", fromlist=["Interpreter"])
        except ImportError as exc:
            errors.append(f"{package}: {exc}")
            continue
        try:
            from importlib import metadata
            version = metadata.version(package.replace("_", "-"))
        except Exception:
            version = getattr(__import__(package), "__version__", None)
        return module, package, version
    raise SetupError("no TFLite runtime on the board: pip install ai-edge-litert (or tflite-runtime) for its "
                     "python3 (" + "; ".join(errors) + ")")


def load_litert(module, package, version, model, threads, xnnpack):
    """(interpreter, init ns): interpreter creation and tensor allocation, timed."""
    kwargs = {"model_path": model, "num_threads": threads}
    resolver = getattr(module, "OpResolverType", None)
    if resolver is not None:
        kwargs["experimental_op_resolver_type"] = (resolver.AUTO if xnnpack
                                                   else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    elif not xnnpack:
        raise RunnerError(f"{package} {version} cannot turn XNNPACK off (no OpResolverType); drop --no-xnnpack")
    start = time.perf_counter_ns()
    try:
        interpreter = module.Interpreter(**kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise RunnerError(f"{package} could not load {model}: {str(exc).strip()}") from None
    return interpreter, time.perf_counter_ns() - start


def litert_execution(interpreter):
    try:
        nodes = [op["op_name"] for op in interpreter._get_ops_details()]
    except Exception:  # private API: say we could not tell rather than fail the benchmark
        return {"delegate": "unknown", "delegate_nodes": None, "nodes": None}
    delegated = sum(name == "DELEGATE" for name in nodes)
    return {"delegate": "xnnpack" if delegated else None, "delegate_nodes": delegated, "nodes": len(nodes)}


def random_inputs(np, shape, dtype, quantization, seed):
    rng = np.random.default_rng(seed)
    shape = [int(d) if d and d > 0 else 1 for d in shape]
    images = rng.uniform(-1.0, 1.0, size=[RANDOM_INPUTS, *shape[1:]] if shape else [RANDOM_INPUTS])
    if np.issubdtype(dtype, np.floating):
        return [images[i:i + 1].astype(dtype) for i in range(RANDOM_INPUTS)]
    scale, zero = quantization if quantization and quantization[0] else (1.0, 0)
    info = np.iinfo(dtype)
    q = np.clip(np.round(images / scale + zero), info.min, info.max).astype(dtype)
    return [q[i:i + 1] for i in range(RANDOM_INPUTS)]


def litert_invoker(interpreter, np, seed):
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    prepared = random_inputs(np, inp["shape"], inp["dtype"], inp.get("quantization"), seed)

    def run(x):
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])
    return run, prepared, [int(d) for d in inp["shape"]], np.dtype(inp["dtype"]).name


def import_onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise SetupError(f"no onnxruntime on the board: pip install onnxruntime for its python3 ({exc})") from None
    return ort


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def onnx_session_config():
    """As mnetdeploy/runtimes/onnx.py: exact U8U8 int8 kernels on x86 boards without a VNNI dot product,
    whose default U8S8 kernels saturate 16-bit pair sums."""
    flags = cpu_flags()
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    if x86 and flags and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return {"session.x64quantprecision": "1"}
    return {}


def load_onnx(ort, model, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for key, value in onnx_session_config().items():
        options.add_session_config_entry(key, value)
    start = time.perf_counter_ns()
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise RunnerError(f"onnxruntime could not load {model}: {str(exc).strip()}") from None
    return session, time.perf_counter_ns() - start


def onnx_invoker(session, np, seed):
    inp = session.get_inputs()[0]
    types = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
             "tensor(int8)": np.int8}
    if inp.type not in types:
        raise RunnerError(f"input {inp.name} has type {inp.type}; the runner feeds float or 8-bit images")
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    prepared = random_inputs(np, shape, np.dtype(types[inp.type]), None, seed)
    name = inp.name

    def run(x):
        return session.run(None, {name: x})
    return run, prepared, shape, np.dtype(types[inp.type]).name


def measure(args):
    try:
        import numpy as np
    except ImportError as exc:
        raise SetupError(f"no numpy for the board's python3 ({exc}): pip install numpy") from None

    pinned = pin([int(c) for c in args.cpus.split(",")] if args.cpus else None)
    onnx = args.model.endswith(".onnx")
    # The runtime is imported before the baseline reading, so the baseline holds the library and
    # peak - baseline is what the model added (as on the host).
    if onnx:
        ort = import_onnxruntime()
        package, version = "onnxruntime", ort.__version__
    else:
        module, package, version = import_litert()
    gc.collect()
    baseline_kb = status_kb("VmRSS")
    if onnx:
        session, init_ns = load_onnx(ort, args.model, args.threads)
        run, prepared, shape, dtype = onnx_invoker(session, np, args.seed)
        execution = {"providers": list(session.get_providers()), "graph_optimization": "all",
                     "session_config": onnx_session_config()}
    else:
        interpreter, init_ns = load_litert(module, package, version, args.model, args.threads, args.xnnpack)
        run, prepared, shape, dtype = litert_invoker(interpreter, np, args.seed)
        execution = litert_execution(interpreter)

    def timed(i):
        x = prepared[i % len(prepared)]
        start = time.perf_counter_ns()
        run(x)
        return time.perf_counter_ns() - start

    gc.disable()  # a collection inside a timed region is a pause unrelated to the model
    try:
        try:
            first_ns = timed(0)
        except Exception as exc:
            raise RunnerError(f"{package} failed to run the model: {str(exc).strip()}") from None
        warmup = [timed(1 + i) for i in range(args.warmup)]
        offset = 1 + args.warmup
        samples = []
        min_ns = int(args.min_seconds * 1e9)
        start = time.perf_counter_ns()
        while len(samples) < args.runs or time.perf_counter_ns() - start < min_ns:
            samples.append(timed(offset + len(samples)))
        measured_ns = time.perf_counter_ns() - start
    finally:
        gc.enable()
    peak_mb, peak_source = peak_rss_mb()
    return {
        "samples_ms": [round(s / 1e6, 6) for s in samples],
        "init_ms": init_ns / 1e6,
        "first_ms": first_ns / 1e6,
        "warmup_ms": sum(warmup) / len(warmup) / 1e6 if warmup else None,
        "measured_seconds": measured_ns / 1e9,
        "peak_rss_mb": peak_mb,
        "peak_rss_source": peak_source,
        "baseline_rss_mb": mib(baseline_kb),
        "runtime_package": package,
        "runtime_version": version,
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "execution": execution,
        "input_shape": shape,
        "input_dtype": dtype,
        "inputs": {"kind": "random", "count": len(prepared), "seed": args.seed, "directory": None},
        "affinity": pinned,
    }


def evaluate(args):
    """Every image of --eval-inputs through the model, one at a time (the host runs it so too); raw outputs."""
    try:
        import numpy as np
    except ImportError as exc:
        raise SetupError(f"no numpy for the board's python3 ({exc}): pip install numpy") from None
    inputs = np.load(args.eval_inputs)
    if args.model.endswith(".onnx"):
        ort = import_onnxruntime()
        package, version = "onnxruntime", ort.__version__
        session, _ = load_onnx(ort, args.model, args.threads)
        name = session.get_inputs()[0].name

        def run(x):
            return session.run(None, {name: x})[0]
        execution = {"providers": list(session.get_providers()), "session_config": onnx_session_config()}
    else:
        module, package, version = import_litert()
        interpreter, _ = load_litert(module, package, version, args.model, args.threads, args.xnnpack)
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

        def run(x):
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            return interpreter.get_tensor(out["index"])
        execution = litert_execution(interpreter)
    outputs = []
    for i in range(len(inputs)):
        try:
            outputs.append(np.array(run(inputs[i:i + 1])))
        except Exception as exc:
            raise RunnerError(f"{package} failed to run the model on image {i}: {str(exc).strip()}") from None
    partial = args.eval_outputs + ".partial"
    with open(partial, "wb") as f:   # np.save on a name would append .npy
        np.save(f, np.concatenate(outputs, axis=0))
    os.replace(partial, args.eval_outputs)
    return {"images": len(outputs), "runtime_package": package, "runtime_version": version,
            "numpy_version": np.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "execution": execution}


def main(argv):
    parser = argparse.ArgumentParser(description="mnetdeploy's benchmark runner for Linux boards")
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--no-xnnpack", dest="xnnpack", action="store_false")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus", default="", help="comma-separated CPUs to pin to (when taskset is missing)")
    parser.add_argument("--eval-inputs", help="eval mode: .npy of inputs in the model's input type")
    parser.add_argument("--eval-outputs", help="eval mode: where the .npy of raw outputs goes")
    args = parser.parse_args(argv)
    try:
        emit(evaluate(args) if args.eval_inputs else measure(args))
    except RunnerError as exc:
        emit({"error": str(exc), "setup": isinstance(exc, SetupError)})
        return 4 if isinstance(exc, SetupError) else 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
