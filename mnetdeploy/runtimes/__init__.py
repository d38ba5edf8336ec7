"""Host runners: one interface over Keras, LiteRT (TFLite) and ONNX Runtime models.

Evaluation, export validation and benchmarking all run models through `open_runner`, so a model is loaded,
fed and read the same way everywhere. Runtimes are imported lazily (inside the runner constructors).
"""

from __future__ import annotations

from pathlib import Path

from mnetdeploy.errors import UserError
from mnetdeploy.runtimes.base import Runner

FORMATS = {".keras": "keras", ".h5": "keras", ".tflite": "tflite", ".onnx": "onnx"}
# A sanity bound, not a tuning: no phone or board has more cores, and runtimes crash in native code (SIGSEGV
# in XNNPACK's thread pool) on absurd counts, which would then read as "the model failed".
MAX_THREADS = 256


def check_threads(threads: int | None, flag: str = "--threads") -> None:
    """One-line error for a thread count no runtime can use (None: the runtime chooses)."""
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise UserError(f"{flag} {threads}: must be between 1 and {MAX_THREADS}")


def model_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"{path}: unknown model format {suffix!r}; expected one of {', '.join(FORMATS)}")
    return FORMATS[suffix]


def open_runner(path: str | Path, threads: int | None = None, xnnpack: bool = True) -> Runner:
    """Load `path` with the runtime its format calls for. `threads=None` lets the runtime choose."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    fmt = model_format(path)
    if fmt == "tflite":
        from mnetdeploy.runtimes.litert import LiteRTRunner
        return LiteRTRunner(path, threads=threads, xnnpack=xnnpack)
    if fmt == "onnx":
        from mnetdeploy.runtimes.onnx import OnnxRunner
        return OnnxRunner(path, threads=threads)
    from mnetdeploy.runtimes.keras_runner import KerasRunner
    return KerasRunner(path)


__all__ = ["Runner", "open_runner", "model_format", "check_threads", "FORMATS", "MAX_THREADS"]
