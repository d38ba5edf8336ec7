"""Image loading, preprocessing, calibration sets and labels: defined once, used by quantize, eval and benchmark.

Every MobileNet this tool builds (v1, v2, v3 built without an internal Rescaling layer) takes the same input:
RGB, (H, W, 3) float32 scaled to [-1, 1] as x / 127.5 - 1, center-cropped the way ImageNet evaluation does.
Calibrating and evaluating through this one function is what makes int8 ranges and accuracies comparable.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnetdeploy.errors import UserError
from mnetdeploy.fsutil import sha256_file, sha256_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# Photo formats found in image folders that are not read: HEIC and camera raw need decoders Pillow lacks, GIF/ICO
# are animations or icons, SVG is vector, PSD layered, and AVIF/JPEG 2000 decoding depends on how Pillow was built.
# A folder holding them gets a note naming how many were left out, never silence.
UNREAD_IMAGE_SUFFIXES = (".gif", ".heic", ".heif", ".avif", ".jxl", ".svg", ".ico", ".dng", ".cr2", ".nef",
                         ".arw", ".raw", ".psd", ".jp2")

# The standard ImageNet evaluation crop: resize so the shorter side is resolution / 0.875 (256 for 224),
# then take the central resolution x resolution square (TF-slim `central_fraction=0.875`, torchvision
# Resize(256) + CenterCrop(224), Keras-applications' documented eval recipe).
CROP_FRACTION = 0.875

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CALIBRATION_CONFIG = PROJECT_ROOT / "calibration" / "default.yaml"

PROGRESS_THRESHOLD = 50  # show a progress bar above this many images

# Errors PIL raises on unreadable, truncated or hostile files (UnidentifiedImageError is an OSError).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)


# ---------------------------------------------------------------------------------------------- finding files

def find_images(directory: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under `directory` (ImageFolder class subfolders or flat), sorted by relative path.

    Sorting by the relative path (as text) makes every selection (first N, seeded sample, --skip-first)
    the same on every machine and file system."""
    return scan_images(directory, recursive)[0]


def scan_images(directory: str | Path, recursive: bool = True) -> tuple[list[Path], str | None]:
    """`find_images`, and in the same walk of the folder a one-line note naming the photo files it leaves out
    (UNREAD_IMAGE_SUFFIXES), or None."""
    directory = Path(directory)
    if not directory.exists():
        raise UserError(f"{directory}: image folder not found; pass an existing folder of "
                        f"{'/'.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} images")
    if not directory.is_dir():
        raise UserError(f"{directory}: not a folder; pass the folder that holds the images")
    found: list[Path] = []
    ignored: dict[str, int] = {}
    for p in directory.glob("**/*" if recursive else "*"):
        suffix = p.suffix.lower()
        if suffix not in IMAGE_SUFFIXES and suffix not in UNREAD_IMAGE_SUFFIXES:
            continue
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(directory).parts):
            continue
        if suffix in IMAGE_SUFFIXES:
            found.append(p)
        else:
            ignored[suffix] = ignored.get(suffix, 0) + 1
    if not found:
        where = "in it or its subfolders" if recursive else "directly in it"
        raise UserError(f"{directory}: no images ({', '.join(IMAGE_SUFFIXES)}) {where}; "
                        "point to a folder of images or class subfolders of images")
    note = None
    if ignored:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(ignored.items()))
        note = (f"{directory}: {counts} file(s) ignored (not a supported image type: "
                f"{'/'.join(s.lstrip('.') for s in IMAGE_SUFFIXES)}); convert them to use them")
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix()), note


def files_hash(paths: Iterable[Path]) -> str:
    """sha256 over the sorted content hashes of `paths`: names and order do not matter, bytes do."""
    return sha256_json(sorted(sha256_file(p) for p in paths))


# ------------------------------------------------------------------------------------------- preprocessing

def resize_size(resolution: int) -> int:
    """Shorter side before the center crop (256 for 224, 146 for 128)."""
    return int(round(resolution / CROP_FRACTION))


