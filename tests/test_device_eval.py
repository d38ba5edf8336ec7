"""`mnetdeploy eval MODEL --device ...`: accuracy where the model runs, next to the host's.

The stand-in phone (tests/device_standin/) runs real aarch64 LiteRT under qemu-user; its benchmark_model
stand-in implements --input_layer_value_files and --output_filepath as LiteRT's does. The model is the real
pretrained MobileNet v1 0.25/224 from ../shared, exported and int8-quantized by `mnetdeploy quantize` on the
first 100 shared images (by name), evaluated on the next ones (--skip-first 100).

Cost, measured on this 2-core machine under qemu: one benchmark_model invocation per image, ~1 s of start-up
(Python and LiteRT under emulation) plus ~0.2 s (int8) / ~0.6 s (fp32) of inference. So the int8 model runs
on the 100 images the issue names, the fp32 model and the runner path on 12.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import IMAGENET_SAMPLE, PRETRAINED_V1, require
from mnetdeploy.cli import cli

STANDIN_BINARY = Path(__file__).resolve().parent / "device_standin" / "benchmark_model_standin.py"
CALIBRATION = 100      # the first 100 images by name calibrate; evaluation skips them


@pytest.fixture(scope="module")
def v1(tmp_path_factory) -> Path:
    """The pretrained v1 0.25/224 artifact with fp32 and int8 TFLite exports (quantized by the CLI)."""
    images, weights = require(IMAGENET_SAMPLE), require(PRETRAINED_V1)
    from mnetdeploy.data import find_images

    out = tmp_path_factory.mktemp("device-eval")
    calib = out / "calib"
    calib.mkdir()
    for path in find_images(images)[:CALIBRATION]:
        (calib / path.name).symlink_to(path)
    runner = CliRunner()
    built = runner.invoke(cli, ["build", "--arch", "v1", "--alpha", "0.25", "--res", "224", "--weights", str(weights),
                                "--out", str(out), "--json"])
    assert built.exit_code == 0, built.output
    directory = Path(json.loads(built.stdout)["artifact_dir"])
    quantized = runner.invoke(cli, ["quantize", str(directory), "--calib", str(calib), "--num-calib", "100",
                                    "--formats", "tflite", "--precisions", "fp32,int8"])
    assert quantized.exit_code == 0, quantized.output
    return directory


def eval_cli(session, *args: str):
    environment = {"HOME": session.env["HOME"], "ANDROID_ADB_SERVER_PORT": session.env["ANDROID_ADB_SERVER_PORT"],
                   "ANDROID_SERIAL": None, "ADB": None} if session else {}
    return CliRunner().invoke(cli, ["eval", *args], env=environment)


def error_line(result) -> str:
    return result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""


def phone_eval(session, model: Path, limit: int, *extra: str) -> list[dict]:
    result = eval_cli(session, str(model), "--data", str(IMAGENET_SAMPLE), "--skip-first", str(CALIBRATION),
                      "--limit", str(limit), "--device", "android", "--benchmark-binary", str(STANDIN_BINARY),
                      "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ------------------------------------------------------------------------------------------- the phone

def test_int8_top1_on_the_standin_phone_next_to_the_host_on_100_images(adb_standin_arm64, v1):
    model = v1 / "model_int8.tflite"
    host, phone = phone_eval(adb_standin_arm64, model, 100)
    assert (host["device"], phone["device"]) == ("host", f"android:{adb_standin_arm64.serial}")
    assert host["n"] == phone["n"] == 100 and host["data"]["hash"] == phone["data"]["hash"]
    assert host["data"]["first_file"] != sorted(p.name for p in IMAGENET_SAMPLE.glob("*.jpg"))[0]  # calibration skipped
    assert phone["environment"]["device"]["machine"] == "aarch64" and phone["environment"]["runtime"] == \
        "benchmark_model"
    assert phone["environment"]["host"]["cpu_features"]["arch"] == "x86_64"
    assert phone["identity"]["serial"] == adb_standin_arm64.serial
    assert host["top1"] > 40 and phone["top1"] > 40   # a trained model: far above chance on any kernels
    # aarch64 (XNNPACK's ARM int8 kernels under qemu) vs x86 (this host's): the same int8 model, compared exactly.
    versus = phone["versus_host"]
    assert versus["images"] == 100 and versus["output_dtype"] == "int8"
    print("int8 host top-1", host["top1"], "phone top-1", phone["top1"], "versus host", json.dumps(versus)[:600])
    if versus["bit_equal"]:
        assert versus["identical"] == 100 and versus["max_abs_diff_raw"] == 0 and versus["differing"] == []
        assert phone["top1"] == host["top1"] and phone["top5"] == host["top5"] and phone["agreement_top1"] == 100
    else:   # where and by how much they differ is the result itself
        assert versus["differing"] and all(d["max_abs_diff_raw"] > 0 for d in versus["differing"])
        assert versus["identical"] == 100 - min(len(versus["differing"]), 100) or len(versus["differing"]) == 20
    # kept with the model, next to the host's row, for the report and the gate
    stored = json.loads((v1 / "results" / "eval.json").read_text())
    assert {(r["model"], r["device"]) for r in stored} >= {("model_int8.tflite", "host"),
                                                            ("model_int8.tflite", phone["device"])}
