"""`mnetdeploy sweep`: one base Config times a grid of (alpha, resolution) x precisions x threads, measured.

    from mnetdeploy.config import load_config
    from mnetdeploy.sweep import Grid, SweepOptions, run_sweep
    state = run_sweep(load_config(None), Grid("v2", (0.35, 0.5), (96, 128), ("fp32", "int8"), (1,)),
                      SweepOptions(out="sweeps/v2"))

How a sweep runs
----------------
1. Prepare: every grid point (alpha, resolution) is one artifact directory `<out>/models/<name>`, built and
   quantized by the library (`build.build`, `quantize.quantize`; TFLite by default) and, when `--data` and
   `--weights` make accuracy meaningful, evaluated. Points are independent, so they go through an *executor*
   (below), in parallel with `--jobs N`. Each step keeps its own content cache, so a half-prepared point
   costs little the second time.
2. Benchmark: every (precision, threads) of every point, serially per device: a lock per device key means two
   models never share a device at once (latency would lie). Several devices run side by side, one thread each.
   Benchmarks start only once preparation is done: on the host, builds running next to a benchmark would
   steal its CPU.
3. Analyse (pure functions, no TensorFlow): the table, the Pareto frontier, the recommendation under the
   budgets, and the fit p50 = a * MACs + b per (precision, threads, device).

Resuming: `<out>/sweep.json` is rewritten atomically after every prepared and every benchmarked point. A rerun
skips points whose recorded `settings` hash (model, quantize, eval and bench settings) is unchanged: prepared
points are not rebuilt, fully measured ones not re-benchmarked. Changing a setting invalidates only the
points it touches.

Executors and distributed engines
---------------------------------
An executor is any callable `executor(fn, jobs) -> iterable of fn(job)` (any order; every result names its
point). `fn` is the module-level `prepare_point` and each job a plain dict, so both pickle. The default,
`process_executor(n)`, is a "spawn" ProcessPoolExecutor (TensorFlow is not fork-safe); `serial_executor`
runs in this process. On a Dask cluster (`--cluster tcp://scheduler:8786`, or sweep.cluster in the config),
`cluster.dask_executor` sends each point to a worker and brings its artifact directory back; workers need
no shared filesystem (mnetdeploy/cluster.py). Benchmarks always run here, after preparation.

    from distributed import Client                            # pip install 'mnetdeploy[dask]'
    from mnetdeploy.cluster import dask_executor
    run_sweep(cfg, grid, SweepOptions(out=..., executor=dask_executor(Client("tcp://sched:8786"))))

Any other engine plugs in the same way; from the command line, `--executor package.module:factory` calls
`factory(jobs)` for the executor (such an executor's workers must see `<out>` at the same path).

sweep.json (schema "mnetdeploy.sweep", version 1)
-------------------------------------------------
    {"schema", "schema_version", "tool_version", "created", "updated",
     "grid": {"arch", "alphas", "resolutions", "precisions", "threads", "devices"},
     "budgets": {"source": budgets file | null, "rules": [one line per rule]},
     "accuracy": {"measured": bool, "note"},
     "points": {"<arch>_<alpha>_<res>": {"alpha", "resolution", "settings", "artifact_dir", "params", "macs",
                "files": {"<precision>": {"file", "bytes", "top1"}}, "prepared_at", "prepare_seconds",
                "measurements": [{"precision", "threads", "device", "p50_ms", "p90_ms", "measured_at"}],
                "finished_at"}},
     "rows": [{"point", "file", "format", "alpha", "resolution", "precision", "threads", "device", "params", "macs",
               "size_bytes", "p50_ms", "p90_ms", "top1", "on_frontier"}],
     "frontier": {"y": "top1" | "macs", "rows": [row indices]},
     "recommendation": {"row": index | null, "reason"},
     "fit": [{"precision", "threads", "device", "a_ms_per_mmac", "b_ms", "r2", "n",
              "departures": [{"row", "residual_pct", "note"}], "residual_pct_by_alpha": {"<alpha>": pct}}],
     "timing": {"prepare_seconds", "bench_seconds", "wall_seconds", "jobs"}}
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import multiprocessing
import platform
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mnetdeploy import __version__
from mnetdeploy.budgets import Budgets, load_budgets, quick_budgets, row_failures, rule_summary
from mnetdeploy.config import Config
from mnetdeploy.errors import ConfigError, UserError
from mnetdeploy.fsutil import sha256_json, write_json

SCHEMA = "mnetdeploy.sweep"
SCHEMA_VERSION = 1
STATE_FILE = "sweep.json"
DEPARTURE = 0.25          # a point whose latency is off the MACs line by more than this fraction is flagged
Executor = Callable[[Callable[[dict], dict], list[dict]], Iterable[dict]]
Say = Callable[[str], None]


# --------------------------------------------------------------------------------------------- inputs

@dataclass(frozen=True)
class Grid:
    arch: str
    alphas: tuple[float, ...]
    resolutions: tuple[int, ...]
    precisions: tuple[str, ...] = ("fp32", "int8")
    threads: tuple[int, ...] = (1,)
    devices: tuple[str, ...] = ("host",)


@dataclass
class SweepOptions:
    out: str | Path
    jobs: int = 1
    executor: Executor | None = None       # None: process_executor(jobs), or serial_executor for jobs == 1
    budgets: Budgets = field(default_factory=Budgets)  # the gate's budgets (budgets.py), applied per row
    formats: tuple[str, ...] = ("tflite",)
    max_points: int | None = None          # stop after preparing/measuring this many new points (then resume)


def sweep_plan(config: Config) -> tuple[Grid, SweepOptions]:
    """The grid and options a config describes (its `sweep` section plus model.arch, quantize.precisions,
    bench.threads and bench.devices): the one place `mnetdeploy sweep` and Python callers get them from."""
    sw = config.sweep
    grid = Grid(config.model.arch, _unique(sw.alphas), _unique(sw.resolutions),
                _unique(config.quantize.precisions), _unique(config.bench.threads), _unique(config.bench.devices))
    executor = None
    if sw.cluster:
        from mnetdeploy.cluster import dask_executor

        executor = dask_executor(sw.cluster)
    options = SweepOptions(out=sw.out or str(Path("sweeps") / grid.arch), jobs=sw.jobs, max_points=sw.max_points,
                           executor=executor,
                           budgets=quick_budgets(sw.budget_latency_ms, sw.budget_size_kb, sw.min_top1,
                                                 load_budgets(sw.budgets) if sw.budgets else None),
                           formats=tuple(sw.formats))
    return grid, options


def _unique(values: list) -> tuple:
    return tuple(dict.fromkeys(values))  # repeated values would only measure the same thing twice


def point_configs(base: Config, grid: Grid, out: Path, formats: tuple[str, ...]) -> list[Config]:
    """One validated Config per (alpha, resolution); a bad grid value fails here, before anything runs."""
    from pydantic import ValidationError

    from mnetdeploy.bench import check_device
    from mnetdeploy.config import one_line_error

    for device in grid.devices:
        check_device(device)
    configs = []
    for alpha in grid.alphas:
        for res in grid.resolutions:
            data = base.to_dict()
            data["name"] = None
            data["output"] = str(out / "models")
            data["model"].update(arch=grid.arch, alpha=alpha, resolution=res)
            data["quantize"].update(formats=list(formats), precisions=list(grid.precisions))
            data["bench"].update(threads=list(grid.threads), devices=list(grid.devices))
            try:
                configs.append(Config.model_validate(data))
            except ValidationError as e:
                raise ConfigError(f"sweep point alpha {alpha:g}, resolution {res}: "
                                  f"{one_line_error(e, 'grid', None).split(': ', 1)[1]}") from None
    return configs


def accuracy_note(config: Config) -> tuple[bool, str]:
    e, m = config.eval, config.model
    if e.data is None:
        return False, "accuracy not measured (no --data): the frontier trades latency for MACs (capacity)"
    if not Path(e.data).is_dir():
        raise UserError(f"sweep --data {e.data}: folder not found; pass a labelled image folder")
    if not m.weights:
        return False, ("accuracy not measured: without --weights every model has random weights, so top-1 "
                       "would be chance; the frontier trades latency for MACs (capacity) instead")
    return True, f"top-1 on {e.data}" + (f" ({e.limit} images)" if e.limit else "")


# ------------------------------------------------------------------------------------------ preparation

def prepare_point(job: dict) -> dict:
    """Build, quantize and (job["evaluate"]) evaluate one grid point. Module-level and dict in, dict out, so
    any executor (process pool, Dask, Ray) can ship it; it only reads and writes the artifact directory."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from mnetdeploy.build import build
    from mnetdeploy.quantize import quantize

    start = time.perf_counter()
    config = Config.model_validate(job["config"])
    built = build(config)
    q = config.quantize
    quantized = quantize(built.artifact_dir, q)
    files: dict[str, dict[str, Any]] = {a.precision: {"file": a.file, "bytes": a.bytes, "top1": None}
             for a in quantized.artifacts if a.format == "tflite" or "tflite" not in q.formats}
    if job.get("evaluate"):
        from mnetdeploy.evaluate import evaluate
        from mnetdeploy.results import store_results

        e = config.eval
        assert e.data is not None  # job["evaluate"] is accuracy_note's verdict: False without eval data
        paths = [built.artifact_dir / f["file"] for f in files.values()]
        results = evaluate(paths, e.data, labels=e.labels, label_offset=e.label_offset, limit=e.limit,
                           skip_first=e.skip_first, progress=False)
        store_results("eval", [r.to_dict() for r in results])
        by_name = {Path(r.model).name: r.top1 for r in results}
        for f in files.values():
            f["top1"] = by_name.get(f["file"])
    return {"key": job["key"], "artifact_dir": str(built.artifact_dir), "params": int(built.summary["params"]),
            "macs": int(built.summary["macs"]), "files": files, "build_reused": built.reused,
            "quantize_reused": quantized.reused, "prepare_seconds": round(time.perf_counter() - start, 3)}


