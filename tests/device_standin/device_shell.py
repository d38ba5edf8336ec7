"""Where the stand-in phone's shell commands run, and the `shell:` service that runs them.

Two runners:
- ChrootRunner: inside the arm64 Debian userland built by make_rootfs.sh. `chroot` + binfmt_misc hand every
  aarch64 ELF to qemu-user, so commands really execute ARM code. Needs root and a registered qemu-aarch64.
- HostRunner: on this host, in a scratch directory laid out like the phone (/system/bin tools, /data/local/tmp).
  Paths in commands are host paths, so it serves protocol tests only (exit codes, streams, push/pull); anything
  that must run ARM code needs the ChrootRunner.

The shell service speaks both ADB shell protocols: v2 (`shell,v2,raw:CMD`: framed stdin/stdout/stderr and an
exit-status packet) and v1 (`shell:CMD`, `exec:CMD`: raw bytes, stderr merged, exit status lost), chosen by the
host from the features the device advertises. No pseudo-terminal is ever allocated: a `pty` request (`adb shell -t`,
or an interactive `adb shell` from a terminal) is served like `raw`, which is all scripted use needs.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import signal
import struct
import subprocess
import threading
from pathlib import Path

from .adb_stream import DeviceStream, StreamClosed

# The emulated CPU: Armv8.0-A with crypto and CRC, the ISA of the default profile's Kryo 280 cores (Cortex-A73
# class). qemu's default "max" CPU also offers SVE/SME, which no such phone has and which makes XNNPACK pick
# kernels that are both wrong for the profile and far slower to emulate. Keep in step with make_rootfs.sh.
QEMU_CPU_MODEL = "cortex-a72"
DEVICE_PATH = "/system/bin:/usr/local/bin:/usr/bin:/bin"

# Shell protocol v2 packet ids (adb's shell_protocol.h).
ID_STDIN, ID_STDOUT, ID_STDERR, ID_EXIT, ID_CLOSE_STDIN, ID_WINDOW_SIZE_CHANGE = 0, 1, 2, 3, 4, 5
_PACKET_HEADER = struct.Struct("<BI")


def resolve_in_root(root: Path, device_path: str) -> Path:
    """The host path of a device path, following symlinks the way the device would: inside `root`.

    The userland's absolute symlinks (e.g. /etc/alternatives/...) point into the userland, not into the host,
    and `..` never climbs out of it."""
    parts = [p for p in posixpath.normpath("/" + device_path).split("/") if p]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise OSError(40, "Too many levels of symbolic links", device_path)
            target = os.readlink(candidate)
            target_parts = [p for p in target.split("/") if p and p != "."]
            if target.startswith("/"):
                resolved = []
            parts = target_parts + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


class _Runner:
    """Spawns device commands and remembers them, so a vanishing device can take its processes with it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._live: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def _argv_env_cwd(self, command: str) -> tuple[list[str], dict[str, str], str | None]:
        raise NotImplementedError

    def host_path(self, device_path: str) -> Path:
        return resolve_in_root(self.root, device_path)

    def spawn(self, command: str) -> subprocess.Popen:
        argv, env, cwd = self._argv_env_cwd(command)
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        with self._lock:
            self._live.add(proc)
        return proc

    def forget(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._live.discard(proc)

    def kill_all(self) -> None:
        with self._lock:
            live = list(self._live)
        for proc in live:
            kill_process_group(proc)


class ChrootRunner(_Runner):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        # Looked up with the host's PATH: the command's own environment is the device's.
        self._chroot = shutil.which("chroot") or "/usr/sbin/chroot"

    def _argv_env_cwd(self, command):
        shell = ["/bin/sh", "-c", command] if command else ["/bin/sh"]
        # The environment an adbd shell has on a phone (ANDROID_ROOT, ANDROID_DATA, TMPDIR), plus where the
        # stand-in's own files are and which CPU qemu emulates. Nothing of the host's environment leaks in.
        env = {
            "PATH": DEVICE_PATH,
            "HOME": "/",
            "ANDROID_ROOT": "/system",
            "ANDROID_DATA": "/data",
            "TMPDIR": "/data/local/tmp",
            "STANDIN_DIR": "/standin",
            "QEMU_CPU": QEMU_CPU_MODEL,
        }
        return [self._chroot, str(self.root), *shell], env, None


class HostRunner(_Runner):
    def _argv_env_cwd(self, command):
        shell = ["/bin/sh", "-c", command] if command else ["/bin/sh"]
        env = {
            "PATH": f"{self.root}/system/bin:/usr/bin:/bin",
            "HOME": str(self.root),
            "ANDROID_ROOT": f"{self.root}/system",
            "ANDROID_DATA": f"{self.root}/data",
            "TMPDIR": f"{self.root}/data/local/tmp",
            "STANDIN_DIR": f"{self.root}/standin",
        }
        return shell, env, str(self.root)


def kill_process_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def exit_status(returncode: int) -> int:
    """What adbd reports: the exit code, or 128 + signal for a process killed by a signal (like a shell)."""
    return returncode if returncode >= 0 else 128 - returncode


def shell_packet(packet_id: int, data: bytes = b"") -> bytes:
    return _PACKET_HEADER.pack(packet_id, len(data)) + data


def serve_shell(stream: DeviceStream, runner: _Runner, command: str, protocol_v2: bool) -> None:
    """Run `command` on the device and relay its streams until it exits or the host goes away."""
    try:
        proc = runner.spawn(command)
    except OSError as exc:
        # Not something a phone would say: the stand-in itself could not start the command.
        message = f"adb stand-in: cannot start the device shell: {exc}\n".encode()
        try:
            stream.write(shell_packet(ID_STDERR, message) + shell_packet(ID_EXIT, b"\x7f") if protocol_v2 else message)
        except StreamClosed:
            pass
        stream.close()
        return

    def pump_output(pipe, packet_id: int) -> None:
        fd = pipe.fileno()
        try:
            while chunk := os.read(fd, 64 * 1024):
                stream.write(shell_packet(packet_id, chunk) if protocol_v2 else chunk)
        except (StreamClosed, OSError):
            kill_process_group(proc)  # nobody listens any more: a phone's adbd kills the command too
        finally:
            pipe.close()

    def pump_input() -> None:
        try:
            if protocol_v2:
                while True:
                    packet_id, length = _PACKET_HEADER.unpack(stream.input.read_exact(_PACKET_HEADER.size))
                    data = stream.input.read_exact(length) if length else b""
                    if packet_id == ID_STDIN and data:
                        proc.stdin.write(data)
                        proc.stdin.flush()
                    elif packet_id == ID_CLOSE_STDIN:
                        proc.stdin.close()
                    # window-size changes only matter to a pty, which this device does not offer
            else:
                while data := stream.input.read_some():
                    proc.stdin.write(data)
                    proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the command closed its stdin or already exited; later input has nowhere to go
        except StreamClosed:
            pass
        # The host closed the stream: if the command still runs, it was cancelled (Ctrl-C, adb killed).
        if stream.closed and proc.poll() is None:
            kill_process_group(proc)

    pumps = [threading.Thread(target=pump_output, args=(proc.stdout, ID_STDOUT), daemon=True),
             threading.Thread(target=pump_output, args=(proc.stderr, ID_STDERR), daemon=True)]
    for pump in pumps:
        pump.start()
    threading.Thread(target=pump_input, daemon=True).start()
    for pump in pumps:
        pump.join()
    status = exit_status(proc.wait())
    runner.forget(proc)
    try:
        proc.stdin.close()
    except OSError:
        pass
    if protocol_v2:
        try:
            stream.write(shell_packet(ID_EXIT, bytes([status & 0xFF])))
        except StreamClosed:
            pass
    stream.close()
