"""Shared test fixtures. Real data lives in ../shared/data next to the project root (never copied here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The ADB device stand-in's fixtures (real adb client/server against a test-only device).
from device_standin.fixtures import adb_standin, adb_standin_arm64, adb_standin_factory  # noqa: F401

# Same environment as the CLI's main(): quiet TensorFlow, reproducible float reference.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
SHARED_REFERENCE = PROJECT_ROOT.parent / "shared" / "reference"
IMAGENET_SAMPLE = SHARED_DATA / "imagenet-sample"
PRETRAINED_V1 = SHARED_DATA / "models" / "mobilenet_v1_0.25_224.h5"


def require(path: Path) -> Path:
    """Skip the calling test, with the reason, when a piece of ../shared is absent."""
    if not path.exists():
        pytest.skip(f"{path} is absent (real data lives in ../shared next to the project root)")
    return path


@pytest.fixture
def imagenet_sample() -> Path:
    return require(IMAGENET_SAMPLE)


@pytest.fixture
def pretrained_v1() -> Path:
    return require(PRETRAINED_V1)


# Files with the longest module fixtures and tests go first. `make test` gives each of its two xdist workers
# whole files (--dist loadfile, so a module's fixtures are built once) in collection order; in alphabetical
# order the long test_quantize/test_sweep files start late, and a long file started last keeps one worker busy
# while the other has nothing left. (The gain is below this machine's run-to-run noise; it was not measurable.)
# Order only: a file missing from this list runs after these, as before. Kept by hand from `--durations`.
LONGEST_FIRST = ("test_quantize.py", "test_export.py", "test_sweep.py", "test_device_eval.py", "test_delegation.py",
                 "test_pipeline.py", "test_device_run.py", "test_cluster.py", "test_device_bench.py", "test_adopt.py",
                 "test_gate.py", "test_report.py", "test_sequential.py", "test_bench_host.py", "test_evaluate.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: a file's own order is kept