def serial_executor(fn: Callable[[dict], dict], jobs: list[dict]) -> Iterable[dict]:
    """In this process, one job after another (no parallelism; the reference executor)."""
    for job in jobs:
        yield fn(job)


def process_executor(workers: int) -> Executor:
    """A "spawn" process pool: every worker a fresh interpreter (TensorFlow breaks after fork)."""
    def run(fn: Callable[[dict], dict], jobs: list[dict]) -> Iterable[dict]:
        if not jobs:
            return
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
            futures = [pool.submit(fn, job) for job in jobs]
            for future in cf.as_completed(futures):  # record each point as soon as it is ready
                yield future.result()
    return run


def load_executor(spec: str, jobs: int) -> Executor:
    """`package.module:factory` -> factory(jobs), the way to plug in a Dask or Ray executor from the CLI."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"sweep --executor {spec}: expected package.module:factory")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise UserError(f"sweep --executor {spec}: cannot import it ({e}); install the engine's extra") from None
    try:
        executor = factory(jobs)
    except Exception as e:  # refused by name before any point is built, not an internal error mid-sweep
        raise UserError(f"sweep --executor {spec}: calling it as FACTORY({jobs}) failed ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); it must take the job count and return an "
                        "executor (see `pydoc mnetdeploy.sweep`)") from None
    if not callable(executor):
        raise UserError(f"sweep --executor {spec}: FACTORY({jobs}) returned a {type(executor).__name__}, not an "
                        "executor (a callable run(fn, jobs); see `pydoc mnetdeploy.sweep`)")
    return executor


# ------------------------------------------------------------------------------------------ benchmarking

class DeviceLocks:
    """One lock per device key: whoever benchmarks on a device holds its lock for the whole measurement."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __call__(self, device: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(device, threading.Lock())


