"""The Keras models every int8 export starts from, and the conversions shared by the quantize step, the
per-layer analysis and --max-drop recovery (pipeline.py, analysis.py, recovery.py all build on this module).

    folded     batch norm folded into the convolutions, checked to compute the same function
    plan       int8 weights chosen on the calibration images (bias correction, rounding: rounding.py)
    snapped    the folded model with those weights, except for the layers kept in float
    tflite_int8 / onnx_int8   a full int8 model of `snapped`, with chosen layers kept float
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnetdeploy.artifacts import KERAS_MODEL, code_fingerprint
from mnetdeploy.config import QuantizeConfig
from mnetdeploy.errors import CheckFailed, UserError
from mnetdeploy.fsutil import sha256_file

if TYPE_CHECKING:
    from mnetdeploy.data import CalibrationSet

# Folding rounds W * gamma / sigma to float32: deep random-init networks move by up to ~1e-4 (v3-large);
# a folding bug moves them by far more.
FOLD_TOLERANCE = 1e-3
# Precisions whose weights are chosen on calibration images (bias correction, rounding; see rounding.py).
# Dynamic-range int8 stores int8 weights too: measured on the pretrained v1 0.25, converting the plain model
# keeps 82 % top-1 agreement with float, the bias-corrected one 94 %.
CALIBRATED = ("int8", "dynamic")


def converter_versions() -> dict[str, str]:
    """Versions of the converters, part of every export's cache key (read from package metadata: fast)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for key, names in (("tensorflow", ("tensorflow-cpu", "tensorflow")), ("tf2onnx", ("tf2onnx",)),
                       ("onnxruntime", ("onnxruntime",)), ("onnx", ("onnx",))):
        for name in names:
            try:
                out[key] = version(name)
                break
            except PackageNotFoundError:
                continue
    return out


