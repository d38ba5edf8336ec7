"""Atomic writes and content hashes.

Every file the tool produces is written to a temporary sibling and renamed into place, so a crash or a
failed run never leaves a half-written model or report that looks valid.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Errors of the place being written to, not of the tool: the user fixes them (exit 2, one line naming the path).
_WRITE_ERRNOS: dict[int | None, str] = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                 errno.EPERM: "operation not permitted", errno.ENOSPC: "no space left on the device",
                 errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file too large for the file system",
                 errno.ENOTDIR: "a parent is a file, not a directory", errno.EEXIST: "a file is in the way"}


def write_error(path: str | os.PathLike, error: OSError):
    """A one-line UserError for `error` met while writing `path`, or None when it is not about the place
    written to (a bug stays a bug). Named by `path`, the file the user asked for, not by a temporary."""
    from mnetdeploy.errors import UserError

    why = _WRITE_ERRNOS.get(error.errno)
    if why is None:
        return None
    hint = ("free space there" if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            else "choose a writable location")
    return UserError(f"{path}: cannot write ({why}); {hint}")


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """A UTF-8 text file (a BOM is allowed), or a one-line UserError naming it: binary or UTF-16 files are
    refused by name instead of failing deep inside a parser."""
    from mnetdeploy.errors import UserError

    data = Path(path).read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise UserError(f"{path}: {what} is UTF-16 text; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: {what} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                        "pass a text file saved as UTF-8") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-able object, independent of key order."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`, on error delete it.

    For writers that insist on a file name (Keras `model.save`, converters)."""
    path = Path(path)
    with _named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _named(path):
            yield tmp_path
            if tmp_path.exists():
                os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def _named(path: Path) -> Iterator[None]:
    """Turn a read-only / full / permission error while writing `path` into a one-line error naming `path`
    (a full disk's OSError names no file at all)."""
    try:
        yield
    except OSError as e:
        error = write_error(path, e)
        if error is None:
            raise
        raise error from None


def is_temporary(path: Path) -> bool:
    """A file this tool is writing (or was writing when it was killed): `.<stem>.<random>.tmp<suffix>`.
    Never an artifact: listings skip every dot-file."""
    return path.name.startswith(".") and ".tmp" in path.name


def visible_files(directory: Path, suffixes: tuple[str, ...] | set[str]) -> list[Path]:
    """The files of `directory` with one of `suffixes` (case-insensitive), sorted by name, without dot-files
    (atomic-write temporaries, editor and OS files)."""
    return sorted(p for p in Path(directory).iterdir()
                  if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."))


def remove_stale_temporaries(directory: Path) -> list[str]:
    """Delete temporaries a killed run left in `directory` (one mnetdeploy process per artifact directory at a
    time); returns their names."""
    removed = []
    for path in sorted(Path(directory).iterdir()):
        if path.is_file() and is_temporary(path):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    import stat

    try:
        special = not stat.S_ISREG(os.stat(path).st_mode) and not stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        special = False
    if special:  # /dev/stdout, a FIFO, /dev/full: write into it; a rename would replace the device node
        with _named(Path(path)), open(path, "wb") as f:
            f.write(data)
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to `path`; on success it replaces `path` whole.

    Used for artifact directories: readers never see a mix of old and new files."""
    path = Path(path)
    with _named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        with _named(path):
            yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