def measure_point(point: dict, grid: Grid, config: Config, device: str, locks: DeviceLocks) -> list[dict]:
    from mnetdeploy.bench import run_benchmark
    from mnetdeploy.results import store_results

    rows = []
    for precision in grid.precisions:
        model = Path(point["artifact_dir"]) / point["files"][precision]["file"]
        for threads in grid.threads:
            with locks(device):
                result = run_benchmark(model, device=device, settings=config.bench.settings(device, threads))
            store_results("bench", [result.to_dict()])  # the point's own report sees it too
            rows.append({"precision": precision, "threads": threads, "device": device,
                         "p50_ms": result.latency_ms.p50, "p90_ms": result.latency_ms.p90, "measured_at": _now()})
    return rows


def pool_label(identities: dict[str, dict]) -> str:
    """The name a pool's rows carry: its devices are one kind (model and SoC), checked here."""
    kinds = {(i.get("kind"), i.get("model"), i.get("soc")) for i in identities.values()}
    if len(kinds) != 1:
        listing = "; ".join(f"{d}: {i.get('model')} ({i.get('soc')})" for d, i in identities.items())
        raise UserError(f"bench.pool: the devices are not the same kind ({listing}); a pool shares the points "
                        "between identical devices: list one kind, or drop bench.pool to measure on each")
    kind, model, soc = kinds.pop()
    return f"{kind} pool: {model or soc or 'device'}"


