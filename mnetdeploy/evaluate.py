"""Top-1 / top-5 accuracy of Keras, TFLite and ONNX models on a folder of labelled images, and agreement
with a reference model.

The images are preprocessed once (per input resolution) and fed to every model, chunk by chunk, so several
models compare on exactly the same arrays and memory stays bounded on large folders. Labels come from a
labels CSV (given, or `labels.csv` inside the folder) or from an ImageFolder layout (class = sorted subfolder
index). The 1000- vs 1001-class convention (TF-slim models put "background" at index 0) is decided per model
from its output width, so float and converted models of either convention are scored against the same files.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnetdeploy.data import (
    files_hash,
    imagefolder_labels,
    load_images,
    match_csv_labels,
    progress_bar,
    read_labels_csv,
    scan_images,
)
from mnetdeploy.errors import UserError
from mnetdeploy.runtimes import Runner, check_threads, model_format, open_runner

LABEL_OFFSETS = ("auto", "0", "1")
LABELS_CSV_NAME = "labels.csv"
CHUNK = 128               # images preprocessed and run per step: bounds memory, keeps preprocessing shared
TOP_K = 5
IMAGENET_CLASSES = 1000


# ------------------------------------------------------------------------------------------------ results

@dataclass
class EvalResult:
    model: str
    format: str
    precision: str                 # fp32 / fp16 / int8 / int16x8 / dynamic
    n: int                         # images scored
    top1: float                    # percent
    top5: float                    # percent
    agreement_top1: float | None   # percent of images whose top-1 class equals the reference's; None: no reference
    cosine: float | None           # mean cosine similarity of the outputs with the reference's (same classes)
    reference: bool                # this row is the reference model
    outputs: int                   # output width (1000, 1001, ...)
    label_offset: int              # 1: index 0 of the output is "background"
    resolution: int
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0           # loading + inference of this model (preprocessing is shared, see data)
    environment: dict[str, Any] = field(default_factory=dict)  # CPU, its int8 features, runtime settings
    device: str = "host"           # where the model ran: host, android:SERIAL, adb-linux:SERIAL, ssh://...
    # Device results only: the same model's outputs on the host vs the device's, per image (device_eval.py).
    versus_host: dict[str, Any] | None = None
    identity: dict[str, Any] | None = None   # who the device is (devices/identity.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------ model precision

def model_precision(path: str | Path, runner: Runner | None = None) -> str:
    """fp32 / fp16 / int8 / int16x8 / dynamic, from the model file itself (not from its name).

    TFLite and ONNX files are read by the same inspection the benchmark records (bench/environment.py);
    a Keras model's precision is its compute dtype."""
    fmt = model_format(path)
    if fmt in ("tflite", "onnx"):
        from mnetdeploy.bench.environment import inspect_model

        return inspect_model(path).precision
    model = getattr(runner, "model", None)
    policy = getattr(getattr(model, "dtype_policy", None), "compute_dtype", "float32")
    return {"float16": "fp16", "bfloat16": "bf16"}.get(str(policy), "fp32")


# ----------------------------------------------------------------------------------------- data and labels

@dataclass
class EvalData:
    directory: Path
    all_files: list[Path]        # every image in the folder (ImageFolder class indices come from all of them)
    files: list[Path]            # the selected slice
    csv_path: Path | None        # None: ImageFolder labels
    skip_first: int
    limit: int | None
    ignored: str | None = None   # photo files in the folder that are not read (data.scan_images)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def labels_source(self) -> str:
        return f"csv:{self.csv_path}" if self.csv_path else "imagefolder"

    def labels(self, offset: int) -> dict[Path, int]:
        """{file -> class index in the model's output} for a label offset (cached)."""
        if offset not in self._cache:
            if self.csv_path:
                table = read_labels_csv(self.csv_path, offset)
                self._cache[offset] = match_csv_labels(self.directory, self.files, table, self.csv_path)
            else:
                every = imagefolder_labels(self.directory, self.all_files, offset)
                self._cache[offset] = {p: every[p] for p in self.files}
        return self._cache[offset]

    def check_labels(self) -> None:
        """Fail before any model is loaded when some selected image has no label under either offset."""
        try:
            self.labels(0)
        except UserError as first:
            try:
                self.labels(1)
            except UserError:
                raise first from None


