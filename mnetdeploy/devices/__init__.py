"""Benchmarking on ARM devices: Android phones over ADB, Linux boards over SSH (or over ADB without Android).

    mnetdeploy bench model.tflite --device android --benchmark-binary android_aarch64_benchmark_model
    mnetdeploy bench model.tflite --device ssh://root@rock5b.local      # remote_runner.py on the board
    mnetdeploy devices --json                                           # what adb sees

Modules (each imported where used, so this package stays cheap to import):
    adb.py              the adb client: finding it, listing devices, shell and push with their failure modes
    ssh.py              the ssh client, and the Python runner used on Linux boards (remote_runner.py)
    identity.py         who a device is (serial, fingerprint or os-release, SoC, ABI): `device_identity`
    hygiene.py          device facts read in one shell round trip: big-core mask, governors, thermal cool-down
    android.py          the device benchmark itself (pre-flight, cached push, trials, BenchResult); how to get
                        `benchmark_model`
    benchmark_output.py the parser of `benchmark_model` output
    remote_runner.py    the self-contained script pushed to Linux boards

This module holds what every transport shares: how a device is named (`parse_target`, from
device_names.py),
the settings of a device benchmark (`DeviceSettings`), and the `Transport` base class that runs shell commands
with an exit marker. Why the marker: adb 29 exits 0 when a device vanishes mid-command (it never receives the
exit packet), and ssh's exit status mixes the remote command's status with its own (255), so the exit status of
the client alone can never tell "the command succeeded" from "the connection died". Every command we run is
followed by `echo __MNETDEPLOY_EXIT=$?`; output without that line is a lost device, never a result.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
from pathlib import Path
from typing import cast

from mnetdeploy.config import BenchConfig, DeviceSettings
from mnetdeploy.device_names import Target, is_device_target, parse_target
from mnetdeploy.errors import EXIT_FAILED, UserError

EXIT_MARKER = "__MNETDEPLOY_EXIT="
_MARKER_LINE = re.compile(re.escape(EXIT_MARKER) + r"(\d+)\s*\Z")

# Where files go on each kind of device. /data/local/tmp is the one place an adb shell may write and execute on
# every Android version; Linux boards get /tmp (any user can write it; `df` tells if it is too small).
ANDROID_BASE = "/data/local/tmp/mnetdeploy"
LINUX_BASE = "/tmp/mnetdeploy"


class DeviceLost(UserError):
    """The device stopped answering in the middle of the job (unplugged, rebooted, network gone): exit 1."""

    exit_code = EXIT_FAILED


# ----------------------------------------------------------------------------------------------- settings

# ------------------------------------------------------------------------------------------------ transport

@dataclasses.dataclass
class ShellResult:
    status: int               # the command's exit status, from the marker (not from the client)
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout then stderr (benchmark_model logs to stderr; some builds print to stdout)."""
        return self.stdout + ("\n" if self.stdout and not self.stdout.endswith("\n") else "") + self.stderr


def with_exit_marker(command: str) -> str:
    # Braces, not a subshell: no extra process, and the command may use any syntax. The newline before `}`
    # ends a trailing comment or here-document in `command` safely.
    return f"{{ {command}\n}}; echo {EXIT_MARKER}$?"


def split_exit_marker(stdout: str) -> tuple[int | None, str]:
    """(exit status, stdout without the marker line); status None when the marker is missing (output cut)."""
    match = _MARKER_LINE.search(stdout)
    if not match:
        return None, stdout
    return int(match.group(1)), stdout[:match.start()]


class Transport:
    """Runs shell commands on one device and copies files to it. Subclasses: AdbTransport, SshTransport."""

    label = "device"          # "android:SERIAL", "adb-linux:SERIAL", "ssh://user@host:port"
    base_dir = LINUX_BASE     # where this device keeps our files

    def _client(self, argv_tail: list[str], timeout: float, what: str, stdin_path: Path | None = None
                ) -> subprocess.CompletedProcess:
        """Run the client (adb/ssh) with `argv_tail`; raises on timeout. stdin is the file or /dev/null."""
        raise NotImplementedError

    def _shell_argv(self, command: str) -> list[str]:
        raise NotImplementedError

    def _failure(self, completed: subprocess.CompletedProcess, what: str) -> UserError:
        """The error for a client that failed before the remote command could report (lost device, ...)."""
        raise NotImplementedError

    def shell(self, command: str, timeout: float = 60.0, what: str = "command") -> ShellResult:
        """Run `command` in the device's shell; DeviceLost when the device stops answering.

        A non-zero exit status of the command itself is returned, not raised: callers decide what it means."""
        completed = self._client(self._shell_argv(with_exit_marker(command)), timeout, what=what)
        stdout = completed.stdout.decode("utf-8", "replace")
        stderr = completed.stderr.decode("utf-8", "replace")
        status, stdout = split_exit_marker(stdout)
        if status is None:
            raise self._failure(completed, what)
        return ShellResult(status, stdout, stderr)

    def check(self, command: str, timeout: float = 60.0, what: str = "command") -> ShellResult:
        """`shell`, and a device-side failure is an error too (exit 1: the job broke mid-way)."""
        result = self.shell(command, timeout, what)
        if result.status != 0:
            said = last_words(result.output)
            raise UserError(f"{self.label}: {what} failed with exit status {result.status}"
                            f"{f' ({said})' if said else ''}", exit_code=EXIT_FAILED)
        return result

    def push(self, local: Path, remote: str, timeout: float) -> None:
        raise NotImplementedError

    def pull(self, remote: str, local: Path, timeout: float) -> None:
        """Copy the device's file `remote` to `local` (written whole or not at all)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections the transport keeps open (ssh's master connection)."""

    def describe(self) -> dict:
        """Facts about the connection for the result's environment."""
        return {"label": self.label}


def push_timeout(size_bytes: int) -> float:
    """A copy may take 1 s per MB (a remote adb server over a slow link) plus a minute of slack."""
    return 60.0 + size_bytes / 1e6


def last_words(text: str, limit: int = 300) -> str:
    """The last three non-empty lines, joined; longer than `limit`: its end, from a word boundary, after "…"."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = " | ".join(lines[-3:])
    if len(said) <= limit:
        return said
    tail = said[-(limit - 1):]
    cut = tail.find(" ")
    return "…" + (tail[cut + 1:] if 0 <= cut < len(tail) - 1 else tail)


def quote(path: str) -> str:
    return shlex.quote(path)


def device_identity(device: str, settings: DeviceSettings | None = None, **values) -> dict:
    """Who `device` is, asked of the device: serial, build fingerprint or os-release + uname, SoC, ABI, the
    benchmark binary's sha256 (mnetdeploy/devices/identity.py). UserError (exit 2) when it is not there."""
    from mnetdeploy.devices.android import device_identity as ask

    return ask(device, settings, **values)


def device_identities(bench: BenchConfig) -> dict[str, dict]:
    """The identity of every device `bench` measures on (not the host): part of the cache key of any step
    that measures there. A device that is gone is an error, so old numbers are never reused for it."""
    # BenchConfig.settings returns DeviceSettings for every device but "host".
    return {d: device_identity(d, cast(DeviceSettings, bench.settings(d, bench.threads[0])))
            for d in bench.devices if d != "host"}


__all__ = ["ANDROID_BASE", "LINUX_BASE", "DeviceLost", "DeviceSettings", "ShellResult", "Target", "Transport",
           "device_identities", "device_identity", "is_device_target", "last_words", "parse_target", "push_timeout",
           "quote",
           "split_exit_marker", "with_exit_marker"]
