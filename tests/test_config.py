"""The configuration schema: presets load, overrides apply, and bad input is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import PROJECT_ROOT
from mnetdeploy.config import DEFAULT_ARCH, load_config
from mnetdeploy.errors import ConfigError

PRESETS = sorted((PROJECT_ROOT / "configs").glob("v*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "model.yaml"
    path.write_text(text)
    return path


def error_of(path=None, overrides=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_required_presets_exist_and_load():
    names = {p.stem for p in PRESETS}
    assert {"v1_1.0_224", "v1_0.25_128", "v2_1.0_224", "v2_0.5_128", "v3-small_1.0_224",
            "v3-large_1.0_224"} <= names
    for path in PRESETS:
        cfg = load_config(path)
        arch, alpha, res = path.stem.split("_")[:3]
        assert (cfg.model.arch, cfg.model.alpha, cfg.model.resolution) == (arch, float(alpha), int(res))


def test_defaults_and_overrides():
    cfg = load_config(None, {"model.alpha": 0.5, "model.resolution": 128})
    assert cfg.model.arch == DEFAULT_ARCH
    assert cfg.artifact_name == f"{DEFAULT_ARCH}_0.5_128"
    cfg = load_config(PROJECT_ROOT / "configs" / "v1_1.0_224.yaml", {"model.alpha": 0.25, "name": "tiny"})
    assert (cfg.model.arch, cfg.model.alpha, cfg.artifact_name) == ("v1", 0.25, "tiny")


def test_unknown_key_suggests_the_right_one_with_its_line(tmp_path):
    msg = error_of(write(tmp_path, "model:\n  arch: v2\n  alpah: 0.5\n"))
    assert "model.yaml:3" in msg and "unknown key 'model.alpah'" in msg and "did you mean 'alpha'" in msg


def test_unknown_top_level_key(tmp_path):
    msg = error_of(write(tmp_path, "modle:\n  arch: v2\n"))
    assert "unknown key 'modle'" in msg and "did you mean 'model'" in msg


@pytest.mark.parametrize("yaml_text,expected", [
    ("model:\n  alpha: 0\n", "must be > 0"),
    ("model:\n  alpha: -1.5\n", "must be > 0"),
    ("model:\n  resolution: 16\n", "at least 32"),
    ("model:\n  resolution: 100\n", "multiple of 32"),
    ("model:\n  arch: v4\n", "'v1', 'v2', 'v3-small' or 'v3-large'"),
    ("model:\n  arch: v2\n  depth_multiplier: 2\n", "depth_multiplier is a v1 option"),
    ("model:\n  classes: 0\n", "greater than or equal to 2"),
    ("model:\n  arch: v1\n  weights: imagenet\n  resolution: 96\n", "resolutions [128, 160, 192, 224]"),
    # device names are checked whole when the config is read, not after the build when the device is reached
    ("bench:\n  devices: [host, iphone]\n", ":2: bench.devices.1: unknown device; use host, android[:SERIAL]"),
    ("bench:\n  devices: ['ssh://-oProxyCommand=x@h']\n", "the user may not start with '-'"),
    ("bench:\n  devices: ['android@farm:99999']\n", "adb_server 'farm:99999': expected HOST:PORT"),
    ("eval:\n  device: 'android:'\n", ":2: eval.device: empty serial; use android or android:SERIAL (got 'android:')"),
])
def test_invalid_values_are_one_line_with_location(tmp_path, yaml_text, expected):
    msg = error_of(write(tmp_path, yaml_text))
    assert expected in msg
    assert msg.startswith(str(tmp_path / "model.yaml"))


def test_resolution_error_names_the_neighbours():
    assert "try 96 or 128" in error_of(None, {"model.resolution": 100})


def test_malformed_yaml_gives_the_line(tmp_path):
    msg = error_of(write(tmp_path, "model:\n  arch: v2\n  alpha: [0.5\n  resolution: 128\n"))
    assert "malformed YAML" in msg and "model.yaml:" in msg
    line = int(msg.split("model.yaml:")[1].split(":")[0])
    assert 3 <= line <= 5


def test_yaml_is_loaded_safely(tmp_path):
    msg = error_of(write(tmp_path, "model: !!python/object/apply:os.system ['true']\n"))
    assert "malformed YAML" in msg


def test_missing_file():
    assert "config file not found" in error_of(Path("no/such/file.yaml"))


@pytest.mark.parametrize("text, line, key", [
    ("model:\n  arch: v1\nquantize: {}\nmodel:\n  alpha: 0.5\n", 4, "model"),   # a second section drops the first
    ("model:\n  arch: v1\n  alpha: 0.5\n  alpha: 0.75\n", 4, "alpha"),
])
def test_duplicate_keys_are_refused_with_their_line(tmp_path, text, line, key):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"dup.yaml:{line}: duplicate key '{key}'"):
        load_config(path)


@pytest.mark.parametrize("text, expected", [
    ("model:\n  alpha: true\n", "model.alpha"),          # would silently have been 1.0
    ("model:\n  resolution: yes\n", "model.resolution"),
    ("model:\n  classes: 1\n", "model.classes"),         # a classifier needs two classes
])
def test_booleans_and_one_class_are_refused(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"bad.yaml:2: {expected}"):
        load_config(path)
