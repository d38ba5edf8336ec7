"""Run parts of mnetdeploy as another x86 CPU computes them: under `qemu-x86_64-static -cpu Haswell`.

Haswell is AVX2 + FMA without AVX-512 or VNNI: the int8 arithmetic of an AMD EPYC Zen 1-3 or an Intel CPU
before Ice Lake. qemu emulates CPUID too, so ONNX Runtime's MLAS, XNNPACK and mnetdeploy.cpu all see that CPU
and pick its kernels; the numbers computed are that CPU's numbers (timings under emulation mean nothing).
About 400x slower than native: keep the work small (a v1 0.25/224 int8 inference takes ~0.2 s).

    from emulated_cpu import predict_emulated, check_emulated, EMULATOR
    outputs = predict_emulated(model_path, images)                 # the tool's own session settings
    outputs = predict_emulated(model_path, images, session_config={})   # ONNX Runtime's defaults
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

EMULATOR = shutil.which("qemu-x86_64-static")
CPU = "Haswell"
PROJECT = Path(__file__).resolve().parents[1]


def _command(task: Path) -> list[str]:
    return [EMULATOR, "-cpu", CPU, sys.executable, __file__, str(task)]


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(PROJECT)}


def predict_emulated(model: Path, images: np.ndarray, processes: int = 2,
                     session_config: dict[str, str] | None = None) -> np.ndarray:
    """Outputs of `model` on `images` as the emulated CPU computes them (split over `processes`)."""
    with tempfile.TemporaryDirectory(prefix="mnetdeploy-emulated-") as tmp:
        procs, outs = [], []
        for i, part in enumerate(np.array_split(images, processes)):
            data, out = Path(tmp) / f"in{i}.npy", Path(tmp) / f"out{i}.npy"
            np.save(data, part)
            task = Path(tmp) / f"task{i}.json"
            task.write_text(json.dumps({"kind": "predict", "model": str(model), "images": str(data),
                                        "out": str(out), "session_config": session_config}))
            procs.append(subprocess.Popen(_command(task), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, env=_env()))
            outs.append(out)
        for proc in procs:
            _, err = proc.communicate(timeout=1800)
            assert proc.returncode == 0, err[-2000:]
        return np.concatenate([np.load(o) for o in outs])


def check_emulated(model: Path, precision: str, reference: np.ndarray, images: np.ndarray,
                   session_config: dict[str, str] | None = None) -> dict:
    """The tool's export check (export/validate.py) of `model` on the emulated CPU: the agreement record,
    or {"failed": message} when the check fails there. Also reports the CPU the emulated process saw."""
    with tempfile.TemporaryDirectory(prefix="mnetdeploy-emulated-") as tmp:
        data = Path(tmp) / "check.npz"
        np.savez(data, images=images, reference=reference)
        task = Path(tmp) / "task.json"
        out = Path(tmp) / "out.json"
        task.write_text(json.dumps({"kind": "check", "model": str(model), "precision": precision,
                                    "data": str(data), "out": str(out), "session_config": session_config}))
        proc = subprocess.run(_command(task), capture_output=True, text=True, env=_env(), timeout=1800)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(out.read_text())


def _main(task_path: str) -> None:
    """Inside the emulator."""
    task = json.loads(Path(task_path).read_text())
    if task.get("session_config") is not None:
        import mnetdeploy.runtimes.onnx as ort_runtime

        override = task["session_config"]
        ort_runtime.session_config = lambda: dict(override)
    from mnetdeploy.cpu import host_cpu
    from mnetdeploy.runtimes import open_runner

    if task["kind"] == "predict":
        np.save(task["out"], open_runner(task["model"]).predict(np.load(task["images"])))
        return
    from mnetdeploy.errors import CheckFailed
    from mnetdeploy.export.validate import check_export

    arrays = np.load(task["data"])
    try:
        result = check_export(Path(task["model"]), task["precision"], arrays["reference"], arrays["images"]).to_dict()
    except CheckFailed as e:
        result = {"failed": str(e)}
    result["cpu"] = host_cpu().to_dict()
    Path(task["out"]).write_text(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1])