def measure_on_pool(state: _State, keys: list[str], grid: Grid, configs: dict[str, Config],
                    identities: dict[str, dict], locks: DeviceLocks, say: Say) -> dict[str, dict]:
    """Spread the points over devices of one kind: each point is measured once, by whichever device is free
    (one benchmark per device at a time). A device that stops answering is dropped (reported) and the point it
    was measuring goes back to the others; when none is left, the last device's error is raised."""
    import queue

    from mnetdeploy.config import DeviceSettings
    from mnetdeploy.devices import DeviceLost, device_identity

    def answers(device: str, config: Config) -> bool:
        settings = config.bench.settings(device, 1)
        assert isinstance(settings, DeviceSettings)  # a pool holds devices, never the host
        try:
            device_identity(device, settings)
            return True
        except UserError:
            return False

    label = pool_label(identities)
    todo: queue.Queue[str] = queue.Queue()
    for key in keys:
        todo.put(key)
    report: dict[str, dict] = {d: {"points": 0, "status": "ok"} for d in grid.devices}
    errors: list[BaseException] = []
    busy = [0]                    # points being measured: one may come back from a device that drops out
    guard = threading.Lock()

    def work(device: str) -> None:
        while True:
            try:
                key = todo.get(timeout=0.2)
            except queue.Empty:
                with guard:
                    if busy[0] == 0 and todo.empty():
                        return
                continue
            with guard:
                busy[0] += 1
            try:
                if not measure(device, key):
                    return
            finally:
                with guard:
                    busy[0] -= 1

    def measure(device: str, key: str) -> bool:
        """Measure one point on `device`; False when the device dropped out (the point is queued again)."""
        point = state.point(key)
        assert point is not None  # keys are prepared points
        try:
            rows = measure_point(point, grid, configs[key], device, locks)
        except UserError as e:
            if not isinstance(e, DeviceLost) and answers(device, configs[key]):
                raise   # the device is there: the model failed, not the device
            report[device]["status"] = f"dropped: {e}"
            say(f"{device} dropped out ({e}); its points go to the other devices")
            todo.put(key)
            errors.append(e)
            return False
        for row in rows:
            row["measured_on"], row["device"] = device, label
        state.add_measurements(key, label, rows, (label,))
        report[device]["points"] += 1
        say(f"benchmarked {key} on {device} ({label})")
        return True

    with cf.ThreadPoolExecutor(max_workers=len(grid.devices)) as pool:
        for future in [pool.submit(work, d) for d in grid.devices]:
            future.result()
    if not todo.empty():
        raise errors[-1] if errors else UserError(f"{label}: points left unmeasured")
    return report