def to_rgb(image):
    """Any PIL mode -> 8-bit RGB.

    Transparent pixels are composited on white (what a viewer shows for a transparent PNG), rather than
    exposing whatever colour the encoder left under alpha 0. 16/32-bit integer and float grayscale are
    rescaled to 8 bits instead of being clipped at 255. EXIF orientation is deliberately not applied:
    TensorFlow's decoders ignore it too, and the model never sees camera metadata on the device."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if image.mode == "F" and arr.max() <= 1.0:
            top = 1.0
        arr = np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, P, CMYK, YCbCr, LAB, HSV, 1


def preprocess(image, resolution: int) -> np.ndarray:
    """A PIL image -> (resolution, resolution, 3) float32 in [-1, 1], the input of every MobileNet here.

    Bilinear resize: TF-slim's eval preprocessing (which produced the ImageNet MobileNet checkpoints that
    Keras-applications ships) resizes with bilinear interpolation, and Keras' `smart_resize` defaults to
    bilinear too. PIL's bilinear filter widens its support when downscaling (antialiasing), which matches
    `tf.image.resize(..., antialias=True)`; without it, large photos alias badly."""
    from PIL import Image

    if resolution <= 0:
        raise UserError(f"preprocess: resolution must be positive (got {resolution})")
    image = to_rgb(image)
    width, height = image.size
    short = resize_size(resolution)
    scale = short / min(width, height)
    new_w, new_h = max(resolution, round(width * scale)), max(resolution, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - resolution) // 2, (new_h - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    return np.asarray(image, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)


def load_image(path: str | Path, resolution: int) -> np.ndarray:
    """One file -> preprocessed array. Raises PIL/OS errors for unreadable files (see `load_images`)."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()  # decode now, so a truncated file fails here and not halfway through a batch
        return preprocess(image, resolution)


@dataclass
class LoadedImages:
    array: np.ndarray                                  # (N, H, W, 3) float32 in [-1, 1]
    paths: list[Path]                                  # the files that loaded, in array order
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason)

    @property
    def count(self) -> int:
        return len(self.paths)


def load_images(paths: Iterable[str | Path], resolution: int, *, skip_bad: bool = True,
                min_ok: int = 1, progress: bool = True) -> LoadedImages:
    """Load and preprocess `paths` in order. Unreadable files are skipped (with reasons) when `skip_bad`,
    else the first one raises; fewer than `min_ok` loaded images raise `UserError`. `progress=False`
    silences the bar (for callers that show their own)."""
    from PIL import Image

    files = [Path(p) for p in paths]
    array = np.empty((len(files), resolution, resolution, 3), dtype=np.float32)
    ok: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    with progress_bar(len(files) if progress else 0, "preprocessing images") as advance:
        for path in files:
            try:
                array[len(ok)] = load_image(path, resolution)
                ok.append(path)
            except (*_DECODE_ERRORS, Image.DecompressionBombError) as e:
                reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}"
                if not skip_bad:
                    raise UserError(f"{path}: cannot read image ({reason}); fix or remove the file") from None
                skipped.append((path, reason))
            advance()
    if len(ok) < min_ok:
        where = files[0].parent if files else Path(".")
        raise UserError(f"{where}: only {len(ok)} of {len(files)} images could be read ({len(skipped)} "
                        f"unreadable), {min_ok} needed; check the files or point to another folder")
    return LoadedImages(array=array[:len(ok)], paths=ok, skipped=skipped)


class progress_bar:
    """A rich progress bar on stderr for long loads; silent for short ones and when stderr is not a TTY."""

    def __init__(self, total: int, description: str):
        self.total, self.description, self.bar = total, description, None

    def __enter__(self):
        if self.total > PROGRESS_THRESHOLD and sys.stderr.isatty():
            from rich.progress import Progress

            from mnetdeploy.report.console import stderr_console

            self.bar = Progress(console=stderr_console(), transient=True)
            self.bar.start()
            task = self.bar.add_task(self.description, total=self.total)
            return lambda: self.bar.advance(task)
        return lambda: None

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


# -------------------------------------------------------------------------------------------- calibration

@dataclass
class CalibrationSet:
    array: np.ndarray          # (count, H, W, 3) float32 in [-1, 1]
    source: str                # "images" or "synthetic"
    directory: str | None      # the image folder (None for synthetic)
    count: int
    files: list[str]           # paths relative to `directory`, in array order (empty for synthetic)
    content_hash: str          # sha256 of the images used (or of the synthetic recipe)
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        """JSON-able record for manifests and reports (everything but the array)."""
        return {"source": self.source, "directory": self.directory, "count": self.count,
                "files": self.files, "content_hash": self.content_hash, "warnings": self.warnings}


@dataclass
class DefaultCalibration:
    directory: Path | None     # None: no default set is configured (or its folder is absent)
    first: int | None          # only the first N files by name are candidates
    config: Path
    note: str | None = None    # why there is no usable directory