class PreparedModels:
    """The Keras models every export starts from, made on first use (building them costs seconds).

    int8 models depend on which layers are kept in float (`keep`): those keep their float weights, and the
    converters leave them unquantized. Everything per keep set is cached, so --max-drop attempts only pay
    for what changes."""

    def __init__(self, artifact_dir: Path, options: QuantizeConfig, say: Callable[[str], None]):
        self.artifact_dir, self.options, self.say = artifact_dir, options, say
        self._original = self._folded = self._plan = None
        self._snapped: dict[frozenset, Any] = {}
        self._tflite_calibrated: dict[frozenset, bytes] = {}
        self._onnx_snapped: dict[frozenset, dict[str, Any]] = {}
        self._tmp_dir: Path | None = None
        self._keras_sha256: str | None = None
        self._reference: np.ndarray | None = None
        self.preparation: dict[str, Any] = {}
        # Set by quantize.step before use: the calibration when something int8 is made, the check images always.
        self.calibration: CalibrationSet | None = None
        self.check_images: np.ndarray | None = None

    @property
    def original(self):
        if self._original is None:
            from mnetdeploy.arch.weights import load_keras_model

            self.say("loading the Keras model")
            self._original = load_keras_model(self.artifact_dir / KERAS_MODEL)
        return self._original

    @property
    def keras_sha256(self) -> str:
        if self._keras_sha256 is None:
            self._keras_sha256 = sha256_file(self.artifact_dir / KERAS_MODEL)
        return self._keras_sha256

    @property
    def reference(self) -> np.ndarray:
        """Float Keras outputs on the check images: what every export is compared with."""
        if self._reference is None:
            assert self.check_images is not None, "check_images not set"
            self._reference = predict(self.original, self.check_images)
        return self._reference

    @property
    def folded(self):
        if self._folded is None:
            from mnetdeploy.export.validate import compare_outputs
            from mnetdeploy.quantize.fold import fold_batchnorm

            self.say("folding batch norms into the convolutions")
            self._folded, report = fold_batchnorm(self.original)
            # Folding must not change the function: compare on the check images.
            assert self.check_images is not None, "check_images not set"
            agreement = compare_outputs(self.reference, predict(self._folded, self.check_images))
            if agreement.max_abs_diff > FOLD_TOLERANCE:
                raise CheckFailed(f"batch-norm folding changed the model's outputs by {agreement.max_abs_diff:.3g} "
                                  f"(> {FOLD_TOLERANCE:g}); this is a bug, nothing was written")
            self.preparation["fold"] = {**report.describe(), "max_abs_diff": float(f"{agreement.max_abs_diff:.3g}")}
        return self._folded

    @property
    def plan(self):
        """Int8 weights chosen for every layer (bias correction, rounding) on the calibration images."""
        if self._plan is None:
            from mnetdeploy.quantize.rounding import plan_int8_weights

            folded = self.folded
            self.say("choosing int8 weights (bias correction, rounding)")
            start = time.perf_counter()
            assert self.calibration is not None, "calibration not set"
            self._plan = plan_int8_weights(folded, self.calibration.array,
                                           bias_correction=self.options.bias_correction,
                                           rounding=self.options.rounding, progress=self.say)
            self.preparation["weights"] = {**self._plan.describe(),
                                           "seconds": round(time.perf_counter() - start, 3),
                                           "per_layer": [l.to_dict() for l in self._plan.layers]}
        return self._plan

    def snapped(self, keep: tuple[str, ...] | list[str] = ()):
        """The int8-ready Keras model: folded, weights on the int8 grid except for the `keep` layers."""
        key = frozenset(keep)
        if key not in self._snapped:
            from mnetdeploy.quantize.rounding import apply_int8_weights

            self._snapped[key] = apply_int8_weights(self.folded, self.plan, key)
        return self._snapped[key]

    def tflite_calibrated(self, keep: tuple[str, ...] | list[str] = ()) -> bytes:
        """The int8-ready model calibrated by the TFLite converter (min/max of every tensor)."""
        key = frozenset(keep)
        if key not in self._tflite_calibrated:
            from mnetdeploy.export import tflite

            model = self.snapped(keep)
            self.say("TFLite calibration")
            assert self.calibration is not None, "calibration not set"
            self._tflite_calibrated[key] = tflite.calibrate(model, self.calibration.array)
        return self._tflite_calibrated[key]

    def onnx_snapped(self, keep: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
        """fp32 ONNX of the int8-ready model ({"proto", "path"}), the input of ONNX Runtime's quantizer."""
        key = frozenset(keep)
        if key not in self._onnx_snapped:
            import tempfile

            from mnetdeploy.export import onnx as onnx_export

            model = self.snapped(keep)
            self.say("exporting the int8-ready model to ONNX")
            proto = onnx_export.keras_to_onnx(model)
            if self._tmp_dir is None:
                self._tmp_dir = Path(tempfile.mkdtemp(prefix="mnetdeploy-onnx-"))
            path = self._tmp_dir / f"int8_ready_{len(self._onnx_snapped)}.onnx"
            onnx_export.save(proto, path)
            self._onnx_snapped[key] = {"proto": proto, "path": path}
        return self._onnx_snapped[key]

    def close(self) -> None:
        if self._tmp_dir is not None:
            import shutil

            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None


def predict(model, images: np.ndarray) -> np.ndarray:
    outs = [np.asarray(model(images[i:i + 32], training=False)) for i in range(0, len(images), 32)]
    return np.concatenate(outs).astype(np.float32)


def step_inputs(models: PreparedModels, fmt: str, precision: str, options: QuantizeConfig
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(inputs recorded in the manifest, the part of them that is hashed into the cache key)."""
    inputs: dict[str, Any] = {"model_sha256": models.keras_sha256, "format": fmt, "precision": precision,
              "tool": code_fingerprint("mnetdeploy.quantize.step"), "converters": converter_versions()}
    if precision not in CALIBRATED:
        return inputs, inputs
    assert models.calibration is not None  # quantize.step loads it whenever a CALIBRATED precision is planned
    record = models.calibration.describe()
    settings = options.int8_settings(fmt)
    if precision == "dynamic":  # activations are quantized at run time: only the weight choices matter
        settings = {k: settings[k] for k in ("bias_correction", "rounding")}
    inputs["weights" if precision == "dynamic" else "int8"] = settings
    inputs["calibration"] = {k: record[k] for k in ("source", "directory", "count", "content_hash")}
    # The calibration folder's path is recorded but not part of the key: the same images under another
    # path (relative vs absolute, a copy) are the same calibration.
    key = {**inputs, "calibration": {k: v for k, v in inputs["calibration"].items() if k != "directory"}}
    return inputs, key


def tflite_int8(models: PreparedModels, keep: tuple[str, ...] | list[str], io: str, graph: str) -> bytes:
    """Full-integer TFLite model with the `keep` layers (and their fused activations) in float, shaped as
    `graph` asks (export/int8_graph.py)."""
    from mnetdeploy.export.tflite import quantize_calibrated

    # The layers the graph keeps float run with their exact float weights (not snapped to the int8 grid):
    # which ops those are depends on the structure only, so the first calibration tells.
    keep = tuple(sorted({*keep, *graph_float_layers(models, models.tflite_calibrated(keep), graph)}))
    calibrated = models.tflite_calibrated(keep)
    return quantize_calibrated(calibrated, io, tflite_keep_float(calibrated, models.snapped(keep), keep), graph)


def graph_float_layers(models: PreparedModels, calibrated: bytes, graph: str) -> set[str]:
    """Weighted Keras layers whose ops the int8 `graph` keeps float (export/int8_graph.py)."""
    from mnetdeploy.export.int8_graph import float_ops
    from mnetdeploy.export.tflite import keras_layer_of
    snapped = models.snapped()
    weighted = weighted_names(snapped)
    names = {l.name for l in snapped.layers}
    return {layer for t in float_ops(calibrated, graph)
            if (layer := keras_layer_of(t, names, weighted)) in weighted}


def onnx_int8(models: PreparedModels, keep: tuple[str, ...] | list[str], method: str, out: Path) -> None:
    """QDQ int8 ONNX model with the `keep` layers in float, written to `out`."""
    from mnetdeploy.quantize.onnx_static import quantize_static_int8

    source = models.onnx_snapped(keep)
    nodes = onnx_keep_float(source["proto"], models.snapped(keep), keep)
    assert models.calibration is not None, "calibration not set"
    quantize_static_int8(source["path"], out, models.calibration.array, method, nodes)


def layer_groups(model, names: tuple[str, ...] | list[str]) -> dict[str, set[str]]:
    """Each requested layer with the layers fused into the same op (a conv and the activation right after
    it), checking that the names exist."""
    import difflib

    from mnetdeploy.arch.graph import only_consumer, producers_and_consumers

    existing = {l.name for l in model.layers}
    _, consumers = producers_and_consumers(model)
    groups = {}
    for name in names:
        if name not in existing:
            guess = difflib.get_close_matches(name, sorted(existing), n=1)
            hint = f"; did you mean '{guess[0]}'?" if guess else ""
            raise UserError(f"keep_float '{name}': no such layer in the model{hint} "
                            "(names as in `mnetdeploy info` or quant_analysis.json)")
        group = {name}
        layer = model.get_layer(name)
        after = only_consumer(layer, consumers)
        if after is not None and after.__class__.__name__ in ("ReLU", "Activation"):
            group.add(after.name)
        groups[name] = group
    return groups


def tflite_keep_float(calibrated: bytes, snapped, names) -> list[str]:
    """TFLite op output tensors to denylist for the Keras layers `names`."""
    if not names:
        return []
    from mnetdeploy.export.tflite import keras_layer_of, op_outputs

    groups = layer_groups(snapped, names)
    layer_names = {l.name for l in snapped.layers}
    tensors = []
    for name, group in groups.items():
        hits = [o["tensor"] for o in op_outputs(calibrated)
                if set(_all_layers(o["tensor"], layer_names, keras_layer_of)) & group]
        if not hits:
            raise UserError(f"keep_float '{name}': the layer has no operator of its own in the TFLite model "
                            "(it is folded into another); name the conv layer instead")
        tensors += hits
    return tensors


def _all_layers(tensor_name: str, layer_names: set[str], keras_layer_of) -> list[str]:
    return [l for part in tensor_name.split(";") if (l := keras_layer_of(part, layer_names))]


def onnx_keep_float(proto, snapped, names) -> list[str]:
    """ONNX node names to exclude from quantization for the Keras layers `names`."""
    if not names:
        return []
    from mnetdeploy.export.onnx import node_layer_names

    groups = layer_groups(snapped, names)
    mapping = node_layer_names(proto, {l.name for l in snapped.layers})
    nodes = []
    for name, group in groups.items():
        hits = [node for node, layer in mapping.items() if layer in group]
        if not hits:
            raise UserError(f"keep_float '{name}': the layer has no node of its own in the ONNX model; "
                            "name the conv layer instead")
        nodes += hits
    return nodes


def weighted_names(model) -> set[str]:
    """Names of the layers with weights int8 quantizes (convolutions, dense)."""
    from mnetdeploy.quantize.rounding import WEIGHTED

    return {l.name for l in model.layers if l.__class__.__name__ in WEIGHTED}