# ------------------------------------------------------------------------------------------------- state

def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def point_key(config: Config) -> str:
    return config.artifact_name


def point_settings(config: Config, accuracy: bool, devices: dict[str, Any] | None = None) -> str:
    """What a point's recorded results depend on (`devices`: the identity of each device measured on); a
    changed hash means the point is redone."""
    from mnetdeploy.bench.environment import cpu_model

    d = config.to_dict()
    return sha256_json({"model": d["model"], "quantize": d["quantize"], "eval": d["eval"] if accuracy else None,
                        "bench": d["bench"], "machine": {"node": platform.node(), "cpu": cpu_model()},
                        "devices": devices or {},
                        "tool_version": __version__})


def load_state(out: Path) -> dict:
    import json

    path = out / STATE_FILE
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
    except ValueError:
        raise UserError(f"{path}: not valid JSON; delete it to start the sweep afresh") from None
    if state.get("schema") != SCHEMA or state.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path}: not a {SCHEMA} v{SCHEMA_VERSION} file; use another --out or delete it")
    return state


class _State:
    """sweep.json in memory; `save()` after every change so an interruption loses at most one point."""

    def __init__(self, out: Path, grid: Grid, budgets: Budgets, accuracy: tuple[bool, str]):
        self.path = out / STATE_FILE
        old = load_state(out)
        self.data = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "tool_version": __version__,
                     "created": old.get("created", _now()), "updated": _now(),
                     "grid": {"arch": grid.arch, "alphas": list(grid.alphas), "resolutions": list(grid.resolutions),
                              "precisions": list(grid.precisions), "threads": list(grid.threads),
                              "devices": list(grid.devices)},
                     "budgets": {"source": budgets.source if budgets.rules else None,
                                 "rules": [rule_summary(r) for r in budgets.rules]},
                     "accuracy": {"measured": accuracy[0], "note": accuracy[1]},
                     "points": old.get("points", {})}
        self._lock = threading.Lock()

    def point(self, key: str) -> dict | None:
        return self.data["points"].get(key)

    def update(self, key: str, **values: Any) -> None:
        with self._lock:
            self.data["points"].setdefault(key, {}).update(values)
            self.save()

    def add_measurements(self, key: str, device: str, rows: list[dict], devices: tuple[str, ...]) -> None:
        """Replace `device`'s rows of the point; the point is finished once every device has measured it.
        Under the lock: the device threads of a multi-device sweep update the same point."""
        with self._lock:
            point = self.data["points"][key]
            kept = [m for m in point.get("measurements", []) if m["device"] != device]
            point["measurements"] = kept + rows
            measured = {m["device"] for m in point["measurements"]}
            point["finished_at"] = _now() if measured >= set(devices) else None
            self.save()

    def save(self) -> None:
        self.data["updated"] = _now()
        write_json(self.path, self.data)


# -------------------------------------------------------------------------------------------------- run

