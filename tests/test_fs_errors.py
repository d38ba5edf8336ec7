"""Environment and input errors: a read-only or full place to write, binary or UTF-16 text files, values out
of range. Each is one line naming the path or value, exit 2, and work already finished is kept (a benchmark
is printed and written to --out even when its artifact directory cannot take it).

Tests run as root, for whom chmod does not make a directory read-only: read-only and full places are real
tmpfs mounts (`mount -o ro`, `size=`), skipped where mounting is not permitted.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import IMAGENET_SAMPLE, require
from mnetdeploy.cli import cli

SMALL = ["--arch", "v1", "--alpha", "0.25", "--res", "96"]
FAST_BENCH = ["--runs", "3", "--warmup", "0", "--min-seconds", "0"]


def run(*args) -> "CliRunner":
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    # Progress lines ("... step", printed without a terminal) may precede the error when work had started.
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("... ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "internal error" not in lines[0] and "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _mount(target: Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")


def _umount(target: Path) -> None:
    subprocess.run(["umount", str(target)], check=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A small artifact directory (v1 0.25/96) with its fp32 TFLite export and a report.json."""
    import keras
    import tensorflow as tf

    out = tmp_path_factory.mktemp("fs")
    assert run("build", *SMALL, "--out", out).exit_code == 0
    directory = out / "v1_0.25_96"
    model = keras.saving.load_model(directory / "model.keras")
    (directory / "model_fp32.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    assert run("report", directory).exit_code == 0
    return directory


@pytest.fixture
def readonly(model_dir, tmp_path):
    """A read-only file system holding a copy of the artifact directory: mount, fill, remount ro."""
    target = tmp_path / "ro"
    _mount(target, "size=32m")
    try:
        shutil.copytree(model_dir, target / model_dir.name)
        subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
        yield target
    finally:
        _umount(target)


def _ro_cases():
    # (argv with {d} = the read-only artifact directory, {ro} = the read-only mount, the path the error names)
    return [
        (["bench", "{d}/model_fp32.tflite", *FAST_BENCH], "results/bench.json"),
        (["report", "{d}"], "report.json"),
        (["quantize", "{d}", "--formats", "tflite", "--precisions", "fp32", "--force"], "model_fp32.tflite"),
        (["build", *SMALL, "--out", "{ro}/new"], "{ro}/new"),
        (["gate", "{d}", "--budgets", "{budgets}", "--junit", "{ro}/gate.xml"], "{ro}/gate.xml"),
        (["sweep", *SMALL[:2], "--alpha", "0.25", "--res", "96", "--precisions", "fp32", "--out", "{ro}/sweep"],
         "{ro}/sweep"),
    ]


@pytest.mark.parametrize("argv,named", _ro_cases(), ids=["bench", "report", "quantize", "build", "gate", "sweep"])
def test_a_read_only_place_is_one_line_naming_it(readonly, argv, named, tmp_path):
    d = readonly / "v1_0.25_96"
    budgets = tmp_path / "budgets.yaml"  # for gate: budgets any report passes, so only the junit write fails
    budgets.write_text("rules:\n  - artifact: model.keras\n    max_size: 1GB\n")
    fill = {"d": d, "ro": readonly, "budgets": budgets}
    result = run(*[a.format(**fill) for a in argv])
    one_line_error(result, named.format(**fill), "read-only")
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temporaries (it is read-only anyway)


def test_bench_in_a_read_only_directory_still_prints_and_writes_its_results(readonly, tmp_path):
    out = tmp_path / "bench.json"
    result = run("bench", readonly / "v1_0.25_96" / "model_fp32.tflite", *FAST_BENCH, "--out", out)
    one_line_error(result, "results/bench.json", "read-only", str(out))
    assert "model_fp32.tflite" in result.stdout and "p50" in result.stdout  # the table was printed
    (record,) = json.loads(out.read_text())
    assert record["runs"] >= 3 and record["latency_ms"]["p50"] > 0
    as_json = run("bench", readonly / "v1_0.25_96" / "model_fp32.tflite", *FAST_BENCH, "--json")
    one_line_error(as_json, "results/bench.json")
    assert json.loads(as_json.stdout)[0]["runs"] >= 3


def test_eval_in_a_read_only_directory_prints_its_accuracy(readonly):
    data = require(IMAGENET_SAMPLE)
    result = run("eval", readonly / "v1_0.25_96" / "model_fp32.tflite", "--data", data, "--limit", "3")
    one_line_error(result, "results/eval.json", "read-only")
    assert "top-1 %" in result.stdout and "3 images" in result.stdout  # the accuracy table was printed


def test_a_full_disk_names_the_path(model_dir, tmp_path):
    full = tmp_path / "full"
    _mount(full, "size=128k")  # smaller than model.keras
    try:
        one_line_error(run("build", *SMALL, "--out", full), str(full / "v1_0.25_96"), "no space")
        assert not any(full.iterdir())  # nothing half-written is left
    finally:
        _umount(full)
    # A single file on a full device (our own node of /dev/full's device, so a regression that renames over it
    # cannot replace the system's): the results are still printed.
    device = tmp_path / "full-device"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except OSError as e:
        pytest.skip(f"cannot make a device node here ({e})")
    result = run("bench", model_dir / "model_fp32.tflite", *FAST_BENCH, "--out", device)
    one_line_error(result, str(device), "no space")
    assert "model_fp32.tflite" in result.stdout
    assert device.is_char_device()  # written into, never replaced by a rename


@pytest.mark.parametrize("content,what", [
    (bytes(range(256)) * 4, "not UTF-8"),
    ("model:\n  arch: v1\n".encode("utf-16"), "UTF-16"),
], ids=["binary", "utf16"])
@pytest.mark.parametrize("command", ["build", "gate", "eval-labels"])
def test_binary_and_utf16_text_files_are_refused_by_name(model_dir, tmp_path, content, what, command):
    bad = tmp_path / ("bad.csv" if command == "eval-labels" else "bad.yaml")
    bad.write_bytes(content)
    out = tmp_path / "out"
    argv = {"build": ["build", bad, "--out", out],
            "gate": ["gate", model_dir, "--budgets", bad, "--junit", out],
            "eval-labels": ["eval", model_dir / "model_fp32.tflite", "--data", require(IMAGENET_SAMPLE),
                            "--labels", bad]}[command]
    one_line_error(run(*argv), str(bad), what)
    assert not out.exists()


def test_bad_values_are_one_line_naming_them(tmp_path):
    out = tmp_path / "out"
    one_line_error(run("build", *SMALL, "--seed", str(10**24), "--out", out), str(10**24), "4294967295")
    one_line_error(run("sweep", *SMALL[:2], "--alpha", "0.25", "--res", "96", "--executor", "os:getcwd",
                       "--out", out), "--executor os:getcwd", "FACTORY(1)")
    one_line_error(run("sweep", *SMALL[:2], "--alpha", "0.25", "--res", "96", "--executor", "math:sqrt",
                       "--out", out), "--executor math:sqrt", "not an executor")
    assert not out.exists()


def test_a_huge_config_is_refused_by_its_size_and_a_name_with_a_newline_by_its_value(tmp_path):
    huge = tmp_path / "huge.yaml"
    huge.write_text("model:\n  arch: v1\n" + "# padding\n" * 200_000)   # 2 MB: YAML would parse it for minutes
    one_line_error(run("build", huge, "--out", tmp_path / "out"), str(huge), "2.0 MB is not a config")
    one_line_error(run("build", *SMALL, "--name", "a\nb", "--out", tmp_path / "out"), "--name", "plain folder name")
    assert not (tmp_path / "out").exists()


def test_gate_on_an_empty_folder_and_a_junit_path_in_a_missing_folder(model_dir, tmp_path):
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("rules:\n  - artifact: model.keras\n    max_size: 1GB\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_line_error(run("gate", empty, "--budgets", budgets), str(empty), "not an artifact directory")
    assert "mnetdeploy report" not in line  # report would fail on it too
    missing = tmp_path / "no" / "such" / "gate.xml"
    one_line_error(run("gate", model_dir, "--budgets", budgets, "--junit", missing), "--junit", str(missing.parent))
    assert not (tmp_path / "no").exists()


def test_top_level_help_descriptions_are_whole():
    listing = run("--help").stdout.split("Commands:")[1]
    assert "..." not in listing and len(listing.strip().splitlines()) == 10
