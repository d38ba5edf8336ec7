"""The package's shape: one declaration per setting, the same step options from every caller, no import
cycles, no private names across modules, and cache keys that cover the code a step runs and nothing else."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from mnetdeploy.cli import cli
from mnetdeploy.cli_options import ConfigOption, config_from_options
from mnetdeploy.config import Config, load_config
from mnetdeploy.source_graph import PACKAGE_DIR, closure, cycles, import_graph, private_imports

PROJECT = PACKAGE_DIR.parent


# ------------------------------------------------------------------------------------------- options

def _leaf_keys(model=Config, prefix="") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            keys |= _leaf_keys(annotation, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def _cli_keys() -> dict[str, set[str]]:
    """config key -> commands with a flag for it."""
    found: dict[str, set[str]] = {}
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, ConfigOption):
                found.setdefault(param.config_key, set()).add(name)
    return found


# Settings a command takes through options of its own shape (a repeatable --baseline per report), not as
# the config key's flag; each still has a command-line form.
OWN_FORM = {"gate.baseline": "gate --baseline"}


def test_every_config_setting_has_a_flag_and_every_setting_flag_is_a_config_key():
    keys = _leaf_keys()
    flags = _cli_keys()
    assert set(flags) <= keys                                   # a flag for a setting the config lacks: none
    missing = keys - set(flags) - set(OWN_FORM)
    assert not missing, f"config settings no command can set: {sorted(missing)}"


def test_value_lists_are_declared_once():
    from typing import get_args

    from mnetdeploy.arch.tables import FAMILIES
    from mnetdeploy.config import Arch
    from mnetdeploy.export import PRECISIONS
    from mnetdeploy.export.int8_graph import GRAPH_CHOICES, INT8_GRAPHS
    from mnetdeploy.quantize.onnx_static import CALIBRATION_METHODS

    assert get_args(Arch) == tuple(FAMILIES)               # the schema's names are the tables' names
    assert PRECISIONS == ("fp32", "fp16", "dynamic", "int8") and CALIBRATION_METHODS[0] == "minmax"
    assert GRAPH_CHOICES == ("auto", *INT8_GRAPHS)


def test_device_and_quantize_settings_reach_the_config():
    keys = _leaf_keys()
    for key in ("bench.benchmark_binary", "bench.serial", "bench.adb_server", "bench.trials", "bench.cpu_mask",
                "bench.max_temp", "bench.run_timeout", "quantize.bias_correction", "quantize.rounding",
                "quantize.keep_float", "quantize.max_drop", "quantize.int8_graph"):
        assert key in keys


def test_flags_take_type_default_and_help_from_the_schema():
    bench = {p.name: p for p in cli.commands["bench"].params}
    runs = bench["bench__runs"]
    assert runs.type is click.INT and runs.default is None and "[default: 50]" in runs.help
    assert list(bench["bench__runtime"].type.choices) == ["auto", "litert", "onnxruntime"]
    assert "[default: 45.0]" in bench["bench__max_temp"].help
    quantize = {p.name: p for p in cli.commands["quantize"].params}
    assert list(quantize["quantize__int8_graph"].type.choices) == ["auto", "integer-only", "float-islands", "cpu"]


CONFIG = """\
quantize:
  num_calib: 8
  precisions: [fp32, int8]
  int8_graph: integer-only
  io: uint8
  rounding: adaptive
  bias_correction: false
bench:
  devices: [android]
  threads: [2]
  runs: 7
  warmup: 1
  min_seconds: 0
  benchmark_binary: bm
  trials: 3
  max_temp: 40
  cpu_mask: f0