def run_sweep(base: Config, grid: Grid, options: SweepOptions, progress: Say | None = None) -> dict:
    """Prepare, benchmark and analyse every grid point; returns the sweep.json content (also written)."""
    say = progress or (lambda _msg: None)
    wall = time.perf_counter()
    out = Path(options.out)
    configs = point_configs(base, grid, out, options.formats)
    accuracy = accuracy_note(base)
    state = _State(out, grid, options.budgets, accuracy)
    from mnetdeploy.devices import device_identities

    identities = device_identities(base.bench)
    if base.bench.pool and len(grid.devices) > 1:
        if "host" in grid.devices:
            raise UserError("bench.pool: a pool shares points between identical devices; the host is not one of "
                            "them: list only devices, or drop bench.pool")
        pool_label(identities)   # not one kind: refused before anything is built
    settings = {point_key(c): point_settings(c, accuracy[0], identities) for c in configs}
    configs_by_key = {point_key(c): c for c in configs}
    budget = options.max_points if options.max_points is not None else len(configs)

    def fresh(key: str, field_name: str) -> bool:
        p = state.point(key)
        if not (p and p.get("settings") == settings[key] and p.get(field_name)):
            return False
        # A deleted artifact directory makes the record stale: prepare the point again.
        return all((Path(p["artifact_dir"]) / f["file"]).is_file() for f in p["files"].values())

    todo = [k for k in configs_by_key if not fresh(k, "prepared_at")][:budget]
    jobs = [{"key": k, "config": configs_by_key[k].to_dict(), "evaluate": accuracy[0],
             "artifact_dir": str(configs_by_key[k].artifact_dir)} for k in todo]
    executor = options.executor or (process_executor(options.jobs) if options.jobs > 1 else serial_executor)
    start = time.perf_counter()
    for i, result in enumerate(executor(prepare_point, jobs), 1):
        key = result.pop("key")
        c = configs_by_key[key]
        state.update(key, alpha=c.model.alpha, resolution=c.model.resolution, settings=settings[key],
                     measurements=[], finished_at=None, prepared_at=_now(), **result)
        say(f"prepared {key} ({i}/{len(jobs)})")
    prepare_seconds = time.perf_counter() - start

    start = time.perf_counter()
    to_measure = [k for k in configs_by_key if fresh(k, "prepared_at") and not fresh(k, "finished_at")][:budget]
    locks = DeviceLocks()

    def bench_device(device: str) -> None:
        for key in to_measure:
            point = state.point(key)
            assert point is not None  # to_measure holds prepared points only
            rows = measure_point(point, grid, configs_by_key[key], device, locks)
            state.add_measurements(key, device, rows, grid.devices)
            say(f"benchmarked {key} on {device}")

    if base.bench.pool and len(grid.devices) > 1:
        state.data["devices"] = measure_on_pool(state, to_measure, grid, configs_by_key, identities, locks, say)
    else:
        with cf.ThreadPoolExecutor(max_workers=len(grid.devices)) as pool:  # one thread per device, never more
            for future in [pool.submit(bench_device, d) for d in grid.devices]:
                future.result()
    bench_seconds = time.perf_counter() - start

    finished = [configs_by_key[k] for k in configs_by_key if fresh(k, "finished_at")]
    state.data.update(analyse(state.data, [point_key(c) for c in finished], options.budgets, accuracy[0]))
    state.data["timing"] = {"prepare_seconds": round(prepare_seconds, 2), "bench_seconds": round(bench_seconds, 2),
                            "wall_seconds": round(time.perf_counter() - wall, 2), "jobs": options.jobs,
                            "prepared_now": len(jobs), "benchmarked_now": len(to_measure),
                            "pending": len(configs) - len(finished)}
    state.data["outside_grid"] = outside_grid_note(state.data["points"], configs_by_key, out)
    state.save()
    from mnetdeploy.sweep_report import write_outputs

    write_outputs(out, state.data)
    return state.data


def outside_grid_note(points: dict[str, dict], grid_keys: Iterable[str], out: Path) -> str | None:
    """A rerun with a narrower grid into the same folder keeps the earlier points in sweep.json but shows only
    this grid's: say so, so a shorter sweep.html is never mistaken for all that was measured."""
    shown_now = set(grid_keys)
    outside = [p for k, p in points.items() if k not in shown_now]
    if not outside:
        return None
    shown = ", ".join(sorted({f"{p['alpha']:g}/{p['resolution']}" for p in outside if "alpha" in p}))
    return (f"{len(outside)} point(s) of an earlier, wider grid in {out} are kept in sweep.json but not shown "
            f"({shown or 'unprepared'}): rerun with that grid to show them, or use another out folder")


# ------------------------------------------------------------------------------------------------ analysis

