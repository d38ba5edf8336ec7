"""Every exported file is run on held-out images and compared with the float Keras model it came from.

fp32 exports are compared on logits, where float error is additive and comparable: a softmax output is taken
back to log-probabilities (logits up to a per-image constant, which is removed). The largest logit error,
relative to the range of the image's logits, must stay within FP32_RTOL. Float kernels sum in a different
order on every CPU (AVX2 vs AVX-512 vs NEON tiles, FMA or not), which moves deep networks' logits by about
1e-6..1e-4 of their range (scripts/export_check_margins.py measures it per family, natively and under an
AVX2-only CPU); a conversion bug (a wrong layout, a dropped op, weights off by 1 %) moves them by 1e-2 and
more. An absolute tolerance on probabilities cannot tell these apart: a softmax over peaked logits turns the
same tiny logit error into a probability error that depends on the model and the CPU.

Reduced-precision exports are expected to differ from float; their agreement is measured and reported, and a
quantized model whose outputs no longer resemble the float ones (collapsed to chance) fails the same way.
Quantized exports are also run twice on this CPU: with the runtime's deployed kernels (XNNPACK, ONNX Runtime's
fused int8 kernels) and with the runtime's plain arithmetic of the same file (LiteRT's built-in kernels,
ONNX Runtime with graph optimisation off: QDQ as float dequantize -> op -> quantize). The two differ by
rounding only, wherever a kernel is exact; a kernel that saturates or overflows (ONNX Runtime's U8S8 on
x86 CPUs without VNNI) moves them further than quantization itself does; KERNEL_RATIO bounds that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mnetdeploy.errors import CheckFailed

# Largest logit error of an fp32 export relative to the image's logit range (see above).
FP32_RTOL = 1e-3
# Softmax outputs below this are underflow-dominated in float32: their logs are not compared.
MIN_PROBABILITY = 1e-30
# The deployed kernels may move the outputs from the plain arithmetic of the same quantized file by at most
# KERNEL_RATIO x what quantization itself moves them from float, + KERNEL_FLOOR (cosine distances; see
# kernel_agreement). Measured (scripts/export_check_margins.py, v1/v2/v3-small/v3-large at 224 and 128 and
# the pretrained v1 0.25, natively on AVX512-VNNI and emulated AVX2-only): exact kernels stay at or below
# 1.1x, trained or random-init; ONNX Runtime's saturating U8S8 kernels on the AVX2-only CPU move the
# pretrained v1 0.25 13x further than quantization does (distance 0.14 vs 0.010). On random-init networks
# quantization alone moves outputs so far (0.05-0.8) that a saturating kernel hides inside it: the check
# protects trained models, which are the ones deployed.
KERNEL_RATIO = 1.5
KERNEL_FLOOR = 0.02
QUANTIZED = ("int8", "dynamic")   # precisions whose kernels are compared with the plain arithmetic
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
    logit_rel_error: float | None = None  # largest logit error / logit range (fp32 check; None: not computed)
    kernel: dict | None = None            # deployed kernels vs plain arithmetic of the same file (quantized)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("max_abs_diff", "mean_abs_diff", "logit_rel_error"):
            if d[k] is not None:
                d[k] = float(f"{d[k]:.3g}")
        d["cosine"] = round(d["cosine"], 6)
        d["top1_agreement"] = round(d["top1_agreement"], 2)
        if d["kernel"] is None:
            del d["kernel"]
        return d


def as_logits(outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits up to a per-row constant, mask of comparable entries). Rows that are probability vectors
    (non-negative, summing to 1) are taken back through the log; anything else is already logits."""
    outputs = np.asarray(outputs, np.float64)
    probabilities = bool(np.all(outputs >= 0)) and bool(np.allclose(outputs.sum(1), 1.0, atol=1e-3))
    if not probabilities:
        return outputs, np.ones(outputs.shape, bool)
    mask = outputs > MIN_PROBABILITY
    return np.log(np.where(mask, outputs, 1.0)), mask