"""


def _parse(command: str, args: list[str]) -> Config:
    """What the CLI command builds from its arguments (the callback's own first step)."""
    ctx = cli.commands[command].make_context(command, args)
    return config_from_options(ctx, ctx.params.get("config_path"))


def test_run_sweep_and_the_commands_build_identical_step_options(tmp_path):
    from mnetdeploy.sweep import point_configs, sweep_plan

    (tmp_path / "bm").write_text("")
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    run_config = load_config(path)                       # what `run` hands its steps
    grid, options = sweep_plan(run_config)
    point = point_configs(run_config, grid, tmp_path / "sweep", options.formats)[0]
    by_quantize = _parse("quantize", ["--config", str(path)])
    by_bench = _parse("bench", ["m.tflite", "--config", str(path)])

    sweep_quantize = point.quantize.model_dump(exclude={"formats"})        # the sweep's formats are its own
    assert sweep_quantize == run_config.quantize.model_dump(exclude={"formats"}) == \
        by_quantize.quantize.model_dump(exclude={"formats"})
    assert point.quantize.int8_graph == "integer-only"                    # the sweep honours int8_graph
    expected = run_config.bench.settings("android", 2)
    assert expected.benchmark_binary.endswith("bm") and expected.trials == 3 and expected.cpu_mask == "f0"
    assert point.bench.settings("android", 2) == expected == by_bench.bench.settings("android", 2)
    # Flags on their own give the same objects as the config file.
    flags = _parse("quantize", ["--num-calib", "8", "--int8-graph", "integer-only", "--io", "uint8", "--rounding",
                                "adaptive", "--no-bias-correction"])
    assert flags.quantize == run_config.quantize
    bench_flags = _parse("bench", ["m.tflite", "--device", "android", "--threads", "2", "--runs", "7",
                                   "--warmup", "1", "--min-seconds", "0", "--benchmark-binary",
                                   expected.benchmark_binary, "--trials", "3", "--max-temp", "40",
                                   "--cpu-mask", "f0"])
    assert bench_flags.bench.settings("android", 2) == expected


def test_config_input_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "data").mkdir()
    path = tmp_path / "configs" / "c.yaml"
    path.write_text("eval:\n  data: ../data\ngate:\n  budgets: b.yaml\nmodel:\n  weights: imagenet\n")
    monkeypatch.chdir(tmp_path / "data")                  # run from elsewhere
    config = load_config(path)
    assert Path(config.eval.data).resolve() == (tmp_path / "data").resolve()
    assert Path(config.gate.budgets).resolve() == (tmp_path / "configs" / "b.yaml").resolve()
    assert config.model.weights == "imagenet" and config.output == "artifacts"   # not a path; an output


# --------------------------------------------------------------------------------------------- imports

def test_the_package_has_no_import_cycles():
    assert cycles() == []


def test_no_private_name_is_imported_from_another_module():
    assert private_imports() == []


@pytest.mark.parametrize("module", ["mnetdeploy.quantize.analysis", "mnetdeploy.quantize.recovery",
                                    "mnetdeploy.report.html", "mnetdeploy.report.labels", "mnetdeploy.report.plots",
                                    "mnetdeploy.sweep_report"])
def test_modules_import_on_their_own(module):
    """Each module imports first in a fresh interpreter (a cycle held together by import order would not)."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=PROJECT)
    assert done.returncode == 0, done.stderr


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "mnetdeploy.quantize.models" in graph["mnetdeploy.quantize.recovery"]
    assert "mnetdeploy.report.render" in closure("mnetdeploy.pipeline")


# ---------------------------------------------------------------------------------------- cache keys

def _fingerprints(package_parent: Path) -> dict[str, str]:
    code = ("import json; from mnetdeploy.artifacts import code_fingerprint as f; print(json.dumps({"
            "'build': f('mnetdeploy.build')['code_sha256'], "
            "'quantize': f('mnetdeploy.quantize.step')['code_sha256'], "
            "'bench': f('mnetdeploy.bench', 'mnetdeploy.bench.host')['code_sha256']}))")
    env = dict(os.environ, PYTHONPATH=str(package_parent))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=package_parent,
                          check=True)
    return json.loads(done.stdout)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_step_cache_keys_cover_their_own_code_only(tmp_path):
    copy = tmp_path / "pkg"
    shutil.copytree(PACKAGE_DIR, copy / "mnetdeploy", ignore=shutil.ignore_patterns("__pycache__"))
    before = _fingerprints(copy)
    assert len(set(before.values())) == 3

    # A comment and a docstring in code every step reaches: nothing changes.
    _edit(copy / "mnetdeploy" / "fsutil.py", "\n", "\n# a comment added by the test\n")
    _edit(copy / "mnetdeploy" / "errors.py", '"""', '"""Docstring edited. ')
    assert _fingerprints(copy) == before
    # Real code in the report: no build, quantize or bench key changes.
    html = copy / "mnetdeploy" / "report" / "html.py"
    html.write_text(html.read_text() + "\n\nREPORT_CHANGED_BY_TEST = 1\n")
    assert _fingerprints(copy) == before
    # Real code in the TFLite exporter: quantize's key changes, build's does not.
    tflite = copy / "mnetdeploy" / "export" / "tflite.py"
    tflite.write_text(tflite.read_text() + "\n\nEXPORTER_CHANGED_BY_TEST = 1\n")
    after = _fingerprints(copy)
    assert after["quantize"] != before["quantize"]
    assert after["build"] == before["build"] and after["bench"] == before["bench"]