def table_rows(state: dict, keys: list[str]) -> list[dict]:
    rows = []
    for key in keys:
        p = state["points"][key]
        for m in p["measurements"]:
            f = p["files"][m["precision"]]
            rows.append({"point": key, "file": f["file"], "format": Path(f["file"]).suffix.lstrip("."),
                         "alpha": p["alpha"], "resolution": p["resolution"], "precision": m["precision"],
                         "threads": m["threads"], "device": m["device"], "measured_on": m.get("measured_on"),
                         "params": p["params"], "macs": p["macs"], "size_bytes": f["bytes"],
                         "p50_ms": m["p50_ms"], "p90_ms": m["p90_ms"], "top1": f.get("top1")})
    return rows


def pareto_front(rows: list[dict], y: str) -> list[int]:
    """Indices of the non-dominated rows: lower p50 is better, higher `y` (top1, or macs as capacity) is
    better. Rows are compared within their (device, threads) group: a thread count is a deployment choice,
    not a different model."""
    front = []
    for i, r in enumerate(rows):
        if r.get(y) is None or r.get("p50_ms") is None:
            continue
        dominated = any(j != i and o.get(y) is not None and (o["device"], o["threads"]) == (r["device"], r["threads"])
                        and o["p50_ms"] <= r["p50_ms"] and o[y] >= r[y]
                        and (o["p50_ms"] < r["p50_ms"] or o[y] > r[y])
                        for j, o in enumerate(rows))
        if not dominated:
            front.append(i)
    return front


def budget_failures(row: dict, budgets: Budgets, rows: list[dict] | None = None) -> list[str]:
    """Why `row` breaks the budgets (the gate's rules, budgets.row_failures); `rows` supply the fp32 top-1
    of the same point for max_accuracy_drop."""
    reference = next((r.get("top1") for r in rows or [] if r["point"] == row["point"] and r["precision"] == "fp32"),
                     None)
    return row_failures(budgets, row, reference)


def row_label(row: dict) -> str:
    return f"{row['alpha']:g}/{row['resolution']} {row['precision']} {row['threads']}thr"


# Two p50s closer than this (relative) are a tie: identical reruns' medians differ by 1.5-4 % on a shared
# machine (mnetdeploy/gate.py), so a smaller difference is noise, not a reason to pick a 3.5x larger file.
LATENCY_TIE = 0.05


def recommend(rows: list[dict], budgets: Budgets, y: str) -> tuple[int | None, str]:
    """Among rows meeting every budget, the most accurate (`y` = top1) or the most capable (`y` = macs);
    ties go to the faster, and latencies within LATENCY_TIE of the fastest (noise) to the smaller file.
    Returns (row index or None, a one-line reason)."""
    if not rows:
        return None, "nothing measured yet"
    fits = [i for i, r in enumerate(rows) if not budget_failures(r, budgets, rows)]
    failed: dict[str, int] = {}
    for r in rows:
        for why in budget_failures(r, budgets, rows):
            what = why.split(" ")[0]
            failed[what] = failed.get(what, 0) + 1
    failures = ", ".join(f"{n} {'below' if what == 'top-1' else 'over'} {what}" for what, n in failed.items())
    if not fits:
        closest = min(range(len(rows)), key=lambda i: len(budget_failures(rows[i], budgets, rows)))
        return None, (f"no configuration meets the budgets ({failures}); closest: {row_label(rows[closest])} "
                      f"({'; '.join(budget_failures(rows[closest], budgets, rows))})")
    def value(i: int) -> float:
        return rows[i][y] if rows[i][y] is not None else float("-inf")

    top = [i for i in fits if value(i) == max(value(j) for j in fits)]
    fastest = min(rows[i]["p50_ms"] for i in top)
    tied = [i for i in top if rows[i]["p50_ms"] <= fastest * (1 + LATENCY_TIE)]
    best = min(tied, key=lambda i: (rows[i]["size_bytes"], rows[i]["p50_ms"], rows[i]["threads"]))
    b = rows[best]
    what = f"top-1 {b['top1']:.1f} %" if y == "top1" else f"{b['macs'] / 1e6:.1f} M MACs (the most capacity)"
    beat = len(fits) - 1
    reason = (f"{row_label(b)}: {what} at p50 {b['p50_ms']:.2f} ms, {b['size_bytes'] / 1024:.0f} KB; "
              f"beat {beat} other fitting row{'s' if beat != 1 else ''} on {'accuracy' if y == 'top1' else 'MACs'}")
    others = [rows[i] for i in tied if i != best]
    if others:
        reason += (f"; p50 tied within {100 * LATENCY_TIE:.0f} % (run-to-run noise) with "
                   + ", ".join(f"{row_label(o)} ({o['p50_ms']:.3f} ms, {o['size_bytes'] / 1024:.0f} KB)"
                               for o in others)
                   + f": chose the smallest file ({b['p50_ms']:.3f} ms)")
    elif len(top) > 1:
        reason += f"; the fastest of {len(top)} equal on {'accuracy' if y == 'top1' else 'MACs'}"
    if failures:
        reason += f"; {len(rows) - len(fits)} failed the budgets ({failures})"
    return best, reason


