"""Adopt a Keras model file this tool did not build (a fine-tuned MobileNet, one from Keras applications):
it gets an artifact directory like a built model, so `quantize`, `eval`, `bench`, `report` and `gate` work on it.

    from mnetdeploy.adopt import adopt
    result = adopt("my_model.keras")            # artifacts/my_model/ (output/name override it)

The directory holds model.keras (saved as Keras 3, whatever the file was: .keras or a legacy Keras 2 .h5),
summary.json (a records.ModelSummary whose per-layer params and MACs are read from the Keras graph, see
arch/imported.py) and a manifest step "adopt" whose inputs are the file's sha256 and the adopting code: the
same file adopted again reuses the directory (and with it every export quantize made from it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnetdeploy import __version__
from mnetdeploy.artifacts import KERAS_MODEL, SUMMARY, code_fingerprint, read_json, record_step, step_is_fresh
from mnetdeploy.errors import UserError
from mnetdeploy.fsutil import atomic_dir, sha256_file, sha256_json
from mnetdeploy.records import ModelSummary

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass
class AdoptResult:
    artifact_dir: Path
    summary: dict[str, Any]
    reused: bool
    seconds: float


def is_model_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in KERAS_SUFFIXES


def adopt(path: str | Path, output: str | Path = "artifacts", name: str | None = None, force: bool = False,
          progress: Callable[[str], None] | None = None) -> AdoptResult:
    """The artifact directory `output`/`name` (default: the file's stem) for the Keras model file `path`."""
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    path = Path(path)
    if not is_model_file(path):
        raise UserError(f"{path}: not a Keras model file ({', '.join(KERAS_SUFFIXES)})")
    out = Path(output) / (name or path.stem)
    inputs = {"file": {"path": str(path), "sha256": sha256_file(path)}, "tool": code_fingerprint("mnetdeploy.adopt")}
    # The key leaves out the path: the same model moved or renamed is the same model.
    inputs_hash = sha256_json({"sha256": inputs["file"]["sha256"], "tool": inputs["tool"]})
    if not force and step_is_fresh(out, "adopt", inputs_hash):
        return AdoptResult(out, read_json(out / SUMMARY), True, time.perf_counter() - start)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mnetdeploy.arch.imported import keras_summary
    from mnetdeploy.arch.weights import load_keras_model

    say(f"loading {path.name}")
    model = load_keras_model(path)
    summary = keras_summary(model, str(path))  # refuses what is not a fixed-size RGB classifier
    summary.update({
        "name": out.name,
        "keras_params": summary["params"],
        "weights": {"source": "adopted", "file": str(path), "sha256": inputs["file"]["sha256"]},
        # A model from elsewhere states no input contract; calibration and checks feed what MobileNets
        # trained with Keras' preprocess_input expect.
        "input": {"shape": [1, summary["resolution"], summary["resolution"], 3], "range": [-1.0, 1.0],
                  "preprocessing": "x / 127.5 - 1 on RGB (assumed: Keras MobileNet preprocess_input), shorter "
                                   "side resized, center crop"},
        "tool_version": __version__,
        "artifact_dir": str(out),
    })
    model = _plain_keras3(model)
    say("saving")
    with atomic_dir(out) as tmp:
        model.save(tmp / KERAS_MODEL)
        _check_reloads(tmp / KERAS_MODEL, path)
        ModelSummary.model_validate(summary).save(tmp / SUMMARY)
        record_step(out, "adopt", inputs, inputs_hash, [KERAS_MODEL, SUMMARY], time.perf_counter() - start,
                    manifest_dir=tmp)
    return AdoptResult(out, summary, False, time.perf_counter() - start)


def _plain_keras3(model):
    """`model` with only Keras' own layer classes: a legacy .h5 loads its depthwise convs as a private subclass
    (arch/weights.load_keras_model), which a saved .keras could not name when loaded back."""
    import keras

    def plain(layer):
        for cls in (keras.layers.DepthwiseConv2D,):
            if isinstance(layer, cls) and type(layer) is not cls:
                return cls.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    if not any(isinstance(l, keras.layers.DepthwiseConv2D) and type(l) is not keras.layers.DepthwiseConv2D
               for l in model.layers):
        return model
    clone = keras.models.clone_model(model, clone_function=plain)
    clone.set_weights(model.get_weights())
    return clone


def _check_reloads(saved: Path, source: Path) -> None:
    """Every later step loads model.keras: a model that saves but does not load back (a custom layer Keras
    cannot find) is refused now, in one line, not in the middle of quantize."""
    from mnetdeploy.arch.weights import load_keras_model

    try:
        load_keras_model(saved)
    except UserError as e:
        raise UserError(f"{source}: saved as Keras 3 it does not load back ({str(e).split(': ', 2)[-1]}); "
                        "register its custom layers or save it without them") from None
