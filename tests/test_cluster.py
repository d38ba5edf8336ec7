"""Sweeps on a real Dask cluster (distributed.LocalCluster: worker processes, spawned, working elsewhere).

The workers see nothing of the client's folders they are not sent: they run from another working directory and
build into their own temporary folders; the points' artifact directories come back packed and land in the
client's sweep folder. One test kills a worker in the middle of a point and checks the sweep still completes,
with the same models (byte for byte) and the same table as a serial run.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import IMAGENET_SAMPLE
from mnetdeploy.artifacts import step_is_fresh
from mnetdeploy.config import load_config
from mnetdeploy.records import Manifest
from mnetdeploy.sweep import run_sweep, sweep_plan

pytestmark = pytest.mark.slow
distributed = pytest.importorskip("distributed")

SETTINGS = {"model.arch": "v1", "sweep.alphas": [0.25], "sweep.resolutions": [96, 128],
            "quantize.precisions": ["fp32", "int8"], "quantize.num_calib": 4, "quantize.int8_graph": "float-islands",
            "bench.runs": 3, "bench.warmup": 1, "bench.min_seconds": 0}


def sweep_config(out: Path):
    calib = {"quantize.calib": str(IMAGENET_SAMPLE)} if IMAGENET_SAMPLE.is_dir() else {}
    return load_config(None, {**SETTINGS, **calib, "sweep.out": str(out)})


def table(state: dict) -> list[tuple]:
    return sorted((r["point"], r["precision"], r["params"], r["macs"], r["size_bytes"]) for r in state["rows"])


def model_hashes(state: dict) -> dict[str, str]:
    out = {}
    for key, point in state["points"].items():
        manifest = Manifest.load(Path(point["artifact_dir"]) / "manifest.json")
        for name, step in manifest.steps.items():
            for file, record in step.outputs.items():
                if file.endswith(".tflite"):
                    out[f"{key}/{file}"] = record.sha256
    return out


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "sweep"
    config = sweep_config(out)
    grid, options = sweep_plan(config)
    return run_sweep(config, grid, options)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from distributed import Client, LocalCluster

    root = tmp_path_factory.mktemp("dask")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      local_directory=str(root / "scratch")) as local, Client(local) as client:
        elsewhere = root / "worker-cwd"
        elsewhere.mkdir()
        client.run(os.chdir, str(elsewhere))      # a relative path the client means is not found there
        yield client, elsewhere


def test_a_sweep_on_a_cluster_lands_the_same_models_as_a_serial_run(serial, cluster, tmp_path, monkeypatch):
    from mnetdeploy.cluster import dask_executor

    client, elsewhere = cluster
    monkeypatch.chdir(tmp_path)
    config = sweep_config(Path("sweep"))          # relative to the client's working directory
    grid, options = sweep_plan(config)
    options.executor = dask_executor(client)
    state = run_sweep(config, grid, options)

    assert table(state) == table(serial) and len(state["rows"]) == 4
    assert model_hashes(state) == model_hashes(serial)          # the same bytes, built on the workers
    assert not list(elsewhere.rglob("*"))                       # nothing written where the workers run
    for point in state["points"].values():
        directory = Path(point["artifact_dir"])
        assert directory.resolve().is_relative_to((tmp_path / "sweep").resolve())
        for record in directory.rglob("*.json"):                # no worker path left in any record
            assert "mnetdeploy-point-" not in record.read_text(), record
        manifest = Manifest.load(directory / "manifest.json")
        build = manifest.steps["build"]
        assert step_is_fresh(directory, "build", build.inputs_hash)   # a local rerun would reuse it
        bench = json.loads((directory / "results" / "bench.json").read_text())
        assert {Path(r["model"]).name for r in bench} == {"model_fp32.tflite", "model_int8.tflite"}


def test_a_worker_killed_mid_point_loses_nothing_and_the_sweep_completes(serial, cluster, tmp_path):
    from mnetdeploy.cluster import dask_executor

    client, _ = cluster
    config = sweep_config(tmp_path / "sweep")
    grid, options = sweep_plan(config)
    options.executor = dask_executor(client)
    done: dict = {}
    runner = threading.Thread(target=lambda: done.update(state=run_sweep(config, grid, options)), daemon=True)
    runner.start()
    killed = None
    deadline = time.monotonic() + 600
    while killed is None and runner.is_alive() and time.monotonic() < deadline:
        busy = [worker for worker, tasks in client.processing().items() if tasks]
        if busy:
            pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
            time.sleep(2.0)                       # into the point's work (TensorFlow is loading or building)
            os.kill(pid, signal.SIGKILL)
            killed = busy[0]
        time.sleep(0.1)
    runner.join(timeout=900)
    assert killed is not None, "no point was ever running on a worker"
    state = done["state"]
    assert table(state) == table(serial)
    assert model_hashes(state) == model_hashes(serial)
