"""Accuracy where the model runs: `mnetdeploy eval MODEL --device android|adb-linux[:SERIAL]|ssh://... --data DIR`.

int8 kernels differ per CPU in their arithmetic (on an AVX2 x86 host an int8 ONNX model lost 6.6 top-1 points
through one kernel's saturating sums), so a deployment is verified on its target, not on the build machine.

What one device eval does
-------------------------
1. On the host, before the device is touched: the images are selected and preprocessed exactly as `eval` does
   (evaluate.py), converted to the model's input type (quantized with its input scale for an int8 model), and
   the same model runs here on LiteRT / ONNX Runtime one image at a time. Its raw outputs are kept.
2. On the device, with bench's plumbing (android.py): pre-flight, the device lock, this run's own directory,
   cached copies of the model and the tool, and ONE tensor file with every input (N x the input tensor's bytes).
3. One command there:
   - Android, and any device given `--benchmark-binary`: LiteRT's benchmark_model, once per image, in a shell
     loop on the device. `dd` cuts image k out of the tensor file, then
         benchmark_model --graph=M --input_layer=NAME --input_layer_shape=1,H,W,3
             --input_layer_value_files=NAME:in.bin --output_filepath=out.bin
             --warmup_runs=0 --warmup_min_secs=0 --num_runs=1 --min_secs=0 --num_threads=T --use_xnnpack=...
     and out.bin is appended to outputs.bin.
   - Linux boards otherwise: remote_runner.py --eval-inputs inputs.npy --eval-outputs outputs.npy.
4. The outputs file comes back (adb pull, or `cat` over ssh), must hold exactly N output tensors, is
   dequantized as on the host, and is scored by evaluate.py's Tally (the one implementation of top-1/top-5,
   agreement and cosine). The device's row compares with the same model on the host: agreement, cosine, and
   per image whether the raw outputs are bit-identical (`versus_host`: how many, where they differ, by how much).

What real benchmark_model supports (LiteRT tflite/tools/benchmark/benchmark_tflite_model.cc)
-------------------------------------------------------------------------------------------
- `--input_layer_value_files=NAME:FILE`: the raw bytes of one input tensor (the file's size must be the
  tensor's byte size, else a FATAL error). It needs `--input_layer` and `--input_layer_shape`: value files are
  matched to the names given in --input_layer, and a name differing from the tensor's only draws a warning. The
  TFLite converter names inputs like `serving_default_input:0`, and ':' separates name from file (escaped as
  '::' only in recent builds), so a name with ':' or ',' is passed as the alias `input`.
- `--output_filepath=FILE`: after the last run, the raw bytes of every output tensor, concatenated in output
  order (its OutputSaver listener). Added by TensorFlow PR #55493 (merged July 2022): TensorFlow 2.11 and later,
  and every LiteRT build. Older builds only warn "Unconsumed cmdline flags" and write nothing: that is an error
  here, naming the fix (a current build), never an empty result.
- Why once per image: the tool runs one input shape, and batching through `--input_layer_shape=N,...` needs a
  graph whose batch can be resized; converter exports of Keras models reshape with a fixed batch of 1 (on
  mnetdeploy's v1 export LiteRT's XNNPACK "failed to reshape"). Each invocation pays the tool's start and the
  model's load: milliseconds natively, about a second on the test stand-in (Python under qemu).
- LiteRT's evaluation tools do not fit: imagenet_image_classification's run_eval decodes and preprocesses the
  images itself (its own crop and resize) and reports only accuracy, and inference_diff compares the delegate
  with the reference kernels on random inputs. Neither runs *these* preprocessed inputs and returns the outputs.

Errors are bench's: a missing device or binary is exit 2 before anything runs, a device lost mid-way exit 1,
and nothing is returned or stored then. ONNX models on Android are refused up front (benchmark_model runs
.tflite only); Linux boards run .onnx through the runner and onnxruntime.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnetdeploy.devices import (
    ANDROID_BASE,
    LINUX_BASE,
    DeviceLost,
    DeviceSettings,
    Transport,
    last_words,
    parse_target,
    push_timeout,
    quote,
)
from mnetdeploy.errors import EXIT_FAILED, UserError

ProgressFn = Callable[[str], None]   # a message per step (report/console.py progress)
MAX_DIFFERING_LISTED = 20
EVAL_FAILED = "__MNETDEPLOY_EVAL_FAILED="


@dataclass
class DeviceOutputs:
    raw: np.ndarray            # (N, ...) in the model's output type, as the device computed them
    facts: dict[str, Any]      # the device, the tool and how it ran
    identity: dict[str, Any]
    label: str                 # android:SERIAL, adb-linux:SERIAL, ssh://...
    seconds: float


# ------------------------------------------------------------------------------------------------ entry

def evaluate_on_device(model: str | Path, data_dir: str | Path, device: str, settings: DeviceSettings, *,
                       labels: str | Path | None = None, label_offset: str = "auto", limit: int | None = None,
                       skip_first: int = 0, threads: int | None = None, progress: ProgressFn | None = None):
    """[the model on the host (the reference), the model on `device`] as EvalResults on the same images."""
    from mnetdeploy.evaluate import (
        CHUNK,
        LABEL_OFFSETS,
        ModelRun,
        Tally,
        data_record,
        decide_offset,
        preprocess_chunk,
        select_data,
    )
    from mnetdeploy.runtimes import model_format

    path = Path(model)
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    fmt = model_format(path)
    target = parse_target(device)
    if fmt == "keras":
        raise UserError(f"{path}: a Keras model does not run on a device; eval its .tflite (or, on Linux boards, "
                        ".onnx) export with --device")
    if fmt == "onnx" and (target.kind == "android" or settings.benchmark_binary):
        raise UserError(f"{path}: benchmark_model runs .tflite models, this is .onnx; eval the .tflite export on "
                        "the phone, or the .onnx on a Linux board with the runner (--device adb-linux or "
                        "ssh://..., no --benchmark-binary)")
    if str(label_offset) not in LABEL_OFFSETS:
        raise UserError(f"label_offset must be one of {', '.join(LABEL_OFFSETS)} (got {label_offset!r})")
    data = select_data(data_dir, labels, skip_first, limit)
    labels_explicit = labels is not None or data.csv_path is None or str(label_offset) != "auto"

    # The host: the reference outputs, and the exact input tensors the device will get.
    host = ModelRun(path, threads, None)
    inputs, raw_host, loaded, skipped, prep = [], [], [], [], 0.0
    say(progress, "running on the host")
    for start in range(0, len(data.files), CHUNK):
        t0 = time.perf_counter()
        arrays, ok, bad = preprocess_chunk(data.files[start:start + CHUNK], [host.resolution])
        prep += time.perf_counter() - t0
        loaded += ok
        skipped += bad
        t0 = time.perf_counter()
        for image in arrays[host.resolution]:
            prepared = host.runner.prepare(image[None])
            inputs.append(prepared)
            raw_host.append(np.asarray(host.runner.run(prepared)).copy())
        host.seconds += time.perf_counter() - t0
    record = data_record(data, loaded, skipped, prep)
    tensor = np.concatenate(inputs, axis=0)
    raw_host_all = np.concatenate(raw_host, axis=0)

    out = run_on_device(path, fmt, target, device, settings, tensor, raw_host_all, host.runner, progress)

    def floats(raw: np.ndarray) -> np.ndarray:
        return np.asarray(host.runner.to_float(raw), dtype=np.float32).reshape(len(raw), -1)

    host_out, device_out = floats(raw_host_all), floats(out.raw)
    host.width = host_out.shape[1]
    host.offset = decide_offset(path, host.width, str(label_offset), labels_explicit)
    truth = np.array([data.labels(host.offset)[p] for p in loaded], dtype=np.int64)
    host_classes = host.score(host_out, truth)
    remote = Tally(path, fmt, host.precision, host.resolution)
    remote.width, remote.offset, remote.seconds = host.width, host.offset, out.seconds
    remote.compare(remote.score(device_out, truth), device_out, host_classes, host_out, host.offset)

    from mnetdeploy.bench.environment import cpu_identity

    host_row = host.result(is_reference=True, has_reference=True, data=record)
    device_row = remote.result(False, True, record, environment={**out.facts, "host": cpu_identity()})
    device_row.device, device_row.identity = out.label, out.identity
    device_row.versus_host = versus_host(raw_host_all, out.raw, host_out, device_out, loaded, data.directory,
                                         out.label)
    return [host_row, device_row]


def say(progress: ProgressFn | None, phase: str) -> None:
    if progress is not None:
        progress(phase)


def versus_host(raw_host: np.ndarray, raw_device: np.ndarray, host_out: np.ndarray, device_out: np.ndarray,
                files: list[Path], directory: Path, label: str) -> dict[str, Any]:
    """Per image: are the raw outputs bit-identical; where not, by how much (raw units and dequantized)."""
    n = len(raw_host)
    flat_host, flat_device = raw_host.reshape(n, -1), raw_device.reshape(n, -1)
    same = np.all(flat_host == flat_device, axis=1) if np.issubdtype(raw_host.dtype, np.integer) else \
        np.all(flat_host.view(np.uint8).reshape(n, -1) == flat_device.view(np.uint8).reshape(n, -1), axis=1)
    diff_raw = np.abs(flat_host.astype(np.float64) - flat_device.astype(np.float64))
    differing = [{"file": files[i].relative_to(directory).as_posix(), "max_abs_diff_raw": float(diff_raw[i].max()),
                  "outputs_differing": int(np.sum(diff_raw[i] > 0)),
                  "same_top1": bool(np.argmax(host_out[i]) == np.argmax(device_out[i]))}
                 for i in np.flatnonzero(~same)[:MAX_DIFFERING_LISTED]]
    identical = int(np.sum(same))
    note = (f"{label} and this host computed bit-identical outputs on all {n} images" if identical == n else
            f"{label} and this host differ on {n - identical} of {n} images (max |diff| {diff_raw.max():g} in "
            f"{raw_host.dtype} output units): the device's kernels round differently; see differing")
    from mnetdeploy.cpu import host_cpu

    return {"images": n, "identical": identical, "bit_equal": identical == n, "output_dtype": str(raw_host.dtype),
            "max_abs_diff_raw": float(diff_raw.max()) if diff_raw.size else 0.0,
            "max_abs_diff": float(np.abs(host_out - device_out).max()) if host_out.size else 0.0,
            "differing": differing, "host_cpu": host_cpu().to_dict(), "note": note}


# ---------------------------------------------------------------------------------------------- the device

def run_on_device(path: Path, fmt: str, target, device: str, settings: DeviceSettings, tensor: np.ndarray,
                  raw_host: np.ndarray, runner, progress: ProgressFn | None) -> DeviceOutputs:
    """Every image of `tensor` through the model on the device; its raw outputs (same shape and type as the
    host's `raw_host`) and the facts of the run."""
    from mnetdeploy.devices.android import (
        WHERE_TO_GET,
        BenchmarkModelTool,
        RunnerTool,
        check_space,
        copy_files,
        evict_older_tools,
        inspect_binary,
        open_transport,
        remote_hashes,
    )
    from mnetdeploy.devices.hygiene import read_facts
    from mnetdeploy.devices.identity import read_identity
    from mnetdeploy.devices.occupancy import DeviceLock, lock_expiry, run_id, run_killable
    from mnetdeploy.fsutil import sha256_file

    binary = inspect_binary(settings.benchmark_binary) if settings.benchmark_binary else None
    started = time.perf_counter()
    transport = open_transport(target, settings)
    lost, lock, run_dir = False, None, None
    try:
        say(progress, "pre-flight")
        facts = read_facts(transport)
        transport.base_dir = ANDROID_BASE if facts.android else LINUX_BASE
        identity = read_identity(transport, binary.sha256 if binary else None)
        tool: BenchmarkModelTool | RunnerTool
        if binary is not None:
            tool = BenchmarkModelTool(binary)
        elif facts.android and target.kind == "android":
            raise UserError(f"benchmark_binary: {transport.label} is an Android device, which runs LiteRT's "
                            f"benchmark_model; {WHERE_TO_GET}")
        else:
            tool = RunnerTool(fmt)
        tool.check(facts, transport.label, fmt)
        run = run_id()
        lock = DeviceLock(transport, transport.base_dir, run)
        lock.acquire(lock_expiry(settings, path.stat().st_size + tensor.nbytes), settings.lock_timeout,
                     lambda message: say(progress, message))
        run_dir = f"{transport.base_dir}/runs/{run}"
        digest = sha256_file(path)
        tool_dir = f"{transport.base_dir}/bin/{tool.sha256[:16]}"
        remote_tool = f"{tool_dir}/{tool.remote_name}"
        kept_model = f"{transport.base_dir}/{digest[:16]}/model.{fmt}"
        present = remote_hashes(transport, [kept_model, remote_tool], "sha256sum" in facts.tools)
        remote_model = kept_model if present.get(kept_model) == digest else f"{run_dir}/model.{fmt}"
        with tempfile.TemporaryDirectory(prefix="mnetdeploy-eval-") as scratch:
            inputs = Path(scratch) / ("inputs.bin" if binary else "inputs.npy")
            if binary:
                inputs.write_bytes(np.ascontiguousarray(tensor).tobytes())
            else:
                np.save(inputs, tensor)
            files = [(path, remote_model, digest, path.stat().st_size),
                     (tool.local, remote_tool, tool.sha256, Path(tool.local).stat().st_size),
                     (inputs, f"{run_dir}/{inputs.name}", sha256_file(inputs), inputs.stat().st_size)]
            missing = [f for f in files if present.get(f[1]) != f[2]]
            check_space(transport, facts, sum(f[3] for f in missing))
            say(progress, "copying to the device")
            pushed = copy_files(transport, missing, tool_dir, remote_tool)
            if remote_tool in pushed:
                tool.exec_check(transport, remote_tool)
                evict_older_tools(transport, tool_dir, remote_tool)
            say(progress, f"running {len(tensor)} images on {transport.label}")
            if binary:
                command = benchmark_model_loop(remote_tool, remote_model, run_dir, runner, tensor, settings)
            else:
                command = runner_eval_command(remote_tool, remote_model, run_dir, settings)
            result = run_killable(transport, f"( {command} )", f"{run_dir}/eval.pid", settings.run_timeout,
                                  "the eval run")
            execution = _check_run(result, transport.label, binary is not None, len(tensor))
            local = Path(scratch) / "outputs"
            say(progress, "copying the outputs back")
            outputs_name = "outputs.bin" if binary else "outputs.npy"
            transport.pull(f"{run_dir}/{outputs_name}", local,
                           push_timeout(raw_host.nbytes + 1024))
            raw = _read_outputs(local, binary is not None, raw_host, transport.label)
        _cleanup(transport, run_dir)
        run_dir = None
        facts_record = {
            "device": {"label": transport.label, "android": facts.android, "machine": facts.machine or None,
                       "soc": facts.soc(), "abi": facts.properties.get("ro.product.cpu.abi"),
                       "model": facts.properties.get("ro.product.model"),
                       "android_version": facts.properties.get("ro.build.version.release"),
                       "uname": facts.uname or None},
            "cpu_model": facts.soc(), "cpu_features": facts.cpu_features(), "runtime": tool.runtime,
            "runtime_settings": {"threads": settings.threads, "xnnpack": settings.xnnpack},
            "tool": (binary.as_dict() if binary else {"path": str(tool.local), "sha256": tool.sha256,
                                                      "kind": "script"}),
            "execution": execution, "transport": transport.describe(),
            "files": {"model": remote_model, "pushed": [Path(p).name for p in pushed]},
        }
        return DeviceOutputs(raw, facts_record, identity, transport.label, time.perf_counter() - started)
    except DeviceLost:
        lost = True
        raise
    finally:
        if not lost:
            _cleanup(transport, run_dir)
            if lock is not None:
                lock.release()
        transport.close()


def input_layer_name(runner) -> str:
    """The name given to --input_layer: the tensor's own, or `input` where ':' or ',' would be misread."""
    name = ""
    with contextlib.suppress(Exception):
        name = str(runner._in["name"])   # LiteRTRunner's input details
    return name if name and not any(c in name for c in ":, ") else "input"


def benchmark_model_loop(tool: str, model: str, run_dir: str, runner, tensor: np.ndarray,
                         settings: DeviceSettings) -> str:
    """A POSIX sh loop (Android's mksh/toybox, dash, busybox) running benchmark_model once per image."""
    n, per_image = len(tensor), tensor[0:1].nbytes
    name = input_layer_name(runner)
    shape = ",".join(str(int(d)) for d in tensor[0:1].shape)
    argv = [tool, f"--graph={model}", f"--input_layer={name}", f"--input_layer_shape={shape}",
            f"--input_layer_value_files={name}:{run_dir}/in.bin", f"--output_filepath={run_dir}/out.bin",
            "--warmup_runs=0", "--warmup_min_secs=0", "--num_runs=1", "--min_secs=0",
            f"--num_threads={settings.threads}", f"--use_xnnpack={'true' if settings.xnnpack else 'false'}"]
    run = " ".join(quote(a) for a in argv)
    d = quote(run_dir)
    # A failed image stops the loop and names itself; the tool's last words follow the marker.
    return (f"cd {d} && : > outputs.bin && i=0 && while [ $i -lt {n} ]; do "
            f"dd if=inputs.bin of=in.bin bs={per_image} skip=$i count=1 2>/dev/null "
            f"|| {{ echo {EVAL_FAILED}$i dd; exit 90; }}; rm -f out.bin; {run} > tool.log 2>&1; s=$?; "
            f"if [ $s -ne 0 ] || [ ! -s out.bin ]; then echo {EVAL_FAILED}$i $s; tail -n 4 tool.log; exit 91; fi; "
            f"cat out.bin >> outputs.bin || exit 92; i=$((i+1)); done; echo {EVAL_FAILED}none")


def runner_eval_command(tool: str, model: str, run_dir: str, settings: DeviceSettings) -> str:
    argv = ["python3", tool, "--model", model, "--threads", str(settings.threads),
            "--eval-inputs", f"{run_dir}/inputs.npy", "--eval-outputs", f"{run_dir}/outputs.npy"]
    if not settings.xnnpack:
        argv.append("--no-xnnpack")
    return " ".join(quote(a) for a in argv)


def _check_run(result, label: str, benchmark_model: bool, n: int) -> dict[str, Any]:
    if not benchmark_model:
        from mnetdeploy.devices.ssh import parse_runner_output

        payload = parse_runner_output(result, label, samples=False)
        if payload.get("images") != n:
            raise UserError(f"{label}: the runner ran {payload.get('images')} of {n} images; no result was "
                            "recorded", exit_code=EXIT_FAILED)
        return {k: payload.get(k) for k in ("runtime_package", "runtime_version", "numpy_version", "python",
                                            "machine", "execution")}
    text = result.output
    marker = next((line for line in text.splitlines() if line.startswith(EVAL_FAILED)), None)
    if result.status == 0 and marker == f"{EVAL_FAILED}none":
        return {"tool": "benchmark_model", "invocations": n, "per_image": True}
    said = last_words(text.split(marker, 1)[1] if marker else text)
    if marker and marker.endswith(" 0") and "Unconsumed cmdline flags" in text:
        raise UserError(f"{label}: benchmark_model wrote no --output_filepath file ({said}): builds before "
                        "TensorFlow 2.11 lack the flag; use a current LiteRT benchmark_model", exit_code=EXIT_FAILED)
    where = f" on image {marker[len(EVAL_FAILED):].split()[0]}" if marker and marker != f"{EVAL_FAILED}none" else ""
    raise UserError(f"{label}: benchmark_model failed{where} (exit status {result.status}"
                    f"{f': {said}' if said else ''}); no result was recorded", exit_code=EXIT_FAILED)


def _read_outputs(local: Path, raw_bytes: bool, raw_host: np.ndarray, label: str) -> np.ndarray:
    """The device's outputs, checked to be exactly one output tensor per image of the host's shape and type."""
    if raw_bytes:
        data = local.read_bytes()
        if len(data) != raw_host.nbytes:
            raise UserError(f"{label}: benchmark_model returned {len(data)} bytes of outputs, expected "
                            f"{raw_host.nbytes} ({len(raw_host)} x {raw_host[0:1].nbytes}); the model has more than "
                            "one output or the tool wrote a partial file; no result was recorded",
                            exit_code=EXIT_FAILED)
        return np.frombuffer(data, dtype=raw_host.dtype).reshape(raw_host.shape)
    try:
        raw = np.load(local, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise UserError(f"{label}: the runner's outputs are unreadable ({e}); no result was recorded",
                        exit_code=EXIT_FAILED) from None
    if raw.shape != raw_host.shape or raw.dtype != raw_host.dtype:
        raise UserError(f"{label}: the runner returned outputs {raw.dtype}{list(raw.shape)}, expected "
                        f"{raw_host.dtype}{list(raw_host.shape)}; no result was recorded", exit_code=EXIT_FAILED)
    return raw


def _cleanup(transport: Transport, run_dir: str | None) -> None:
    if run_dir:
        with contextlib.suppress(UserError):
            transport.shell(f"rm -rf {quote(run_dir)}", 60.0, "removing this run's files from the device")


__all__ = ["DeviceOutputs", "evaluate_on_device", "versus_host"]
