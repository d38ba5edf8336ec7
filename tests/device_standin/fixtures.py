"""pytest fixtures: a stand-in Android device plus the real Debian `adb` server talking to it.

    def test_something(adb_standin):             # arm64 userland if available, else commands run on the host
        adb_standin.adb("shell", "uname -m")
    def test_on_arm(adb_standin_arm64):          # skips (with the reason) where the arm64 userland can't run
    def test_custom(adb_standin_factory):        # any AdbDevice option: authorize=False, disappear_at_command=2…
        session = adb_standin_factory(authorize=False)

Each session gets its own adb server on a private port with a private HOME (its own adb key), so tests never
touch a developer's running adb server or real phones. Device and server ports are ephemeral ports, never
5555-5585: an adb server probes those by itself for emulators. Teardown runs `adb kill-server` and stops the
device. The device's /data/local/tmp is emptied when a session starts, so files pushed by an earlier test (or
an earlier run: the userland is a cached build) are never mistaken for this test's. The userland is one
directory, so a test holds a lock on it (parallel test processes take turns); several arm64 sessions started
by one test share it.

The arm64 userland is looked up at $MNETDEPLOY_DEVICE_ROOTFS/rootfs, default <project>/build/device-rootfs/rootfs;
build it with `sudo tests/device_standin/make_rootfs.sh build/device-rootfs`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .adb_device import AdbDevice

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ADB_SCAN_PORTS = range(5555, 5586)   # the adb server connects to these by itself (emulator discovery)
BINFMT_ENTRY = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


def device_rootfs() -> Path:
    build = os.environ.get("MNETDEPLOY_DEVICE_ROOTFS") or PROJECT_ROOT / "build" / "device-rootfs"
    return Path(build) / "rootfs"


def adb_unavailable_reason() -> str | None:
    if shutil.which("adb") is None:
        return "the Debian adb client is not installed (apt-get install -y adb)"
    return None


def arm64_unavailable_reason() -> str | None:
    """Why commands cannot run as aarch64 code in the userland here, or None if they can."""
    if os.geteuid() != 0:
        return "running aarch64 code in the arm64 userland needs root (chroot)"
    if not BINFMT_ENTRY.exists():
        return ("qemu-aarch64 is not registered with binfmt_misc (needs qemu-user-static and a mounted "
                "binfmt_misc; tests/device_standin/make_rootfs.sh registers it)")
    entry = BINFMT_ENTRY.read_text()
    if not entry.startswith("enabled") or not any(
            line.startswith("flags:") and "F" in line for line in entry.splitlines()):
        return "the qemu-aarch64 binfmt_misc entry is disabled or lacks the F flag, so it cannot work in a chroot"
    rootfs = device_rootfs()
    if not (rootfs / ".standin-build-key").is_file():
        return (f"the arm64 userland is not built at {rootfs} "
                "(run: sudo tests/device_standin/make_rootfs.sh build/device-rootfs)")
    return None


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in ADB_SCAN_PORTS:
            return port


@dataclasses.dataclass
class AdbStandin:
    """A running stand-in device, connected to a private adb server."""

    serial: str
    env: dict[str, str]       # environment for `adb` commands: the private server port and HOME
    rootfs: Path              # the device's file system root, on the host
    device: AdbDevice
    arm64: bool               # True if shell commands run as aarch64 code in the arm64 userland

    def adb(self, *args: str, timeout: float = 120, input: bytes | None = None,
            serial: bool = True) -> subprocess.CompletedProcess:
        """Run the real adb client (`adb -s SERIAL ARGS...`), capturing bytes, never raising on failure."""
        argv = ["adb", *(["-s", self.serial] if serial else []), *args]
        return subprocess.run(argv, env=self.env, capture_output=True, timeout=timeout,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL)

    def host_path(self, device_path: str) -> Path:
        """Where a device path lives on this host."""
        return self.device.runner.host_path(device_path)

    def shell_path(self, device_path: str) -> str:
        """How a shell command on this device names `device_path`: the path itself in the arm64 userland; in
        host mode (commands run on the host, in a scratch directory) the host path it maps to."""
        return device_path if self.arm64 else str(self.host_path(device_path))


def _adb_env(home: Path, server_port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("ADB_", "ANDROID_"))}   # no inherited serial, keys or server socket
    env.update(HOME=str(home), ANDROID_ADB_SERVER_PORT=str(server_port))
    return env


def _wait_for_state(session: AdbStandin, state: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    listing = ""
    while time.monotonic() < deadline:
        listing = session.adb("devices", serial=False, timeout=15).stdout.decode()
        for line in listing.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == session.serial and fields[1] == state:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{session.serial} never reached state '{state}'; `adb devices` says:\n{listing}")


@pytest.fixture
def adb_standin_factory(tmp_path_factory):
    """Start stand-in devices with any AdbDevice option; `arm64=` forces (True) or refuses (False) the userland."""
    reason = adb_unavailable_reason()
    if reason:
        pytest.skip(reason)
    started: list[AdbStandin] = []
    userland_lock: list = []     # the open lock file, once this test uses the userland

    def start(arm64: bool | None = None, **device_options) -> AdbStandin:
        arm64_reason = arm64_unavailable_reason()
        if arm64 and arm64_reason:
            pytest.skip(arm64_reason)
        use_arm64 = arm64_reason is None if arm64 is None else arm64
        if use_arm64:
            root = device_rootfs()
            if not userland_lock:
                lock = open(root / ".standin-lock", "w")
                fcntl.flock(lock, fcntl.LOCK_EX)
                userland_lock.append(lock)
            tmp = root / "data" / "local" / "tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            tmp.chmod(0o771)
            device = AdbDevice.in_userland(root, **device_options)
        else:
            device = AdbDevice.on_host(tmp_path_factory.mktemp("device-root"), **device_options)
        device.start()
        home = tmp_path_factory.mktemp("adb-home")
        # free_port() releases the port before the adb server binds it, so a process of the other xdist worker
        # can take it in between (seen once in a full run: "protocol fault", something else answering there).
        # Such a clash is the test bench's, not the tool's: take another port, at most three times.
        for attempt in range(3):
            session = AdbStandin(serial=device.serial, env=_adb_env(home, free_port()), rootfs=device.root,
                                 device=device, arm64=use_arm64)
            server = session.adb("start-server", serial=False, timeout=30)
            if server.returncode == 0:
                break
        started.append(session)
        if server.returncode != 0:
            raise RuntimeError(f"adb start-server failed: {server.stderr.decode()}")
        connect = session.adb("connect", session.serial, serial=False, timeout=30)
        if connect.returncode != 0:
            raise RuntimeError(f"adb connect failed: {connect.stdout.decode()} {connect.stderr.decode()}")
        _wait_for_state(session, "device" if device.authorize else "unauthorized")
        return session

    yield start

    for session in started:
        try:
            session.adb("kill-server", serial=False, timeout=15)
        except subprocess.TimeoutExpired:
            pass
        session.device.stop()
    for lock in userland_lock:
        lock.close()   # releases the flock


@pytest.fixture
def adb_standin(adb_standin_factory) -> AdbStandin:
    """The default stand-in (a Pixel 2 profile), in the arm64 userland when this machine can run it."""
    return adb_standin_factory()


@pytest.fixture
def adb_standin_arm64(adb_standin_factory) -> AdbStandin:
    """The default stand-in, running real aarch64 code; skips with the reason where that is impossible."""
    return adb_standin_factory(arm64=True)
