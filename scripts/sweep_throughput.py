"""Sweep throughput: the same sweep serially, with --jobs 2, and on a 2-worker Dask LocalCluster, side by side.

    .venv/bin/python scripts/sweep_throughput.py [--points 8] [--rounds 1]

Every run starts cold (its own output folder: nothing reused) and prepares the same points (MobileNet v1 0.25 at
8 resolutions, fp32 + int8 TFLite, 16 calibration images), then benchmarks them on the host (briefly: the
benchmark phase is the same in every mode and runs on the client). Modes run one after another within each
round, rotating which goes first, so a machine that slows down during the run does not favour one mode.
Prints wall time, the preparation time and points per minute for each mode.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

RESOLUTIONS = [96, 128, 160, 192, 224, 256, 288, 320]


def one_sweep(mode: str, out: Path, points: int, client) -> dict:
    from mnetdeploy.config import load_config
    from mnetdeploy.sweep import run_sweep, sweep_plan

    config = load_config(None, {"model.arch": "v1", "sweep.alphas": [0.25], "sweep.resolutions": RESOLUTIONS[:points],
                                "quantize.precisions": ["fp32", "int8"], "quantize.num_calib": 16,
                                "quantize.int8_graph": "float-islands", "bench.runs": 10, "bench.warmup": 2,
                                "bench.min_seconds": 0, "sweep.out": str(out),
                                "sweep.jobs": 2 if mode == "jobs 2" else 1})
    grid, options = sweep_plan(config)
    if mode == "dask 2 workers":
        from mnetdeploy.cluster import dask_executor

        options.executor = dask_executor(client)
    start = time.perf_counter()
    state = run_sweep(config, grid, options)
    wall = time.perf_counter() - start
    return {"wall": wall, "prepare": state["timing"]["prepare_seconds"], "points": len(state["points"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    modes = ["serial", "jobs 2", "dask 2 workers"]
    results: dict[str, list[dict]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="mnetdeploy-throughput-") as work, \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        for r in range(args.rounds):
            order = modes[r % 3:] + modes[:r % 3]
            for mode in order:
                out = Path(work) / f"{mode.replace(' ', '_')}_{r}"
                result = one_sweep(mode, out, args.points, client)
                results[mode].append(result)
                print(f"round {r + 1} {mode:15s} wall {result['wall']:7.1f} s  prepare {result['prepare']:7.1f} s",
                      flush=True)
    cpu = os.cpu_count()
    print(f"\n{args.points} points (v1 0.25, {args.points} resolutions, fp32+int8 TFLite), {cpu} CPUs, "
          f"{args.rounds} round(s)")
    print(f"{'mode':15s} {'wall s':>8s} {'prepare s':>10s} {'points/min':>11s} {'speed-up':>9s}")
    base = min(r["wall"] for r in results["serial"])
    for mode in modes:
        wall = min(r["wall"] for r in results[mode])
        prepare = min(r["prepare"] for r in results[mode])
        print(f"{mode:15s} {wall:8.1f} {prepare:10.1f} {60 * args.points / wall:11.2f} {base / wall:8.2f}x")


if __name__ == "__main__":
    main()
