"""sweep.json states for rendering tests, without building anything: grid points as `run_sweep` records them,
analysed (frontier, recommendation, fit) by the real `sweep.analyse`."""

from __future__ import annotations

from mnetdeploy import sweep as sw
from mnetdeploy.budgets import Budgets

SIZE_PER_MMAC = {"fp32": 4096, "fp16": 2048, "int8": 1024}   # a file grows with the model, as the real ones do


def macs(alpha: float, resolution: int) -> float:
    """MobileNet v2's multiply-accumulates scale with alpha^2 and resolution^2 (300 M at 1.0/224)."""
    return 300e6 * alpha ** 2 * (resolution / 224) ** 2


def sweep_state(measured: list[tuple[float, int, str, float, float | None]], threads: int = 1) -> dict:
    """`measured`: (alpha, resolution, precision, p50 ms, top-1 % or None) per row."""
    points: dict[str, dict] = {}
    for alpha, res, precision, p50, top1 in measured:
        key = f"v2_{alpha}_{res}"
        p = points.setdefault(key, {"alpha": alpha, "resolution": res, "params": int(3.5e6 * alpha ** 2),
                                    "macs": int(macs(alpha, res)), "files": {}, "measurements": [],
                                    "settings": "0" * 64, "artifact_dir": f"/sweep/models/{key}"})
        p["files"][precision] = {"file": f"model_{precision}.tflite", "top1": top1,
                                 "bytes": int(SIZE_PER_MMAC[precision] * p["macs"] / 1e6)}
        p["measurements"].append({"precision": precision, "threads": threads, "device": "host", "p50_ms": p50,
                                  "p90_ms": p50 * 1.08})
    accuracy = all(m[4] is not None for m in measured)
    alphas = sorted({m[0] for m in measured})
    resolutions = sorted({m[1] for m in measured})
    state = {"schema": sw.SCHEMA, "schema_version": sw.SCHEMA_VERSION, "tool_version": "test",
             "grid": {"arch": "v2", "alphas": alphas, "resolutions": resolutions,
                      "precisions": sorted({m[2] for m in measured}), "threads": [threads], "devices": ["host"]},
             "budgets": {"source": None, "rules": []},
             "accuracy": {"measured": accuracy, "note": "top-1 on 500 images" if accuracy else
                          "accuracy not measured (no --data): the frontier trades latency for MACs (capacity)"},
             "points": points,
             "timing": {"prepare_seconds": 120.0, "bench_seconds": 40.0, "wall_seconds": 160.0, "jobs": 2,
                        "prepared_now": len(points), "benchmarked_now": len(points), "pending": 0}}
    state.update(sw.analyse(state, list(points), Budgets(), accuracy))
    return state
