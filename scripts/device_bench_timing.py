#!/usr/bin/env python3
"""End-to-end wall time of one device benchmark (`mnetdeploy bench --device android`), with its breakdown.

Runs the real CLI, as a user would, against the ADB stand-in (tests/device_standin: real adb 29 client and
server, an arm64 userland under qemu-user, benchmark_model_standin.py) twice: cold (nothing on the device) and
warm (`--keep`: model and binary already there, nothing copied). Prints the wall time and the phases the result
records in execution.phases_s: preflight (adb, device facts, ABI, cache check, df), push, cool-down (thermal
reads and waits), run (benchmark_model on the device), parse (parsing and the state read after the run),
cleanup; "other" is the CLI's own start-up, model inspection and storing.

Emulated latencies mean nothing (qemu-user on a shared x86 host): this measures the plumbing around them. The
run phase is mostly emulated inference, so on a phone it shrinks to the model's real latency x runs.

    sudo .venv/bin/python scripts/device_bench_timing.py [--model M.tflite] [--runs 50 --warmup 10 --min-seconds 1]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))

from device_standin.adb_device import AdbDevice  # noqa: E402
from device_standin.fixtures import adb_unavailable_reason, arm64_unavailable_reason, device_rootfs, free_port  # noqa: E402

STANDIN = PROJECT / "tests" / "device_standin" / "benchmark_model_standin.py"
MNETDEPLOY = Path(sys.executable).parent / "mnetdeploy"
PHASES = ("preflight", "push", "cool-down", "run", "parse", "cleanup")


def build_model(directory: Path) -> Path:
    """MobileNet v2 0.35/96 built by mnetdeploy, fp32 TFLite (as tests/test_device_bench.py)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from mnetdeploy.build import build
    from mnetdeploy.config import load_config

    built = build(load_config(None, {"model.arch": "v2", "model.alpha": 0.35, "model.resolution": 96,
                                     "output": str(directory)})).artifact_dir
    model = tf.keras.models.load_model(built / "model.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = directory / "model_fp32.tflite"
        path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def adb_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADB_", "ANDROID_"))}
    env.update(HOME=str(home), ANDROID_ADB_SERVER_PORT=str(free_port()))
    return env


def timed_bench(env: dict[str, str], model: Path, settings: list[str], keep: bool) -> tuple[float, dict]:
    argv = [str(MNETDEPLOY), "bench", str(model), "--device", "android", "--benchmark-binary", str(STANDIN),
            *settings, "--json", *(["--keep"] if keep else [])]
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"mnetdeploy bench failed ({done.returncode}): {done.stderr.strip()}")
    return wall, json.loads(done.stdout)[0]


def show(name: str, wall: float, result: dict) -> None:
    phases = result["execution"]["phases_s"]
    measured = sum(phases.values())
    print(f"{name}: {wall:.2f} s end to end (copied: {', '.join(result['execution']['files']['pushed']) or 'nothing'})")
    for phase in PHASES:
        if phase in phases:
            print(f"  {phase:10s} {phases[phase]:6.2f} s  {100 * phases[phase] / wall:4.0f}%")
    print(f"  {'other':10s} {wall - measured:6.2f} s  {100 * (wall - measured) / wall:4.0f}%  (CLI start-up, model "
          "inspection, storing)")
    print(f"  ({result['runs']} measured runs x {result['latency_ms']['mean']:.1f} ms emulated mean)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a .tflite model (default: build MobileNet v2 0.35/96)")
    parser.add_argument("--runs", default="50")
    parser.add_argument("--warmup", default="10")
    parser.add_argument("--min-seconds", default="1")
    args = parser.parse_args()
    reason = adb_unavailable_reason() or arm64_unavailable_reason()
    if reason:
        print(f"device_bench_timing: cannot run the stand-in here: {reason}", file=sys.stderr)
        return 2
    settings = ["--runs", args.runs, "--warmup", args.warmup, "--min-seconds", args.min_seconds]
    with tempfile.TemporaryDirectory(prefix="device-timing-") as scratch:
        scratch = Path(scratch)
        model = args.model or build_model(scratch / "models")
        root = device_rootfs()
        with open(root / ".standin-lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)   # the userland is shared with the tests
            tmp = root / "data/local/tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            tmp.chmod(0o771)
            device = AdbDevice.in_userland(root).start()
            (scratch / "home").mkdir()
            env = adb_env(scratch / "home")
            try:
                subprocess.run(["adb", "start-server"], env=env, check=True, capture_output=True)
                subprocess.run(["adb", "connect", device.serial], env=env, check=True, capture_output=True)
                time.sleep(0.5)
                trips = []
                for _ in range(5):
                    start = time.perf_counter()
                    subprocess.run(["adb", "-s", device.serial, "shell", "true"], env=env, check=True,
                                   capture_output=True)
                    trips.append(time.perf_counter() - start)
                print(f"model {model} ({model.stat().st_size / 1e6:.1f} MB), settings {' '.join(settings)}")
                print(f"one `adb shell true` round trip: {statistics.median(trips) * 1000:.0f} ms median "
                      "(adb client + stand-in + chroot + emulated sh)")
                cold_wall, cold = timed_bench(env, model, settings, keep=True)
                show("cold (nothing on the device)", cold_wall, cold)
                warm_wall, warm = timed_bench(env, model, settings, keep=True)
                show("warm (model and binary cached, --keep)", warm_wall, warm)
                print(f"device shell commands served: {device.commands_started}; pushes: "
                      f"{device.services_opened.count('sync:')}")
                print("note: emulated latencies are meaningless; these are plumbing times around them.")
            finally:
                subprocess.run(["adb", "kill-server"], env=env, capture_output=True)
                device.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