def select_data(data_dir: str | Path, labels: str | Path | None = None, skip_first: int = 0,
                limit: int | None = None) -> EvalData:
    """The contiguous slice [skip_first, skip_first + limit) of the folder's images sorted by relative path,
    and where their labels come from."""
    directory = Path(data_dir)
    if skip_first < 0:
        raise UserError(f"skip_first must be >= 0 (got {skip_first})")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be >= 1 (got {limit})")
    all_files, ignored = scan_images(directory)
    if skip_first >= len(all_files):
        raise UserError(f"{directory}: --skip-first {skip_first} skips all {len(all_files)} images; "
                        "use a smaller value")
    end = None if limit is None else skip_first + limit
    files = all_files[skip_first:end]
    csv_path = Path(labels) if labels else None
    if csv_path is None and (directory / LABELS_CSV_NAME).is_file():
        csv_path = directory / LABELS_CSV_NAME
    data = EvalData(directory, all_files, files, csv_path, skip_first, limit, ignored)
    data.check_labels()
    return data


def decide_offset(model: str | Path, width: int, requested: str, labels_explicit: bool) -> int:
    """Label offset for a model with `width` outputs: 1001 -> 1 (background first), 1000 -> 0."""
    if requested not in LABEL_OFFSETS:
        raise UserError(f"label_offset must be one of {', '.join(LABEL_OFFSETS)} (got {requested!r})")
    if requested == "auto":
        if width == IMAGENET_CLASSES + 1:
            return 1
        if width == IMAGENET_CLASSES or labels_explicit:
            return 0
        raise UserError(f"{model}: {width} outputs is neither 1000 (ImageNet) nor 1001 (ImageNet with background "
                        "first), so the labels cannot be mapped automatically; pass --labels CSV or an "
                        "ImageFolder with the model's classes, and --label-offset 0 or 1")
    offset = int(requested)
    if (width, offset) in ((IMAGENET_CLASSES, 1), (IMAGENET_CLASSES + 1, 0)):
        raise UserError(f"{model}: --label-offset {offset} does not fit a model with {width} outputs "
                        f"({'no' if width == IMAGENET_CLASSES else 'a'} background class); "
                        f"use --label-offset {1 - offset} or auto")
    return offset


# ----------------------------------------------------------------------------------------- per-model state

