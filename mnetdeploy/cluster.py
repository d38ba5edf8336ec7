"""Sweeps on a Dask cluster: every point's build/quantize/check/eval runs on a worker, its artifacts come back.

    mnetdeploy sweep configs/v2_0.5_128.yaml --cluster tcp://scheduler:8786     # or sweep.cluster in the config
    run_sweep(cfg, grid, SweepOptions(out=..., executor=dask_executor(Client("tcp://scheduler:8786"))))

Workers share nothing with the client but the Python environment (the same mnetdeploy, checked per point):
- inputs travel with the work: the calibration images (the folder the point would use, or the default set's
  candidates) and the eval images are packed once, scattered to the workers, and unpacked into each worker's
  own temporary folder, once per worker process;
- outputs come back: the worker builds the point into a temporary artifact directory, packs it (tar) and returns
  it; the client unpacks it next to its artifact directory, rewrites the worker's paths in the JSON/YAML
  records to its own, and swaps it into place atomically (fsutil.atomic_dir), manifest included: exactly the
  files a local run writes.
Dask's own mechanisms do the scheduling: `client.submit` per point (`pure=False`), `as_completed` to record each
point as soon as it lands, `retries` for a point that raised, and the scheduler's re-run of the tasks of a
worker that died (they go to another worker; finished points are already on the client). An interrupted sweep
resumes like a local one: landed points are in sweep.json and are not sent again.

Benchmarks stay on the client (the devices are attached here), after preparation, as in a local sweep.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mnetdeploy.errors import UserError
from mnetdeploy.fsutil import atomic_dir

RETRIES = 1            # a point that raised is tried once more (a worker that died is re-run by the scheduler)
_TEXT_RECORDS = (".json", ".yaml")
_unpacked: dict[str, str] = {}   # on a worker: content key -> folder the shipped inputs were unpacked into


# ------------------------------------------------------------------------------------------------ packing

def pack(directory: Path, files: list[Path] | None = None) -> bytes:
    """A tar of `files` (default: everything) under `directory`, with paths relative to it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in files if files is not None else sorted(p for p in directory.rglob("*") if p.is_file()):
            tar.add(path, arcname=path.relative_to(directory).as_posix())
    return buffer.getvalue()


