"""`mnetdeploy build` and `info` end to end: artifacts, caching, errors, and a --help that stays light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mnetdeploy.artifacts import read_manifest
from mnetdeploy.cli import cli
from mnetdeploy.fsutil import sha256_file

SMALL = ["--arch", "v2", "--alpha", "0.35", "--res", "96"]


def run(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def test_build_writes_a_complete_artifact_directory_and_json(tmp_path):
    result = run("build", *SMALL, "--out", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    for key in ("arch", "alpha", "resolution", "classes", "params", "macs", "layers", "artifact_dir"):
        assert key in summary
    assert (summary["arch"], summary["alpha"], summary["resolution"]) == ("v2", 0.35, 96)
    assert summary["params"] == summary["keras_params"]
    assert summary["macs"] == sum(row["macs"] for row in summary["layers"])
    directory = Path(summary["artifact_dir"])
    assert directory == tmp_path / "v2_0.35_96"
    manifest = read_manifest(directory)
    outputs = manifest.model_dump()["steps"]["build"]["outputs"]
    assert set(outputs) == {"model.keras", "summary.json", "config.yaml"}
    for name, record in outputs.items():
        assert sha256_file(directory / name) == record["sha256"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_rebuild_is_reused_unless_inputs_change_or_forced(tmp_path):
    first = json.loads(run("build", *SMALL, "--out", str(tmp_path), "--json").stdout)
    again = json.loads(run("build", *SMALL, "--out", str(tmp_path), "--json").stdout)
    assert (first["reused"], again["reused"]) == (False, True)
    assert any("reused" in n for n in again["notes"])
    forced = json.loads(run("build", *SMALL, "--out", str(tmp_path), "--force", "--json").stdout)
    assert forced["reused"] is False
    reseeded = json.loads(run("build", *SMALL, "--seed", "3", "--out", str(tmp_path), "--json").stdout)
    assert reseeded["reused"] is False


def test_saved_config_repeats_the_build_exactly(tmp_path):
    first = json.loads(run("build", *SMALL, "--classes", "10", "--out", str(tmp_path), "--json").stdout)
    saved = Path(first["artifact_dir"]) / "config.yaml"
    again = json.loads(run("build", str(saved), "--json").stdout)
    assert again["reused"] is True and again["classes"] == 10


def test_built_model_loads_and_matches_its_summary(tmp_path):
    import keras
    import numpy as np

    summary = json.loads(run("build", "--arch", "v3-small", "--alpha", "0.75", "--res", "96",
                             "--out", str(tmp_path), "--json").stdout)
    model = keras.saving.load_model(Path(summary["artifact_dir"]) / "model.keras")
    assert model.count_params() == summary["params"]
    probs = np.asarray(model(np.zeros((2, 96, 96, 3), np.float32)))
    assert probs.shape == (2, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    import keras

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", broken_save)
    result = CliRunner().invoke(cli, ["build", *SMALL, "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,expected", [
    (["--alpha", "0"], "must be > 0"),
    (["--res", "16"], "at least 32"),
    (["--res", "200"], "multiple of 32"),
    (["--arch", "v9"], "Invalid value for '--arch'"),
    (["no-such.yaml"], "config file not found"),
    (["--weights", "no-such.h5"], "weights file not found"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, expected):
    result = CliRunner().invoke(cli, ["build", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_imagenet_weights_missing_from_the_cache_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    result = CliRunner().invoke(cli, ["build", "--arch", "v2", "--alpha", "0.5", "--res", "128",
                                      "--weights", "imagenet", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "not in the Keras cache" in result.output
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_128.h5" in result.output


def test_info_reads_a_directory_a_file_in_it_and_a_config(tmp_path):
    summary = json.loads(run("build", *SMALL, "--out", str(tmp_path), "--json").stdout)
    directory = Path(summary["artifact_dir"])
    from_dir = json.loads(run("info", str(directory), "--json").stdout)
    from_file = json.loads(run("info", str(directory / "model.keras"), "--json").stdout)
    from_config = json.loads(run("info", str(directory / "config.yaml"), "--json").stdout)
    for other in (from_file, from_config):
        assert (other["params"], other["macs"], len(other["layers"])) == \
            (from_dir["params"], from_dir["macs"], len(from_dir["layers"]))
    table = run("info", str(directory)).stdout
    assert "block_16_project" in table and f"{summary['macs']:,}" in table


def test_info_on_something_else_is_a_one_line_error(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    result = CliRunner().invoke(cli, ["info", str(tmp_path / "x.txt")])
    assert result.exit_code == 2 and "not a mnetdeploy artifact directory" in result.output


def test_help_does_not_import_tensorflow():
    code = ("import sys\nfrom mnetdeploy.cli import main\n"
            "for argv in (['mnetdeploy', '--help'], ['mnetdeploy', 'build', '--help'], ['mnetdeploy', 'info', '--help']):\n"
            "    sys.argv = argv\n"
            "    try:\n        main()\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'onnxruntime', 'tf2onnx', 'ai_edge_litert') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_console_script_errors_have_no_traceback_and_exit_2(tmp_path):
    exe = Path(sys.executable).with_name("mnetdeploy")
    proc = subprocess.run([str(exe), "build", "--res", "100", "--out", str(tmp_path)], capture_output=True,
                          text=True, env=dict(os.environ))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "multiple of 32" in proc.stderr
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "mnetdeploy, version" in version.stdout