def logit_rel_error(reference: np.ndarray, outputs: np.ndarray) -> float:
    """Largest |logit error| over images and classes, each relative to that image's logit range, with the
    per-image constant (the softmax's normaliser) removed."""
    ref, ref_mask = as_logits(reference.reshape(len(reference), -1))
    got, got_mask = as_logits(outputs.reshape(len(outputs), -1))
    worst = 0.0
    for r, g, m in zip(ref, got, ref_mask & got_mask):
        if m.sum() < 2:
            continue
        d = (g - r)[m]
        d -= np.median(d)   # the normaliser; the median, so one wrong class cannot hide in it
        spread = float(r[m].max() - r[m].min())
        worst = max(worst, float(np.abs(d).max()) / max(spread, 1e-12))
    return worst


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
    """Run `path` on `images` and compare with Keras' `reference` outputs. fp32 beyond FP32_RTOL, quantized
    models whose outputs no longer resemble float ones, and deployed kernels that disagree with the plain
    arithmetic of the same file raise CheckFailed. `name` is the file name shown in messages (the file
    checked may be a temporary one about to be renamed)."""
    from mnetdeploy.runtimes import open_runner

    runner = open_runner(path)
    got = runner.predict(images)
    agreement = compare_outputs(reference, got)
    name = name or Path(path).name
    if not np.all(np.isfinite(got)):
        raise CheckFailed(f"{name}: export check failed: non-finite outputs; the file was not kept")
    if precision == "fp32":
        agreement.logit_rel_error = logit_rel_error(reference, got)
        if agreement.logit_rel_error > FP32_RTOL:
            raise CheckFailed(f"{name}: export check failed: logits differ from Keras by "
                              f"{agreement.logit_rel_error:.3g} of their range (> {FP32_RTOL:g}) on "
                              f"{agreement.images} images (top-1 agreement {agreement.top1_agreement:.1f} %); "
                              "this is a conversion bug, the file was not kept")
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
    if precision in QUANTIZED:
        agreement.kernel = kernel_agreement(path, got, images, reference)
        if agreement.kernel["distance"] > agreement.kernel["limit"]:
            from mnetdeploy.cpu import host_cpu

            k = agreement.kernel
            raise CheckFailed(f"{name}: export check failed: {runner.runtime}'s int8 kernels on this CPU "
                              f"({host_cpu().summary()}) disagree with the plain arithmetic of the same file "
                              f"more than quantization itself does (cosine distance {k['distance']:.3g} > "
                              f"{k['limit']:.3g}, from quantization {k['quantization_distance']:.3g}; top-1 "
                              f"agreement {k['top1_agreement']:.1f} %): "
                              "a kernel saturates or overflows here; the file was not kept")
    return agreement


def kernel_agreement(path: Path, deployed: np.ndarray, images: np.ndarray, reference: np.ndarray) -> dict:
    """The deployed session's outputs against the runtime's plain arithmetic of the same file, on this CPU.

    `distance` is 1 - mean cosine between the two; `quantization_distance` is the same between the plain
    arithmetic and float Keras (`reference`): what int8 itself costs. Exact kernels differ from the plain
    arithmetic by rounding only, less than quantization itself moves the outputs (random-init networks
    amplify both alike); `limit` is what the kernels may add (KERNEL_RATIO, KERNEL_FLOOR)."""
    from mnetdeploy.runtimes import model_format
    from mnetdeploy.runtimes.base import Runner

    plain: Runner
    if model_format(path) == "onnx":
        from mnetdeploy.runtimes.onnx import OnnxRunner

        plain, how = OnnxRunner(path, optimize=False), "onnxruntime, graph optimisation off"
    else:
        from mnetdeploy.runtimes.litert import LiteRTRunner

        plain, how = LiteRTRunner(path, xnnpack=False), "litert built-in kernels (no XNNPACK)"
    plain_out = plain.predict(images)
    agreement = compare_outputs(plain_out, deployed)
    distance = 1.0 - agreement.cosine
    quantization = 1.0 - compare_outputs(reference, plain_out).cosine
    return {"reference": how, "cosine": round(agreement.cosine, 6),
            "top1_agreement": round(agreement.top1_agreement, 2),
            "max_abs_diff": float(f"{agreement.max_abs_diff:.3g}"),
            "distance": float(f"{distance:.3g}"), "quantization_distance": float(f"{quantization:.3g}"),
            "limit": float(f"{KERNEL_RATIO * quantization + KERNEL_FLOOR:.3g}")}