def unpack(data: bytes, directory: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(directory, filter="data")   # no absolute paths, links out or device files


# ---------------------------------------------------------------------------------------- the client side

def shipped_inputs(job_config: dict[str, Any]) -> dict[str, Any]:
    """The files a point reads, packed: the calibration candidates and the eval folder (None when unused)."""
    from mnetdeploy.data import find_images, read_default_calibration

    q, e = job_config["quantize"], job_config["eval"]
    calib = None
    if "int8" in q["precisions"] or "dynamic" in q["precisions"]:
        directory: Path | None
        first: int | None
        if q["calib"]:
            directory, first = Path(q["calib"]), None
        else:
            default = read_default_calibration()
            directory, first = default.directory, default.first
        if directory is not None:
            candidates = find_images(directory)
            calib = pack(directory, candidates[:first] if first else candidates)
    evaluation = pack(Path(e["data"])) if e.get("data") else None
    return {"calib": calib, "eval": evaluation, "labels": Path(e["labels"]).read_bytes() if e.get("labels") else None}


Executor = Callable[[Callable[[dict], dict], list[dict]], Iterable[dict]]   # sweep.py's contract


def dask_executor(client: Any, retries: int = RETRIES) -> Executor:
    """An executor (sweep.py's contract) that prepares points on the Dask cluster behind `client` (a
    distributed.Client or a scheduler address)."""
    def run(fn: Callable[[dict], dict], jobs: list[dict]) -> Iterable[dict]:
        from distributed import Client, as_completed

        from mnetdeploy.source_graph import code_fingerprint

        if not jobs:
            return
        dask = Client(client) if isinstance(client, str) else client
        code = code_fingerprint("mnetdeploy.sweep", "mnetdeploy.cluster")
        inputs = dask.scatter(shipped_inputs(jobs[0]["config"]), broadcast=True)  # the same for every point
        targets = {}
        futures = []
        for job in jobs:
            future = dask.submit(run_on_worker, fn, job, inputs, code, pure=False, retries=retries,
                                 key=f"mnetdeploy-prepare-{job['key']}-{os.urandom(4).hex()}")
            targets[future.key] = Path(job["artifact_dir"])
            futures.append(future)
        for future in as_completed(futures):
            result = future.result()       # a worker's error is raised here, as the one line it was
            yield land(result, targets[future.key])
    return run


def land(result: dict[str, Any], target: Path) -> dict[str, Any]:
    """Put a point's packed artifact directory at `target` atomically, its records pointing at `target`."""
    from mnetdeploy.artifacts import MANIFEST, file_record
    from mnetdeploy.records import Manifest

    archive, worker_dirs = result.pop("archive"), result.pop("worker_dirs")
    with atomic_dir(target) as tmp:
        unpack(archive, tmp)
        rewritten = set()
        for path in tmp.rglob("*"):
            if path.suffix in _TEXT_RECORDS and path.is_file() and path.name != MANIFEST:
                text = original = path.read_text()
                for worker_dir in worker_dirs:   # longest first: the resolved path may contain the other
                    text = text.replace(worker_dir, str(target.resolve()))
                if text != original:
                    path.write_text(text)
                    rewritten.add(path.relative_to(tmp).as_posix())
        # The manifest vouches for each output's bytes: re-record the files whose paths were rewritten.
        manifest = Manifest.load(tmp / MANIFEST)
        for step in manifest.steps.values():
            for name in rewritten & set(step.outputs):
                step.outputs[name] = file_record(tmp / name)
        manifest.save(tmp / MANIFEST)
    return dict(result, artifact_dir=str(target))


# ---------------------------------------------------------------------------------------- the worker side

def run_on_worker(fn: Callable[[dict], dict], job: dict[str, Any], inputs: dict[str, Any], code: str) -> dict:
    """On a worker: unpack the inputs (once per process), prepare the point in a temporary artifact directory
    with `fn` (sweep.prepare_point), and return its result with the directory packed."""
    from mnetdeploy.source_graph import code_fingerprint

    mine = code_fingerprint("mnetdeploy.sweep", "mnetdeploy.cluster")
    if mine != code:
        raise UserError(f"worker {os.uname().nodename} runs other mnetdeploy code than the client (code "
                        f"{mine[:12]} vs {code[:12]}); install the same version on every worker")
    config = {**job["config"], "quantize": dict(job["config"]["quantize"]), "eval": dict(job["config"]["eval"])}
    local = _materialize(inputs)
    if local.get("calib"):
        config["quantize"]["calib"] = local["calib"]
    if local.get("eval"):
        config["eval"]["data"] = local["eval"]
    if local.get("labels"):
        config["eval"]["labels"] = local["labels"]
    with tempfile.TemporaryDirectory(prefix="mnetdeploy-point-") as work:
        config["output"] = str(Path(work) / "models")
        result = fn(dict(job, config=config))
        directory = Path(result["artifact_dir"])
        return dict(result, archive=pack(directory), worker_dirs=sorted({str(directory), str(directory.resolve())},
                                                                        key=len, reverse=True))


def _materialize(inputs: dict[str, Any]) -> dict[str, str]:
    """Unpack the shipped inputs into this worker's temporary folder, once per process (keyed by content)."""
    import hashlib

    out = {}
    for name in ("calib", "eval", "labels"):
        data = inputs.get(name)
        if not data:
            continue
        key = f"{name}-{hashlib.sha256(data).hexdigest()[:16]}"
        if key not in _unpacked or not Path(_unpacked[key]).exists():
            folder = Path(tempfile.mkdtemp(prefix=f"mnetdeploy-{key}-"))
            if name == "labels":
                (folder / "labels.csv").write_bytes(data)
                _unpacked[key] = str(folder / "labels.csv")
            else:
                unpack(data, folder)
                _unpacked[key] = str(folder)
        out[name] = _unpacked[key]
    return out
