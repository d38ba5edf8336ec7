#!/usr/bin/env python3
"""What ONNX Runtime's `session.x64quantprecision=1` (exact U8U8 int8 kernels) costs and changes on this CPU.

    .venv/bin/python scripts/onnx_int8_precision.py MODEL_INT8.onnx [...] [--rounds 15] [--threads 1]

ONNX Runtime applies the setting on every x86 CPU with AVX2, VNNI or not. mnetdeploy sets it only where the
default U8S8 kernels saturate (no AVX512-VNNI / AVX-VNNI / AMX: mnetdeploy/cpu.py). This script measures, on
the CPU it runs on, both sessions of each model side by side: latency (interleaved rounds, median of round
medians, so drift and load hit both alike) and how far their outputs are from each other and from the plain
arithmetic of the same file (graph optimisation off). Run it on a VNNI/AMX CPU to see what setting it there
would cost; under `qemu-x86_64-static -cpu Haswell` only the numerics mean anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def session(path: Path, threads: int, precise: bool, optimize: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if precise:
        options.add_session_config_entry("session.x64quantprecision", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_all(sess, images: np.ndarray) -> np.ndarray:
    inp = sess.get_inputs()[0]
    dtype = {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8}.get(inp.type, np.float32)
    return np.concatenate([sess.run(None, {inp.name: images[i:i + 1].astype(dtype)})[0] for i in range(len(images))])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.mean((a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--round-seconds", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from mnetdeploy.cpu import host_cpu

    cpu = host_cpu()
    print(f"CPU: {cpu.summary()} (u8s8 saturates: {cpu.u8s8_saturates}); mnetdeploy sets the option here: "
          f"{cpu.u8s8_saturates}")
    rows = []
    for path in args.models:
        default, precise = session(path, args.threads, False), session(path, args.threads, True)
        plain = session(path, args.threads, False, optimize=False)
        shape = [d if isinstance(d, int) else 1 for d in default.get_inputs()[0].shape]
        images = np.random.default_rng(0).uniform(-1, 1, (16, *shape[1:])).astype(np.float32)
        out_default, out_precise, out_plain = (run_all(s, images) for s in (default, precise, plain))
        x = images[:1].astype({"tensor(uint8)": np.uint8, "tensor(int8)": np.int8}.get(
            default.get_inputs()[0].type, np.float32))
        name = default.get_inputs()[0].name
        medians = {"default": [], "precise": []}
        for s in (default, precise):
            for _ in range(5):
                s.run(None, {name: x})
        for _ in range(args.rounds):
            for label, s in (("default", default), ("precise", precise)):
                samples, end = [], time.perf_counter() + args.round_seconds
                while len(samples) < 5 or time.perf_counter() < end:
                    t0 = time.perf_counter_ns()
                    s.run(None, {name: x})
                    samples.append((time.perf_counter_ns() - t0) / 1e6)
                medians[label].append(statistics.median(samples))
        p50 = {k: statistics.median(v) for k, v in medians.items()}
        row = {"model": str(path), "p50_default_ms": round(p50["default"], 4),
               "p50_precise_ms": round(p50["precise"], 4),
               "precise_over_default": round(p50["precise"] / p50["default"], 3),
               "cosine_default_vs_plain": round(cosine(out_default, out_plain), 5),
               "cosine_precise_vs_plain": round(cosine(out_precise, out_plain), 5),
               "identical_outputs": bool(np.array_equal(out_default, out_precise))}
        rows.append(row)
        print(f"{path}: p50 default {row['p50_default_ms']:.3f} ms, precise {row['p50_precise_ms']:.3f} ms "
              f"(x{row['precise_over_default']:.3f}); cosine vs plain arithmetic: default "
              f"{row['cosine_default_vs_plain']:.5f}, precise {row['cosine_precise_vs_plain']:.5f}; "
              f"identical outputs: {row['identical_outputs']}", flush=True)
    if args.json:
        print(json.dumps({"cpu": cpu.to_dict(), "rows": rows}))


if __name__ == "__main__":
    main()
