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
