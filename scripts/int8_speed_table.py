#!/usr/bin/env python3
"""Int8 vs fp32 speed of every family on this machine, with delegation and distance to the hardware's peak.

    .venv/bin/python scripts/int8_speed_table.py [--quick] [--out DIR] [--threads 1,2] [--runs 50]

Rebuilds everything in one run: random-init MobileNets (speed does not depend on the weights) for family x
resolution, exported by the tool's own `quantize()` (TFLite and ONNX, fp32 and int8, 16 calibration images),
plus two "peak" models converted the same ways: a 3 -> 1024 1x1 conv on a 56x56 map (the benchmark feeds
RGB images) followed by 1 or by 3 convolutions 1024 -> 1024 (3.29 GMAC each, a large GEMM). The peak is
2 x 3.29 GMAC / (p50 of the 3-conv model - p50 of the 1-conv model): the big GEMMs alone, without the
widening conv, input and output conversion (the widening conv alone takes 1.2 ms in int8: a 3-channel
input is XNNPACK's worst int8 case). Every model is timed by the tool's benchmark
(`run_benchmark`: a fresh process per model), interleaved (all models at one thread count, then the next, in
--rounds rounds; the median of the rounds' p50 is reported) so background load hits all rows alike.

Columns: p50/p90 (ms), speed-up of int8 over fp32 (same family, resolution, runtime, threads), delegated %
(TFLite: ops inside XNNPACK; ONNX: compute nodes on integer kernels; runtimes/inspect.py), achieved GMAC/s =
the model's MACs / p50, and % of the peak model's GMAC/s for the same runtime, precision and threads.
Writes DIR/speed_table.json and DIR/speed_table.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FAMILIES = ("v1", "v2", "v3-small", "v3-large")
RESOLUTIONS = (224, 128)
PEAK = {"cin": 1024, "cout": 1024, "size": 56, "layers": (1, 3)}
PEAK_NAME = "peak 1x1 conv"
RUNTIME = {".tflite": "litert", ".onnx": "onnxruntime"}


def build_family(root: Path, arch: str, resolution: int) -> tuple[Path, int]:
    from mnetdeploy.build import build
    from mnetdeploy.config import load_config
    from mnetdeploy.config import QuantizeConfig
    from mnetdeploy.quantize import quantize

    cfg = load_config(overrides={"model.arch": arch, "model.alpha": 1.0, "model.resolution": resolution,
                                 "output": str(root)})
    result = build(cfg)
    quantize(result.artifact_dir, QuantizeConfig(formats=["tflite", "onnx"], precisions=["fp32", "int8"],
                                                 num_calib=16))
    return result.artifact_dir, int(result.summary["macs"])


def build_peak(root: Path, layers: int) -> tuple[Path, int]:
    """The GEMM-bound reference: fp32 and int8 TFLite and ONNX of `layers` large 1x1 convolutions."""
    import keras
    import numpy as np

    from mnetdeploy.export import onnx as onnx_export
    from mnetdeploy.export import tflite
    from mnetdeploy.quantize.onnx_static import quantize_static_int8

    directory = root / f"peak_conv1x1_x{layers}"
    directory.mkdir(parents=True, exist_ok=True)
    size, cin, cout = PEAK["size"], PEAK["cin"], PEAK["cout"]
    image = keras.Input((size, size, 3), batch_size=1, name="input")
    x = keras.layers.Conv2D(cin, 1, activation="relu", name="widen")(image)
    for i in range(layers):
        x = keras.layers.Conv2D(cout, 1, activation="relu", name=f"conv{i}")(x)
    model = keras.Model(image, x)
    images = np.random.default_rng(0).uniform(-1, 1, (8, size, size, 3)).astype(np.float32)
    (directory / "model_fp32.tflite").write_bytes(tflite.convert_float(model, "fp32"))
    (directory / "model_int8.tflite").write_bytes(tflite.quantize_int8(model, images))
    onnx_export.save(onnx_export.keras_to_onnx(model), directory / "model_fp32.onnx")
    quantize_static_int8(directory / "model_fp32.onnx", directory / "model_int8.onnx", images)
    return directory, size * size * cin * cout * layers  # the big convs' MACs


def bench(path: Path, threads: int, runs: int, min_seconds: float) -> dict:
    from mnetdeploy.bench import run_benchmark

    r = run_benchmark(path, threads=threads, runs=runs, min_seconds=min_seconds, warmup=10)
    return {"p50": r.latency_ms.p50, "p90": r.latency_ms.p90}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="v2 and v3-small at 224 only, 2 rounds, shorter runs")
    ap.add_argument("--families", help=f"comma-separated subset of {','.join(FAMILIES)}")
    ap.add_argument("--resolutions", help="comma-separated, default 224,128")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, help="where to write the models and the table (default: a temp dir); "
                    "unchanged builds and exports in it are reused (the tool's own caching)")
    ap.add_argument("--build-only", action="store_true", help="build and export, do not measure")
    args = ap.parse_args(argv)
    families = args.families.split(",") if args.families else (("v2", "v3-small") if args.quick else FAMILIES)
    resolutions = ([int(r) for r in args.resolutions.split(",")] if args.resolutions
                   else ([224] if args.quick else list(RESOLUTIONS)))
    rounds, min_seconds = (2, 0.5) if args.quick else (args.rounds, 1.0)
    threads = [int(t) for t in args.threads.split(",")]
    root = args.out or Path(tempfile.mkdtemp(prefix="int8-speed-"))
    root.mkdir(parents=True, exist_ok=True)

    from mnetdeploy.runtimes.inspect import inspect_execution

    models = []  # (family, resolution, directory, macs)
    for arch in families:
        for res in resolutions:
            print(f"building + exporting {arch} {res}", file=sys.stderr, flush=True)
            directory, macs = build_family(root, arch, res)
            models.append((arch, res, directory, macs))
    print("building peak models", file=sys.stderr, flush=True)
    for layers in PEAK["layers"]:
        peak_dir, peak_macs = build_peak(root, layers)
        models.append((f"{PEAK_NAME} x{layers}", PEAK["size"], peak_dir, peak_macs))
    if args.build_only:
        return 0

    files = [(arch, res, directory / f"model_{prec}{ext}", macs, prec)
             for arch, res, directory, macs in models for ext in (".tflite", ".onnx") for prec in ("fp32", "int8")]
    samples: dict[tuple, list[dict]] = {}
    for rnd in range(rounds):
        for t in threads:
            for arch, res, path, macs, prec in files:
                print(f"round {rnd + 1}/{rounds} threads {t} {arch} {res} {path.name}", file=sys.stderr, flush=True)
                samples.setdefault((str(path), t), []).append(bench(path, t, args.runs, min_seconds))

    rows = []
    for arch, res, path, macs, prec in files:
        execution = inspect_execution(path, threads=1)
        share = execution.get("delegated_percent") if path.suffix == ".tflite" else (
            execution.get("int8_percent") if prec == "int8" else None)
        for t in threads:
            runs = samples[(str(path), t)]
            p50 = statistics.median(s["p50"] for s in runs)
            p90 = statistics.median(s["p90"] for s in runs)
            rows.append({"family": arch, "resolution": res, "runtime": RUNTIME[path.suffix], "precision": prec,
                         "threads": t, "p50_ms": round(p50, 3), "p90_ms": round(p90, 3),
                         "macs": macs, "gmacs_per_s": round(macs / (p50 * 1e6), 2), "delegated_percent": share,
                         "file": str(path)})
    index = {(r["family"], r["resolution"], r["runtime"], r["precision"], r["threads"]): r for r in rows}
    few, many = PEAK["layers"]
    for r in list(rows):  # the differential peak rows: the big GEMMs alone
        if r["family"] != f"{PEAK_NAME} x{many}":
            continue
        base = index[(f"{PEAK_NAME} x{few}", PEAK["size"], r["runtime"], r["precision"], r["threads"])]
        ms = r["p50_ms"] - base["p50_ms"]
        macs = r["macs"] - base["macs"]
        peak = {**r, "family": PEAK_NAME, "p50_ms": round(ms, 3), "p90_ms": None, "macs": macs,
                "gmacs_per_s": round(macs / (ms * 1e6), 2), "file": f"{base['file']} vs {r['file']}"}
        rows.append(peak)
        index[(PEAK_NAME, PEAK["size"], r["runtime"], r["precision"], r["threads"])] = peak
    for r in rows:
        fp32 = index[(r["family"], r["resolution"], r["runtime"], "fp32", r["threads"])]
        r["speedup_vs_fp32"] = round(fp32["p50_ms"] / r["p50_ms"], 2)
        peak = index[(PEAK_NAME, PEAK["size"], r["runtime"], r["precision"], r["threads"])]
        r["percent_of_peak"] = round(100 * r["gmacs_per_s"] / peak["gmacs_per_s"], 1)

    header = ("| family | res | runtime | prec | thr | p50 ms | p90 ms | vs fp32 | delegated/int8 % | GMAC/s "
              "| % peak |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [header] + [
        f"| {r['family']} | {r['resolution']} | {r['runtime']} | {r['precision']} | {r['threads']} | "
        f"{r['p50_ms']:.2f} | {'-' if r['p90_ms'] is None else format(r['p90_ms'], '.2f')} | "
        f"{r['speedup_vs_fp32']:.2f}x | "
        f"{'-' if r['delegated_percent'] is None else r['delegated_percent']} | {r['gmacs_per_s']:.1f} | "
        f"{r['percent_of_peak']:.1f} |" for r in rows]
    table = "\n".join(lines)
    (root / "speed_table.json").write_text(json.dumps({"rounds": rounds, "threads": threads, "rows": rows},
                                                      indent=1))
    (root / "speed_table.md").write_text(table + "\n")
    print(table)
    print(f"\nwritten to {root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