def read_default_calibration(config: str | Path = DEFAULT_CALIBRATION_CONFIG) -> DefaultCalibration:
    """The default calibration set from calibration/default.yaml; relative paths are resolved against the
    project root (the folder holding calibration/)."""
    import yaml

    config = Path(config)
    if not config.is_file():
        return DefaultCalibration(None, None, config, f"{config} not found")
    try:
        from mnetdeploy.fsutil import read_text

        data = yaml.safe_load(read_text(config, "calibration config")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{config}: malformed YAML ({str(e).splitlines()[0]}); fix the file") from None
    if not isinstance(data, dict):
        raise UserError(f"{config}: expected a mapping with 'directory' and 'first' keys")
    unknown = set(data) - {"directory", "first"}
    if unknown:
        raise UserError(f"{config}: unknown key(s) {', '.join(sorted(unknown))}; allowed: directory, first")
    first = data.get("first")
    if first is not None and (not isinstance(first, int) or isinstance(first, bool) or first < 1):
        raise UserError(f"{config}: 'first' must be a positive integer or absent (got {first!r})")
    raw = data.get("directory")
    if not raw:
        return DefaultCalibration(None, first, config, f"{config} names no directory")
    directory = Path(raw).expanduser()
    if not directory.is_absolute():
        directory = (config.parent.parent / directory).resolve()
    if not directory.is_dir():
        return DefaultCalibration(None, first, config, f"the default folder {directory} (from {config}) is absent")
    return DefaultCalibration(directory, first, config)


def select_seeded(paths: list[Path], n: int, seed: int) -> list[Path]:
    """`n` of `paths` picked by a seeded permutation of the (sorted) list, returned in name order."""
    order = np.random.default_rng(seed).permutation(len(paths))[:n]
    return [paths[i] for i in sorted(order)]


def calibration_set(directory: str | Path | None, n: int, seed: int, resolution: int, *,
                    config: str | Path = DEFAULT_CALIBRATION_CONFIG) -> CalibrationSet:
    """`n` preprocessed calibration images, chosen deterministically by `seed`.

    `directory=None` uses the configured default set (calibration/default.yaml); when none is usable the
    set is synthetic, with a warning, because int8 ranges taken from synthetic images fit real photos badly."""
    if n < 1:
        raise UserError(f"calibration: the number of images must be at least 1 (got {n})")
    warnings: list[str] = []
    first = None
    if directory is None:
        default = read_default_calibration(config)
        if default.directory is None:
            return _synthetic_set(n, seed, resolution, default.note)
        directory, first = default.directory, default.first
    directory = Path(directory)
    candidates, ignored = scan_images(directory)
    if first is not None:
        candidates = candidates[:first]
    chosen = select_seeded(candidates, n, seed)
    loaded = load_images(chosen, resolution)
    warnings += calibration_count_warnings(directory, n, len(candidates), first, loaded)
    if ignored:
        warnings.append(ignored)
    return CalibrationSet(array=loaded.array, source="images", directory=str(directory), count=loaded.count,
                          files=[p.relative_to(directory).as_posix() for p in loaded.paths],
                          content_hash=files_hash(loaded.paths), warnings=warnings)


def calibration_count_warnings(directory: Path, asked: int, candidates: int, first: int | None,
                               loaded: LoadedImages) -> list[str]:
    """How many images calibrated when that is fewer than asked, counting what was found and what was
    unreadable, plus an example of an unreadable file and why."""
    if candidates >= asked and not loaded.skipped:
        return []
    unreadable = ""
    if loaded.skipped:
        path, reason = loaded.skipped[0]
        unreadable = f"{len(loaded.skipped)} unreadable (e.g. {path}: {reason})"
    if candidates < asked:
        among = f" among the first {first}" if first else ""
        return [f"asked for {asked} calibration images; {directory} has {candidates} image file(s){among}"
                f"{', ' + unreadable if unreadable else ''}: calibrating on {loaded.count}"]
    return [f"{unreadable} of the {asked} chosen calibration images: calibrating on {loaded.count}"]


def _synthetic_set(n: int, seed: int, resolution: int, why: str | None) -> CalibrationSet:
    from mnetdeploy.arch.init import synthetic_images

    recipe = {"recipe": "mnetdeploy.arch.init.synthetic_images", "n": n, "resolution": resolution, "seed": seed}
    warning = (f"no calibration images ({why}): calibrating on {n} SYNTHETIC images; int8 accuracy will "
               "suffer. Pass a folder of 100-500 representative images (see calibration/README.md)")
    return CalibrationSet(array=synthetic_images(n, resolution, seed), source="synthetic", directory=None,
                          count=n, files=[], content_hash=sha256_json(recipe), warnings=[warning])


# ------------------------------------------------------------------------------------------------- labels

# Columns of a labels CSV by label offset: 0 = 1000 classes (Keras/torchvision order), 1 = 1001 classes
# with "background" at index 0 (TF-slim / TFLite hosted models).
CSV_INDEX_COLUMNS = {0: "index_1000", 1: "index_1001"}
CSV_FILE_COLUMNS = ("file", "filename", "path", "image")
CSV_GENERIC_INDEX_COLUMNS = ("index", "class_index", "label_index", "class")


def read_labels_csv(path: str | Path, offset: int = 0) -> dict[str, int]:
    """{file name (as written in the CSV) -> class index} for the model's label offset.

    A CSV with `index_1000`/`index_1001` columns (like the shared ImageNet sample) is read from the column
    that matches `offset`; a CSV with one generic integer column (`index`, `class_index`, `label_index`,
    `class`) is taken as 0-based 1000-class order and shifted by `offset`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: labels CSV not found; pass --labels FILE or put labels.csv in the data folder")
    if offset not in CSV_INDEX_COLUMNS:
        raise UserError(f"{path}: label offset must be 0 or 1 (got {offset})")
    import io

    from mnetdeploy.fsutil import read_text

    try:
        reader = csv.DictReader(io.StringIO(read_text(path, "labels CSV"), newline=""))
        columns = [c.strip() for c in (reader.fieldnames or [])]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except csv.Error as e:  # e.g. NUL bytes: a binary file that happens to decode
        raise UserError(f"{path}: not a readable labels CSV ({e}); pass a UTF-8 CSV file") from None
    file_col = next((c for c in CSV_FILE_COLUMNS if c in columns), None)
    if file_col is None:
        raise UserError(f"{path}: no file column (one of {', '.join(CSV_FILE_COLUMNS)}) in header {columns}")
    index_col: str | None
    index_col, shift = CSV_INDEX_COLUMNS[offset], 0
    if index_col not in columns:
        index_col = next((c for c in CSV_GENERIC_INDEX_COLUMNS if c in columns), None)
        shift = offset
        if index_col is None:
            raise UserError(f"{path}: no class-index column ({CSV_INDEX_COLUMNS[offset]} or one of "
                            f"{', '.join(CSV_GENERIC_INDEX_COLUMNS)}) in header {columns}")
    labels: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        try:
            labels[row[file_col]] = int(row[index_col]) + shift
        except ValueError:
            raise UserError(f"{path}:{line}: {index_col} {row[index_col]!r} is not an integer") from None
    if not labels:
        raise UserError(f"{path}: no rows; the CSV needs one line per image")
    return labels


def imagefolder_classes(directory: str | Path, paths: Iterable[Path]) -> list[str]:
    """Sorted class names (first-level subfolders holding images) of an ImageFolder layout."""
    directory = Path(directory)
    return sorted({p.relative_to(directory).parts[0] for p in paths if len(p.relative_to(directory).parts) > 1})


def imagefolder_labels(directory: str | Path, paths: Iterable[Path], offset: int = 0) -> dict[Path, int]:
    """{image path -> class index} for an ImageFolder layout: class index = position of its first-level
    subfolder in the sorted list of subfolders (+ `offset` for 1001-class models). Images directly in
    `directory` have no class and raise."""
    directory = Path(directory)
    paths = list(paths)
    loose = [p for p in paths if len(p.relative_to(directory).parts) < 2]
    if loose:
        raise UserError(f"{directory}: {len(loose)} image(s) outside class subfolders (e.g. {loose[0].name}) "
                        "and no labels.csv; add a labels CSV (--labels) or move images into class folders")
    index = {name: i + offset for i, name in enumerate(imagefolder_classes(directory, paths))}
    return {p: index[p.relative_to(directory).parts[0]] for p in paths}


def match_csv_labels(directory: str | Path, paths: Iterable[Path], labels: dict[str, int],
                     csv_path: Path) -> dict[Path, int]:
    """Labels for `paths` from a CSV keyed by relative path or by bare file name. Missing entries raise."""
    directory = Path(directory)
    out: dict[Path, int] = {}
    missing = []
    for p in paths:
        rel = p.relative_to(directory).as_posix()
        if rel in labels:
            out[p] = labels[rel]
        elif p.name in labels:
            out[p] = labels[p.name]
        else:
            missing.append(rel)
    if missing:
        raise UserError(f"{csv_path}: no label for {len(missing)} image(s) (e.g. {missing[0]}); "
                        "add them to the CSV or remove them from the folder")
    return out
