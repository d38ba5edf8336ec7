"""Every exported file is run on held-out images and compared with the float Keras model it came from.

An fp32 export must reproduce Keras to FP32_TOLERANCE (max abs difference of the outputs): anything more is a
conversion bug (a wrong layout, a dropped op, a broken converter path), so it fails loudly and the file is not
kept. Reduced-precision exports are expected to differ; their agreement is measured and reported, and a
quantized model whose outputs no longer resemble the float ones (collapsed to chance) fails the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mnetdeploy.errors import CheckFailed

FP32_TOLERANCE = 1e-4
# Mean cosine similarity with the float outputs below which a reduced-precision export is called broken.
# Measured: int8 models that collapsed to chance (ONNX Runtime on an unfolded graph, dynamic ConvInteger)
# score 0.02; the pretrained v1 0.25 scores 0.98; random-init models are much more fragile but still far
# from chance (v2 0.35/96: 0.82; v3-small/96: 0.41, the TFLite converter's own default alike: 0.43).
# Top-1 agreement is no criterion here for the same reason.
BROKEN_COSINE = 0.2


@dataclass
class Agreement:
    images: int
    max_abs_diff: float
    mean_abs_diff: float
    cosine: float            # mean over images of the cosine similarity of the output vectors
    top1_agreement: float    # percent of images with the same top-1 class as the reference

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("max_abs_diff", "mean_abs_diff"):
            d[k] = float(f"{d[k]:.3g}")
        d["cosine"] = round(d["cosine"], 6)
        d["top1_agreement"] = round(d["top1_agreement"], 2)
        return d


def compare_outputs(reference: np.ndarray, outputs: np.ndarray) -> Agreement:
    reference = np.asarray(reference, np.float64).reshape(len(reference), -1)
    outputs = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
    if reference.shape != outputs.shape:
        raise CheckFailed(f"export check: output shape {outputs.shape} differs from Keras {reference.shape}")
    diff = np.abs(outputs - reference)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(outputs, axis=1)
    cosine = np.where(norms > 0, (reference * outputs).sum(1) / np.where(norms > 0, norms, 1), 0.0)
    same = np.argmax(reference, 1) == np.argmax(outputs, 1)
    return Agreement(len(reference), float(diff.max()), float(diff.mean()), float(cosine.mean()),
                     100.0 * float(same.mean()))


def check_export(path: Path, precision: str, reference: np.ndarray, images: np.ndarray,
                 name: str | None = None) -> Agreement:
    """Run `path` on `images` and compare with Keras' `reference` outputs. fp32 beyond FP32_TOLERANCE and
    quantized models whose outputs no longer resemble float ones raise CheckFailed. `name` is the file name
    shown in messages (the file checked may be a temporary one about to be renamed)."""
    from mnetdeploy.runtimes import open_runner

    runner = open_runner(path)
    got = runner.predict(images)
    agreement = compare_outputs(reference, got)
    name = name or Path(path).name
    if not np.all(np.isfinite(got)):
        raise CheckFailed(f"{name}: export check failed: non-finite outputs; the file was not kept")
    if precision == "fp32" and agreement.max_abs_diff > FP32_TOLERANCE:
        raise CheckFailed(f"{name}: export check failed: max abs difference from Keras "
                          f"{agreement.max_abs_diff:.3g} > {FP32_TOLERANCE:g} on {agreement.images} images "
                          f"(top-1 agreement {agreement.top1_agreement:.1f} %); this is a conversion bug, the "
                          "file was not kept")
    if precision != "fp32" and not np.any(got):
        raise CheckFailed(f"{name}: export check failed: every output is 0: the float model's largest probability "
                          f"({float(np.max(reference)):.2g}) is below the int8 softmax step (1/256), as with an "
                          "untrained many-class model on unrepresentative images; quantize a trained model or "
                          "export logits (model.classifier_activation: none). The file was not kept")
    if precision != "fp32" and agreement.cosine < BROKEN_COSINE:
        raise CheckFailed(f"{name}: export check failed: outputs are unlike float Keras (mean cosine "
                          f"{agreement.cosine:.3f} < {BROKEN_COSINE}, top-1 agreement "
                          f"{agreement.top1_agreement:.1f} % on {agreement.images} held-out images); the "
                          f"{precision} model is broken, the file was not kept")
    return agreement
