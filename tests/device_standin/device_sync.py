"""The `sync:` service: file transfer for `adb push`, `adb pull` and `adb ls`.

Inside the stream, every request is an 8-byte header (4-byte id, 32-bit little-endian length) and `length` bytes
of path. Requests: STAT (v1 lstat), STA2/LST2 (v2 stat/lstat), LIST, RECV, SEND, QUIT. A SEND is followed by
DATA chunks (header + at most 64 KiB) and a DONE whose length field is the file's mtime; the device answers OKAY
or FAIL + message. Requests and chunks need not line up with ADB WRTE packets, so the service reads the stream as
a byte pipe.
"""

from __future__ import annotations

import errno
import os
import struct
import tempfile
from pathlib import Path

from .adb_stream import DeviceStream, StreamClosed

SYNC_DATA_MAX = 64 * 1024

_REQUEST = struct.Struct("<4sI")
_STAT_V1 = struct.Struct("<4sIII")
_STAT_V2 = struct.Struct("<4sIQQIIIIQqqq")
_DENT = struct.Struct("<4sIIII")


class _SyncFail(Exception):
    """Answered to the host as FAIL + this message (what adbd would say)."""


def _fail(stream: DeviceStream, message: str) -> None:
    data = message.encode()
    stream.write(_REQUEST.pack(b"FAIL", len(data)) + data)


def _stat_v1(path: Path) -> bytes:
    try:
        st = os.lstat(path)
    except OSError:
        return _STAT_V1.pack(b"STAT", 0, 0, 0)
    return _STAT_V1.pack(b"STAT", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF, int(st.st_mtime) & 0xFFFFFFFF)


def _stat_v2(request_id: bytes, path: Path) -> bytes:
    try:
        st = os.lstat(path) if request_id == b"LST2" else os.stat(path)
    except OSError as exc:
        return _STAT_V2.pack(request_id, exc.errno or errno.EIO, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return _STAT_V2.pack(request_id, 0, st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid,
                         st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime))


def _list(stream: DeviceStream, path: Path) -> None:
    try:
        names = [".", "..", *sorted(os.listdir(path))]
    except OSError:
        names = []  # adbd answers an unreadable directory with an empty listing
    for name in names:
        try:
            st = os.lstat(path / name)
        except OSError:
            continue
        encoded = name.encode()
        stream.write(_DENT.pack(b"DENT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime) & 0xFFFFFFFF,
                                len(encoded)) + encoded)
    stream.write(_DENT.pack(b"DONE", 0, 0, 0, 0))


def _send_file(stream: DeviceStream, path: Path, mode: int, free_bytes: int | None) -> None:
    """Receive DATA chunks until DONE, then put the file in place (atomically) with its mode and mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)  # the "fixed_push_mkdir" feature: the device makes parents
    if path.is_dir():
        raise _SyncFail("couldn't create file: Is a directory")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                chunk_id, value = _REQUEST.unpack(stream.input.read_exact(_REQUEST.size))
                if chunk_id == b"DATA":
                    if value > SYNC_DATA_MAX:
                        raise _SyncFail(f"oversize data message: {value} bytes")
                    data = stream.input.read_exact(value)
                    received += len(data)
                    if free_bytes is not None and received > free_bytes:
                        raise _SyncFail("write failed: No space left on device")
                    out.write(data)
                elif chunk_id == b"DONE":
                    mtime = value
                    break
                else:
                    raise _SyncFail(f"invalid data message: expected DATA or DONE, got {chunk_id!r}")
        os.chmod(tmp_name, mode & 0o7777 or 0o644)
        os.utime(tmp_name, (mtime, mtime))
        os.replace(tmp_name, path)
    except BaseException:
        os.unlink(tmp_name)
        raise


def _recv_file(stream: DeviceStream, path: Path) -> None:
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise _SyncFail(f"open failed: {exc.strerror}") from exc
    with handle:
        while chunk := handle.read(SYNC_DATA_MAX):
            stream.write(_REQUEST.pack(b"DATA", len(chunk)) + chunk)
    stream.write(_REQUEST.pack(b"DONE", 0))


def _data_free_bytes(runner) -> int | None:
    """Free space on /data as the device's df reports it (the stand-in's df.conf), or None if unset."""
    try:
        conf = runner.host_path("/standin/df.conf").read_text()
    except OSError:
        return None
    for line in conf.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "data_free_kb":
            return int(value) * 1024
    return None


def serve_sync(stream: DeviceStream, runner) -> None:
    try:
        while True:
            request_id, length = _REQUEST.unpack(stream.input.read_exact(_REQUEST.size))
            if request_id == b"QUIT":
                break
            device_path = stream.input.read_exact(length).decode("utf-8", "surrogateescape")
            try:
                if request_id == b"STAT":
                    stream.write(_stat_v1(runner.host_path(device_path)))
                elif request_id in (b"STA2", b"LST2"):
                    stream.write(_stat_v2(request_id, runner.host_path(device_path)))
                elif request_id == b"LIST":
                    _list(stream, runner.host_path(device_path))
                elif request_id == b"RECV":
                    _recv_file(stream, runner.host_path(device_path))
                elif request_id == b"SEND":
                    target, _, mode_text = device_path.rpartition(",")
                    if not target:
                        target, mode_text = device_path, "33188"  # 0100644, what adb sends for a plain file
                    free = _data_free_bytes(runner) if target.startswith("/data/") else None
                    _send_file(stream, runner.host_path(target), int(mode_text), free)
                    stream.write(_REQUEST.pack(b"OKAY", 0))
                else:
                    # adbd drops the sync session on an unknown request; say why first.
                    _fail(stream, f"unknown sync request {request_id!r}")
                    break
            except _SyncFail as exc:
                _fail(stream, str(exc))
                if request_id == b"SEND":
                    break  # the rest of that SEND's DATA is still in the pipe; adbd ends the session too
            except OSError as exc:
                _fail(stream, f"{request_id.decode(errors='replace').lower()} failed: {exc.strerror}")
                if request_id == b"SEND":
                    break
    except StreamClosed:
        pass
    stream.close()