def fit_latency(rows: list[dict]) -> list[dict]:
    """Least squares p50 = a * MACs + b per (precision, threads, device), with R^2 and the rows whose
    residual exceeds DEPARTURE of their prediction."""
    import numpy as np

    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r["precision"], r["threads"], r["device"]), []).append(i)
    fits = []
    for (precision, threads, device), idx in groups.items():
        x = np.array([rows[i]["macs"] / 1e6 for i in idx])
        y = np.array([rows[i]["p50_ms"] for i in idx])
        if len(idx) < 2 or np.ptp(x) == 0:
            continue
        a, b = np.polyfit(x, y, 1)
        pred = a * x + b
        ss_res, ss_tot = float(((y - pred) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
        r2 = 1 - ss_res / ss_tot if ss_tot > 0 else 1.0
        median_macs = float(np.median(x))
        departures = []
        for i, xi, yi, pi in zip(idx, x, y, pred):
            rel = (yi - pi) / pi if pi > 0 else float("inf")
            if abs(rel) > DEPARTURE:
                if rel > 0 and xi <= median_macs:
                    note = "slower than its MACs predict: memory-bound depthwise layers dominate a small model"
                elif rel > 0:
                    note = "slower than its MACs predict"
                else:
                    note = "faster than its MACs predict"
                departures.append({"row": i, "residual_pct": round(100 * rel, 1) if np.isfinite(rel) else None,
                                   "note": note})
        # Per width multiplier (a "family" of resolutions): its mean distance from the line, in % of the
        # prediction. Narrow families sitting above the line are the memory-bound ones.
        by_alpha: dict[float, list[float]] = {}
        for i, yi, pi in zip(idx, y, pred):
            if pi > 0:
                by_alpha.setdefault(rows[i]["alpha"], []).append(100 * (yi - pi) / pi)
        fits.append({"precision": precision, "threads": threads, "device": device,
                     "a_ms_per_mmac": round(float(a), 6), "b_ms": round(float(b), 4), "r2": round(r2, 4),
                     "n": len(idx), "departures": departures,
                     "residual_pct_by_alpha": {f"{k:g}": round(float(np.mean(v)), 1)
                                               for k, v in sorted(by_alpha.items())}})
    return fits


def analyse(state: dict, keys: list[str], budgets: Budgets, accuracy: bool) -> dict:
    rows = table_rows(state, keys)
    y = "top1" if accuracy and rows and all(r["top1"] is not None for r in rows) else "macs"
    front = pareto_front(rows, y)
    for i, r in enumerate(rows):
        r["on_frontier"] = i in front
    best, reason = recommend(rows, budgets, y)
    return {"rows": rows, "frontier": {"y": y, "rows": front},
            "recommendation": {"row": best, "reason": reason}, "fit": fit_latency(rows)}