class Tally:
    """Running top-1/top-5 hits and agreement/cosine with a reference, over outputs from any source: a host
    runner (ModelRun) or a device (devices/device_eval.py), so both are scored by the same code."""

    def __init__(self, path: Path, fmt: str, precision: str, resolution: int):
        self.path, self.format, self.precision, self.resolution = path, fmt, precision, resolution
        self.seconds = 0.0
        self.offset: int | None = None
        self.width = 0
        self.n = self.hits1 = self.hits5 = self.agree = 0
        self.cos_sum = 0.0
        self.cos_n = 0

    def score(self, outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Count top-1/top-5 hits; return the predicted class ids (output index minus the label offset)."""
        k = min(TOP_K, outputs.shape[1])
        topk = np.argpartition(-outputs, k - 1, axis=1)[:, :k]
        top1 = np.argmax(outputs, axis=1)
        self.hits1 += int(np.sum(top1 == labels))
        self.hits5 += int(np.sum(np.any(topk == labels[:, None], axis=1)))
        self.n += len(labels)
        return top1 - self.offset

    def compare(self, classes: np.ndarray, outputs: np.ndarray, ref_classes: np.ndarray,
                ref_outputs: np.ndarray, ref_offset: int) -> None:
        """Agreement with the reference on predicted class ids; cosine on the outputs over the same classes
        (the background column of a 1001-class output is dropped when the other model has none)."""
        self.agree += int(np.sum(classes == ref_classes))
        assert self.offset is not None  # decided by _run_chunk before the first score/compare
        mine, theirs = _real_classes(outputs, self.offset), _real_classes(ref_outputs, ref_offset)
        if mine.shape == theirs.shape:
            num = np.sum(mine * theirs, axis=1)
            den = np.linalg.norm(mine, axis=1) * np.linalg.norm(theirs, axis=1)
            self.cos_sum += float(np.sum(num / np.maximum(den, 1e-12)))
            self.cos_n += len(mine)

    def result(self, is_reference: bool, has_reference: bool, data: dict[str, Any],
               environment: dict[str, Any]) -> EvalResult:
        pct = lambda x: round(100.0 * x / self.n, 3) if self.n else 0.0  # noqa: E731
        compared = has_reference and not is_reference
        return EvalResult(model=str(self.path), format=self.format, precision=self.precision, n=self.n,
                          top1=pct(self.hits1), top5=pct(self.hits5),
                          agreement_top1=pct(self.agree) if compared else None,
                          cosine=round(self.cos_sum / self.cos_n, 6) if compared and self.cos_n else None,
                          reference=is_reference, outputs=self.width, label_offset=int(self.offset or 0),
                          resolution=self.resolution, data=data, seconds=round(self.seconds, 3),
                          environment=environment)


class ModelRun(Tally):
    """One model being evaluated on this machine: its runner and running totals."""

    def __init__(self, path: Path, threads: int | None, resolution: int | None):
        start = time.perf_counter()
        runner = _open(path, threads)
        super().__init__(path, model_format(path), model_precision(path, runner),
                         _model_resolution(path, runner, resolution))
        self.runner = runner
        self.seconds = time.perf_counter() - start

    def predict(self, images: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        try:
            out = self.runner.predict(images)
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"{self.path}: inference failed ({type(e).__name__}: {_first_line(e)}); is it an "
                            "image classifier taking (1, H, W, 3) inputs?") from None
        self.seconds += time.perf_counter() - start
        out = np.asarray(out, dtype=np.float32).reshape(len(images), -1)
        return out

    def result(self, is_reference: bool, has_reference: bool, data: dict[str, Any],
               environment: dict[str, Any] | None = None) -> EvalResult:
        return super().result(is_reference, has_reference, data,
                              eval_environment(self.runner) if environment is None else environment)


def eval_environment(runner: Runner) -> dict[str, Any]:
    """What decided these numbers besides the model: the CPU (int8 kernels differ per CPU in arithmetic,
    cpu.py) and the runtime's settings."""
    import platform

    from mnetdeploy.bench.environment import cpu_identity

    return {**cpu_identity(), "hostname": platform.node(), "runtime": runner.runtime,
            "runtime_settings": runner.settings()}


def _real_classes(outputs: np.ndarray, offset: int) -> np.ndarray:
    return outputs[:, offset:] if offset else outputs


def _open(path: Path, threads: int | None) -> Runner:
    try:
        return open_runner(path, threads=threads)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{path}: cannot load {model_format(path)} model ({type(e).__name__}: "
                        f"{_first_line(e)}); check the file") from None


def _model_resolution(path: Path, runner: Runner, resolution: int | None) -> int:
    """Square NHWC RGB input size; `resolution` stands in for a dynamic (None / -1 / symbolic) size."""
    try:
        shape = tuple(runner.input_shape)
    except Exception:
        shape = ()
    if len(shape) != 4 or shape[3] != 3:
        raise UserError(f"{path}: input shape {shape} is not (N, H, W, 3); eval feeds NHWC RGB images "
                        "(a channels-first model needs converting to NHWC first)")
    height, width = shape[1], shape[2]
    dynamic = height in (None, -1, 1) or width in (None, -1, 1)
    if dynamic:
        if resolution is None:
            raise UserError(f"{path}: the model's input size is dynamic {shape}; pass --resolution N")
        return int(resolution)
    if height != width:
        raise UserError(f"{path}: input {height}x{width} is not square; eval center-crops square images")
    if resolution is not None and resolution != height:
        raise UserError(f"{path}: takes {height}x{height} inputs, not --resolution {resolution}; drop the option")
    return int(height)


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else ""


# ------------------------------------------------------------------------------------------------ evaluate

def evaluate(models: Sequence[str | Path], data_dir: str | Path, *, labels: str | Path | None = None,
             label_offset: str | int = "auto", limit: int | None = None, skip_first: int = 0,
             reference: str | Path | None = None, threads: int | None = None, resolution: int | None = None,
             progress: bool = True) -> list[EvalResult]:
    """Score every model on the same preprocessed images; returns one result per model (the reference
    first, flagged, when it is not one of `models`).

    The reference is `reference`, else the first model when several are given, else none."""
    check_threads(threads)
    paths = [Path(m) for m in models]
    if not paths:
        raise UserError("eval: no model given; pass one or more .keras/.h5/.tflite/.onnx files")
    for p in paths + ([Path(reference)] if reference else []):
        if not p.is_file():
            raise UserError(f"{p}: model file not found")
        model_format(p)
    requested = str(label_offset)
    if requested not in LABEL_OFFSETS:
        raise UserError(f"label_offset must be one of {', '.join(LABEL_OFFSETS)} (got {requested!r})")
    data = select_data(data_dir, labels, skip_first, limit)
    labels_explicit = labels is not None or data.csv_path is None or requested != "auto"

    ref_path = Path(reference) if reference else (paths[0] if len(paths) > 1 else None)
    order = _unique([ref_path] + paths if ref_path else paths)
    runs = {p.resolve(): ModelRun(p, threads, resolution) for p in order}
    ref = runs[ref_path.resolve()] if ref_path else None

    loaded_paths: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    prep_seconds = 0.0
    resolutions = sorted({r.resolution for r in runs.values()})
    with progress_bar(len(data.files) if progress else 0, f"evaluating {len(runs)} model(s)") as advance:
        for start in range(0, len(data.files), CHUNK):
            chunk = data.files[start:start + CHUNK]
            t0 = time.perf_counter()
            arrays, ok, bad = preprocess_chunk(chunk, resolutions)
            prep_seconds += time.perf_counter() - t0
            loaded_paths += ok
            skipped += bad
            if ok:
                _run_chunk(runs, ref, arrays, ok, data, requested, labels_explicit)
            for _ in chunk:
                advance()
    record = data_record(data, loaded_paths, skipped, prep_seconds)
    return [run.result(is_reference=run is ref, has_reference=ref is not None, data=record)
            for run in runs.values()]


def data_record(data: EvalData, loaded: list[Path], skipped: list[tuple[Path, str]], prep_seconds: float
                ) -> dict[str, Any]:
    """What was evaluated: its hash keys results (host and device alike) and pairs them in the gate."""
    if not loaded:
        raise UserError(f"{data.directory}: none of the {len(data.files)} selected images could be read "
                        f"(e.g. {skipped[0][0].name}: {skipped[0][1]}); check the files")
    return {
        "dir": str(data.directory), "count": len(loaded), "hash": files_hash(loaded),
        "skip_first": data.skip_first, "limit": data.limit, "skipped": len(skipped),
        "skipped_files": [str(p.relative_to(data.directory)) for p, _ in skipped[:20]],
        "first_file": loaded[0].relative_to(data.directory).as_posix(),
        "last_file": loaded[-1].relative_to(data.directory).as_posix(),
        "labels": data.labels_source, "preprocess_seconds": round(prep_seconds, 3),
        "ignored": data.ignored,
    }


def _unique(paths: list[Path]) -> list[Path]:
    """`paths` without repeats of the same file (however it is spelled), first spelling kept."""
    seen: dict[Path, Path] = {}
    for p in paths:
        seen.setdefault(p.resolve(), p)
    return list(seen.values())


def preprocess_chunk(chunk: list[Path], resolutions: list[int]):
    """{resolution -> array} of the readable images in `chunk`, each decoded once per resolution."""
    first = load_images(chunk, resolutions[0], min_ok=0, progress=False)
    arrays = {resolutions[0]: first.array}
    for res in resolutions[1:]:
        arrays[res] = load_images(first.paths, res, min_ok=0, progress=False).array
    return arrays, first.paths, first.skipped


def _run_chunk(runs: dict[Path, ModelRun], ref: ModelRun | None, arrays: dict[int, np.ndarray],
               paths: list[Path], data: EvalData, requested: str, labels_explicit: bool) -> None:
    ref_classes = ref_outputs = None
    for run in runs.values():  # the reference comes first (see `order`)
        outputs = run.predict(arrays[run.resolution])
        if run.offset is None:
            run.width = outputs.shape[1]
            run.offset = decide_offset(run.path, run.width, requested, labels_explicit)
        table = data.labels(run.offset)
        labels = np.array([table[p] for p in paths], dtype=np.int64)
        _check_label_range(run, labels, data)
        classes = run.score(outputs, labels)
        if run is ref:
            ref_classes, ref_outputs = classes, outputs
        elif ref is not None:
            # The reference ran first in this chunk (see `order`), so its outputs and offset are set.
            assert ref_classes is not None and ref_outputs is not None and ref.offset is not None
            run.compare(classes, outputs, ref_classes, ref_outputs, ref.offset)


def _check_label_range(run: Tally, labels: np.ndarray, data: EvalData) -> None:
    if labels.size and (labels.max() >= run.width or labels.min() < 0):
        raise UserError(f"{run.path}: label index {int(labels.max())} from {data.labels_source} does not fit "
                        f"its {run.width} outputs (label offset {run.offset}); check --labels / --label-offset")
