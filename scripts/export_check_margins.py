#!/usr/bin/env python3
"""How far the export checks' numbers sit from their limits, on this CPU and on an AVX2-only x86 CPU.

    .venv/bin/python scripts/export_check_margins.py [--archs v1,v2,v3-small,v3-large] [--res 224,128]
                                                     [--haswell-images 8] [--no-haswell] [--out DIR]

For each family and resolution: build (untrained, realistic init), `quantize` (fp32 + int8, TFLite + ONNX,
default settings; calibration and check images are the tool's synthetic ones unless --calib is given), then
print what the tool's own export check measured here: fp32 logit error relative to the logit range
(limit export.validate.FP32_RTOL) and, for int8, the cosine between the deployed kernels and the plain
arithmetic of the same file (limit KERNEL_COSINE). Then the same files are checked again under
`qemu-x86_64-static -cpu Haswell` (AVX2 + FMA, no AVX-512, no VNNI: the CPU of an AMD Zen 1-3 or an Intel
before Ice Lake) against the Keras outputs computed here, with the tool's ONNX Runtime settings for that CPU
and, for comparison, ONNX Runtime's defaults. Emulation is ~400x slower: use few images there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
IMAGES = SHARED / "imagenet-sample"
PRETRAINED = SHARED / "models" / "mobilenet_v1_0.25_224.h5"
FILES = ("model_fp32.tflite", "model_fp32.onnx", "model_int8.tflite", "model_int8.onnx")


def native(args) -> list[dict]:
    from mnetdeploy.build import build
    from mnetdeploy.config import load_config
    from mnetdeploy.cpu import host_cpu
    from mnetdeploy.quantize import quantize

    print(f"this CPU: {host_cpu().summary()}", flush=True)
    models = [(arch, 1.0, int(res), None) for arch in args.archs.split(",") if arch
              for res in args.res.split(",")]
    if args.pretrained:
        if not PRETRAINED.is_file():
            sys.exit(f"{PRETRAINED}: not found (--pretrained needs ../shared/data)")
        models.append(("v1", 0.25, 224, PRETRAINED))
    rows = []
    for arch, alpha, res, weights in models:
        cfg = load_config(overrides={"model.arch": arch, "model.alpha": alpha, "model.resolution": res,
                                     "model.weights": str(weights) if weights else None,
                                     "output": str(args.out)})
        directory = build(cfg).artifact_dir
        # The pretrained model calibrates on the first 100 shared images; its checks use others.
        calib = IMAGES if weights else args.calib
        result = quantize(directory, calib=str(calib) if calib else None, num_calib=args.num_calib)
        row = {"model": directory.name + ("-pretrained" if weights else ""), "native": {}}
        for a in result.artifacts:
            row["native"][a.file] = a.check
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.no_haswell:
            row["haswell"] = under_haswell(directory, args.haswell_images, calib, args.num_calib)
            print(json.dumps({"model": row["model"], "haswell": row["haswell"]}), flush=True)
    return rows


def under_haswell(directory: Path, n: int, calib: Path | None, num_calib: int) -> dict:
    """Re-run the checks of `directory`'s exports under an emulated AVX2-only CPU, on the first `n` of the
    check images quantize used here (the held-out rest of the calibration folder, as quantize picks them)."""
    from mnetdeploy.arch.weights import load_keras_model
    from mnetdeploy.data import calibration_set
    from mnetdeploy.quantize.step import validation_images

    resolution = int(json.loads((directory / "summary.json").read_text())["resolution"])
    calibration = calibration_set(calib, num_calib, 0, resolution)
    images = validation_images(calibration, resolution, 0)[0][:n]
    model = load_keras_model(directory / "model.keras")
    reference = np.asarray(model(images, training=False), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "check.npz"
        np.savez(data, images=images, reference=reference)
        out = subprocess.run(["qemu-x86_64-static", "-cpu", "Haswell", sys.executable, __file__,
                              "--emulated", str(directory), str(data)],
                             capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1])


def emulated(directory: Path, data: Path) -> None:
    """Inside qemu: the tool's check of every export, and int8 ONNX with ONNX Runtime's default session."""
    import mnetdeploy.runtimes.onnx as ort_runtime
    from mnetdeploy.cpu import host_cpu
    from mnetdeploy.errors import CheckFailed
    from mnetdeploy.export.validate import check_export, compare_outputs

    arrays = np.load(data)
    images, reference = arrays["images"], arrays["reference"]
    out = {"cpu": host_cpu().summary(), "session_config": ort_runtime.session_config()}
    for name in FILES:
        precision = name.split("_")[1].split(".")[0]
        try:
            out[name] = check_export(directory / name, precision, reference, images).to_dict()
        except CheckFailed as e:
            out[name] = {"failed": str(e)}
    # What a user's own default session computes on this CPU (no x64quantprecision).
    ort_runtime.session_config = lambda: {}
    default = ort_runtime.OnnxRunner(directory / "model_int8.onnx").predict(images)
    plain = ort_runtime.OnnxRunner(directory / "model_int8.onnx", optimize=False).predict(images)
    out["model_int8.onnx ORT defaults"] = {"cosine_vs_keras": round(compare_outputs(reference, default).cosine, 4),
                                          "cosine_vs_plain": round(compare_outputs(plain, default).cosine, 4)}
    print(json.dumps(out), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="v1,v2,v3-small,v3-large")
    parser.add_argument("--res", default="224,128")
    parser.add_argument("--calib", default=None, help="calibration folder (default: synthetic images)")
    parser.add_argument("--num-calib", type=int, default=100)
    parser.add_argument("--pretrained", action="store_true",
                        help="also the real pretrained v1 0.25/224 of ../shared/data, calibrated on its images")
    parser.add_argument("--haswell-images", type=int, default=8)
    parser.add_argument("--no-haswell", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--emulated", nargs=2, metavar=("DIR", "NPZ"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emulated:
        emulated(Path(args.emulated[0]), Path(args.emulated[1]))
        return
    if not args.no_haswell and not shutil.which("qemu-x86_64-static"):
        sys.exit("qemu-x86_64-static not found: `make system` installs it (or pass --no-haswell)")
    keep = args.out is not None
    args.out = args.out or Path(tempfile.mkdtemp(prefix="mnetdeploy-margins-"))
    try:
        native(args)
    finally:
        if not keep:
            shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
