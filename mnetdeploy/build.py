"""The build step: a configuration becomes an artifact directory with the Keras model and its summary.

    from mnetdeploy.config import load_config
    from mnetdeploy.build import build
    result = build(load_config("configs/v2_1.0_224.yaml"))
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mnetdeploy import __version__
from mnetdeploy.arch.plan import Network, plan_network
from mnetdeploy.artifacts import CONFIG, KERAS_MODEL, SUMMARY, code_fingerprint, read_json, record_step, step_is_fresh
from mnetdeploy.config import Config
from mnetdeploy.errors import CheckFailed
from mnetdeploy.fsutil import atomic_dir, sha256_file, sha256_json, write_text
from mnetdeploy.records import ModelSummary

INIT_IMAGES = 32  # images in the data-dependent init pass; fewer leaves the 1x1 head statistics noisy


@dataclass
class BuildResult:
    artifact_dir: Path
    summary: dict[str, Any]
    reused: bool
    seconds: float
    notes: list[str] = field(default_factory=list)


def plan_from_config(config: Config) -> Network:
    m = config.model
    return plan_network(m.arch, m.alpha, m.resolution, m.classes, m.depth_multiplier, m.dropout,
                        m.classifier_activation)


def build_inputs(config: Config) -> dict[str, Any]:
    """Everything the built model depends on; its hash decides whether a rebuild is needed."""
    from mnetdeploy.arch.weights import resolve_weights_path

    inputs: dict[str, Any] = {"model": config.model.model_dump(mode="json"),
                              "tool": code_fingerprint("mnetdeploy.build")}
    m = config.model
    if m.weights:
        path = resolve_weights_path(m.weights, m.arch, m.alpha, m.resolution)
        inputs["weights_file"] = {"path": str(path), "sha256": sha256_file(path)}
    return inputs


def build(config: Config, force: bool = False, progress: Callable[[str], None] | None = None) -> BuildResult:
    """Build (or reuse) the model described by `config` in `config.artifact_dir`."""
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    net = plan_from_config(config)
    inputs = build_inputs(config)
    inputs_hash = sha256_json(inputs)
    out = config.artifact_dir
    if not force and step_is_fresh(out, "build", inputs_hash):
        return BuildResult(out, read_json(out / SUMMARY), True, time.perf_counter() - start,
                           ["inputs unchanged: reused the existing build (use --force to rebuild)"])

    say("building Keras model")
    model, weights_info = _make_model(config, net, inputs, say)
    keras_params = int(model.count_params())
    if keras_params != net.params:
        raise CheckFailed(f"internal check failed: analytic parameter count {net.params} != Keras "
                          f"{keras_params} for {config.artifact_name}")
    summary = net.summary()
    summary.update({
        "name": config.artifact_name,
        "keras_params": keras_params,
        "weights": weights_info,
        "input": {"shape": [1, net.resolution, net.resolution, 3], "range": [-1.0, 1.0],
                  "preprocessing": "x / 127.5 - 1 on RGB, shorter side resized, center crop"},
        "tool_version": __version__,
    })

    say("saving")
    with atomic_dir(out) as tmp:
        model.save(tmp / KERAS_MODEL)
        summary["artifact_dir"] = str(out)
        ModelSummary.model_validate(summary).save(tmp / SUMMARY)
        write_text(tmp / CONFIG, yaml.safe_dump(config.to_dict(), sort_keys=False))
        seconds = time.perf_counter() - start
        record_step(out, "build", inputs, inputs_hash, [KERAS_MODEL, SUMMARY, CONFIG], seconds, manifest_dir=tmp)
    return BuildResult(out, summary, False, seconds, [weights_info["note"]] if weights_info.get("note") else [])


def _make_model(config: Config, net: Network, inputs: dict, say: Callable[[str], None]):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from mnetdeploy.arch.init import data_dependent_init, seeded_kernels, synthetic_images
    from mnetdeploy.arch.keras_builder import to_keras
    from mnetdeploy.arch.weights import load_weights

    m = config.model
    keras.utils.set_random_seed(m.seed)
    model = to_keras(net)
    if m.weights:
        say(f"loading weights from {inputs['weights_file']['path']}")
        report = load_weights(model, Path(inputs["weights_file"]["path"]))
        return model, {"source": m.weights, "file": report.source, "sha256": inputs["weights_file"]["sha256"],
                       "kind": report.kind, "layers_loaded": report.layers_loaded, "note": report.note}
    say("initialising (batch-norm statistics from a forward pass)")
    seeded_kernels(model, m.seed)
    stats = data_dependent_init(model, synthetic_images(INIT_IMAGES, m.resolution, seed=m.seed))
    return model, {"source": None, "init": "data-dependent (BN statistics + LSUV) on synthetic images",
                   "seed": m.seed, **stats}
