"""Load pretrained weights into a built model, by layer name, and load whole Keras model files.

Layer names follow Keras applications, so three kinds of file load:
- legacy Keras 2 HDF5 files (full models or weights only, e.g. Keras' cached ImageNet weights). Keras 3's
  `load_model` refuses many of these (`Unrecognized keyword arguments passed to DepthwiseConv2D:
  {'groups': 1}`), so the weights are read from the file's `model_weights` group by name instead;
- Keras 3 `.weights.h5` files and `.keras` archives, through Keras' own loader.
Every weighted layer of the model must be matched with the right shapes, or the load fails with one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnetdeploy.errors import UserError


@dataclass
class WeightsReport:
    source: str
    kind: str            # "legacy-h5" | "keras"
    layers_loaded: int
    note: str = ""


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def imagenet_weights_file(arch: str, alpha: float, resolution: int) -> Path:
    """Where Keras applications caches the ImageNet weights (with top) for this configuration."""
    if arch == "v1":
        alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[alpha]
        name = f"mobilenet_{alpha_text}_{resolution}_tf.h5"
    elif arch == "v2":
        name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{resolution}.h5"
    else:
        kind = arch.split("-")[1]
        name = f"weights_mobilenet_v3_{kind}_224_{float(alpha)}_float.h5"
    return keras_cache_dir() / name


def resolve_weights_path(weights: str, arch: str, alpha: float, resolution: int) -> Path:
    if weights == "imagenet":
        path = imagenet_weights_file(arch, alpha, resolution)
        if not path.is_file():
            raise UserError(
                f"ImageNet weights for {arch} {alpha:g}/{resolution} are not in the Keras cache ({path}) and "
                "this tool does not download; copy the file there (Keras applications' file name) or pass "
                "--weights PATH")
        return path
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"{weights}: weights file not found")
    return path


def load_weights(model, path: Path) -> WeightsReport:
    """Load `path` into `model` by layer name, checking that every weighted layer is covered."""
    name = path.name
    if name.endswith(".keras") or name.endswith(".weights.h5"):
        try:
            model.load_weights(str(path))
        except Exception as e:  # Keras raises ValueError/KeyError with long messages
            raise UserError(f"{path}: weights do not fit this architecture: {_first_line(e)}") from None
        return WeightsReport(str(path), "keras", sum(1 for l in model.layers if l.weights))
    if name.endswith(".h5") or name.endswith(".hdf5"):
        return _load_legacy_h5(model, path)
    raise UserError(f"{path}: unsupported weights file; expected .h5, .weights.h5 or .keras")


def _load_legacy_h5(model, path: Path) -> WeightsReport:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise UserError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        full_model = "layer_names" not in f.attrs and "model_weights" in f
        group = f["model_weights"] if full_model else f
        if "layer_names" not in group.attrs:
            raise UserError(f"{path}: no Keras layer weights in this HDF5 file")
        version = f.attrs.get("keras_version", b"")
        version = version.decode() if isinstance(version, bytes) else str(version)
        stored = {}
        for raw in group.attrs["layer_names"]:
            layer_name = raw.decode() if isinstance(raw, bytes) else str(raw)
            g = group[layer_name]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs.get("weight_names", [])]
            if names:
                stored[layer_name] = [np.asarray(g[n]) for n in names]

    weighted = [l for l in model.layers if l.weights]
    missing = [l.name for l in weighted if l.name not in stored]
    if missing:
        raise UserError(f"{path}: no weights for layer '{missing[0]}' ({len(missing)} of {len(weighted)} "
                        "layers missing); the file is for a different architecture or naming")
    extra = sorted(set(stored) - {l.name for l in weighted})
    if extra:
        raise UserError(f"{path}: the file has weights for layer '{extra[0]}' that this model does not have "
                        f"({len(extra)} such layers); check --arch and --alpha")
    for layer in weighted:
        arrays = stored[layer.name]
        expected = [tuple(w.shape) for w in layer.weights]
        got = [a.shape for a in arrays]
        if expected != got:
            raise UserError(f"{path}: layer '{layer.name}' has shapes {got} in the file, the model needs "
                            f"{expected}; check --arch, --alpha, --classes and --depth-multiplier")
        layer.set_weights(arrays)
    note = (f"legacy Keras {version or '2'} HDF5 file: weights of {len(weighted)} layers loaded by name"
            + (" (Keras 3 cannot deserialize the full model, so only its weights were used)" if full_model else ""))
    return WeightsReport(str(path), "legacy-h5", len(weighted), note)


def load_keras_model(path: str | Path):
    """A whole Keras model from a `.keras` archive or a (possibly legacy Keras 2) `.h5` file."""
    import keras

    path = Path(path)
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as first:
        if path.suffix.lower() not in (".h5", ".hdf5"):
            raise UserError(f"{path}: cannot load Keras model: {_first_line(first)}") from None

    class DepthwiseConv2DKeras2(keras.layers.DepthwiseConv2D):
        # Keras 2.x wrote `groups: 1` into DepthwiseConv2D configs; Keras 3 rejects the unknown argument.
        def __init__(self, *args, groups=None, **kwargs):
            super().__init__(*args, **kwargs)

    try:
        return keras.saving.load_model(path, compile=False,
                                       custom_objects={"DepthwiseConv2D": DepthwiseConv2DKeras2})
    except Exception as e:
        raise UserError(f"{path}: cannot load Keras model: {_first_line(e)}") from None


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
